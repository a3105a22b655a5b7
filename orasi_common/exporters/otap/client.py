"""An OTAP client: batches as Arrow record batches on long-lived gRPC streams.

Per signal it keeps up to ``num_streams`` streams. A stream sends batches without waiting (at
most ``max_batches_in_flight`` unanswered) and matches each ``BatchStatus`` to its batch by id,
in whatever order they come. After ``max_stream_lifetime`` a stream takes no new batches, is
half-closed once its batches are answered, and a fresh one (fresh dictionaries) replaces it.
If the peer answers UNIMPLEMENTED the client falls back to OTLP on the same channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import grpc
import hpack

from orasi_common.errors import PermanentError, Unauthenticated, Unavailable
from orasi_common.exporters.bearer import BearerToken
from orasi_common.exporters.otap.config import ArrowClientConfig
from orasi_common.exporters.otlp.client import OtlpGrpcClient, compression_of
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pipeline.component import Settings
from orasi_common.transport import headers
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.protocol import error_of, method_path
from orasi_common.transport.otap.stream import StreamProducer
from orasi_common.transport.tls import explain_failure

SETTLE_SECONDS = 0.5
"""How long a stream opened after one died unanswered waits for a refusal before its first write."""


class FallBack(Exception):
    """The peer does not serve OTAP."""


def _stream_error(exc: grpc.aio.AioRpcError) -> BaseException:
    """What the end of a whole stream means for the batches on it.

    UNIMPLEMENTED: the peer has no OTAP (fall back to OTLP). Refused credentials are permanent.
    Anything else ended the stream, not the batches' data (a batch's own refusal comes in its
    BatchStatus): retryable — grpc even reports a stream the peer refused at once as INTERNAL
    ("Internal error from Core") when a write races the refusal.
    """
    code = exc.code()
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return FallBack(exc.details())
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return PermanentError(f"the peer refused the OTAP stream: {code.name}: {exc.details()}")
    return Unavailable(f"the OTAP stream ended: {code.name}: {explain_failure(exc.details())}")


class _Stream:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        signal: Signal,
        config: ArrowClientConfig,
        settings: Settings,
        authorization: str | None = None,
    ) -> None:
        arrow = config.arrow
        metadata = list(config.headers.items())
        if authorization is not None:  # each batch carries the current one too (``send``)
            metadata.append(("authorization", authorization))
        self._call = channel.stream_stream(
            method_path(signal),
            request_serializer=otap_pb2.BatchArrowRecords.SerializeToString,
            response_deserializer=otap_pb2.BatchStatus.FromString,
        )(metadata=metadata, compression=compression_of(config))
        resets = settings.metrics.otap_schema_resets
        self._producer = StreamProducer(
            None if arrow.payload_compression == "none" else arrow.payload_compression,
            arrow.max_dictionary_size,
            on_reset=lambda payload_type: resets.labels(signal.value, payload_type.name).inc(),
            message_compression=None if config.compression == "none" else config.compression,
            zstd_level=arrow.payload_compression_level,
        )
        self._encoder = hpack.Encoder()
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[otap_pb2.BatchStatus]] = {}
        self._slots = asyncio.Semaphore(arrow.max_batches_in_flight)
        self._write_lock = asyncio.Lock()
        self._expires = time.monotonic() + arrow.max_stream_lifetime
        self.failed: BaseException | None = None
        self.answered = False  # a BatchStatus came back on this stream
        self._reader = asyncio.create_task(self._read())

    @property
    def usable(self) -> bool:
        return self.failed is None and time.monotonic() < self._expires

    async def settle(self) -> None:
        """Give the peer ``SETTLE_SECONDS`` to refuse this stream before anything is written to
        it (a refusal then arrives as itself, not raced by a write into INTERNAL)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), SETTLE_SECONDS)

    async def _read(self) -> None:
        try:
            async for answer in self._call:
                self.answered = True
                waiter = self._waiting.pop(answer.batch_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
            error: BaseException = Unavailable("the peer closed the OTAP stream")
        except grpc.aio.AioRpcError as exc:
            error = _stream_error(exc)
        except asyncio.CancelledError:
            error = Unavailable("the OTAP stream was closed")
        self.failed = error
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()

    async def send(self, batch: Batch, authorization: str | None = None) -> None:
        """Send ``batch``; ``authorization`` (a rotating token's current value) goes in its
        headers, never indexed by HPACK (RFC 7541 §7.1.3: a secret stays out of the table)."""
        hop: list[tuple[str, str] | hpack.NeverIndexedHeaderTuple] = [*headers.hop_headers(batch)]
        if authorization is not None:
            hop.append(hpack.NeverIndexedHeaderTuple("authorization", authorization))
        async with self._slots:
            tables = await asyncio.to_thread(codec.encode, batch)
            async with self._write_lock:  # the IPC and HPACK encoder states follow the write order
                if self.failed is not None:
                    raise self.failed
                batch_id = next(self._ids)
                try:
                    records = otap_pb2.BatchArrowRecords(
                        batch_id=batch_id,
                        arrow_payloads=self._producer.encode(tables),
                        headers=self._encoder.encode(hop),
                    )
                except Exception as exc:
                    # The IPC and HPACK states may be half-updated: no later batch may use them.
                    self.failed = Unavailable(f"encoding a batch for the OTAP stream failed: {exc!r}")
                    raise self.failed from exc
                waiter = asyncio.get_running_loop().create_future()
                self._waiting[batch_id] = waiter
                try:
                    await self._call.write(records)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                    self._waiting.pop(batch_id, None)
                    await asyncio.sleep(0)  # let the reader record why the stream ended
                    if self.failed is None:  # not yet: still, no batch may be sent on it again
                        self.failed = Unavailable(f"the OTAP stream broke: {exc}")
                    raise self.failed from None
            answer = await waiter
        error = error_of(answer)
        if error is not None:
            raise error

    async def close(self) -> None:
        """Half-close once every batch is answered, then end the stream."""
        while self._waiting and self.failed is None:
            await asyncio.wait(list(self._waiting.values()), timeout=1.0)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            if self.failed is None:
                await self._call.done_writing()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class OtapClient:
    """Sends batches over OTAP streams on a channel it does not own."""

    def __init__(self, settings: Settings, config: ArrowClientConfig, channel: grpc.aio.Channel) -> None:
        self._settings = settings
        self._config = config
        self._channel = channel
        self._streams: dict[Signal, list[_Stream]] = {signal: [] for signal in Signal}
        self._turn = itertools.count()
        self._retiring: set[asyncio.Task[None]] = set()
        self._otlp = OtlpGrpcClient(settings, config, channel)
        self._token = BearerToken.of(config.auth, settings.logger)
        self.fell_back = False

    def _stream(self, signal: Signal, authorization: str | None) -> _Stream:
        streams = self._streams[signal]
        for stream in [s for s in streams if not s.usable]:
            streams.remove(stream)
            task = asyncio.get_running_loop().create_task(stream.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        if len(streams) < self._config.arrow.num_streams:
            streams.append(_Stream(self._channel, signal, self._config, self._settings, authorization))
        return streams[next(self._turn) % len(streams)]

    async def send(self, batch: Batch) -> None:
        if self.fell_back:
            await self._otlp.send(batch)
            return
        authorization = await self._token.authorization() if self._token is not None else None
        try:
            stream = self._stream(batch.signal, authorization)
            try:
                await stream.send(batch, authorization)
            except Unavailable:
                if stream.answered:
                    raise
                # The stream died before answering anything: perhaps a peer without OTAP refused
                # it while the first write was on its way, which grpc may report as INTERNAL.
                # Once more on a fresh stream, written to only if the peer does not refuse it.
                fresh = self._stream(batch.signal, authorization)
                await fresh.settle()
                await fresh.send(batch, authorization)
        except Unauthenticated as refusal:
            if self._token is None:
                raise
            raise self._token.refused(refusal) from None
        except FallBack as exc:
            if not self._config.arrow.fallback_to_otlp:
                raise PermanentError(f"the peer does not serve OTAP ({exc})") from None
            self.fell_back = True
            self._settings.logger.warning(
                "The peer does not serve OTAP; sending OTLP instead.", extra={"peer": self._config.endpoint}
            )
            await self._otlp.send(batch)

    async def close(self) -> None:
        streams = [s for group in self._streams.values() for s in group]
        await asyncio.gather(*(s.close() for s in streams), *self._retiring, return_exceptions=True)
