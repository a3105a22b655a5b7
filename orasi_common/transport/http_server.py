"""Serving an ASGI app with uvicorn inside the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from orasi_common.transport.endpoint import split_endpoint


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the service."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_tcp(endpoint: str) -> socket.socket:
    """A listening TCP socket on ``endpoint`` (port 0 picks a free port); raises OSError if taken."""
    host, port = split_endpoint(endpoint)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class HttpServer:
    """One uvicorn server for one ASGI app on one endpoint."""

    def __init__(self, app: Any, endpoint: str) -> None:
        self._app = app
        self._endpoint = endpoint
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        sock = bind_tcp(self._endpoint)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up failure
                raise RuntimeError(f"the HTTP server on {self._endpoint} stopped while starting")
            await asyncio.sleep(0.005)

    async def shutdown(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None
