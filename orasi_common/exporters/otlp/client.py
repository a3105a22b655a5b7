"""An OTLP/gRPC client: ``Export`` calls carrying each batch's serialized bytes.

Batches are sent as they are held (no re-serialization when nothing changed them); the tenant
and ``batch_id`` travel as metadata so the next hop keeps the idempotency key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from orasi_common.errors import Unauthenticated
from orasi_common.exporters.bearer import BearerToken
from orasi_common.exporters.otlp.config import GrpcClientConfig, TlsConfig
from orasi_common.exporters.partial_success import report_partial_success
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pipeline.component import Settings
from orasi_common.transport import headers, status
from orasi_common.transport.tls import explain_failure

MIB = 1024 * 1024


CONNECTION_OPTIONS: list[tuple[str, int | str]] = [
    # Subchannels of its own: a channel opened to an address that just came back (an upstream
    # restarted, rediscovered) would otherwise share the old channel's subchannel, and with it a
    # reconnect backoff that keeps it UNAVAILABLE for seconds after the upstream is up.
    ("grpc.use_local_subchannel_pool", 1),
    # gRPC's default (120 s) would leave a recovered upstream unused for up to two minutes; the
    # exporter's own retries and circuit breakers pace the calls.
    ("grpc.max_reconnect_backoff_ms", 5000),
]


async def open_channel(config: GrpcClientConfig, endpoint: str | None = None) -> grpc.aio.Channel:
    """A channel to ``endpoint`` (default: the config's) with its TLS and size settings."""
    target = endpoint or config.endpoint
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", int(config.max_send_msg_size_mib * MIB)),
        *CONNECTION_OPTIONS,
    ]
    tls = config.tls
    if tls.insecure:
        return grpc.aio.insecure_channel(target, options=options)
    if tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    credentials = grpc.ssl_channel_credentials(*await asyncio.to_thread(_client_files, tls))
    return grpc.aio.secure_channel(target, credentials, options=options)


def _client_files(tls: TlsConfig) -> tuple[bytes | None, bytes | None, bytes | None]:
    """Roots, client key and client chain, as ``grpc.ssl_channel_credentials`` takes them."""

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return read(tls.ca_file), read(tls.key_file), read(tls.cert_file)


def compression_of(config: GrpcClientConfig) -> grpc.Compression:
    return grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression


class OtlpGrpcClient:
    """Sends batches as OTLP ``Export`` calls on a channel it does not own."""

    def __init__(self, settings: Settings, config: GrpcClientConfig, channel: grpc.aio.Channel) -> None:
        self._settings = settings
        self._extra_metadata = list(config.headers.items())
        self._token = BearerToken.of(config.auth, settings.logger)
        self._compression = compression_of(config)
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable] = {
            signal: channel.unary_unary(spec.grpc_method, response_deserializer=spec.response_type.FromString)
            for signal, spec in SPECS.items()
        }

    async def send(self, batch: Batch) -> None:
        """Deliver ``batch`` once, or raise the classified error."""
        metadata = [*self._extra_metadata, *headers.hop_headers(batch)]
        if self._token is not None:
            metadata.append(("authorization", await self._token.authorization()))
        try:
            response = await self._calls[batch.signal](
                batch.raw, metadata=metadata, compression=self._compression
            )
        except grpc.aio.AioRpcError as error:
            details = explain_failure(error.details())
            refusal = status.from_grpc(error.code(), details, error.trailing_metadata())
            if self._token is not None and isinstance(refusal, Unauthenticated):
                raise self._token.refused(refusal) from None
            raise refusal from None
        report_partial_success(self._settings, batch, response)

    async def close(self) -> None:
        """Nothing to release: the channel belongs to the caller."""
