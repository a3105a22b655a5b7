"""span_metrics_1h: the hourly rollup of span_metrics_1m's rows, what a flush derives for it, and
the FROM item that reads whole hours from it (``spanmetrics.source``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

from orasi_bridge.lake import spanmetrics
from orasi_bridge.lake.spanmetrics import (
    HOUR_US,
    SPAN_METRICS,
    SPAN_METRICS_1H,
    SpanMetrics,
    SpanMetricsConfig,
    aggregate,
    rollup,
    source,
)
from unit.orasi_bridge.test_span_metrics import MINUTE, NOW, T, spans

HOUR = T - T % HOUR_US  # the hour T falls in, µs
S = 10**9  # ns per second


def random_spans(n: int, seed: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    return spans(
        *(
            {
                "service_name": f"s{int(rng.integers(3))}",
                "status_code": "ERROR" if rng.random() < 0.1 else "OK",
                "duration_ns": int(rng.lognormal(14, 2)),
                "time": HOUR + int(rng.integers(-HOUR_US, 2 * HOUR_US)),  # three hours
            }
            for _ in range(n)
        ),
    )


def by_key(batch: pa.RecordBatch) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = batch.to_pylist()
    keyed = {(r["service_name"], r["status_code"], r["late"], r["time"]): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


def test_the_rollup_is_the_minutes_of_each_hour_merged() -> None:
    rows = random_spans(2_000, 11)
    minutes = aggregate([rows], {}, 2 * MINUTE, NOW).rows
    hourly = rollup([minutes])
    # By hand: every minute row moved to its hour, then the same totals per group and hour.
    expected: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in minutes.to_pylist():
        us = int(row["time"].timestamp() * 1e6)
        key = (row["service_name"], row["status_code"], row["late"], us - us % HOUR_US)
        totals = expected.setdefault(key, {"span_count": 0, "error_count": 0, "duration_sum_ns": 0})
        for column in totals:
            totals[column] += row[column]
    got = {
        (r["service_name"], r["status_code"], r["late"], int(r["time"].timestamp() * 1e6)): {
            column: r[column] for column in ("span_count", "error_count", "duration_sum_ns")
        }
        for r in hourly.to_pylist()
    }
    assert got == expected and len({key[3] for key in got}) == 3
    assert hourly.num_rows < minutes.num_rows
    # Rolling the rolled-up rows, or rolling several flushes' rows together, changes nothing.
    assert rollup([hourly]).to_pylist() == hourly.to_pylist()
    halves = [aggregate([rows.slice(i, 1_000)], {}, 2 * MINUTE, NOW).rows for i in (0, 1_000)]
    assert sorted(by_key(rollup(halves)).items()) == sorted(by_key(hourly).items())
    assert rollup([]).num_rows == 0


def test_a_flush_derives_the_hourly_rows_from_the_same_spans() -> None:
    counter = Counter("late", "late", registry=CollectorRegistry())
    metrics = SpanMetrics(SpanMetricsConfig(), counter)
    rows = random_spans(500, 5)
    [minutes] = metrics.derive([rows])
    [hourly] = metrics.derive_hourly([rows])  # the rollup of derive's rows, not derived again
    assert hourly.to_pylist() == rollup([minutes]).to_pylist()
    metrics.committed()
    # Other spans (a batch span_metrics_1m already held): derived from those spans.
    part = rows.slice(0, 100)
    [other] = metrics.derive_hourly([part])
    assert sum(other.column("span_count").to_pylist()) == 100
    metrics.forget()
    [hot] = metrics.hot_hourly([rows])
    assert sum(hot.column("span_count").to_pylist()) == 500
    assert metrics.derive_hourly([]) == []


def test_long_ranges_read_whole_hours_from_the_rollup_and_the_edges_from_the_minutes() -> None:
    start = HOUR * 1000 + 90 * S  # 1 min 30 s past the hour
    assert source(start, start + 5 * 3600 * S) == SPAN_METRICS  # under ROLLUP_AFTER_S
    on_the_hour = source(HOUR * 1000, HOUR * 1000 + 24 * 3600 * S - 1)
    assert SPAN_METRICS_1H in on_the_hour and f"FROM {SPAN_METRICS} " not in on_the_hour
    unaligned = source(start, start + 24 * 3600 * S)
    assert unaligned.count(f"FROM {SPAN_METRICS_1H} ") == 1 and unaligned.count(f"FROM {SPAN_METRICS} ") == 2
    assert spanmetrics.ROLLUP_AFTER_S == 6 * 3600
