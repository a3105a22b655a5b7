"""A running service: its pipeline graph plus the admin port, started and stopped as one."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from orasi_common.config.model import ServiceConfig
from orasi_common.pipeline.component import Factories
from orasi_common.pipeline.graph import Graph, resolve
from orasi_common.ports import admin_port
from orasi_common.telemetry.admin import AdminApp
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer
from orasi_common.transport.tls import ServerTls


@dataclass(frozen=True)
class _AdminListening:
    """The admin port as a ``Listening`` component, for the registration of the service."""

    server: HttpServer
    endpoint: str

    def listening(self) -> dict[str, str]:
        port = self.server.port
        return {} if port is None else {"admin": join_endpoint(split_endpoint(self.endpoint)[0], port)}


class Service:
    """One of agent / gateway / bridge, built from a configuration (validated on construction)."""

    def __init__(self, name: str, config: ServiceConfig, factories: Factories) -> None:
        self.name = name
        self.metrics = Metrics(name)
        self.graph = Graph.build(resolve(config, factories), factories, name, self.metrics)
        self.ready = False
        admin_endpoint = config.service.telemetry.admin.endpoint or f"0.0.0.0:{admin_port(name)}"
        admin_tls = config.service.telemetry.admin.tls
        self.admin = HttpServer(
            AdminApp(name, self.metrics, lambda: self.ready, self.describe),
            admin_endpoint,
            tls=ServerTls(admin_tls, logging.getLogger(f"orasi.{name}.admin")) if admin_tls else None,
        )
        self.graph.listeners.append(_AdminListening(self.admin, admin_endpoint))
        self._logger = logging.getLogger(f"orasi.{name}")

    def describe(self) -> dict[str, Any]:
        return {"service": self.name, "ready": self.ready, **self.graph.describe()}

    async def start(self) -> None:
        """Admin port first (live, not ready), then the graph; ready once everything runs."""
        await self.admin.start()
        try:
            await self.graph.start()
        except BaseException:
            await self.admin.shutdown()
            raise
        self.ready = True
        self._logger.info("Service started.", extra={"admin_port": self.admin.port})

    async def shutdown(self) -> None:
        self.ready = False
        self._logger.info("Service stopping: receivers first, then queues drain.")
        await self.graph.shutdown()
        await self.admin.shutdown()
        self._logger.info("Service stopped.")

    async def run_until_signal(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.shutdown()
