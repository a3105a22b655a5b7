"""The `otlp` exporter: OTLP/gRPC ``Export`` calls carrying each batch's serialized bytes.

Batches are sent as they are held (no re-serialization when nothing changed them); the tenant
and ``batch_id`` travel as metadata so the next hop keeps the idempotency key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from orasi_common.exporters.otlp.config import Config
from orasi_common.exporters.partial_success import report_partial_success
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterHelper
from orasi_common.transport import headers, status

MIB = 1024 * 1024


class OtlpGrpcExporter:
    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._helper = ExporterHelper(settings, config, self._send)
        self._compression = (
            grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        )

    async def start(self) -> None:
        options = [("grpc.max_send_message_length", int(self._config.max_send_msg_size_mib * MIB))]
        if self._config.tls.insecure:
            self._channel = grpc.aio.insecure_channel(self._config.endpoint, options=options)
        else:
            ca_file = self._config.tls.ca_file
            roots = await asyncio.to_thread(Path(ca_file).read_bytes) if ca_file else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.aio.secure_channel(self._config.endpoint, credentials, options=options)
        for signal, spec in SPECS.items():
            self._calls[signal] = self._channel.unary_unary(
                spec.grpc_method, response_deserializer=spec.response_type.FromString
            )
        await self._helper.start()

    async def consume(self, batch: Batch) -> None:
        await self._helper.consume(batch)

    async def _send(self, batch: Batch) -> None:
        metadata = [*self._config.headers.items(), *headers.hop_headers(batch)]
        try:
            response = await self._calls[batch.signal](
                batch.raw, metadata=metadata, compression=self._compression
            )
        except grpc.aio.AioRpcError as error:
            raise status.from_grpc(error.code(), error.details(), error.trailing_metadata()) from None
        report_partial_success(self._settings, batch, response)

    async def shutdown(self) -> None:
        await self._helper.shutdown()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
