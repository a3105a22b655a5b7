"""What every exporter shares: sending queue → concurrent senders → retry with backoff.

An exporter supplies one ``send(batch)`` that delivers a batch once or raises a classified
error; the helper queues, retries, counts and drains. ``consume`` returns once the batch is
queued in memory, or durable in the write-ahead log when ``sending_queue.storage`` is set, or,
with the queue disabled, once the peer accepted it. A peer's partial success (``send`` raises
``PartialSuccess``) delivered the rest: its rejected items are counted (reason
``partial_success``) and logged, never retried, and with the queue disabled it is raised to the
sender, so that the answer travels back hop by hop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import (
    MalformedData,
    OrasiError,
    PartialSuccess,
    PermanentError,
    RetryableError,
    Unavailable,
)
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.persistent_queue import PersistentQueue
from orasi_common.pipeline.retry import RetryConfig, call_with_retry
from orasi_common.pipeline.sending_queue import QueueConfig, QueueDropped, SendingQueue
from orasi_common.pipeline.tasks import TaskScope

ISOLATION_SENDS = 256
"""The most sends spent on the parts of one batch while isolating items refused as malformed."""

PARTIAL_SUCCESS = "partial_success"
"""The failure reason of items a peer rejected in a partial success."""

SHUTDOWN = "shutdown"
"""The failure reason of items an in-memory queue still held when shutdown's deadline passed."""


def failure_reason(error: OrasiError) -> str:
    """The ``reason`` label of ``orasi_exporter_send_failed_items_total`` for items given up."""
    if isinstance(error, MalformedData):
        return "malformed"
    if isinstance(error, RetryableError):
        return "retries_exhausted"
    return "refused"


@dataclass
class _Isolation:
    """The state of one batch's delivery while items refused as malformed are isolated."""

    sends_left: int
    sent_items: int = 0
    refused: list[tuple[Batch, MalformedData]] = field(default_factory=list)
    partial: list[PartialSuccess] = field(default_factory=list)  # the peer's partial successes

    @property
    def refused_items(self) -> int:
        return sum(part.items for part, _ in self.refused)


class ExporterConfig(ComponentConfig):
    """Settings every exporter has, as the Collector's exporterhelper names them."""

    timeout: float = Field(default=5.0, gt=0, description="Seconds one send attempt may take.")
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig, description="Retries.")
    sending_queue: QueueConfig = Field(default_factory=QueueConfig, description="The queue.")
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="Seconds shutdown waits for queued batches to be sent."
    )


