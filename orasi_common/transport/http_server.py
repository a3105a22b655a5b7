"""Serving an ASGI app with uvicorn inside the service's own event loop.

Every HTTP endpoint of every service (OTLP/HTTP, the query API with its Jaeger and registry
routes, the push receivers, the admin port) is served by ``HttpServer``, so the limits that keep a
hostile or slow client from holding the server live here once (``Limits``):

- a request's head (request line and headers) is at most ``max_header_bytes`` (64 KiB): more is
  answered 431 and the connection closed (httptools itself would buffer without bound);
- the head must arrive within ``header_timeout`` (10 s) of its first byte or of the connection's
  opening, and the whole request within ``request_timeout`` (60 s): a client sending byte by byte
  (slowloris) is disconnected, and holds no more than a socket until then;
- an idle keep-alive connection is closed after ``keep_alive_timeout`` (5 s, uvicorn's own);
- at most ``max_connections`` (4,096) connections at once: past it uvicorn answers 503.

Body sizes are each app's own (they know their limits: OTLP's 4 MiB, the query API's).
With ``tls`` set, the server speaks TLS only, with certificates reloaded from disk (see
``orasi_common.transport.tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orasi_common.transport.endpoint import split_endpoint

if TYPE_CHECKING:
    from orasi_common.transport.tls import ServerTls


@dataclass(frozen=True)
class Limits:
    """What one client may cost an HTTP server (see the module docstring)."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    request_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 4096


DEFAULT_LIMITS = Limits()

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class _HeadTooLarge(Exception):
    pass


def _guarded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits``' head size and read deadlines."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _in_head = True
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(limits.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            try:
                super().data_received(data)
            except _HeadTooLarge:
                return
            if self._in_head and self.parser is not None and not self.transport.is_closing():
                self._head_bytes += len(data)  # all of it: the head is still incomplete
                if self._head_bytes > limits.max_header_bytes:
                    self._refuse_head()

        def _refuse_head(self) -> None:
            message = f"the request's head is larger than {limits.max_header_bytes} bytes".encode()
            self.transport.write(_431 % (len(message), message))
            self.transport.close()  # later writes (uvicorn's 400 for the halted parse) are dropped

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0
            self._arm(limits.header_timeout)

        def on_headers_complete(self) -> None:
            self._in_head = False
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_bytes:  # the whole head came in one read
                self._refuse_head()
                raise _HeadTooLarge  # halts the parse: the request never reaches the app
            self._arm(limits.request_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

    return GuardedHttpProtocol


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
    """One uvicorn server for one ASGI app on one endpoint, within ``limits``, over TLS when
    ``tls`` is given."""

    def __init__(
        self, app: Any, endpoint: str, *, tls: ServerTls | None = None, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._app = app
        self._endpoint = endpoint
        self._tls = tls
        self._limits = limits
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        sock = bind_tcp(self._endpoint)
        self.port = sock.getsockname()[1]
        tls = self._tls
        if tls is not None:
            await tls.start()
        config = uvicorn.Config(
            self._app,
            http=_guarded_protocol(self._limits),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=int(self._limits.keep_alive_timeout),
            limit_concurrency=self._limits.max_connections,
            ssl_context_factory=(lambda _config, _default: tls.context) if tls is not None else None,
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
        if self._tls is not None:
            await self._tls.shutdown()
