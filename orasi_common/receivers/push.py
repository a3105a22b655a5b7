"""An HTTP endpoint that other protocols push to (Prometheus remote write, Zipkin), as a bare ASGI app.

Each route is a path and a handler that turns the request's body into batches and consumes them
through ``Ingest``; the app finds the request's tenant first (``Ingest.tenant``: its tenant
header, or its bearer token's when the receiver names an `auth` extension, so that 401 / 403 come
before the body is read), reads the body within the size limit, answers the route's success
status once the handler returns (that is, once every batch was accepted by the next consumer),
and maps a classified error to its HTTP status (``transport.status``: 400 for bad data, never
retried; 413, 415; 429 / 503 with Retry-After when the pipeline or a rate limit refuses for now) with the
error's message as a plain-text body, which is what these protocols' senders log.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from orasi_common.errors import (
    MalformedData,
    MethodNotAllowed,
    NotFound,
    OrasiError,
    PartialSuccess,
    PayloadTooLarge,
)
from orasi_common.pdata.batch import derived_id
from orasi_common.pipeline.component import Settings
from orasi_common.receivers.ingest import Ingest
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport import status
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Request:
    """What a route's handler gets: lower-case header names → values, the body as sent, and whose
    it is."""

    headers: Mapping[str, str]
    body: bytes
    tenant: str

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def media_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()


Handler = Callable[[Request], Awaitable[None]]
TenantOf = Callable[[Mapping[str, str]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    success: int = 204


class PushApp:
    """The ASGI application: ``POST`` to one of ``routes``; ``tenant_of`` says whose a request is
    (from its headers) or raises its refusal; ``protocol`` labels its metrics."""

    def __init__(
        self,
        protocol: str,
        routes: Mapping[str, Route],
        body_limit: int,
        metrics: Metrics,
        tenant_of: TenantOf,
    ) -> None:
        self._protocol = protocol
        self._routes = routes
        self._tenant_of = tenant_of
        self._body_limit = body_limit
        self._duration = metrics.http_request_duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route = self._routes.get(scope["path"])
        extra: list[tuple[str, str]] = []
        try:
            if route is None:
                raise NotFound(f"nothing at {scope['path']}; use {' or '.join(self._routes)}")
            if scope["method"] != "POST":
                extra.append(("allow", "POST"))
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use POST")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            tenant = await self._tenant_of(headers)
            body = await read_body(headers.get("content-length"), receive, self._body_limit)
            if not body:
                raise MalformedData("the request body is empty")
            await route.handler(Request(headers, body, tenant))
            code, text = route.success, b""
        except PartialSuccess as outcome:  # no partial answer in these protocols: a success
            assert route is not None
            code, text = route.success, outcome.message.encode()
        except OrasiError as error:
            code, text = status.http_status(error), error.message.encode()
            extra.extend(status.http_headers(error))
        response_headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(text)).encode()),
            *((k.encode(), v.encode()) for k, v in extra),
        ]
        await send({"type": "http.response.start", "status": code, "headers": response_headers})
        await send({"type": "http.response.body", "body": text})
        path = scope["path"] if route is not None else "other"
        self._duration.labels(self._protocol, path, scope["method"], str(code)).observe(
            time.perf_counter() - started
        )


async def read_body(content_length: str | None, receive: Receive, limit: int) -> bytes:
    """The whole body of an ASGI request; PayloadTooLarge past ``limit`` bytes (as declared, or
    as read), MalformedData when the client leaves before the end."""
    too_large = PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes; send smaller batches"
    )
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedData("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class PushReceiver:
    """A receiver that serves one PushApp: its lifecycle, ``Listening`` and the batches' identity.

    Subclasses name their ``protocol`` and ``title`` and pass their ``Ingest`` and routes."""

    protocol = ""
    title = ""

    def __init__(
        self,
        settings: Settings,
        ingest: Ingest,
        endpoint: str,
        routes: Mapping[str, Route],
        body_limit: int,
        tenant_header: str,
    ) -> None:
        self.logger = settings.logger
        self._ingest = ingest
        self._endpoint = endpoint
        self._tenant_header = tenant_header.lower()
        app = PushApp(self.protocol, routes, body_limit, settings.metrics, self._tenant_of)
        self._server = HttpServer(app, endpoint)

    async def _tenant_of(self, request_headers: Mapping[str, str]) -> str:
        return await self._ingest.tenant(
            request_headers.get("authorization"), request_headers.get(self._tenant_header)
        )

    def identity(self, request: Request) -> dict[str, str]:
        """The tenant and the batch id, derived from the body: a request the sender retries is the
        same batch, which the lake keeps once."""
        digest = hashlib.blake2b(request.body, digest_size=16).hexdigest()
        return {"tenant": request.tenant, "batch_id": derived_id(self.protocol, digest)}

    @property
    def port(self) -> int | None:
        return self._server.port

    def listening(self) -> dict[str, str]:
        if self._server.port is None:
            return {}
        return {self.protocol: join_endpoint(split_endpoint(self._endpoint)[0], self._server.port)}

    async def start(self) -> None:
        await self._ingest.start()
        await self._server.start()
        self.logger.info(f"{self.title} receiver listening.", extra={"port": self._server.port})

    async def shutdown(self) -> None:
        await self._server.shutdown()
        await self._ingest.shutdown()
