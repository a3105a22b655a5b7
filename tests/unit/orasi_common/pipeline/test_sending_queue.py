"""The bounded sending queue: block with a deadline, drop_newest, room released by done(), close."""

from __future__ import annotations

import asyncio

import pytest

from orasi_common.errors import Throttled, Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.sending_queue import MIB, OnFull, QueueConfig, QueueDropped, SendingQueue

from ...builders import batch_with


def _queue(capacity: int, **kwargs: object) -> SendingQueue:
    queue = SendingQueue(QueueConfig(max_size_mib=capacity / MIB, **kwargs))  # type: ignore[arg-type]
    return queue


def _batches(n: int) -> list[Batch]:
    return [batch_with(Signal.TRACES, 1) for _ in range(n)]


async def test_fifo_and_size_accounting() -> None:
    a, b = _batches(2)
    queue = _queue(10 * a.size_bytes)
    await queue.put(a)
    await queue.put(b)
    assert len(queue) == 2
    assert queue.size_bytes == a.size_bytes + b.size_bytes
    assert await queue.get() is a
    assert await queue.get() is b
    assert len(queue) == 0
    assert queue.size_bytes == a.size_bytes + b.size_bytes  # in flight until done()
    await queue.done(a)
    await queue.done(b)
    assert queue.size_bytes == 0


async def test_put_releases_the_parsed_message() -> None:
    (batch,) = _batches(1)
    queue = _queue(MIB)
    await queue.put(batch)
    assert batch._message is None  # held as bytes only while queued
    assert batch.raw


async def test_block_times_out_with_throttled() -> None:
    a, b = _batches(2)
    queue = _queue(a.size_bytes, block_timeout=0.01)
    await queue.put(a)
    with pytest.raises(Throttled) as caught:
        await queue.put(b)
    assert caught.value.retry_after == 1.0  # at least a second
    assert "full" in caught.value.message
    assert len(queue) == 1


async def test_block_timeout_zero_refuses_immediately() -> None:
    a, b = _batches(2)
    queue = _queue(a.size_bytes, block_timeout=0)
    await queue.put(a)
    with pytest.raises(Throttled):
        await queue.put(b)


async def test_done_unblocks_a_waiting_put() -> None:
    a, b = _batches(2)
    queue = _queue(a.size_bytes, block_timeout=30)
    await queue.put(a)
    waiting = asyncio.create_task(queue.put(b))
    taken = await queue.get()
    assert taken is a
    await asyncio.sleep(0)  # let the put reach its wait
    assert not waiting.done()  # a is still in flight: no room yet
    await queue.done(a)
    await waiting
    assert await queue.get() is b


async def test_drop_newest_raises_queue_dropped() -> None:
    a, b = _batches(2)
    queue = _queue(a.size_bytes, on_full=OnFull.DROP_NEWEST)
    await queue.put(a)
    with pytest.raises(QueueDropped):
        await queue.put(b)
    assert len(queue) == 1
    assert queue.size_bytes == a.size_bytes


async def test_oversize_batch_is_let_in_when_empty() -> None:
    big = batch_with(Signal.LOGS, 50)
    small = batch_with(Signal.LOGS, 1)
    queue = _queue(small.size_bytes, on_full=OnFull.DROP_NEWEST)
    await queue.put(big)
    assert len(queue) == 1
    with pytest.raises(QueueDropped):
        await queue.put(small)


async def test_close_drains_then_returns_none() -> None:
    a, b = _batches(2)
    queue = _queue(MIB)
    await queue.put(a)
    await queue.put(b)
    await queue.close()
    with pytest.raises(Unavailable):
        await queue.put(batch_with(Signal.TRACES, 1))
    assert await queue.get() is a
    assert await queue.get() is b
    assert await queue.get() is None
    assert await queue.get() is None


async def test_close_wakes_a_waiting_get() -> None:
    queue = _queue(MIB)
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    await queue.close()
    assert await waiting is None


async def test_close_refuses_a_blocked_put() -> None:
    a, b = _batches(2)
    queue = _queue(a.size_bytes, block_timeout=30)
    await queue.put(a)
    waiting = asyncio.create_task(queue.put(b))
    await asyncio.sleep(0)
    await queue.close()
    with pytest.raises(Unavailable):
        await waiting


async def test_drain_remaining_takes_what_is_queued() -> None:
    a, b = _batches(2)
    queue = _queue(MIB)
    await queue.put(a)
    await queue.put(b)
    assert queue.drain_remaining() == [a, b]
    assert len(queue) == 0


def test_config_defaults() -> None:
    config = QueueConfig()
    assert (config.enabled, config.on_full, config.block_timeout) == (True, OnFull.BLOCK, 5.0)
    with pytest.raises(ValueError):
        QueueConfig(on_full="drop_oldest")  # type: ignore[arg-type]
