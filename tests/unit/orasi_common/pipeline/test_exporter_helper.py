"""The exporter helper with a fake send: queueing, retries, metrics, draining, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orasi_common.errors import MalformedData, PermanentError, Throttled, Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind
from orasi_common.pipeline.exporter_helper import ISOLATION_SENDS, ExporterConfig, ExporterHelper
from orasi_common.pipeline.sending_queue import MIB
from orasi_common.telemetry.metrics import Metrics

from ...builders import batch_with, otap_batch_that_does_not_decode, request_with
from ...doubles import make_settings, sample


class FakeSend:
    """A send() that records batches, can be held closed, and fails as told."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Batch] = []
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = asyncio.Condition()

    async def __call__(self, batch: Batch) -> None:
        async with self.changed:
            self.attempts += 1
            self.changed.notify_all()
        await self.gate.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        async with self.changed:
            self.sent.append(batch)
            self.changed.notify_all()

    async def wait(self, predicate: Any) -> None:
        async with asyncio.timeout(5):
            async with self.changed:
                await self.changed.wait_for(predicate)


def _config(**overrides: Any) -> ExporterConfig:
    base: dict[str, Any] = {
        "timeout": 5,
        "retry_on_failure": {"initial_interval": 0.001, "randomization_factor": 0, "max_elapsed_time": 60},
        "sending_queue": {"num_consumers": 1, "max_size_mib": 1},
        "shutdown_timeout": 5,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return ExporterConfig.model_validate(base)


def _helper(metrics: Metrics, send: FakeSend, **overrides: Any) -> ExporterHelper:
    return ExporterHelper(make_settings("otlp", Kind.EXPORTER, metrics), _config(**overrides), send)


def _items(metrics: Metrics, what: str, signal: str = "traces") -> float:
    return sample(metrics, f"orasi_exporter_{what}_items_total", signal=signal, exporter="otlp")


async def test_queue_on_consume_returns_before_the_send(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    helper = _helper(metrics, send)
    await helper.start()
    batch = batch_with(Signal.TRACES, 3)
    await helper.consume(batch)
    assert send.sent == []
    await send.wait(lambda: send.attempts == 1)  # a sender picked it up and is waiting
    assert send.sent == []
    send.gate.set()
    await send.wait(lambda: send.sent == [batch])
    await helper.shutdown()
    assert _items(metrics, "sent") == 3


async def test_retries_are_counted(metrics: Metrics) -> None:
    send = FakeSend(Unavailable("a", retry_after=0), Unavailable("b", retry_after=0), None)
    helper = _helper(metrics, send)
    await helper.start()
    await helper.consume(batch_with(Signal.LOGS, 2))
    await helper.shutdown()
    assert send.attempts == 3
    assert len(send.sent) == 1
    assert sample(metrics, "orasi_exporter_retries_total", exporter="otlp") == 2
    assert _items(metrics, "sent", "logs") == 2
    assert _items(metrics, "send_failed", "logs") == 0


async def test_permanent_failure_is_counted_and_not_retried(metrics: Metrics) -> None:
    send = FakeSend(PermanentError("peer says no"))
    helper = _helper(metrics, send)
    await helper.start()
    await helper.consume(batch_with(Signal.METRICS, 4))  # accepted: the queue owns it now
    await helper.shutdown()
    assert send.attempts == 1
    assert _failed(metrics, "refused", "metrics") == 4
    assert _items(metrics, "sent", "metrics") == 0
    assert sample(metrics, "orasi_exporter_retries_total", exporter="otlp") == 0


class RefuseNamed:
    """A send() that refuses, as malformed, every batch holding a span whose name contains
    ``bad``, and records the names and ids of what it accepts."""

    def __init__(self) -> None:
        self.sends = 0
        self.accepted: list[str] = []
        self.batch_ids: list[str] = []

    async def __call__(self, batch: Batch) -> None:
        self.sends += 1
        names = [s.name for rs in batch.message.resource_spans for ss in rs.scope_spans for s in ss.spans]
        if any("bad" in name for name in names):
            raise MalformedData("a bad span")
        self.accepted += names
        self.batch_ids.append(batch.batch_id)


def _with_bad_spans(items: int, bad: set[int], batch_id: str = "whole") -> Batch:
    request = request_with(Signal.TRACES, items, resources=3, prefix="s")
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    for index in bad:
        spans[index].name = f"bad{index}"
    return Batch.from_serialized(Signal.TRACES, request.SerializeToString(), batch_id=batch_id)


def _failed(metrics: Metrics, reason: str, signal: str = "traces") -> float:
    return sample(
        metrics, "orasi_exporter_send_failed_items_total", signal=signal, exporter="otlp", reason=reason
    )


@pytest.mark.parametrize("queue", [True, False], ids=["queued", "queue-disabled"])
async def test_items_refused_as_malformed_are_dropped_alone_and_the_rest_delivered(
    metrics: Metrics, queue: bool
) -> None:
    send = RefuseNamed()
    helper = ExporterHelper(
        make_settings("otlp", Kind.EXPORTER, metrics), _config(sending_queue={"enabled": queue}), send
    )
    await helper.start()
    batch = _with_bad_spans(100, {7, 64})
    await helper.consume(batch)  # no error: the sender's other items were delivered
    await helper.shutdown()
    good = [name for name in _names(batch) if "bad" not in name]
    assert sorted(send.accepted) == sorted(good)
    assert _items(metrics, "sent") == 98
    assert _failed(metrics, "malformed") == 2
    assert send.sends < 2 * 2 * 7 + 1  # about 2·log2(n) sends per bad item
    # A replay of the batch splits the same way: the parts' ids are stable (the lake's dedup).
    again = RefuseNamed()
    replay = ExporterHelper(make_settings("otlp", Kind.EXPORTER, Metrics("agent")), _config(), again)
    await replay.start()
    await replay.consume(_with_bad_spans(100, {7, 64}))
    await replay.shutdown()
    assert again.batch_ids == send.batch_ids and len(set(send.batch_ids)) == len(send.batch_ids)


def _names(batch: Batch) -> list[str]:
    return [s.name for rs in batch.message.resource_spans for ss in rs.scope_spans for s in ss.spans]


async def test_isolating_refused_items_is_bounded(metrics: Metrics) -> None:
    send = RefuseNamed()
    helper = _helper(metrics, send)
    await helper.start()
    await helper.consume(_with_bad_spans(2000, set(range(2000))))
    await helper.shutdown()
    assert send.sends <= ISOLATION_SENDS + 1
    assert send.accepted == []
    assert _failed(metrics, "malformed") == 2000


async def test_queue_disabled_a_batch_refused_in_full_raises_to_the_sender(metrics: Metrics) -> None:
    send = RefuseNamed()
    helper = _helper(metrics, send, sending_queue={"enabled": False})
    await helper.start()
    with pytest.raises(MalformedData, match="a bad span"):
        await helper.consume(_with_bad_spans(4, {0, 1, 2, 3}))
    assert _failed(metrics, "malformed") == 4
    await helper.shutdown()


async def test_retries_exhausted_are_counted_as_failed(metrics: Metrics) -> None:
    send = FakeSend(*[Unavailable("down", retry_after=0.001) for _ in range(100)])
    helper = _helper(metrics, send, retry_on_failure={"max_elapsed_time": 0.01})
    await helper.start()
    await helper.consume(batch_with(Signal.TRACES, 5))
    await helper.shutdown()
    assert _items(metrics, "send_failed") == 5
    assert send.sent == []
    assert send.attempts >= 2


async def test_drop_newest_is_counted_as_enqueue_failed(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    first = batch_with(Signal.TRACES, 1)
    helper = _helper(
        metrics, send, sending_queue={"on_full": "drop_newest", "max_size_mib": first.size_bytes / MIB}
    )
    await helper.start()
    await helper.consume(first)
    await send.wait(lambda: send.attempts == 1)  # in flight, still taking its room
    await helper.consume(batch_with(Signal.TRACES, 7))  # dropped, not an error for the sender
    assert _items(metrics, "enqueue_failed") == 7
    send.gate.set()
    await helper.shutdown()
    assert send.sent == [first]
    assert _items(metrics, "sent") == 1


async def test_block_policy_refuses_with_a_retryable_error(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    first = batch_with(Signal.TRACES, 1)
    helper = _helper(
        metrics, send, sending_queue={"block_timeout": 0.01, "max_size_mib": first.size_bytes / MIB}
    )
    await helper.start()
    await helper.consume(first)
    with pytest.raises(Throttled) as caught:
        await helper.consume(batch_with(Signal.TRACES, 1))
    assert caught.value.retryable
    assert caught.value.retry_after is not None
    send.gate.set()
    await helper.shutdown()


async def test_shutdown_drains_the_queue_in_order(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    helper = _helper(metrics, send)
    await helper.start()
    batches = [batch_with(Signal.TRACES, 1) for _ in range(5)]
    for batch in batches:
        await helper.consume(batch)
    stopping = asyncio.create_task(helper.shutdown())
    send.gate.set()
    await stopping
    assert send.sent == batches
    assert _items(metrics, "sent") == 5
    assert sample(metrics, "orasi_queue_size_bytes", exporter="otlp") == 0


async def test_shutdown_past_deadline_counts_every_unsent_item(metrics: Metrics) -> None:
    """Past shutdown_timeout, the queued batches and the one being sent are all counted failed."""
    send = FakeSend()
    send.gate.clear()  # the peer never answers
    helper = _helper(metrics, send, shutdown_timeout=0.01, timeout=60)
    await helper.start()
    await helper.consume(batch_with(Signal.TRACES, 2))
    await send.wait(lambda: send.attempts == 1)
    await helper.consume(batch_with(Signal.TRACES, 3))
    await helper.shutdown()
    assert send.sent == []
    assert _items(metrics, "send_failed") == 5


async def test_queue_gauges(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    helper = _helper(metrics, send, sending_queue={"max_size_mib": 2})
    assert sample(metrics, "orasi_queue_capacity_bytes", exporter="otlp") == 2 * MIB
    await helper.start()
    batches = [batch_with(Signal.LOGS, 1) for _ in range(3)]
    for batch in batches:
        await helper.consume(batch)
    assert sample(metrics, "orasi_queue_size_bytes", exporter="otlp") == sum(b.size_bytes for b in batches)
    send.gate.set()
    await helper.shutdown()


async def test_queue_disabled_permanent_error_reaches_the_sender(metrics: Metrics) -> None:
    send = FakeSend(PermanentError("bad data"))
    helper = _helper(metrics, send, sending_queue={"enabled": False})
    await helper.start()
    with pytest.raises(PermanentError):
        await helper.consume(batch_with(Signal.TRACES, 2))
    assert _items(metrics, "send_failed") == 2
    await helper.consume(batch_with(Signal.TRACES, 1))  # returns once sent
    assert len(send.sent) == 1
    await helper.shutdown()


async def test_queue_disabled_retry_disabled_raises_the_retryable_error(metrics: Metrics) -> None:
    send = FakeSend(Unavailable("busy", retry_after=3))
    helper = _helper(metrics, send, sending_queue={"enabled": False}, retry_on_failure={"enabled": False})
    await helper.start()
    with pytest.raises(Unavailable) as caught:
        await helper.consume(batch_with(Signal.TRACES, 1))
    assert caught.value.retry_after == 3
    assert send.attempts == 1
    await helper.shutdown()


async def test_send_timeout_is_a_retryable_error(metrics: Metrics) -> None:
    send = FakeSend()
    send.gate.clear()
    helper = _helper(
        metrics, send, timeout=0.01, sending_queue={"enabled": False}, retry_on_failure={"enabled": False}
    )
    await helper.start()
    with pytest.raises(Unavailable) as caught:
        await helper.consume(batch_with(Signal.TRACES, 1))
    assert "timeout" in caught.value.message
    await helper.shutdown()


@pytest.mark.parametrize("queue", [True, False])
async def test_shutdown_is_safe_without_start_and_twice(metrics: Metrics, queue: bool) -> None:
    helper = _helper(metrics, FakeSend(), sending_queue={"enabled": queue})
    await helper.shutdown()
    await helper.shutdown()
    helper = _helper(metrics, FakeSend(), sending_queue={"enabled": queue})
    await helper.start()
    await helper.shutdown()
    await helper.shutdown()


async def test_a_queue_refuses_otap_tables_that_do_not_decode_before_acknowledging(metrics: Metrics) -> None:
    send = FakeSend()
    helper = _helper(metrics, send)
    await helper.start()
    with pytest.raises(MalformedData, match="points to no row"):
        await helper.consume(otap_batch_that_does_not_decode())
    await helper.shutdown()
    assert send.attempts == 0
