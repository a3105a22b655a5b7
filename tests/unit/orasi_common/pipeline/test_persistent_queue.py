"""The persistent sending queue: durable put, get/done, replay after restart, memory bound, policies.

Also the exporter helper on top of it: what a shutdown could not send stays in the log, and the
next start sends it with the same batch ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orasi_common.errors import Throttled, Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind
from orasi_common.pipeline.exporter_helper import ExporterConfig, ExporterHelper
from orasi_common.pipeline.persistent_queue import PersistentQueue
from orasi_common.pipeline.sending_queue import MIB, OnFull, QueueConfig, QueueDropped, StorageConfig
from orasi_common.telemetry.metrics import Metrics

from ...builders import batch_with
from ...doubles import make_settings, sample

NAME = "otlp"


def same_batch(a: Batch, b: Batch) -> bool:
    return (a.batch_id, a.signal, a.items, a.tenant, a.raw) == (
        b.batch_id,
        b.signal,
        b.items,
        b.tenant,
        b.raw,
    )


def record_size(batch: Batch) -> int:
    return len(batch.to_record()) + 17  # frame header + kind + lsn


class Queues:
    """Persistent queues over one directory; every one is released at the end of the test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt: list[int] = []
        self._made: list[PersistentQueue] = []

    async def open(self, **options: Any) -> tuple[PersistentQueue, int]:
        storage_options = {"directory": str(self.directory), "fsync_interval": 0.001}
        storage_options.update(options.pop("storage", {}))
        storage = StorageConfig(**storage_options)
        queue = PersistentQueue(QueueConfig(storage=storage, **options), storage, NAME, self.corrupt.append)
        self._made.append(queue)
        return queue, await queue.open()

    async def restart(self, queue: PersistentQueue, **options: Any) -> tuple[PersistentQueue, int]:
        await queue.close()
        await queue.release()
        return await self.open(**options)

    async def close(self) -> None:
        for queue in self._made:
            await queue.close()
            await queue.release()

    def segments(self) -> list[Path]:
        return sorted((self.directory / NAME).glob("*.wal"))


@pytest.fixture
async def queues(tmp_path: Path) -> AsyncIterator[Queues]:
    made = Queues(tmp_path / "queue")
    yield made  # pytest runs what follows the yield whether the test passed or failed
    await made.close()


def batches(n: int, items: int = 3, **kwargs: Any) -> list[Batch]:
    return [batch_with(Signal.TRACES, items, **kwargs) for _ in range(n)]


async def drain(queue: PersistentQueue, n: int) -> list[Batch]:
    got = []
    for _ in range(n):
        batch = await asyncio.wait_for(queue.get(), timeout=5)
        assert batch is not None
        got.append(batch)
    return got


# --- put / get / done ---------------------------------------------------------------------------


async def test_put_get_done_in_order(queues: Queues) -> None:
    queue, replayed = await queues.open()
    assert replayed == 0
    sent = batches(3)
    for batch in sent:
        await queue.put(batch)
    assert len(queue) == 3
    assert queue.size_bytes > 0
    got = await drain(queue, 3)
    assert [b.batch_id for b in got] == [b.batch_id for b in sent]
    assert len(queue) == 0
    for batch in got:
        await queue.done(batch)
    queue, replayed = await queues.restart(queue)
    assert replayed == 0  # all delivered: nothing comes back


async def test_put_returns_once_the_batch_is_on_disk(queues: Queues) -> None:
    queue, _ = await queues.open()
    (batch,) = batches(1)
    await queue.put(batch)
    # Another queue over the same directory, as after a SIGKILL right after put() returned.
    other, replayed = await queues.open()
    assert replayed == 1
    (again,) = await drain(other, 1)
    assert same_batch(again, batch)


async def test_restart_replays_unacknowledged_batches_in_order_with_their_ids(queues: Queues) -> None:
    queue, _ = await queues.open()
    sent = batches(5, tenant="acme")
    for batch in sent:
        await queue.put(batch)
    first, _in_flight = await drain(queue, 2)
    await queue.done(first)  # delivered; the second is in flight when the process stops
    assert await queue.release() == 4
    queue, replayed = await queues.open()
    assert replayed == 4
    got = await drain(queue, 4)
    assert [b.batch_id for b in got] == [b.batch_id for b in sent[1:]]
    assert all(same_batch(g, s) for g, s in zip(got, sent[1:], strict=True))
    assert all(g.tenant == "acme" for g in got)


