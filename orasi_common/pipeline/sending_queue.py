"""A bounded in-memory queue of batches between a pipeline and an exporter's senders.

Bounded by bytes (a batch counts until its send is finished, so the bound covers data in
flight). When full, ``block`` waits up to ``block_timeout`` for room and then refuses with a
retryable ``Throttled`` (backpressure to the sender); ``drop_newest`` drops the incoming batch
and counts it. A batch larger than the whole queue is let in when the queue is empty.
"""

from __future__ import annotations

import asyncio
import collections
import enum

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import Throttled, Unavailable
from orasi_common.pdata import Batch
from orasi_common.pipeline.wal import WalConfig

MIB = 1024 * 1024


class OnFull(enum.StrEnum):
    BLOCK = "block"
    DROP_NEWEST = "drop_newest"


class StorageConfig(WalConfig):
    """A write-ahead log under the queue (see persistent_queue)."""

    memory_mib: float = Field(default=64, gt=0, description="Queued batches kept in memory, MiB.")


class QueueConfig(ComponentConfig):
    enabled: bool = Field(default=True, description="Queue batches and acknowledge at once.")
    num_consumers: int = Field(default=10, ge=1, description="Concurrent sends.")
    max_size_mib: float = Field(
        default=64, gt=0, description="Bytes queued (and in flight), MiB; with storage, its max_size_mib."
    )
    on_full: OnFull = Field(default=OnFull.BLOCK, description="`block` or `drop_newest`.")
    block_timeout: float = Field(
        default=5.0, ge=0, description="Seconds `block` waits for room before refusing (retryable)."
    )
    storage: StorageConfig | None = Field(
        default=None, description="Persist the queue in a write-ahead log (unset: memory only)."
    )


class QueueDropped(Exception):
    """The batch was dropped by the drop_newest policy (the caller counts it)."""


class BoundedQueue:
    """Admission shared by the queues: bounded by bytes, with the configured policy when full."""

    capacity_bytes: int

    def __init__(self, config: QueueConfig) -> None:
        self._config = config
        self._changed = asyncio.Condition()
        self._closed = False

    @property
    def size_bytes(self) -> int:
        raise NotImplementedError

    def _fits(self, size: int) -> bool:
        return self.size_bytes == 0 or self.size_bytes + size <= self.capacity_bytes

    async def _admit(self, size: int) -> None:
        """Wait (block) or refuse (drop_newest) until ``size`` fits; hold ``_changed`` to call."""
        if self._closed:
            raise Unavailable("the exporter is shutting down")
        if self._fits(size):
            return
        if self._config.on_full is OnFull.DROP_NEWEST:
            raise QueueDropped()
        try:
            async with asyncio.timeout(self._config.block_timeout):
                await self._changed.wait_for(lambda: self._closed or self._fits(size))
        except TimeoutError:
            raise Throttled(
                f"the sending queue is full ({self.capacity_bytes // MIB} MiB); retry later",
                retry_after=max(1.0, self._config.block_timeout),
            ) from None
        if self._closed:
            raise Unavailable("the exporter is shutting down")

    async def close(self) -> None:
        """Refuse new batches; get() drains what is queued, then returns None."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()


class SendingQueue(BoundedQueue):
    def __init__(self, config: QueueConfig) -> None:
        super().__init__(config)
        self.capacity_bytes = int(config.max_size_mib * MIB)
        self._batches: collections.deque[Batch] = collections.deque()
        self._size_bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def __len__(self) -> int:
        return len(self._batches)

    async def put(self, batch: Batch) -> None:
        """Queue ``batch``, or raise Throttled (block) / QueueDropped (drop_newest) / Unavailable."""
        size = batch.size_bytes
        async with self._changed:
            await self._admit(size)
            batch.release_message()
            self._batches.append(batch)
            self._size_bytes += size
            self._changed.notify_all()

    async def get(self) -> Batch | None:
        """The oldest batch, waiting for one; None once the queue is closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._batches or self._closed)
            return self._batches.popleft() if self._batches else None

    async def done(self, batch: Batch) -> None:
        """Release the room ``batch`` took (after its send finished, either way)."""
        async with self._changed:
            self._size_bytes -= batch.size_bytes
            self._changed.notify_all()

    def drain_remaining(self) -> list[Batch]:
        """Take every batch still queued (for shutdown past the deadline)."""
        remaining = list(self._batches)
        self._batches.clear()
        return remaining
