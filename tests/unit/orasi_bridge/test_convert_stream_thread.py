"""``convert`` with the writer's stream thread (``pool``): each chunk's rows go through the stream
there while the next chunk converts; the rows, counts and their order are those of converting
one chunk after the other, and a chunk that does not convert raises once the stream's work on
the chunks before it has ended."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from orasi_bridge.lake import convert as convert_module
from orasi_bridge.lake import rows as rows_module
from orasi_bridge.lake.buffer import Entry
from orasi_bridge.lake.convert import chunks, convert
from orasi_common.pdata import Batch, Signal

from .stream.rows import chain

STREAM: list[dict[str, Any]] = [
    {"type": "filter", "signals": ["traces"], "drop_where": "name LIKE 'drop%'"},
    {"type": "redact", "signals": ["traces"]},
    {"type": "transform", "signals": ["traces"], "set": {"attributes['env']": "'prod'"}},
]


def _batch(tenant: str, first: int, n: int) -> Batch:
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans_of = request.resource_spans.add()
    spans_of.resource.attributes.add(key="service.name").value.string_value = f"svc{first % 3}"
    scope = spans_of.scope_spans.add()
    for i in range(first, first + n):
        span = scope.spans.add(name=f"drop{i}" if i % 4 == 0 else f"op{i}", trace_id=bytes([1] * 16))
        span.span_id = i.to_bytes(8, "big")
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        span.attributes.add(key="peer").value.string_value = f"10.0.0.{i % 250} mail{i}@example.com"
    return Batch.from_serialized(Signal.TRACES, request.SerializeToString(), tenant=tenant)


def _work(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(convert_module, "CONVERT_ITEMS", 10)
    batches: dict[tuple[str, str], list[Entry]] = {
        ("spans", tenant): [(_batch(tenant, 7 * i, 7), None) for i in range(6)] for tenant in "ab"
    }
    work = chunks(batches)
    assert len(work) == 6  # 3 chunks of 2 batches per tenant
    return work


def test_the_stream_thread_gives_the_rows_of_one_chunk_after_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = _work(monkeypatch)
    expected = convert(work, "eu", stream=chain(*STREAM))
    threads: set[str] = set()
    stream = chain(*STREAM)
    process = stream.process

    def recording(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return process(*args)

    monkeypatch.setattr(stream, "process", recording)
    with ThreadPoolExecutor(1, thread_name_prefix="stream-test") as pool:
        got = convert(work, "eu", stream=stream, pool=pool)
    assert [counts for _, counts in got] == [counts for _, counts in expected]
    assert all(a.equals(b) for (a, _), (b, _) in zip(got, expected, strict=True))
    assert sum(rows.num_rows for rows, _ in got) < 6 * 14  # the filter left rows out
    assert {name.split("_")[0] for name in threads} == {"stream-test"}


def test_a_chunk_that_does_not_convert_raises_after_the_stream_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    work = _work(monkeypatch)
    stream = chain(*STREAM)
    process = stream.process
    ended: list[int] = []
    release = threading.Event()

    def slow(*args: Any) -> Any:
        release.wait(10)
        result = process(*args)
        ended.append(len(ended))
        return result

    real = rows_module.otlp_rows
    converted: list[int] = []

    def failing_third(*args: Any, **options: Any) -> Any:
        if len(converted) == 2:
            release.set()  # the stream works on the first two chunks meanwhile
            raise ValueError("not convertible")
        converted.append(1)
        return real(*args, **options)

    monkeypatch.setattr(stream, "process", slow)
    monkeypatch.setattr(convert_module, "otlp_rows", failing_third)
    pool = ThreadPoolExecutor(1)
    try:
        with pytest.raises(ValueError, match="not convertible"):
            convert(work, "eu", stream=stream, pool=pool)
        assert ended == [0, 1]  # the stream's work on the chunks before ended first
    finally:
        pool.shutdown()