async def test_batches_put_after_a_restart_follow_the_replayed_ones(queues: Queues) -> None:
    queue, _ = await queues.open()
    old = batches(2)
    for batch in old:
        await queue.put(batch)
    queue, _ = await queues.restart(queue)
    new = batches(2)
    for batch in new:
        await queue.put(batch)
    got = await drain(queue, 4)
    assert [b.batch_id for b in got] == [b.batch_id for b in old + new]


async def test_done_twice_or_for_an_unknown_batch_is_harmless(queues: Queues) -> None:
    queue, _ = await queues.open()
    (batch,) = batches(1)
    await queue.put(batch)
    (got,) = await drain(queue, 1)
    await queue.done(got)
    await queue.done(got)
    await queue.done(batches(1)[0])
    _, replayed = await queues.restart(queue)
    assert replayed == 0


async def test_corrupt_log_is_reported_through_on_corrupt(queues: Queues) -> None:
    queue, _ = await queues.open()
    for batch in batches(2):
        await queue.put(batch)
    await queue.close()
    await queue.release()
    (segment,) = queues.segments()
    with segment.open("r+b") as file:
        file.truncate(segment.stat().st_size - 5)
    _, replayed = await queues.open()
    assert replayed == 1
    assert queues.corrupt == [1]


# --- memory bound: spill and read back ----------------------------------------------------------


async def test_batches_past_memory_mib_are_read_back_from_the_log(queues: Queues) -> None:
    sent = batches(4, items=5)
    budget = len(sent[0].to_record()) + 10  # room for one batch in memory
    queue, _ = await queues.open(storage={"memory_mib": budget / MIB})
    for batch in sent:
        await queue.put(batch)
    got = await drain(queue, 4)
    assert got[0] is sent[0]  # kept in memory
    for original, read_back in zip(sent[1:], got[1:], strict=True):
        assert read_back is not original  # spilled: rebuilt from its record in the log
        assert same_batch(read_back, original)
        assert read_back.message == original.message
    for batch in got:
        await queue.done(batch)
    # The memory taken by the first batch was given back: the next one is kept in memory again.
    (later,) = batches(1, items=5)
    await queue.put(later)
    (again,) = await drain(queue, 1)
    assert again is later


# --- when full: block and drop_newest -------------------------------------------------------------


async def test_block_policy_refuses_with_throttled_after_block_timeout(queues: Queues) -> None:
    first, second = batches(2)
    queue, _ = await queues.open(block_timeout=0.05, storage={"max_size_mib": record_size(first) / MIB})
    await queue.put(first)
    with pytest.raises(Throttled) as caught:
        await queue.put(second)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1.0
    assert len(queue) == 1
    _, replayed = await queues.restart(queue)
    assert replayed == 1  # the refused batch was not logged


async def test_block_policy_waits_while_full(queues: Queues) -> None:
    first, second = batches(2)
    queue, _ = await queues.open(block_timeout=30, storage={"max_size_mib": record_size(first) / MIB})
    await queue.put(first)
    waiting = asyncio.create_task(queue.put(second))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # blocked, not refused
    await queue.close()
    with pytest.raises(Unavailable):
        await waiting  # shutting down ends the wait with a retryable refusal


async def test_done_makes_room_for_a_blocked_put(queues: Queues) -> None:
    first, second = batches(2)
    queue, _ = await queues.open(block_timeout=1, storage={"max_size_mib": 1.5 * record_size(first) / MIB})
    await queue.put(first)
    waiting = asyncio.create_task(queue.put(second))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    (got,) = await drain(queue, 1)
    await queue.done(got)  # delivered: its bytes no longer count against the bound
    await asyncio.wait_for(waiting, timeout=5)  # Throttled here: the acknowledged bytes still count


async def test_an_emptied_queue_keeps_accepting_past_its_capacity_in_total(queues: Queues) -> None:
    """The bound is on what is queued; 100 times the capacity may flow through an idle queue."""
    (sample_batch,) = batches(1)
    queue, _ = await queues.open(
        block_timeout=0.05, storage={"max_size_mib": 20 * record_size(sample_batch) / MIB}
    )
    rounds = 0
    for _ in range(400):
        await queue.put(batches(1)[0])  # (Throttled after ~20 rounds, queue empty, before 5b3a806)
        (got,) = await drain(queue, 1)
        await queue.done(got)
        rounds += 1
    assert rounds == 400


