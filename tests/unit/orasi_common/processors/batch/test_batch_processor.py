"""The batch processor: size, bytes and time triggers, splitting, tenants, shutdown, retries."""

from __future__ import annotations

from typing import Any

import pytest

from orasi_common.errors import MalformedData, Throttled, Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.processors.batch import FACTORY, BatchProcessor, Config
from orasi_common.telemetry.metrics import Metrics

from ....builders import batch_with, item_keys, otap_batch_that_does_not_decode
from ....doubles import RecordingConsumer, make_settings, sample

LONG = 3600.0  # a timeout no test waits for


def _processor(metrics: Metrics, consumer: RecordingConsumer, **config: Any) -> BatchProcessor:
    return BatchProcessor(make_settings("batch", metrics=metrics), Config(**config), consumer)


def _sent(metrics: Metrics, trigger: str) -> float:
    return sample(metrics, "orasi_processor_batch_batches_sent_total", processor="batch", trigger=trigger)


def test_factory_and_config_rules() -> None:
    assert FACTORY.type == "batch"
    config = Config()
    assert (config.timeout, config.send_batch_size, config.send_batch_max_size) == (0.2, 8192, 0)
    with pytest.raises(ValueError, match="send_batch_max_size"):
        Config(send_batch_size=10, send_batch_max_size=5)
    Config(send_batch_size=10, send_batch_max_size=10)


async def test_size_trigger_sends_inside_consume(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder, timeout=LONG, send_batch_size=5)
    await processor.start()
    parts = [batch_with(Signal.TRACES, n) for n in (2, 2)]
    for part in parts:
        await processor.consume(part)
    assert recorder.batches == []
    last = batch_with(Signal.TRACES, 1)
    await processor.consume(last)
    (sent,) = recorder.batches  # sent before consume returned
    assert sent.items == 5
    assert item_keys(Signal.TRACES, sent.message) == [
        k for b in [*parts, last] for k in item_keys(Signal.TRACES, b.message)
    ]
    assert _sent(metrics, "size") == 1
    await processor.shutdown()
    assert len(recorder.batches) == 1  # nothing left to flush


async def test_timeout_trigger_sends_from_the_processor_task(
    metrics: Metrics, recorder: RecordingConsumer
) -> None:
    processor = _processor(metrics, recorder, timeout=0.01, send_batch_size=1000)
    await processor.start()
    await processor.consume(batch_with(Signal.LOGS, 3))
    await processor.consume(batch_with(Signal.LOGS, 4))
    await recorder.wait_until(lambda: recorder.items == 7)
    assert [b.items for b in recorder.batches] == [7]
    assert _sent(metrics, "timeout") == 1
    await processor.shutdown()


async def _started_with_bytes_limit(
    metrics: Metrics, recorder: RecordingConsumer, batches: float
) -> tuple[BatchProcessor, float]:
    """A started processor whose byte limit (returned, in MiB) is ``batches`` one-span batches."""
    limit_mib = (batches * batch_with(Signal.TRACES, 1).size_bytes) / (1024 * 1024)
    processor = _processor(
        metrics, recorder, timeout=LONG, send_batch_size=1000, send_batch_size_mib=limit_mib
    )
    await processor.start()
    return processor, limit_mib


async def test_bytes_limit_sends_before_a_batch_would_pass_it(
    metrics: Metrics, recorder: RecordingConsumer
) -> None:
    processor, limit_mib = await _started_with_bytes_limit(metrics, recorder, 2.5)
    await processor.consume(batch_with(Signal.TRACES, 1))
    await processor.consume(batch_with(Signal.TRACES, 1))
    assert recorder.batches == []
    await processor.consume(batch_with(Signal.TRACES, 1))  # three would pass 2.5 batches' bytes
    assert [b.items for b in recorder.batches] == [2]
    assert all(b.size_bytes <= limit_mib * 1024 * 1024 for b in recorder.batches)
    await processor.shutdown()
    assert [b.items for b in recorder.batches] == [2, 1]


async def test_bytes_limit_reached_exactly_sends_at_once(
    metrics: Metrics, recorder: RecordingConsumer
) -> None:
    processor, _ = await _started_with_bytes_limit(metrics, recorder, 2)
    await processor.consume(batch_with(Signal.TRACES, 1))
    assert recorder.batches == []
    await processor.consume(batch_with(Signal.TRACES, 1))
    assert [b.items for b in recorder.batches] == [2]
    await processor.shutdown()


async def test_send_batch_max_size_splits(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder, timeout=LONG, send_batch_size=10, send_batch_max_size=10)
    await processor.start()
    big = batch_with(Signal.METRICS, 25)
    await processor.consume(big)
    assert [b.items for b in recorder.batches] == [10, 10, 5]
    assert [k for b in recorder.batches for k in item_keys(Signal.METRICS, b.message)] == item_keys(
        Signal.METRICS, big.message
    )
    assert len({b.batch_id for b in recorder.batches}) == 3
    assert _sent(metrics, "size") == 3
    assert sample(metrics, "orasi_processor_batch_send_size_items_count", processor="batch") == 3
    await processor.shutdown()


