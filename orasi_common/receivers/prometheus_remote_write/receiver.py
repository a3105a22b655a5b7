"""The `prometheus_remote_write` receiver: Prometheus remote write 1.0 over HTTP into metric points.

``POST /api/v1/write`` with a snappy (block format) compressed ``WriteRequest`` — the body
Prometheus's ``remote_write`` sends — is translated into one OTLP metrics request
(``translate.py`` holds the rules) and consumed; the answer is 204 once the next consumer
accepted it. Status codes follow the remote-write specification's retry rules: 400 for data that
can never be written (bad snappy, a bad protobuf, a series without a name: Prometheus drops the
request and does not retry), 413 past the size limits, 415 for another encoding or for remote
write 2.0's content type; 429 / 503 (with Retry-After) when the pipeline refuses for now, which
Prometheus retries (429 with ``retry_on_http_429``). The batch id is derived from the body, so a
request Prometheus retries is the same batch, and the lake keeps it once.
"""

from __future__ import annotations

from collections.abc import Mapping

import cramjam
from google.protobuf.message import DecodeError

from orasi_common.errors import MalformedData, PayloadTooLarge, UnsupportedMediaType
from orasi_common.extensions.auth import authenticator
from orasi_common.extensions.ratelimit import rate_limiter
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.otlp.config import MIB
from orasi_common.receivers.prometheus_remote_write.config import Config
from orasi_common.receivers.prometheus_remote_write.translate import Translator
from orasi_common.receivers.push import PushReceiver, Request, Route

PATH = "/api/v1/write"
PROTOCOL = "prometheus_remote_write"
TRANSPORT = "http"
_PROTOBUF = "application/x-protobuf"


def snappy_length(data: bytes) -> int:
    """The uncompressed length a snappy block declares in its leading varint."""
    length = shift = 0
    for index in range(min(len(data), 10)):
        byte = data[index]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
    raise MalformedData("the body is not a snappy block: its length header is malformed")


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """The serialized WriteRequest of a remote-write body (snappy block format), within ``limit``
    bytes; its protobuf is checked by the translation's wire scan."""
    if encoding.strip().lower() != "snappy":
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding or '(none)'!r} is not supported; remote write 1.0 sends snappy"
        )
    if snappy_length(body) > limit:
        raise PayloadTooLarge(
            f"the WriteRequest is larger than the limit of {limit} bytes after decompression; "
            "lower the sender's max_samples_per_send"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as error:
        raise MalformedData(f"the body is not valid snappy (block format): {error}") from None


class PrometheusRemoteWriteReceiver(PushReceiver):
    protocol = PROTOCOL
    title = "Prometheus remote write"

    def __init__(self, settings: Settings, config: Config, consumers: Mapping[Signal, Consumer]) -> None:
        self._ingest = Ingest(
            settings,
            consumers,
            authenticator(settings, config.auth),
            rate_limiter(settings, config.rate_limit),
        )
        self._ingest.check_signal(Signal.METRICS)
        self._decompressed_limit = int(config.max_decompressed_body_size_mib * MIB)
        self._translator = Translator(config.metadata_cache_size, config.series_cache_size)
        self._native_histograms = settings.metrics.receiver_malformed.labels(
            settings.id, TRANSPORT, "native_histogram"
        )
        routes = {PATH: Route(self._write, success=204)}
        body_limit = int(config.max_request_body_size_mib * MIB)
        super().__init__(settings, self._ingest, config.endpoint, routes, body_limit, config.tenant_header)

    async def _write(self, request: Request) -> None:
        if "proto=io.prometheus.write.v2" in request.header("content-type"):
            raise UnsupportedMediaType("remote write 2.0 is not supported; configure protobuf_message 1.0")
        if request.media_type not in ("", _PROTOBUF):
            raise UnsupportedMediaType(
                f"Content-Type {request.media_type!r} is not supported; use {_PROTOBUF}"
            )
        write = decode_body(request.body, request.header("content-encoding"), self._decompressed_limit)
        try:
            translation = self._translator.translate(write)
        except DecodeError as error:
            raise MalformedData(f"the body is not a remote-write WriteRequest: {error}") from None
        if translation.native_histograms:
            self._native_histograms.inc(translation.native_histograms)
        batch = Batch.from_serialized(Signal.METRICS, translation.data, **self.identity(request))
        await self._ingest.consume(batch, TRANSPORT)
