"""The stream's work once per resource (``stream.runs``): the converter hands each row's
resource over, and the chain's rows and counts are those of the work done row by row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from orasi_bridge.lake.convert import batch_rows, chunks, convert
from orasi_bridge.lake.rows import otap, otlp, otlp_rows, resource_of_row, rows_of
from orasi_bridge.stream.chain import filter_map, filter_rows, filter_runs
from orasi_bridge.stream.runs import Runs
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.traces import encode_traces_bytes
from orasi_common.telemetry.metrics import Metrics

from .rows import chain, column, sample_value, spans

REDACT_AND_DROP: list[dict[str, Any]] = [
    {"type": "filter", "signals": ["traces"], "drop_where": "name = 'drop'"},
    {"type": "redact", "signals": ["traces"], "deny_keys": ["secret"]},
]


def resource(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return list(pairs)


def test_runs_of_resources_and_after_a_filter() -> None:
    runs = Runs.of(np.array([0, 0, 1, 1, 1, 0, 2]))
    assert runs.starts.tolist() == [0, 2, 5, 6]
    assert runs.run_of_row.tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert runs.lengths.tolist() == [2, 3, 1, 1]
    kept = runs.filter(np.array([True, False, False, False, True, True, True]))
    assert kept.starts.tolist() == [0, 1, 2, 3]
    assert kept.lengths.tolist() == [1, 1, 1, 1]


def test_redact_once_per_resource_gives_the_rows_and_counts_of_row_by_row() -> None:
    shop = resource(("owner", "dave@example.net"), ("host.ip", "10.1.2.3"), ("secret", "s3"))
    cart = resource(("owner", "erin@example.org"), ("region", "eu"))
    plain = resource(("service.name", "db"))
    resources = np.repeat(np.arange(4), [6, 5, 4, 5])  # runs long enough (Runs.long)
    names = ["a", "drop", "b", "b", "b", "b", "c", "drop", "c", "drop", "c", *"dddd", *"eeeee"]
    maps = [[shop, cart, plain, shop][r] for r in resources]
    rows = spans(
        *(
            {"name": name, "resource_attributes": attributes, "attributes": [("ip", f"10.0.0.{i}")]}
            for i, (name, attributes) in enumerate(zip(names, maps, strict=True))
        )
    )
    by_rows, by_resources = Metrics("bridge"), Metrics("bridge")
    per_row = chain(*REDACT_AND_DROP, metrics=by_rows)
    expected, expected_counts = per_row.process("spans", "acme", rows, [3, 17])
    per_run = chain(*REDACT_AND_DROP, metrics=by_resources)
    out, counts = per_run.process("spans", "acme", rows, [3, 17], resources)
    assert out.equals(expected) and counts == expected_counts == [2, 15]
    assert column(out, "resource_attributes")[0] == [
        ("owner", "[REDACTED:email]"),
        ("host.ip", "[REDACTED:ipv4]"),
        ("secret", "[REDACTED:deny_keys]"),
    ]
    for rule in ("email", "ipv4", "deny_keys"):
        labels = {"exporter": "lake", "processor": "redact_1", "rule": rule}
        assert sample_value(by_resources, "orasi_stream_redactions_total", labels) == sample_value(
            by_rows, "orasi_stream_redactions_total", labels
        )
    labels = {"exporter": "lake", "processor": "redact_1", "rule": "email"}
    assert sample_value(by_resources, "orasi_stream_redactions_total", labels) == 13  # rows, not runs


def test_a_transform_of_the_resource_map_lets_the_runs_go() -> None:
    """After a transform sets a resource key from a span's column, rows of one resource differ:
    the redact after it works row by row (were it to take the first row's map, b would read a)."""
    names = ("a@example.com", "b", "c", "d")
    rows = spans(*({"name": name, "resource_attributes": [("owner", "x")]} for name in names))
    stream = chain(
        {"type": "transform", "signals": ["traces"], "set": {"resource_attributes['who']": "name"}},
        {"type": "redact", "signals": ["traces"]},
    )
    out, _ = stream.process("spans", "acme", rows, [4], np.zeros(4, np.int64))
    assert column(out, "resource_attributes") == [
        [("owner", "x"), ("who", "[REDACTED:email]")],
        *([("owner", "x"), ("who", name)] for name in names[1:]),
    ]


def _request(services: list[tuple[str, int]]) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service, n in services:
        spans_of = request.resource_spans.add()
        spans_of.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value=service))
        spans_of.resource.attributes.add(
            key="owner", value=common_pb2.AnyValue(string_value=f"{service}@x.io")
        )
        scope = spans_of.scope_spans.add()
        for i in range(n):
            span = scope.spans.add(name=f"op{i}", trace_id=bytes([1] * 16), span_id=bytes([i + 1] * 8))
            span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return request.SerializeToString()


