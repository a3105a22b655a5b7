"""OTLP/gRPC: TraceService, MetricsService and LogsService ``Export`` on one grpc.aio server.

Requests arrive as bytes (no deserializer), are validated and counted by one native walk over
them (``validate.check_request``; no parse), and keep their bytes so that forwarding does not
serialize them again. The server runs in the pipelines' process (its sink is the receiver's
``Ingest``) or in a worker process (its sink is the hand-off to the pipelines' process; see
``workers``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc

from orasi_common.errors import OrasiError, PartialSuccess
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.receivers.otlp.config import MIB, GrpcConfig
from orasi_common.transport import headers, partial, status
from orasi_common.transport.tls import ServerTls

TRANSPORT = "grpc"

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


class Sink(Protocol):
    async def consume(self, batch: Batch, transport: str) -> None:
        """Accept the batch, or raise the OrasiError its sender gets."""

    async def tenant(self, authorization: str | None, tenant_header: str | None) -> str:
        """Whose the request is (``Ingest.tenant``), or raise the OrasiError its sender gets."""


async def abort(context: grpc.aio.ServicerContext, error: OrasiError) -> None:
    """End the call with the error's status code, message and RetryInfo (raises)."""
    await context.abort(status.grpc_code(error), error.message, trailing_metadata=status.grpc_trailers(error))


class OtlpGrpcServer:
    """OTLP's three services on one port, plus any other services handed in (e.g. OTAP's)."""

    def __init__(
        self,
        config: GrpcConfig,
        sink: Sink,
        tenant_header: str,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
        reuse_port: bool = False,
    ) -> None:
        self._config = config
        self._sink = sink
        self._reuse_port = reuse_port
        self._tenant_header = tenant_header.lower()
        self._extra_handlers = tuple(extra_handlers)
        self._server: grpc.aio.Server | None = None
        self.tls = ServerTls(config.tls) if config.tls is not None else None
        self.port: int | None = None

    def _handler(self, signal: Signal) -> Handler:
        sink, tenant_header = self._sink, self._tenant_header

        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = dict(context.invocation_metadata() or ())
            try:
                tenant = await sink.tenant(metadata.get("authorization"), metadata.get(tenant_header))
                batch = Batch.from_serialized(
                    signal,
                    request,
                    tenant=tenant,
                    batch_id=headers.incoming_batch_id(metadata.get(headers.BATCH_ID)),
                )
                await sink.consume(batch, TRANSPORT)
            except PartialSuccess as outcome:
                return bytes(partial.otlp_response(signal, outcome).SerializeToString())
            except OrasiError as error:
                await abort(context, error)
            return b""  # an empty Export*ServiceResponse: full success

        return export

    async def start(self) -> None:
        limit = int(self._config.max_recv_msg_size_mib * MIB)
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", int(self._reuse_port)),
            ]
        )
        for signal, spec in SPECS.items():
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(spec.grpc_service, {"Export": handler}),)
            )
        if self._extra_handlers:
            self._server.add_generic_rpc_handlers(self._extra_handlers)
        try:
            if self.tls is not None:
                await self.tls.start()
                credentials = self.tls.grpc_credentials()
                self.port = self._server.add_secure_port(self._config.endpoint, credentials)
            else:
                self.port = self._server.add_insecure_port(self._config.endpoint)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self._config.endpoint} for OTLP/gRPC: {exc}") from None
        await self._server.start()

    async def shutdown(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self.tls is not None:
            await self.tls.shutdown()
