"""The `zipkin` receiver: Zipkin v2 spans over HTTP, JSON or protobuf, into OTLP spans.

``POST /api/v2/spans`` with ``application/json`` (a list of span objects) or
``application/x-protobuf`` (a ``ListOfSpans``), optionally gzip or zstd; the spans are translated
(``translate.py`` holds the mapping) and consumed, and the answer is 202 — Zipkin's own — once
the next consumer accepted them. 400 for a body that cannot be read as spans (never retried),
413 past the size limits, 415 for another content type or encoding, 429 / 503 with Retry-After
when the pipeline refuses for now. The batch id is derived from the body, so a report a client
sends again is kept once by the lake.
"""

from __future__ import annotations

from collections.abc import Mapping

from orasi_common.errors import UnsupportedMediaType
from orasi_common.extensions.auth import authenticator
from orasi_common.extensions.ratelimit import rate_limiter
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.otlp.config import MIB
from orasi_common.receivers.push import PushReceiver, Request, Route
from orasi_common.receivers.zipkin.config import Config
from orasi_common.receivers.zipkin.translate import spans_from_json, spans_from_proto, translate
from orasi_common.transport.compression import decompress

PATH = "/api/v2/spans"
PROTOCOL = "zipkin"
TRANSPORT = "http"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"


class ZipkinReceiver(PushReceiver):
    protocol = PROTOCOL
    title = "Zipkin"

    def __init__(self, settings: Settings, config: Config, consumers: Mapping[Signal, Consumer]) -> None:
        self._ingest = Ingest(
            settings,
            consumers,
            authenticator(settings, config.auth),
            rate_limiter(settings, config.rate_limit),
        )
        self._ingest.check_signal(Signal.TRACES)
        self._decompressed_limit = int(config.max_decompressed_body_size_mib * MIB)
        routes = {PATH: Route(self._spans, success=202)}
        body_limit = int(config.max_request_body_size_mib * MIB)
        super().__init__(settings, self._ingest, config.endpoint, routes, body_limit, config.tenant_header)

    async def _spans(self, request: Request) -> None:
        media_type = request.media_type or JSON
        if media_type not in (JSON, PROTOBUF):
            raise UnsupportedMediaType(
                f"Content-Type {media_type!r} is not supported; use {JSON} or {PROTOBUF}"
            )
        body = decompress(request.header("content-encoding"), request.body, self._decompressed_limit)
        spans = spans_from_json(body) if media_type == JSON else spans_from_proto(body)
        batch = Batch.from_message(Signal.TRACES, translate(spans).request, **self.identity(request))
        await self._ingest.consume(batch, TRANSPORT)
