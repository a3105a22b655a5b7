"""How ``orasi bench`` sends one export request over each protocol, and reads the answer.

Each sender turns a peer's answer into an ``Outcome``: items acknowledged, items refused and the
status they were refused with — the gRPC code's name (``UNAVAILABLE``), ``HTTP 503``, or
``PARTIAL_SUCCESS`` for the items an OK answer says it rejected. Nothing is retried: a load test
reports what the peer answered.

* ``otlp-grpc``: unary ``Export`` calls carrying the serialized request as it is.
* ``otlp-http``: ``POST /v1/<signal>`` with ``application/x-protobuf`` bodies.
* ``otap``: the `otap` exporter's client (``exporters.otap.client.OtapClient``): batches encoded
  to Arrow by the stream producer, on long-lived streams, each answered by a ``BatchStatus``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
import httpx
from google.protobuf.message import DecodeError, Message

from orasi_common.bench import PROTOCOLS
from orasi_common.bench.engine import Outcome, Payload
from orasi_common.errors import OrasiError, PartialSuccess
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.transport import status

MIB = 1024 * 1024
PARTIAL = "PARTIAL_SUCCESS"


def _partial(signal: Signal, payload: Payload, response: Message) -> Outcome:
    rejected = int(getattr(response.partial_success, SPECS[signal].rejected_field))  # type: ignore[attr-defined]
    return Outcome(payload.items - rejected, rejected, PARTIAL if rejected else None)


class GrpcSender:
    """OTLP/gRPC ``Export`` calls of raw bytes on one channel."""

    def __init__(
        self,
        endpoint: str,
        signal: Signal,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
        options: Sequence[tuple[str, int]] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``credentials``: TLS (``grpc.ssl_channel_credentials``); None: plaintext."""
        spec = SPECS[signal]
        self.signal = signal
        channel_options = [("grpc.max_send_message_length", 256 * MIB), *options]
        self._channel = (
            grpc.aio.insecure_channel(endpoint, options=channel_options)
            if credentials is None
            else grpc.aio.secure_channel(endpoint, credentials, options=channel_options)
        )
        self._call = self._channel.unary_unary(spec.grpc_method)  # bytes in, bytes out
        self._metadata = tuple(metadata)
        self._timeout = timeout

    async def ready(self, within: float = 15.0) -> None:
        await grpc_ready(self._channel, within)

    async def __call__(self, payload: Payload) -> Outcome:
        try:
            answer = await self._call(payload.data, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            return Outcome(0, payload.items, error.code().name)
        try:
            response = SPECS[self.signal].response_type.FromString(answer)
        except DecodeError:
            return Outcome(payload.items)
        return _partial(self.signal, payload, response)

    async def close(self) -> None:
        await self._channel.close()


async def grpc_ready(channel: grpc.aio.Channel, within: float) -> None:
    await asyncio.wait_for(channel.channel_ready(), within)


class HttpSender:
    """OTLP/HTTP ``POST /v1/<signal>`` of protobuf bodies."""

    def __init__(
        self, endpoint: str, signal: Signal, *, headers: Sequence[tuple[str, str]] = (), timeout: float = 10.0
    ) -> None:
        base = endpoint if "://" in endpoint else f"http://{endpoint}"
        self.signal = signal
        self._url = base.rstrip("/") + SPECS[signal].http_path
        self._client = httpx.AsyncClient(
            timeout=timeout,
            headers={"Content-Type": "application/x-protobuf", **dict(headers)},
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        )

    async def ready(self, within: float = 15.0) -> None:
        """Nothing to wait for: a connection is opened by the first request."""

    async def __call__(self, payload: Payload) -> Outcome:
        try:
            answer = await self._client.post(self._url, content=payload.data)
        except httpx.TimeoutException:
            return Outcome(0, payload.items, "TIMEOUT")
        except httpx.TransportError as error:
            return Outcome(0, payload.items, type(error).__name__)
        if answer.status_code != 200:
            return Outcome(0, payload.items, f"HTTP {answer.status_code}")
        try:
            response = SPECS[self.signal].response_type.FromString(answer.content)
        except DecodeError:
            return Outcome(payload.items)
        return _partial(self.signal, payload, response)

    async def close(self) -> None:
        await self._client.aclose()


class OtapSender:
    """Batches over OTAP streams, through the `otap` exporter's client (no fallback to OTLP)."""

    def __init__(self, endpoint: str, signal: Signal, *, workers: int = 1, timeout: float = 10.0) -> None:
        from orasi_common.exporters.otap.client import OtapClient
        from orasi_common.exporters.otap.config import ArrowClientConfig
        from orasi_common.pipeline.component import Kind, Settings
        from orasi_common.telemetry.metrics import Metrics

        self.signal = signal
        config = ArrowClientConfig.model_validate(
            {
                "endpoint": endpoint,
                "tls": {"insecure": True},
                "compression": "none",
                "arrow": {"max_batches_in_flight": max(1, workers), "fallback_to_otlp": False},
            }
        )
        self._channel = grpc.aio.insecure_channel(endpoint)
        settings = Settings(
            "bench", Kind.EXPORTER, "bench", Metrics("bench"), logging.getLogger("orasi.bench")
        )
        self._client = OtapClient(settings, config, self._channel)
        self._timeout = timeout

    async def ready(self, within: float = 15.0) -> None:
        await grpc_ready(self._channel, within)

    async def __call__(self, payload: Payload) -> Outcome:
        batch = Batch.from_serialized(self.signal, payload.data)
        try:
            await asyncio.wait_for(self._client.send(batch), self._timeout)
        except TimeoutError:
            return Outcome(0, payload.items, "DEADLINE_EXCEEDED")
        except PartialSuccess as outcome:
            return Outcome(payload.items - outcome.rejected, outcome.rejected, PARTIAL)
        except OrasiError as error:
            if "does not serve OTAP" in error.message:  # the client's FallBack, fallback off
                return Outcome(0, payload.items, grpc.StatusCode.UNIMPLEMENTED.name)
            return Outcome(0, payload.items, grpc_name(status.otap_code(error)))
        return Outcome(payload.items)

    async def close(self) -> None:
        await self._client.close()
        await self._channel.close()


def grpc_name(code: int) -> str:
    """The name of a gRPC status number (OTAP's BatchStatus codes are gRPC's)."""
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


Sender = GrpcSender | HttpSender | OtapSender


def make_sender(protocol: str, endpoint: str, signal: Signal, *, workers: int, timeout: float) -> Sender:
    if protocol == "otlp-grpc":
        return GrpcSender(endpoint, signal, timeout=timeout)
    if protocol == "otlp-http":
        return HttpSender(endpoint, signal, timeout=timeout)
    if protocol == "otap":
        return OtapSender(endpoint, signal, workers=workers, timeout=timeout)
    raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")


__all__ = ["PROTOCOLS", "GrpcSender", "HttpSender", "OtapSender", "Sender", "grpc_name", "make_sender"]
