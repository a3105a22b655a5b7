"""span_metrics_1m's aggregation and SQL macros, with expected rows written by hand."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, Counter

from orasi_bridge.lake import spanmetrics
from orasi_bridge.lake.schema import SPAN_METRICS_1M, SPANS
from orasi_bridge.lake.spanmetrics import BOUNDS_NS, MACROS, SpanMetrics, SpanMetricsConfig, aggregate
from orasi_bridge.query import sandbox

MINUTE = 60_000_000  # µs
T = 1_800_000_000 * 1_000_000 // MINUTE * MINUTE  # a minute's start, µs
NOW = T + 10 * MINUTE


def spans(*rows: dict[str, Any]) -> pa.RecordBatch:
    """Spans rows: each dict gives some columns (time in µs); the others are null."""
    defaults = {
        "tenant": "acme",
        "region": "eu",
        "service_name": "checkout",
        "name": "GET /cart",
        "kind": "SERVER",
    }
    filled = [{**defaults, **row} for row in rows]
    columns = []
    for field in SPANS:
        values = [row.get(field.name) for row in filled]
        if field.name == "time":
            columns.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=SPANS)


def by_key(batch: pa.RecordBatch) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = batch.to_pylist()
    keyed = {
        (r["tenant"], r["service_name"], r["name"], r["status_code"], int(r["time"].timestamp() * 1e6)): r
        for r in rows
    }
    assert len(keyed) == len(rows)
    return keyed


def test_one_row_per_group_and_minute_with_exact_counts_durations_and_buckets() -> None:
    batch = spans(
        {"status_code": "OK", "duration_ns": 1_000, "time": T + 1},  # bucket 0 (<= 1 µs)
        {"status_code": "OK", "duration_ns": 1_001, "time": T + 59_999_999},  # bucket 1
        {"status_code": "OK", "duration_ns": 3_000_000, "time": T + 5},
        {"status_code": "ERROR", "duration_ns": 500, "time": T + 7},
        {"status_code": "ERROR", "duration_ns": 2_000, "time": T + 8},  # bucket 2 (bound 2000)
        {"status_code": "OK", "duration_ns": 1_414, "time": T + MINUTE},  # the next minute
        {"status_code": "OK", "duration_ns": 10**13, "time": T, "service_name": "cart"},  # past the last
        {"status_code": "OK", "duration_ns": 0, "time": T, "tenant": "other"},
    )
    result = aggregate([batch.slice(0, 4), batch.slice(4)], {}, 2 * MINUTE, NOW)
    assert result.rows.schema == SPAN_METRICS_1M
    rows = by_key(result.rows)
    ok = rows[("acme", "checkout", "GET /cart", "OK", T)]
    assert (ok["span_count"], ok["error_count"]) == (3, 0)
    assert (ok["duration_sum_ns"], ok["duration_min_ns"], ok["duration_max_ns"]) == (
        3_002_001,
        1_000,
        3_000_000,
    )
    expected_bucket = int(np.searchsorted(BOUNDS_NS, 3_000_000))  # 3 ms: (2.83 ms, 4 ms]
    assert BOUNDS_NS[expected_bucket - 1] < 3_000_000 <= BOUNDS_NS[expected_bucket]
    assert (ok["duration_buckets"], ok["duration_bucket_counts"]) == ([0, 1, expected_bucket], [1, 1, 1])
    assert (ok["kind"], ok["region"], ok["late"]) == ("SERVER", "eu", False)
    error = rows[("acme", "checkout", "GET /cart", "ERROR", T)]
    assert (error["span_count"], error["error_count"], error["duration_sum_ns"]) == (2, 2, 2_500)
    assert (error["duration_buckets"], error["duration_bucket_counts"]) == ([0, 2], [1, 1])
    later = rows[("acme", "checkout", "GET /cart", "OK", T + MINUTE)]
    assert (later["span_count"], later["duration_buckets"]) == (1, [1])
    long = rows[("acme", "cart", "GET /cart", "OK", T)]
    assert long["duration_buckets"] == [len(BOUNDS_NS)]
    assert rows[("other", "checkout", "GET /cart", "OK", T)]["duration_buckets"] == [0]
    assert len(rows) == 5
    assert sum(r["span_count"] for r in rows.values()) == batch.num_rows
    assert result.latest == {"acme": T + MINUTE, "other": T}
    assert result.late_spans == 0


def test_rows_of_minutes_behind_the_watermark_are_written_as_late() -> None:
    batch = spans(
        {"status_code": "OK", "duration_ns": 10, "time": T + 5 * MINUTE},
        {"status_code": "OK", "duration_ns": 10, "time": T + 3 * MINUTE},  # exactly lateness behind: on time
        {"status_code": "OK", "duration_ns": 10, "time": T + 2 * MINUTE + 59_000_000},  # behind
        {"status_code": "OK", "duration_ns": 10, "time": T, "tenant": "other"},  # its own watermark
    )
    result = aggregate([batch], {}, 2 * MINUTE, NOW)
    late = {(r["tenant"], int(r["time"].timestamp() * 1e6)): r["late"] for r in result.rows.to_pylist()}
    assert late == {
        ("acme", T + 5 * MINUTE): False,
        ("acme", T + 3 * MINUTE): False,
        ("acme", T + 2 * MINUTE): True,
        ("other", T): False,
    }
    assert result.late_spans == 1
    # A watermark committed before counts: "other"'s minute is now behind it ...
    again = aggregate([batch.slice(3)], {"other": T + 4 * MINUTE}, 2 * MINUTE, NOW)
    assert again.rows.column("late").to_pylist() == [True]
    # ... and spans from the future do not move it past the writer's clock.
    future = aggregate(
        [spans({"status_code": "OK", "duration_ns": 1, "time": NOW + 60 * MINUTE})], {}, 0, NOW
    )
    assert future.latest == {"acme": NOW}


def test_derive_advances_the_watermark_and_counts_late_spans_once_committed() -> None:
    registry = CollectorRegistry()
    late_spans = Counter("late", "late spans", registry=registry)
    metrics = SpanMetrics(SpanMetricsConfig(allowed_lateness=60), late_spans)
    current = time.time_ns() // 1000 // MINUTE * MINUTE
    [first] = metrics.derive([spans({"status_code": "OK", "duration_ns": 5, "time": current})])
    assert first.column("late").to_pylist() == [False]
    metrics.committed()
    old = spans({"status_code": "OK", "duration_ns": 5, "time": current - 5 * MINUTE})
    [hot] = metrics.hot([old])  # a query: marked, nothing counted
    assert hot.column("late").to_pylist() == [True]
    assert registry.get_sample_value("late_total") == 0
    [second] = metrics.derive([old])
    assert second.column("late").to_pylist() == [True]
    assert registry.get_sample_value("late_total") == 0  # counted once committed
    metrics.committed()
    assert registry.get_sample_value("late_total") == 1
    assert metrics.derive([]) == []


def test_the_bounds_are_fixed_exponential() -> None:
    assert len(BOUNDS_NS) == 64
    assert BOUNDS_NS[:4] == (1_000, 1_414, 2_000, 2_828)
    assert BOUNDS_NS[20] == 1_024_000  # 1 µs x 2^10
    assert (np.diff(BOUNDS_NS) > 0).all()
    assert spanmetrics.BUCKETS == 65


@pytest.fixture
def database() -> Any:
    connection = sandbox.connect(1, "256MB")
    for macro in MACROS:
        connection.execute(macro)
    yield connection
    connection.close()


def test_partial_rows_merge_into_the_histogram_of_all_their_spans(database: Any) -> None:
    rng = np.random.default_rng(7)
    durations = np.exp(rng.normal(np.log(2e6), 1.0, 5_000)).astype(np.int64)  # log-normal, ~2 ms
    rows = spans(*({"status_code": "OK", "duration_ns": int(d), "time": T} for d in durations))
    # Three flushes' partial rows of the same group and minute.
    parts = [aggregate([rows.slice(start, 1_700)], {}, 0, NOW).rows for start in (0, 1_700, 3_400)]
    database.register("span_metrics_1m", pa.Table.from_batches(parts))
    [(count, histogram, p50, p99)] = database.execute(
        """
        WITH b AS (SELECT unnest(duration_buckets) AS bucket, unnest(duration_bucket_counts) AS n
                   FROM span_metrics_1m),
             h AS (SELECT span_metrics_histogram(bucket, n) AS h
                   FROM (SELECT bucket, sum(n) AS n FROM b GROUP BY bucket))
        SELECT (SELECT sum(span_count) FROM span_metrics_1m), h,
               span_metrics_quantile(h, 0.5), span_metrics_quantile(h, 0.99)
        FROM h
        """
    ).fetchall()
    assert count == 5_000
    assert histogram == np.bincount(np.searchsorted(BOUNDS_NS, durations), minlength=65).tolist()
    for q, estimate in ((0.5, p50), (0.99, p99)):
        exact = float(np.quantile(durations, q))
        bucket = int(np.searchsorted(BOUNDS_NS, exact))
        # the estimate lies in the bucket of the exact quantile (√2 wide): within 42 %
        assert BOUNDS_NS[bucket - 1] <= estimate <= BOUNDS_NS[bucket], (q, exact, estimate)


def test_quantile_edges(database: Any) -> None:
    one_bucket = [0, 0, 10] + [0] * 62  # ten spans in (1414, 2000] ns
    assert database.execute(
        "SELECT span_metrics_quantile($h, 0.5), span_metrics_quantile($h, 0), span_metrics_quantile($h, 1)",
        {"h": one_bucket},
    ).fetchall() == [(1707.0, 1414.0, 2000.0)]
    last = [0] * 64 + [3]  # beyond the last bound: its lower bound
    assert database.execute("SELECT span_metrics_quantile($h, 0.5)", {"h": last}).fetchall() == [
        (float(BOUNDS_NS[-1]),)
    ]
    assert database.execute("SELECT span_metrics_quantile($h, 0.5)", {"h": [0] * 65}).fetchall() == [(None,)]
    assert database.execute("SELECT span_metrics_bounds()").fetchall() == [(list(BOUNDS_NS),)]


def test_merged_partial_rows_are_the_rows_of_all_the_spans_at_once() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    rows = spans(
        *(
            {
                "service_name": f"s{int(rng.integers(3))}",
                "status_code": "ERROR" if rng.random() < 0.1 else "OK",
                "duration_ns": int(rng.lognormal(14, 2)),
                "time": T + int(rng.integers(0, 5 * MINUTE)),
            }
            for _ in range(n)
        ),
        {"status_code": "OK", "duration_ns": 7, "time": T - 10 * MINUTE},  # late in every part
    )
    whole = aggregate([rows], {"acme": T + 4 * MINUTE}, 2 * MINUTE, NOW).rows
    parts = [
        aggregate([rows.slice(i, 700)], {"acme": T + 4 * MINUTE}, 2 * MINUTE, NOW).rows
        for i in range(0, n + 1, 700)
    ]
    assert sum(part.num_rows for part in parts) > whole.num_rows
    merged = spanmetrics.merge(parts)
    assert sorted(by_key(merged).items()) == sorted(by_key(whole).items())
    assert (
        spanmetrics.merge([merged]).to_pylist() == merged.to_pylist()
    )  # merging merged rows changes nothing
    assert spanmetrics.merge([]).num_rows == 0
    # Past the dense table's size, the pairs are sorted instead: the same rows.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spanmetrics, "DENSE_HISTOGRAMS", 0)
        assert (
            aggregate([rows], {"acme": T + 4 * MINUTE}, 2 * MINUTE, NOW).rows.to_pylist() == whole.to_pylist()
        )
        assert spanmetrics.merge(parts).to_pylist() == merged.to_pylist()


def test_rows_match_a_row_by_row_reference_with_nulls_and_many_groups() -> None:
    """Random spans (null service, status, duration and time among them), in three batches:
    each row's counts, durations and histogram are those of its spans counted one by one, and
    rows come grouped in order of their keys' first appearance (null last)."""
    rng = np.random.default_rng(17)
    n = 3000
    rows = [
        {
            "tenant": ["acme", "other"][int(rng.integers(2))],
            "service_name": [None, "cart", "checkout", "ads"][int(rng.integers(4))],
            "name": f"op{int(rng.integers(7))}",
            "kind": ["SERVER", "CLIENT"][int(rng.integers(2))],
            "status_code": [None, "OK", "ERROR", "UNSET"][int(rng.integers(4))],
            "duration_ns": None if rng.random() < 0.05 else int(rng.integers(-5, 10**10)),
            "time": None if rng.random() < 0.02 else T - 3 * MINUTE + int(rng.integers(6 * MINUTE)),
        }
        for _ in range(n)
    ]
    batch = spans(*rows)
    result = aggregate([batch.slice(0, 1000), batch.slice(1000, 1), batch.slice(1001)], {}, 0, NOW)
    expected: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        duration = max(row["duration_ns"] or 0, 0)
        at = row["time"] or 0
        key = (
            row["tenant"],
            row["service_name"],
            row["name"],
            row["kind"],
            row["status_code"],
            at - at % MINUTE,
        )
        got = expected.setdefault(key, {"n": 0, "errors": 0, "sum": 0, "min": duration, "max": 0, "h": {}})
        got["n"] += 1
        got["errors"] += row["status_code"] == "ERROR"
        got["sum"] += duration
        got["min"], got["max"] = min(got["min"], duration), max(got["max"], duration)
        bucket = int(np.searchsorted(BOUNDS_NS, duration))
        got["h"][bucket] = got["h"].get(bucket, 0) + 1
    produced = result.rows.to_pylist()
    assert len(produced) == len(expected)
    for row in produced:
        key = (row["tenant"], row["service_name"], row["name"], row["kind"], row["status_code"])
        want = expected[(*key, int(row["time"].timestamp() * 1e6))]
        assert (row["span_count"], row["error_count"], row["duration_sum_ns"]) == (
            want["n"],
            want["errors"],
            want["sum"],
        )
        assert (row["duration_min_ns"], row["duration_max_ns"]) == (want["min"], want["max"])
        assert dict(zip(row["duration_buckets"], row["duration_bucket_counts"], strict=True)) == want["h"]
        assert row["duration_buckets"] == sorted(want["h"])
    first_seen = {  # null last
        name: [v for v in dict.fromkeys(r[name] for r in rows) if v is not None] + [None]
        for name in ("tenant", "service_name", "name")
    }
    order = [
        tuple(first_seen[name].index(r[name]) for name in ("tenant", "service_name", "name"))
        for r in produced
    ]
    assert order == sorted(order)
    assert result.late_spans == sum(r["span_count"] for r in produced if r["late"]) > 0
