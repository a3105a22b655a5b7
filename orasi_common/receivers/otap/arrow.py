"""The otap receiver's stream handlers: ArrowTraces, ArrowLogs and ArrowMetrics (``protocol``).

Each stream has its own Arrow IPC readers and HPACK decoder. Every ``BatchArrowRecords`` is
answered by one ``BatchStatus`` for its ``batch_id``: OK once the pipeline accepted the batch,
otherwise the classified error's code and message — a bad batch fails alone, the stream goes
on. The tenant and the Orasi batch id come from the batch's HPACK headers (or the stream's
metadata), so the idempotency key survives the OTLP → OTAP hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import hpack

from orasi_common.errors import MalformedData, OrasiError
from orasi_common.pdata import Signal
from orasi_common.pdata.otap import codec
from orasi_common.receivers.ingest import Ingest
from orasi_common.transport import headers
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.protocol import SERVICES, batch_status, service_name
from orasi_common.transport.otap.stream import StreamConsumer

TRANSPORT = "otap"


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class ArrowStreams:
    """The stream handlers of one receiver; ``stop()`` ends every stream after its current batch."""

    def __init__(self, ingest: Ingest, tenant_header: str, logger: logging.Logger) -> None:
        self._ingest = ingest
        self._tenant_header = tenant_header.lower()
        self._logger = logger
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for signal, (_, method) in SERVICES.items():
            handler = grpc.stream_stream_rpc_method_handler(
                self._stream(signal),
                request_deserializer=otap_pb2.BatchArrowRecords.FromString,
                response_serializer=otap_pb2.BatchStatus.SerializeToString,
            )
            handlers.append(grpc.method_handlers_generic_handler(service_name(signal), {method: handler}))
        return handlers

    def _stream(self, signal: Signal):  # type: ignore[no-untyped-def]
        async def serve(
            requests: AsyncIterator[otap_pb2.BatchArrowRecords], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[otap_pb2.BatchStatus]:
            try:
                self._ingest.check_signal(signal)
            except OrasiError as error:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, error.message)
            stream_metadata = dict(context.invocation_metadata() or ())
            consumer = StreamConsumer()
            decoder = hpack.Decoder()
            incoming = aiter(requests)
            stopping = asyncio.ensure_future(self._stopping.wait())
            following: asyncio.Future[Any] | None = None
            try:
                while True:
                    following = asyncio.ensure_future(anext(incoming))
                    await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not following.done():  # shutting down: end the stream between batches
                        return
                    try:
                        records = following.result()
                    except StopAsyncIteration:
                        return
                    yield await self._one(signal, records, consumer, decoder, stream_metadata)
            finally:
                stopping.cancel()
                if following is not None:
                    # A read still pending may end otherwise (the peer closing): consume that.
                    following.cancel()
                    following.add_done_callback(_consume_outcome)

        return serve

    async def _one(
        self,
        signal: Signal,
        records: otap_pb2.BatchArrowRecords,
        consumer: StreamConsumer,
        decoder: hpack.Decoder,
        stream_metadata: dict[str, str | bytes],
    ) -> otap_pb2.BatchStatus:
        try:
            metadata = dict(stream_metadata)
            if records.headers:
                try:
                    metadata.update((str(k), str(v)) for k, v in decoder.decode(records.headers))
                except hpack.HPACKError as exc:
                    raise MalformedData(f"the batch's headers are not valid HPACK: {exc}") from None
            tables = consumer.decode(records.arrow_payloads)
            tenant, authorization = metadata.get(self._tenant_header), metadata.get("authorization")
            batch_id = metadata.get(headers.BATCH_ID)
            batch = codec.decode(
                signal,
                tables,
                tenant=await self._ingest.tenant(
                    authorization if isinstance(authorization, str) else None,
                    tenant if isinstance(tenant, str) else None,
                ),
                batch_id=headers.incoming_batch_id(batch_id if isinstance(batch_id, str) else None),
            )
            await self._ingest.consume(batch, TRANSPORT)
        except OrasiError as error:
            return batch_status(records.batch_id, error)
        except Exception as exc:  # a fault of ours: answer this batch, keep the stream
            self._logger.exception("Decoding an OTAP batch failed unexpectedly.")
            return batch_status(records.batch_id, OrasiError(repr(exc)))
        return batch_status(records.batch_id)