def test_the_converter_hands_over_each_rows_resource() -> None:
    batches = [
        Batch.from_serialized(Signal.TRACES, _request([("a", 2), ("b", 1)]), tenant="acme"),
        Batch.from_serialized(Signal.TRACES, _request([("c", 1), ("a", 1)]), tenant="acme"),
    ]
    resources: list[np.ndarray] = []
    rows = otlp_rows(batches, "eu", resources=resources)
    of_rows = resource_of_row(resources, rows)
    assert of_rows is not None and of_rows.tolist() == [0, 0, 1, 2, 3]
    services = column(rows, "service_name")
    assert services == ["a", "a", "b", "c", "a"]
    one, _ = batch_rows(batches[0], "spans", "eu")
    assert one[0].num_rows == 3

    stream = chain({"type": "redact", "signals": ["traces"]})
    by_rows, _ = stream.process("spans", "acme", rows, [3, 2])
    (converted,) = convert(
        chunks({("spans", "acme"): [(batch, None) for batch in batches]}), "eu", stream=stream
    )
    assert converted[0].equals(by_rows) and converted[1] == [3, 2]
    assert column(converted[0], "resource_attributes")[0] == [
        ("service.name", "a"),
        ("owner", "[REDACTED:email]"),
    ]
    assert isinstance(rows, pa.RecordBatch)


def test_filter_by_runs_keeps_the_rows_a_filter_keeps() -> None:
    """Every way of keeping rows of runs (none, all, the first or last run cut, runs emptied)."""
    random = np.random.default_rng(17)
    maps = [[("k", f"r{run}"), ("n", str(i))] for run in range(6) for i in range(2)]  # run r: rows 2r, 2r+1
    resources = np.repeat(np.arange(6), [3, 1, 4, 2, 1, 3])
    column = pa.array([maps[2 * r] for r in resources], pa.map_(pa.string(), pa.string()))
    runs = Runs.of(resources)
    cases = [np.ones(14, bool), np.zeros(14, bool), np.arange(14) != 0, np.arange(14) != 13]
    cases += [random.random(14) < p for p in (0.2, 0.5, 0.8) for _ in range(20)]
    for keep in cases:
        expected = filter_map(column, keep)
        got = filter_runs(column, runs, keep)
        assert got is not None and got.equals(expected), keep
        rows = spans(*({"resource_attributes": m} for m in column.to_pylist()))
        assert filter_rows(rows, keep, runs).equals(filter_rows(rows, keep))


def test_an_otap_batch_hands_over_the_runs_of_its_otlp_form() -> None:
    data = _request([("a", 2), ("b", 1), ("c", 3)])
    tables = encode_traces_bytes(data)
    from_otap: list[np.ndarray] = []
    from_otlp: list[np.ndarray] = []
    otap.spans_batch(tables, "acme", "eu", resources=from_otap)
    otlp.spans_batch(data, "acme", "eu", resources=from_otlp)
    assert Runs.of(from_otap[0]).starts.tolist() == Runs.of(from_otlp[0]).starts.tolist() == [0, 2, 3]

    batch = codec.decode(Signal.TRACES, tables, tenant="acme", batch_id="b")
    stream = chain({"type": "redact", "signals": ["traces"]})
    handed: list[Any] = []
    process = stream.process

    def spy(*args: Any) -> Any:
        handed.append(args[4] if len(args) > 4 else None)
        return process(*args)

    stream.process = spy  # type: ignore[method-assign]
    (rows, counts), _ = batch_rows(batch, "spans", "eu", stream)
    assert handed[0] is not None and Runs.of(handed[0]).starts.tolist() == [0, 2, 3]
    expected, _ = process("spans", "acme", rows_of(batch, "eu"), [6])
    assert rows.equals(expected) and counts == [6]
    assert column(rows, "resource_attributes")[5] == [("service.name", "c"), ("owner", "[REDACTED:email]")]


def test_short_runs_are_worked_row_by_row() -> None:
    """A resource per row: no slice per row (``SLICES``), no redact per run of one row."""
    assert not Runs.of(np.arange(8)).long() and Runs.of(np.zeros(8, np.int64)).long()
    maps = pa.array([[("k", str(i))] for i in range(300)], pa.map_(pa.string(), pa.string()))
    keep = np.arange(300) % 2 == 0
    assert filter_runs(maps, Runs.of(np.arange(300)), keep) is None
    rows = spans(*({"resource_attributes": [("ip", f"10.0.0.{i % 250}")]} for i in range(300)))
    assert filter_rows(rows, keep, Runs.of(np.arange(300))).equals(filter_rows(rows, keep))
    stream = chain({"type": "redact", "signals": ["traces"]})
    by_rows, _ = stream.process("spans", "acme", rows, [300])
    assert stream.process("spans", "acme", rows, [300], np.arange(300))[0].equals(by_rows)
    assert column(by_rows, "resource_attributes")[7] == [("ip", "[REDACTED:ipv4]")]
