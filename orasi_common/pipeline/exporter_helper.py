"""What every exporter shares: sending queue → concurrent senders → retry with backoff.

An exporter supplies one ``send(batch)`` that delivers a batch once or raises a classified
error; the helper queues, retries, counts and drains. ``consume`` returns once the batch is
queued in memory, or durable in the write-ahead log when ``sending_queue.storage`` is set, or,
with the queue disabled, once the peer accepted it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import OrasiError, PermanentError, RetryableError, Unavailable
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.persistent_queue import PersistentQueue
from orasi_common.pipeline.retry import RetryConfig, call_with_retry
from orasi_common.pipeline.sending_queue import QueueConfig, QueueDropped, SendingQueue
from orasi_common.pipeline.tasks import TaskScope


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
                    self._failed.labels(batch.signal.value, self._settings.id).inc(batch.items)
                raise
            await queue.done(batch)
            self._observe_queue()

    async def _deliver(self, batch: Batch, *, raise_errors: bool) -> None:
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

        signal, exporter = batch.signal.value, self._settings.id
        try:
            await call_with_retry(attempt, self._config.retry_on_failure, on_retry=on_retry)
        except OrasiError as error:
            self._failed.labels(signal, exporter).inc(batch.items)
            self._settings.logger.warning(
                "Exporting a batch failed; its items are dropped."
                if not raise_errors
                else "Exporting a batch failed; the error goes back to the sender.",
                extra={"items": batch.items, "batch_id": batch.batch_id, "error": error.message},
            )
            if raise_errors:
                raise
            return
        self._sent.labels(signal, exporter).inc(batch.items)

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
                    self._failed.labels(batch.signal.value, self._settings.id).inc(batch.items)
                self._settings.logger.error(
                    "Shutdown deadline passed with batches still queued; they are dropped.",
                    extra={"batches": len(left), "items": items},
                )
        else:
            await self._tasks.close()