async def test_tenants_are_batched_apart(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder, timeout=LONG, send_batch_size=3)
    await processor.start()
    await processor.consume(batch_with(Signal.TRACES, 2, tenant="a"))
    await processor.consume(batch_with(Signal.TRACES, 2, tenant="b"))
    assert recorder.batches == []
    await processor.consume(batch_with(Signal.TRACES, 1, tenant="a"))
    assert [(b.tenant, b.items) for b in recorder.batches] == [("a", 3)]
    await processor.shutdown()
    assert [(b.tenant, b.items) for b in recorder.batches] == [("a", 3), ("b", 2)]


async def test_max_tenants_refuses_one_more(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder, timeout=LONG, max_tenants=2)
    await processor.start()
    await processor.consume(batch_with(Signal.TRACES, 1, tenant="a"))
    await processor.consume(batch_with(Signal.TRACES, 1, tenant="b"))
    with pytest.raises(Throttled) as caught:
        await processor.consume(batch_with(Signal.TRACES, 1, tenant="c"))
    assert caught.value.retry_after == LONG
    await processor.consume(batch_with(Signal.TRACES, 1, tenant="a"))  # known tenants still welcome
    await processor.shutdown()
    assert sorted((b.tenant, b.items) for b in recorder.batches) == [("a", 2), ("b", 1)]


async def test_shutdown_flushes(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder, timeout=LONG)
    await processor.start()
    parts = [batch_with(Signal.LOGS, 2) for _ in range(3)]
    for part in parts:
        await processor.consume(part)
    await processor.shutdown()
    (sent,) = recorder.batches
    assert sent.items == 6
    assert sent.batch_id == Batch.merge(parts).batch_id
    assert _sent(metrics, "shutdown") == 1
    await processor.shutdown()
    assert len(recorder.batches) == 1


async def test_shutdown_is_safe_without_start(metrics: Metrics, recorder: RecordingConsumer) -> None:
    processor = _processor(metrics, recorder)
    await processor.shutdown()
    await processor.shutdown()
    assert recorder.batches == []


async def test_timer_send_retries_a_retryable_refusal(metrics: Metrics) -> None:
    consumer = RecordingConsumer(
        [Unavailable("busy", retry_after=0.001), Throttled("still busy", retry_after=0.001)]
    )
    processor = _processor(metrics, consumer, timeout=0.01, send_batch_size=1000)
    await processor.start()
    await processor.consume(batch_with(Signal.TRACES, 4))
    await consumer.wait_until(lambda: consumer.items == 4)
    assert consumer.calls == 3
    await processor.shutdown()


async def test_size_send_refusal_goes_back_to_the_sender(metrics: Metrics) -> None:
    consumer = RecordingConsumer([Unavailable("busy", retry_after=1)])
    processor = _processor(metrics, consumer, timeout=LONG, send_batch_size=2)
    await processor.start()
    with pytest.raises(Unavailable):
        await processor.consume(batch_with(Signal.TRACES, 2))
    await processor.shutdown()


async def test_refused_size_send_keeps_data_already_acknowledged(metrics: Metrics) -> None:
    """At-least-once: a batch that consume() accepted must not vanish because a later send failed.

    `early` is accepted (consume returns), then `late` triggers the size send, which the next
    component refuses. `late`'s sender gets the refusal and retries `late`; nobody will retry
    `early`, so the processor must still deliver it.
    """
    consumer = RecordingConsumer([Unavailable("busy", retry_after=0.001)])
    processor = _processor(metrics, consumer, timeout=LONG, send_batch_size=2)
    await processor.start()
    early = batch_with(Signal.TRACES, 1)
    await processor.consume(early)
    late = batch_with(Signal.TRACES, 1)
    with pytest.raises(Unavailable):
        await processor.consume(late)
    await processor.consume(late)  # the sender of `late` retries it
    await processor.shutdown()
    delivered = [k for b in consumer.batches for k in item_keys(Signal.TRACES, b.message)]
    assert item_keys(Signal.TRACES, late.message)[0] in delivered
    assert item_keys(Signal.TRACES, early.message)[0] in delivered, "an acknowledged batch was lost"


async def test_wait_for_send_returns_only_once_the_batch_was_handed_on(
    metrics: Metrics, recorder: RecordingConsumer
) -> None:
    processor = _processor(metrics, recorder, timeout=0.05, send_batch_size=1000, wait_for_send=True)
    await processor.start()
    await processor.consume(batch_with(Signal.LOGS, 3))
    assert [b.items for b in recorder.batches] == [3]  # handed on before consume returned
    await processor.shutdown()


async def test_wait_for_send_reports_a_group_given_up(metrics: Metrics) -> None:
    class Refusing:
        async def consume(self, batch: Batch) -> None:
            raise MalformedData("refused for good")

    processor = BatchProcessor(
        make_settings("batch", metrics=metrics),
        Config(timeout=0.05, send_batch_size=1000, wait_for_send=True),
        Refusing(),
    )
    await processor.start()
    with pytest.raises(MalformedData, match="refused for good"):
        await processor.consume(batch_with(Signal.LOGS, 3))
    await processor.shutdown()


async def test_otap_tables_that_do_not_decode_are_refused_before_being_held(
    metrics: Metrics, recorder: RecordingConsumer
) -> None:
    processor = _processor(metrics, recorder, timeout=LONG)
    await processor.start()
    with pytest.raises(MalformedData, match="points to no row"):
        await processor.consume(otap_batch_that_does_not_decode())
    await processor.shutdown()
    assert recorder.batches == []