async def test_drop_newest_raises_queue_dropped_and_logs_nothing(queues: Queues) -> None:
    first, second = batches(2)
    queue, _ = await queues.open(
        on_full=OnFull.DROP_NEWEST, storage={"max_size_mib": record_size(first) / MIB}
    )
    await queue.put(first)
    with pytest.raises(QueueDropped):
        await queue.put(second)
    queue, replayed = await queues.restart(queue, on_full=OnFull.DROP_NEWEST)
    assert replayed == 1
    (got,) = await drain(queue, 1)
    assert got.batch_id == first.batch_id


async def test_a_batch_larger_than_the_whole_queue_is_let_in_when_it_is_empty(queues: Queues) -> None:
    (big,) = batches(1, items=200)
    queue, _ = await queues.open(storage={"max_size_mib": 100 / MIB})
    await queue.put(big)
    (got,) = await drain(queue, 1)
    assert got.batch_id == big.batch_id


# --- close and failures ------------------------------------------------------------------------------


async def test_close_refuses_puts_and_get_drains_then_returns_none(queues: Queues) -> None:
    queue, _ = await queues.open()
    (batch,) = batches(1)
    await queue.put(batch)
    await queue.close()
    with pytest.raises(Unavailable):
        await queue.put(batches(1)[0])
    (got,) = await drain(queue, 1)
    assert got.batch_id == batch.batch_id
    assert await asyncio.wait_for(queue.get(), timeout=5) is None
    assert queue.drain_remaining() == []  # nothing is dropped: it stays in the log


async def test_unwritable_log_refuses_put_with_unavailable_then_recovers(queues: Queues) -> None:
    queue, _ = await queues.open()
    log_dir = queues.directory / NAME
    moved = queues.directory / "moved"
    log_dir.rename(moved)
    log_dir.write_bytes(b"a regular file where the log's directory was")
    with pytest.raises(Unavailable):
        await queue.put(batches(1)[0])
    assert len(queue) == 0
    log_dir.unlink()
    moved.rename(log_dir)
    (batch,) = batches(1)
    await queue.put(batch)
    (got,) = await drain(queue, 1)
    assert got.batch_id == batch.batch_id


# --- the exporter helper on a persistent queue --------------------------------------------------------


class Peer:
    """A send() that is down until ``up`` is set, then records what it receives."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.received: list[Batch] = []
        self._changed = asyncio.Condition()

    async def __call__(self, batch: Batch) -> None:
        if not self.up:
            raise Unavailable("the peer is down")
        async with self._changed:
            self.received.append(batch)
            self._changed.notify_all()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)


def helper_config(directory: Path) -> ExporterConfig:
    return ExporterConfig.model_validate(
        {
            "timeout": 5,
            "retry_on_failure": {"initial_interval": 0.01, "max_interval": 0.02, "max_elapsed_time": 0},
            "sending_queue": {
                "num_consumers": 2,
                "storage": {"directory": str(directory), "fsync_interval": 0.001},
            },
            "shutdown_timeout": 0.2,
        }
    )


async def test_exporter_keeps_unsent_batches_in_the_log_at_shutdown_and_sends_them_next_start(
    tmp_path: Path,
) -> None:
    metrics = Metrics("agent")
    down = Peer(up=False)
    helper = ExporterHelper(make_settings(NAME, Kind.EXPORTER, metrics), helper_config(tmp_path), down)
    await helper.start()
    sent = batches(5)
    for batch in sent:
        await helper.consume(batch)
    await helper.shutdown()  # the peer never came up: nothing was sent, nothing is dropped
    assert down.received == []
    assert sample(metrics, "orasi_exporter_send_failed_items_total", signal="traces", exporter=NAME) == 0

    up = Peer(up=True)
    helper = ExporterHelper(make_settings(NAME, Kind.EXPORTER, Metrics("agent")), helper_config(tmp_path), up)
    await helper.start()
    try:
        await up.wait_for(5)
    finally:
        await helper.shutdown()
    assert sorted(b.batch_id for b in up.received) == sorted(b.batch_id for b in sent)
    assert all(any(same_batch(r, s) for s in sent) for r in up.received)

    # Delivered batches were acknowledged in the log: a third start has nothing to send.
    third = Peer(up=True)
    helper = ExporterHelper(
        make_settings(NAME, Kind.EXPORTER, Metrics("agent")), helper_config(tmp_path), third
    )
    await helper.start()
    await asyncio.sleep(0.2)
    await helper.shutdown()
    assert third.received == []
