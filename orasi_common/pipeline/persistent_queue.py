"""A sending queue backed by a write-ahead log: what it accepted survives a crash.

``put`` returns once the batch is durable in the log, so a receiver upstream acknowledges only
data that is on disk. Batches leave the log when their send is finished (delivered, or given
up as permanent failures); a restart replays the rest, in order. Batch ids travel with the
records, so the lake can recognise replays of data it already committed.

Memory is bounded separately from the log: batches beyond ``memory_mib`` are kept only as their
place in the log and read back when their turn comes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass

from orasi_common.pdata import Batch
from orasi_common.pipeline.sending_queue import MIB, BoundedQueue, QueueConfig, StorageConfig
from orasi_common.pipeline.wal import Location, WriteAheadLog, read_payload


@dataclass
class _Entry:
    lsn: int
    location: Location
    size: int
    batch: Batch | None  # None: spilled, read back from the log


class PersistentQueue(BoundedQueue):
    def __init__(
        self,
        config: QueueConfig,
        storage: StorageConfig,
        name: str,
        on_corrupt: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._memory_limit = int(storage.memory_mib * MIB)
        self.wal = WriteAheadLog.from_config(storage, name, on_corrupt)
        self.capacity_bytes = self.wal.max_bytes
        self._entries: collections.deque[_Entry] = collections.deque()
        self._in_flight: dict[int, _Entry] = {}
        self._memory_bytes = 0

    @property
    def size_bytes(self) -> int:
        return self.wal.size_bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def open(self) -> int:
        """Recover the log; return how many batches it holds for sending."""
        recovered = await self.wal.open()
        for lsn, location in recovered.pending:
            self._entries.append(_Entry(lsn, location, location.length, None))
        return len(recovered.pending)

    async def put(self, batch: Batch) -> None:
        """Log ``batch`` durably and queue it; refuse as SendingQueue does when full."""
        record = batch.to_record()
        async with self._changed:
            await self._admit(len(record))
        lsn, location = await self.wal.append(record)
        keep = self._memory_bytes + len(record) <= self._memory_limit
        if keep:
            batch.release_message()
            self._memory_bytes += len(record)
        async with self._changed:
            self._entries.append(_Entry(lsn, location, len(record), batch if keep else None))
            self._changed.notify_all()

    async def get(self) -> Batch | None:
        """The oldest batch, waiting for one; None once closed and drained."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._entries or self._closed)
            if not self._entries:
                return None
            entry = self._entries.popleft()
        batch = entry.batch
        if batch is None:
            batch = Batch.from_record(await asyncio.to_thread(read_payload, entry.location))
        else:
            self._memory_bytes -= entry.size
        self._in_flight[id(batch)] = entry
        return batch

    async def done(self, batch: Batch) -> None:
        """The send of ``batch`` is over (delivered or given up): drop it from the log."""
        entry = self._in_flight.pop(id(batch), None)
        if entry is None:
            return
        self.wal.ack(entry.lsn)
        async with self._changed:
            self._changed.notify_all()

    def drain_remaining(self) -> list[Batch]:
        """Nothing is dropped at shutdown: what is still queued stays in the log."""
        return []

    async def release(self) -> int:
        """Close the log; return how many batches it keeps for the next start."""
        kept = len(self._entries) + len(self._in_flight)
        await self.wal.close()
        return kept