class ExporterHelper:
    def __init__(
        self,
        settings: Settings,
        config: ExporterConfig,
        send: Callable[[Batch], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._config = config
        self._send = send
        metrics, exporter = settings.metrics, settings.id
        queue_config = config.sending_queue
        self._queue: SendingQueue | PersistentQueue | None = None
        if queue_config.enabled and queue_config.storage is not None:
            corrupt = metrics.wal_corrupt_segments.labels(exporter)
            metrics.watch_volume(f"wal/{exporter}", queue_config.storage.directory)
            self._queue = PersistentQueue(queue_config, queue_config.storage, exporter, corrupt.inc)
        elif queue_config.enabled:
            self._queue = SendingQueue(queue_config)
        self._tasks = TaskScope()
        self._sent = metrics.exporter_sent
        self._failed = metrics.exporter_send_failed
        self._dropped = metrics.exporter_enqueue_failed
        self._retries = metrics.exporter_retries.labels(exporter)
        self._queue_bytes = metrics.queue_size_bytes.labels(exporter)
        self._queue_batches = metrics.queue_size_batches.labels(exporter)
        if self._queue is not None:
            metrics.queue_capacity_bytes.labels(exporter).set(self._queue.capacity_bytes)

    async def start(self) -> None:
        if isinstance(self._queue, PersistentQueue):
            replay = await self._queue.open()
            if replay:
                self._settings.logger.info(
                    "Replaying batches the write-ahead log kept from an earlier run.",
                    extra={"batches": replay},
                )
            self._observe_queue()
        await self._tasks.open()
        if self._queue is not None:
            for index in range(self._config.sending_queue.num_consumers):
                self._tasks.spawn(self._sender(self._queue), name=f"{self._settings.id}-sender-{index}")

    async def consume(self, batch: Batch) -> None:
        if self._queue is None:
            await self._deliver(batch, raise_errors=True)
            return
        if batch.otap is not None:  # queued means acknowledged: refuse tables that do not decode now
            await asyncio.to_thread(batch.check_otap)
        try:
            await self._queue.put(batch)
        except QueueDropped:
            self._dropped.labels(batch.signal.value, self._settings.id).inc(batch.items)
            return
        self._observe_queue()

    def _observe_queue(self) -> None:
        assert self._queue is not None
        self._queue_bytes.set(self._queue.size_bytes)
        self._queue_batches.set(len(self._queue))

    async def _sender(self, queue: SendingQueue | PersistentQueue) -> None:
        while (batch := await queue.get()) is not None:
            self._observe_queue()
            try:
                await self._deliver(batch, raise_errors=False)
            except asyncio.CancelledError:
                # Shutdown's deadline passed during this send. A logged batch stays in the log
                # for the next start; an in-memory one is given up.
                if not isinstance(queue, PersistentQueue):
                    self._failed.labels(batch.signal.value, self._settings.id, SHUTDOWN).inc(batch.items)
                raise
            await queue.done(batch)
            self._observe_queue()

    async def _deliver(self, batch: Batch, *, raise_errors: bool) -> None:
        """Send ``batch``, isolating items refused as malformed (``_send_isolating``): those are
        counted and logged, and the rest is delivered. Any other failure gives up what was not
        delivered, counted and logged, and raises it when ``raise_errors`` (as does a refusal of
        every item)."""
        isolation = _Isolation(ISOLATION_SENDS)
        try:
            await self._send_isolating(batch, isolation)
        except OrasiError as error:
            self._report_refused(isolation)
            lost = batch.items - isolation.sent_items - isolation.refused_items
            self._give_up(batch, lost, error, raise_errors)
            if raise_errors:
                raise
            return
        finally:
            self._sent.labels(batch.signal.value, self._settings.id).inc(isolation.sent_items)
        self._report_refused(isolation)
        if raise_errors and isolation.refused and not isolation.sent_items:
            raise isolation.refused[0][1]  # nothing delivered: the sender learns why
        if raise_errors and isolation.partial:
            raise PartialSuccess.combine(isolation.partial)

    async def _send_isolating(self, batch: Batch, isolation: _Isolation) -> None:
        """Send ``batch`` (with retries); when it is refused as malformed, send its halves the same
        way, so that only items refused on their own are given up (recorded in ``isolation``,
        not raised) — one bad item among n costs about 2·log2(n) sends, and ``isolation``
        bounds the total. Split parts keep ids derived from the batch's, so a replay of the
        batch splits the same way and the lake recognises parts it already holds. Any other
        failure raises."""
        try:
            await self._send_with_retry(batch)
        except PartialSuccess as outcome:
            rejected = min(outcome.rejected, batch.items)
            isolation.sent_items += batch.items - rejected
            isolation.partial.append(outcome)
            self._failed.labels(batch.signal.value, self._settings.id, PARTIAL_SUCCESS).inc(rejected)
            self._settings.logger.warning(
                "The peer accepted a batch only in part.",
                extra={
                    "rejected_items": rejected,
                    "batch_id": batch.batch_id,
                    "peer_message": outcome.message,
                },
            )
            return
        except MalformedData as error:
            halves = (
                batch.split((batch.items + 1) // 2) if batch.items > 1 and isolation.sends_left >= 2 else []
            )
            if len(halves) < 2:
                isolation.refused.append((batch, error))
                return
            isolation.sends_left -= len(halves)
            for half in halves:
                await self._send_isolating(half, isolation)
            return
        isolation.sent_items += batch.items

    async def _send_with_retry(self, batch: Batch) -> None:
        def on_retry(error: RetryableError, delay: float) -> None:
            self._retries.inc()

        async def attempt() -> None:
            try:
                async with asyncio.timeout(self._config.timeout):
                    await self._send(batch)
            except TimeoutError:
                raise Unavailable(f"no answer within the timeout of {self._config.timeout} s") from None
            except OrasiError:
                raise
            except Exception as exc:  # a fault of ours, not the peer's: never retried
                self._settings.logger.exception("Sending a batch raised an unexpected error.")
                raise PermanentError(f"unexpected error while sending: {exc!r}") from None

        await call_with_retry(attempt, self._config.retry_on_failure, on_retry=on_retry)

    def _report_refused(self, isolation: _Isolation) -> None:
        """Count and log (once per batch) the items given up as malformed."""
        if not isolation.refused:
            return
        first_part, first_error = isolation.refused[0]
        self._failed.labels(first_part.signal.value, self._settings.id, failure_reason(first_error)).inc(
            isolation.refused_items
        )
        self._settings.logger.warning(
            "Items of a batch were refused as malformed and are dropped; the rest was delivered.",
            extra={
                "items": isolation.refused_items,
                "delivered_items": isolation.sent_items,
                "batch_id": first_part.batch_id,
                "error": first_error.message,
            },
        )

    def _give_up(self, batch: Batch, items: int, error: OrasiError, raise_errors: bool) -> None:
        self._failed.labels(batch.signal.value, self._settings.id, failure_reason(error)).inc(items)
        self._settings.logger.warning(
            "Exporting a batch failed; the error goes back to the sender."
            if raise_errors
            else "Exporting a batch failed; its items are dropped.",
            extra={"items": items, "batch_id": batch.batch_id, "error": error.message},
        )

    async def shutdown(self) -> None:
        """Drain the queue for up to ``shutdown_timeout``; count what could not be sent."""
        if self._queue is not None:
            await self._queue.close()
            try:
                async with asyncio.timeout(self._config.shutdown_timeout):
                    await self._tasks.close()
            except TimeoutError:
                await self._tasks.close(cancel=True)
            if isinstance(self._queue, PersistentQueue):
                kept = await self._queue.release()
                if kept:
                    self._settings.logger.info(
                        "Batches not sent before the shutdown deadline stay in the write-ahead log.",
                        extra={"batches": kept},
                    )
                return
            left = self._queue.drain_remaining()
            if left:
                items = sum(b.items for b in left)
                for batch in left:
                    self._failed.labels(batch.signal.value, self._settings.id, SHUTDOWN).inc(batch.items)
                self._settings.logger.error(
                    "Shutdown deadline passed with batches still queued; they are dropped.",
                    extra={"batches": len(left), "items": items},
                )
        else:
            await self._tasks.close()
