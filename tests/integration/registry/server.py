"""The registry's REST API served by uvicorn on a free port, in a thread with its own event loop
(so that blocking clients, such as confluent-kafka's, can call it from the test's thread); and
``bridge_config``, a bridge process's configuration with a registry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI

from orasi_bridge.registry import api
from orasi_bridge.registry.config import RegistryConfig
from orasi_bridge.registry.registry import Registry
from orasi_common.pdata import DEFAULT_TENANT
from orasi_common.testing.service_process import free_ports
from orasi_common.topology import service
from orasi_common.transport.http_server import HttpServer

T = TypeVar("T")


class RegistryServer:
    """``with RegistryServer(store=..., redis=...) as server: server.url`` (…/registry)."""

    def __init__(self, **config: Any) -> None:
        self.config = RegistryConfig.model_validate(config)
        self.loop = asyncio.new_event_loop()
        self.registry: Registry | None = None
        self._server: HttpServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def run(self, work: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        """Run ``work()`` on the server's loop and wait for its result (before ``with``, too)."""
        if not self._thread.is_alive():
            self._thread.start()
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(_call(work), self.loop)
        return future.result(timeout)

    def __enter__(self) -> RegistryServer:
        self.run(self._start)
        return self

    async def _start(self) -> None:
        self.registry = Registry(self.config, "", logging.getLogger("test.registry"))
        await self.registry.start()
        app = FastAPI()
        api.mount(
            app,
            self.registry,
            lambda request: request.headers.get("x-orasi-tenant") or DEFAULT_TENANT,
            self.config.max_request_bytes,
        )
        self._server = HttpServer(app, "127.0.0.1:0")
        await self._server.start()
        self.url = f"http://127.0.0.1:{self._server.port}{api.PREFIX}"

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self.registry is not None:
            await self.registry.shutdown()

    def __exit__(self, *_: object) -> None:
        try:
            self.run(self._stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def bridge_config(tmp: Path, registry: dict[str, Any]) -> dict[str, Any]:
    """A bridge (`otlp` receiver, `lake` exporter on a local warehouse and SQLite catalog, the
    query API on free ports) whose query API serves ``registry``."""
    ports = free_ports()
    tmp.mkdir(parents=True, exist_ok=True)
    lake = {"catalog_uri": f"sqlite:///{tmp / 'catalog.db'}", "warehouse": f"file://{tmp / 'warehouse'}"}
    config = service(ports, "otlp", {}, "lake", lake, query_api=True)
    config["extensions"]["query_api"]["registry"] = registry
    return config
