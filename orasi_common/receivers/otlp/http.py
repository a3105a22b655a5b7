"""OTLP/HTTP: ``POST /v1/traces|metrics|logs`` with protobuf or JSON bodies, as a bare ASGI app.

Status codes follow the OTLP specification: 200 with an Export*ServiceResponse in the request's
content type; 400 for a malformed body; 413 past the size limits; 415 for an unsupported content
type or encoding; 404 / 405 for other paths and methods; 429 / 503 with Retry-After when the
pipeline refuses for now. Error bodies are a google.rpc.Status in the request's content type.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format

from orasi_common.errors import (
    MalformedData,
    MethodNotAllowed,
    NotFound,
    OrasiError,
    PartialSuccess,
    UnsupportedMediaType,
)
from orasi_common.pdata import SPEC_BY_HTTP_PATH, Batch
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.otlp.config import MIB, HttpConfig
from orasi_common.receivers.push import read_body
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport import headers, partial, status
from orasi_common.transport.compression import decompress

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TRANSPORT = "http"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_BATCH_ID_HEADER = headers.BATCH_ID.encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class OtlpHttpApp:
    """The ASGI application serving OTLP/HTTP."""

    def __init__(self, config: HttpConfig, ingest: Ingest, tenant_header: str, metrics: Metrics) -> None:
        self._ingest = ingest
        self._tenant_header = tenant_header.lower().encode()
        self._body_limit = int(config.max_request_body_size_mib * MIB)
        self._decompressed_limit = int(config.max_decompressed_body_size_mib * MIB)
        self._duration = metrics.http_request_duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        content_type = JSON
        code = 500
        try:
            content_type = self._response_type(scope)
            body, extra_headers = await self._handle(scope, receive, content_type)
            code = 200
        except OrasiError as error:
            code = status.http_status(error)
            body = self._error_body(error, content_type)
            extra_headers = status.http_headers(error)
            if isinstance(error, MethodNotAllowed):
                extra_headers.append(("allow", "POST"))
        response_headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in extra_headers),
        ]
        await send({"type": "http.response.start", "status": code, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
        path = scope["path"] if scope["path"] in SPEC_BY_HTTP_PATH else "other"
        self._duration.labels("otlp", path, scope["method"], str(code)).observe(time.perf_counter() - started)

    @staticmethod
    def _response_type(scope: Scope) -> str:
        """The request's media type if it is one OTLP speaks (responses use the same)."""
        raw = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if raw in (PROTOBUF, JSON):
            return raw
        return JSON  # for errors about anything else

    async def _handle(
        self, scope: Scope, receive: Receive, content_type: str
    ) -> tuple[bytes, list[tuple[str, str]]]:
        spec = SPEC_BY_HTTP_PATH.get(scope["path"])
        if spec is None:
            raise NotFound(f"no OTLP endpoint at {scope['path']}; use /v1/traces, /v1/metrics or /v1/logs")
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use POST")
        declared = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if declared not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(
                f"Content-Type {declared or '(none)'!r} is not supported; use {PROTOBUF} or {JSON}"
            )
        self._ingest.check_signal(spec.signal)
        if self._ingest.auth is not None:  # refuse before reading the body
            await self._ingest.tenant(_header(scope, b"authorization"), _header(scope, self._tenant_header))
        body = await read_body(_header(scope, b"content-length"), receive, self._body_limit)
        if not body:
            raise MalformedData("the request body is empty")
        body = decompress(_header(scope, b"content-encoding") or "", body, self._decompressed_limit)
        identity = {
            "tenant": await self._ingest.tenant(
                _header(scope, b"authorization"), _header(scope, self._tenant_header)
            ),
            "batch_id": headers.incoming_batch_id(_header(scope, _BATCH_ID_HEADER)),
        }
        if content_type == PROTOBUF:
            batch = Batch.from_serialized(spec.signal, body, **identity)
        else:
            batch = Batch.from_json(spec.signal, body, **identity)
        try:
            await self._ingest.consume(batch, TRANSPORT)
        except PartialSuccess as outcome:
            response = partial.otlp_response(spec.signal, outcome)
            if content_type == PROTOBUF:
                return bytes(response.SerializeToString()), []
            return json_format.MessageToJson(response, indent=None).encode(), []
        return (b"" if content_type == PROTOBUF else b"{}"), []

    @staticmethod
    def _error_body(error: OrasiError, content_type: str) -> bytes:
        rpc_status = status.rpc_status(error)
        if content_type == PROTOBUF:
            return bytes(rpc_status.SerializeToString())
        return json.dumps(json_format.MessageToDict(rpc_status)).encode()
