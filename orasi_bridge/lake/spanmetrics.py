"""The derived table ``span_metrics_1m`` (ARCHITECTURE §5): RED metrics of the spans, per minute,
and its hourly rollup ``span_metrics_1h``.

One row holds the spans of one tenant, region, service (``service_name``), operation (``name``,
the span name), ``kind`` and ``status_code`` whose start falls in one minute (``time``, the
minute's start): ``span_count``, ``error_count`` (status ``ERROR``), ``duration_sum_ns``,
``duration_min_ns``, ``duration_max_ns``, and a duration histogram over the fixed exponential
buckets of ``BOUNDS_NS`` (the same for every row), stored sparse: ``duration_buckets`` lists the
buckets that hold spans (ascending) and ``duration_bucket_counts`` how many each holds. Bucket
``i`` holds the durations d with ``BOUNDS_NS[i-1] < d <= BOUNDS_NS[i]`` (bucket 0: d <= 1 µs; the
last, ``len(BOUNDS_NS)``: longer than the last bound).

Rows are partial aggregates, computed from the spans rows of each flush (``aggregate``, vectorised)
and committed by the writer before those spans, with the same batch-id rule: a minute's spans may
be in several rows (flushes, bridges), so queries merge with GROUP BY and SUM, and the histogram
by unnesting and summing per bucket; the query engine's macros (``MACROS``) turn the merged
buckets into percentiles::

    flush: spans rows of the batches to commit ─ without those a table already holds
        ├─ aggregate → commit span_metrics_1m (summary: the batch ids)     ┐ a crash between two:
        ├─ rollup    → commit span_metrics_1h (summary: the same ids)      │ the replay skips, per
        └─ commit spans (summary: the same batch ids)                       ┘ table, what each holds

``span_metrics_1h`` (``SPAN_METRICS_1H``, the same columns) is the hourly rollup: the flush's
minute rows with ``time`` truncated to the hour, merged (``rollup``), so it holds exactly the spans
``span_metrics_1m`` holds in 60 times fewer rows over long ranges. A row is in a time window when
its hour's start is: ``source`` reads a long range's whole hours from it and its edge minutes from
``span_metrics_1m`` (``red_sql``: RED that way).

Event time: each writer keeps, per tenant, the latest minute it committed (bounded by its clock);
the watermark is that minute minus ``allowed_lateness``. Rows of minutes behind it are written all
the same (never lost) with ``late`` true: corrections of minutes already reported, whose spans
are counted in ``orasi_span_metrics_late_spans_total``.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter
from pydantic import Field

from orasi_bridge.lake.schema import SPAN_METRICS_1M, SPANS
from orasi_common.config.model import ComponentConfig

SPAN_METRICS = "span_metrics_1m"
SPAN_METRICS_1H = "span_metrics_1h"
"""The hourly rollup: ``span_metrics_1m``'s columns, one row per group and hour (``rollup``)."""
SOURCE = "spans"
"""The table whose rows ``span_metrics_1m`` and ``span_metrics_1h`` aggregate."""

BOUNDS_NS: tuple[int, ...] = tuple(round(1000 * 2 ** (i / 2)) for i in range(64))
"""Upper bounds of the duration buckets in ns: 1 µs x √2^i, to 3.04e12 ns (about 51 minutes);
the SQL macro ``span_metrics_bound`` computes the same (a unit test holds them equal)."""
BUCKETS = len(BOUNDS_NS) + 1

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
ArrowColumn = TypeVar("ArrowColumn", pa.Array, pa.ChunkedArray)

GROUP_KEYS = ("tenant", "region", "service_name", "name", "kind", "status_code")
ERROR = "ERROR"


class SpanMetricsConfig(ComponentConfig):
    enabled: bool = Field(
        default=True,
        description="Write span_metrics_1m and its hourly rollup span_metrics_1h from the spans at "
        "each flush (off: the tables stay empty).",
    )
    allowed_lateness: float = Field(
        default=120.0,
        ge=0,
        description="Seconds a minute stays open after the latest minute seen: rows of older "
        "minutes are written as corrections (late = true), never dropped.",
    )


@dataclass(frozen=True)
class Aggregate:
    """``span_metrics_1m`` rows of some spans, the latest minute (µs) per tenant among them, and
    the spans counted in late rows."""

    rows: pa.RecordBatch
    latest: dict[str, int] = field(default_factory=dict)
    late_spans: int = 0


def aggregate(
    spans: list[pa.RecordBatch], watermarks: Mapping[str, int], lateness_us: int, now_us: int
) -> Aggregate:
    """The ``span_metrics_1m`` rows of ``spans`` (rows of the spans table): one per group
    (``GROUP_KEYS`` and minute): one Arrow hash aggregation of the spans per group, minute and
    bucket, then those rows grouped with numpy (no per-row Python, no sort of the spans).

    ``watermarks`` is per tenant the latest minute (µs) committed before; with this call's own
    latest minute (no later than ``now_us``'s), minus ``lateness_us``, it is the watermark that
    rows of older minutes are late behind.
    """
    table = pa.Table.from_batches(spans, schema=SPANS).select([*GROUP_KEYS, "duration_ns", "time"])
    if table.num_rows == 0:
        return Aggregate(pa.RecordBatch.from_pylist([], schema=SPAN_METRICS_1M))
    # no combine_chunks: Arrow groups the batches' columns as they are, numpy copies only its two
    minute = _numbers(table.column("time").cast(pa.int64()), 0)
    minute = minute - np.mod(minute, MINUTE_US)
    duration = np.maximum(_numbers(table.column("duration_ns"), 0), 0)
    errors = pc.equal(table.column("status_code"), ERROR)
    # One hash aggregation in Arrow per (group, minute, bucket): far fewer rows, then grouped
    # below. In the order of their first span, the values' codes (``_codes``: by first
    # appearance) and so the rows' order are those of grouping the spans themselves.
    pairs = (
        pa.table(
            {
                **{name: table.column(name) for name in GROUP_KEYS},
                "minute": minute,
                "bucket": np.searchsorted(np.asarray(BOUNDS_NS), duration, side="left"),
                "duration": duration,
                "error": _filled(errors, False),
                "row": np.arange(table.num_rows),
            }
        )
        .group_by([*GROUP_KEYS, "minute", "bucket"], use_threads=False)
        .aggregate(
            [
                ("duration", "sum"),
                ("duration", "min"),
                ("duration", "max"),
                ("duration", "count"),
                ("error", "sum"),
                ("row", "min"),
            ]
        )
    )
    pairs = pairs.take(np.argsort(np.asarray(pairs.column("row_min"))))
    codes = [_codes(pairs.column(name)) for name in GROUP_KEYS]
    minutes = np.asarray(pairs.column("minute"))
    group, order, starts = _groups(
        [(code, cardinality) for code, cardinality, _ in codes] + [_int_codes(minutes, MINUTE_US)]
    )
    first = order[starts]
    groups = len(starts)

    def reduced(ufunc: np.ufunc, name: str) -> pa.Array:
        return pa.array(ufunc.reduceat(np.asarray(pairs.column(name))[order], starts), pa.int64())

    pair_counts = np.asarray(pairs.column("duration_count"))
    counts = np.add.reduceat(pair_counts[order], starts)
    buckets, bucket_counts = _histograms(group, np.asarray(pairs.column("bucket")), pair_counts, groups)

    tenant_code, tenants = codes[0][0][first], codes[0][2]
    start = minutes[first]
    latest: dict[str, int] = {}
    watermark = np.empty(groups, dtype=np.int64)
    now_minute = now_us - now_us % MINUTE_US
    for code in np.unique(tenant_code):
        tenant = str(tenants[code])  # never null: the column is required
        mine = tenant_code == code
        latest[tenant] = min(int(start[mine].max()), now_minute)
        watermark[mine] = max(latest[tenant], watermarks.get(tenant, latest[tenant])) - lateness_us
    late = start < watermark

    taken = pa.array(first)
    columns: dict[str, pa.Array] = {
        name: pairs.column(name).take(taken).combine_chunks() for name in GROUP_KEYS
    }
    columns |= {
        "span_count": pa.array(counts, pa.int64()),
        "error_count": reduced(np.add, "error_sum"),
        "duration_sum_ns": reduced(np.add, "duration_sum"),
        "duration_min_ns": reduced(np.minimum, "duration_min"),
        "duration_max_ns": reduced(np.maximum, "duration_max"),
        "duration_buckets": buckets,
        "duration_bucket_counts": bucket_counts,
        "late": pa.array(late),
        "time": pa.array(start, pa.int64()).cast(SPAN_METRICS_1M.field("time").type),
    }
    batch = pa.RecordBatch.from_arrays(
        [columns[name] for name in SPAN_METRICS_1M.names], schema=SPAN_METRICS_1M
    )
    return Aggregate(batch, latest, int(counts[late].sum()))


def merge(rows: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Partial ``span_metrics_1m`` rows merged into one row per group, minute and ``late``
    (corrections stay apart): counts and duration sums added, the least minimum and the greatest
    maximum, histogram counts added per bucket. Queries answer the same over the merged rows as
    over the partial ones, from fewer rows (what compacting the table may write instead)."""
    table = pa.Table.from_batches(rows, schema=SPAN_METRICS_1M).combine_chunks()
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=SPAN_METRICS_1M)
    codes = [(code, cardinality) for code, cardinality, _ in (_codes(table.column(k)) for k in GROUP_KEYS)]
    codes.append(_int_codes(_numbers(table.column("time").cast(pa.int64()), 0)))
    codes.append((np.asarray(_filled(table.column("late"), False)).astype(np.int64), 2))
    group, order, starts = _groups(codes)

    def column(name: str, null: int) -> np.ndarray:
        return np.take(_numbers(table.column(name), null), order)

    lists = table.column("duration_buckets")
    lengths = _numbers(pc.list_value_length(lists), 0)
    buckets, bucket_counts = _histograms(
        np.repeat(group, lengths),
        np.asarray(pc.list_flatten(lists)),
        np.asarray(pc.list_flatten(table.column("duration_bucket_counts"))),
        len(starts),
    )
    taken = pa.array(order[starts])
    columns = {
        name: table.column(name).take(taken).combine_chunks() for name in (*GROUP_KEYS, "late", "time")
    }
    columns |= {
        name: pa.array(np.add.reduceat(column(name, 0), starts), pa.int64())
        for name in ("span_count", "error_count", "duration_sum_ns")
    }
    columns["duration_min_ns"] = pa.array(np.minimum.reduceat(column("duration_min_ns", 2**63 - 1), starts))
    columns["duration_max_ns"] = pa.array(np.maximum.reduceat(column("duration_max_ns", 0), starts))
    columns |= {"duration_buckets": buckets, "duration_bucket_counts": bucket_counts}
    return pa.RecordBatch.from_arrays(
        [columns[name] for name in SPAN_METRICS_1M.names], schema=SPAN_METRICS_1M
    )


def rollup(rows: list[pa.RecordBatch]) -> pa.RecordBatch:
    """``span_metrics_1h`` rows of ``span_metrics_1m`` rows: each row's ``time`` truncated to its
    hour, then merged (``merge``: one row per group, hour and ``late``, a row late when it holds
    corrections of minutes behind the watermark)."""
    table = pa.Table.from_batches(rows, schema=SPAN_METRICS_1M)
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=SPAN_METRICS_1M)
    minute = _numbers(table.column("time").cast(pa.int64()), 0)
    hour = pa.array(minute - np.mod(minute, HOUR_US), pa.int64()).cast(SPAN_METRICS_1M.field("time").type)
    index = SPAN_METRICS_1M.get_field_index("time")
    return merge(table.set_column(index, SPAN_METRICS_1M.field("time"), hour).to_batches())


def _groups(codes: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by the combination of their ``codes`` (each: codes below its cardinality):
    each row's group (numbered in key order), the rows in group order, and where each group
    starts in that order."""
    key = np.zeros(len(codes[0][0]), dtype=np.int64)
    span = 1
    for code, cardinality in codes:
        if span * cardinality >= 2**62:  # compact the key so far before it would overflow
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * cardinality + code
        span *= cardinality
    order = np.argsort(key)  # one sort: rows of a group are alike, their order within it is free
    ordered = key[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.empty(len(key), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return group, order, np.flatnonzero(new)


DENSE_HISTOGRAMS = 1 << 22
"""Groups x buckets up to which histograms are summed in a dense table (32 MiB), not by a sort."""


def _histograms(
    group: np.ndarray, bucket: np.ndarray, count: np.ndarray, groups: int
) -> tuple[pa.ListArray, pa.ListArray]:
    """Per group, its non-empty buckets (ascending) and their summed counts, from (group, bucket,
    count) items: through a dense groups x buckets table when it is small (no sort; float weights
    are exact for counts far below 2^53), else by sorting the (group, bucket) pairs."""
    pair = group * BUCKETS + bucket
    if groups * BUCKETS <= DENSE_HISTOGRAMS:
        dense = np.bincount(pair, weights=count, minlength=groups * BUCKETS)
        distinct = np.flatnonzero(dense)
        sums = dense[distinct].astype(np.int64)
    else:
        order = np.argsort(pair)
        pairs = pair[order]
        starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
        distinct, sums = pairs[starts], np.add.reduceat(count[order].astype(np.int64), starts)
    offsets = pa.array(np.searchsorted(distinct // BUCKETS, np.arange(groups + 1)).astype(np.int32))
    return (
        pa.ListArray.from_arrays(offsets, pa.array((distinct % BUCKETS).astype(np.int32))),
        pa.ListArray.from_arrays(offsets, pa.array(sums, pa.int64())),
    )


def _int_codes(values: np.ndarray, step: int = 1) -> tuple[np.ndarray, int]:
    """Codes of integers (multiples of ``step``): their offset from the least in steps while that
    range is small, else their rank among the distinct values."""
    low = int(values.min())
    size = (int(values.max()) - low) // step + 1
    if size <= 1 << 20:
        return (values - low) // step, size
    distinct, codes = np.unique(values, return_inverse=True)
    return codes, len(distinct)


def _filled(column: ArrowColumn, null: int | bool) -> ArrowColumn:
    """``column`` with its nulls as ``null``: itself when it has none (no copy, no call)."""
    return column.fill_null(null) if column.null_count else column


def _numbers(column: ArrowColumn, null: int) -> np.ndarray:
    """An integer column as numpy, nulls as ``null``."""
    return np.asarray(_filled(column, null))


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int, list[str | None]]:
    """Each row's index among the column's distinct values (null: one more), their number (with
    null), and the values in that order."""
    encoded = column.combine_chunks().dictionary_encode()
    values = [*encoded.dictionary.to_pylist(), None]
    indices = encoded.indices
    return (
        np.asarray(indices.fill_null(len(values) - 1) if indices.null_count else indices),
        len(values),
        values,
    )


class SpanMetrics:
    """A writer's span metrics: the rows of a flush's spans (``derive``, ``derive_hourly``, in the
    commit's thread), the watermarks they advance once committed (``committed``), and the rows of
    hot spans for queries (``hot``, ``hot_hourly``)."""

    def __init__(self, config: SpanMetricsConfig, late_spans: Counter) -> None:
        self.config = config
        self._late_spans = late_spans
        self._watermarks: dict[str, int] = {}  # per tenant: the latest minute committed (µs)
        self._derived: Aggregate | None = None
        # the spans of the flush's last ``derive`` and its rows, for ``derive_hourly`` (``forget``)
        self._last: tuple[list[pa.RecordBatch], pa.RecordBatch] | None = None

    def _aggregate(self, spans: list[pa.RecordBatch]) -> Aggregate:
        lateness = round(self.config.allowed_lateness * 1_000_000)
        return aggregate(spans, dict(self._watermarks), lateness, time.time_ns() // 1000)

    def derive(self, spans: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """The rows to commit for ``spans`` (the flush's, without batches committed before)."""
        self._derived = self._aggregate(spans)
        self._last = (spans, self._derived.rows)
        return [self._derived.rows] if self._derived.rows.num_rows else []

    def derive_hourly(self, spans: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """The ``span_metrics_1h`` rows to commit for ``spans``: the rollup of ``derive``'s rows when
        it was given the same spans (the usual case: neither table held a batch of the flush)."""
        last = self._last
        same = last is not None and len(last[0]) == len(spans) and all(map(operator.is_, last[0], spans))
        minutes = last[1] if same and last is not None else self._aggregate(spans).rows
        rows = rollup([minutes])
        return [rows] if rows.num_rows else []

    def forget(self) -> None:
        """The flush's derived tables are committed (or it failed): drop what ``derive`` kept."""
        self._last = None

    def committed(self) -> None:
        """The last derived rows were committed: advance the watermarks, count the late spans."""
        derived, self._derived = self._derived, None
        if derived is None:
            return
        for tenant, minute in derived.latest.items():
            self._watermarks[tenant] = max(minute, self._watermarks.get(tenant, minute))
        if derived.late_spans:
            self._late_spans.inc(derived.late_spans)

    def hot(self, spans: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """Rows of buffered spans for a query (late marked against the committed watermarks)."""
        rows = self._aggregate(spans).rows
        return [rows] if rows.num_rows else []

    def hot_hourly(self, spans: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """``span_metrics_1h`` rows of buffered spans for a query."""
        rows = rollup(self.hot(spans))
        return [rows] if rows.num_rows else []


def _macros() -> tuple[str, ...]:
    # Small expressions on purpose: DuckDB expands macros where they are called, and binding a
    # 65-aggregate or bounds-literal expansion took longer than the query it was part of.
    last = len(BOUNDS_NS) - 1
    return (
        f"CREATE MACRO span_metrics_bound(i) AS CASE WHEN i BETWEEN 0 AND {last} "
        "THEN round(1000 * pow(2, i / 2))::BIGINT END",
        f"CREATE MACRO span_metrics_bounds() AS "
        f"list_transform(range({last + 1}), lambda i: span_metrics_bound(i))",
        f"CREATE MACRO __span_metrics_dense(buckets, counts) AS list_transform(range({BUCKETS}), "
        "lambda i: coalesce(list_sum(list_filter(counts, lambda c, j: buckets[j] = i)), 0)::BIGINT)",
        "CREATE MACRO span_metrics_histogram(bucket, n) AS __span_metrics_dense(list(bucket), list(n))",
        # The first bucket k (1-based: bucket k - 1) whose cumulative count reaches the rank, and
        # the rank's place in it, linearly from its lower bound (0 for the first; the last,
        # unbounded, answers its lower bound).
        "CREATE MACRO __span_metrics_at(h, k, rank, low, high) AS "
        "low + (high - low) * greatest(rank - coalesce(list_sum(h[1:k - 1]), 0), 0) / h[k]",
        "CREATE MACRO __span_metrics_quantile(h, rank) AS list_min(list_transform(range(1, len(h) + 1), "
        "lambda k: CASE WHEN h[k] > 0 AND list_sum(h[1:k]) >= rank THEN __span_metrics_at(h, k, rank, "
        "coalesce(span_metrics_bound(k - 2), 0), "
        "coalesce(span_metrics_bound(k - 1), span_metrics_bound(k - 2))) END))",
        "CREATE MACRO span_metrics_quantile(h, q) AS __span_metrics_quantile(h, q * list_sum(h))",
    )


MACROS = _macros()
"""The query engine's SQL macros over ``span_metrics_1m`` (created in every query database):

- ``span_metrics_bound(i)``: bucket i's upper bound in ns (``BOUNDS_NS[i]``; null for the last);
  ``span_metrics_bounds()``: ``BOUNDS_NS`` as a list;
- ``span_metrics_histogram(bucket, n)``, an aggregate: the dense histogram (``BUCKETS`` counts,
  element i + 1 for bucket i) of rows of (bucket, count); sum the counts per bucket first (a
  GROUP BY), it then has at most ``BUCKETS`` rows per group to read;
- ``span_metrics_quantile(histogram, q)``: the q-quantile (0..1) of the durations in a dense
  histogram, in ns, interpolated linearly within its bucket (null when it is empty).
"""

_RED = """
WITH b AS (SELECT service_name, bucket, sum(n) AS n,
                  coalesce(sum(n) FILTER (WHERE status_code = 'ERROR'), 0) AS errors
           FROM (SELECT service_name, status_code, unnest(duration_buckets) AS bucket,
                        unnest(duration_bucket_counts) AS n
                 FROM {source} WHERE kind = 'SERVER')
           GROUP BY ALL)
SELECT service_name, spans / {seconds}.0 AS spans_per_s, errors / spans AS error_ratio,
       span_metrics_quantile(h, 0.5) AS p50_ns, span_metrics_quantile(h, 0.95) AS p95_ns,
       span_metrics_quantile(h, 0.99) AS p99_ns
FROM (SELECT service_name, sum(n) AS spans, sum(errors) AS errors, span_metrics_histogram(bucket, n) AS h
      FROM b GROUP BY service_name)
ORDER BY service_name
""".strip()

RED_SQL = _RED.format(source=SPAN_METRICS, seconds="{seconds}")
"""RED per service (rate over ``{seconds}``, error ratio, p50/p95/p99 in ns) in one pass over the
rows, as the README shows it: a row's bucket counts add up to its ``span_count``, and its status
says whether they are errors. Bound the rows by ``time`` (``start``/``end`` or a predicate); over
more than a few hours, ``red_sql`` reads far fewer rows for the same answer.
"""

ROLLUP_AFTER_S = 6 * 3600
"""Ranges at least this long read their whole hours from ``span_metrics_1h`` (``source``)."""


def source(start_ns: int, end_ns: int) -> str:
    """The span metrics rows of the minutes in [``start_ns``, ``end_ns``] as a FROM item (SQL) with
    ``span_metrics_1m``'s columns: for a range of ``ROLLUP_AFTER_S`` or more, its whole hours from
    ``span_metrics_1h`` (60 times fewer rows) and the minutes before the first and after the last
    whole hour from ``span_metrics_1m``; otherwise ``span_metrics_1m``. Both tables hold the same
    spans (each flush commits both, with the same batch-id rule), so aggregates over either are
    the same. Each part bounds ``time`` with literals, so the engine reads only its files."""
    first = -(-start_ns // (HOUR_US * 1000)) * HOUR_US * 1000  # the first whole hour's start
    last = (end_ns + 1) // (HOUR_US * 1000) * HOUR_US * 1000  # the end of the last whole hour
    if end_ns - start_ns < ROLLUP_AFTER_S * 10**9 or first >= last:
        return SPAN_METRICS
    parts = [f"SELECT * FROM {SPAN_METRICS_1H} WHERE time >= {_at(first)} AND time < {_at(last)}"]
    if start_ns < first:
        parts.append(f"SELECT * FROM {SPAN_METRICS} WHERE time >= {_at(start_ns)} AND time < {_at(first)}")
    if last <= end_ns:
        parts.append(f"SELECT * FROM {SPAN_METRICS} WHERE time >= {_at(last)} AND time <= {_at(end_ns)}")
    return f"({' UNION ALL '.join(parts)}) AS span_metrics"


def _at(ns: int) -> str:
    """A TIMESTAMPTZ literal of the µs that ``ns`` falls in (the column's precision)."""
    us = ns // 1000
    instant = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return f"TIMESTAMPTZ '{instant.isoformat()}'"


def red_sql(start_ns: int, end_ns: int) -> str:
    """``RED_SQL`` over [``start_ns``, ``end_ns``], reading whole hours from ``span_metrics_1h``
    when the range is long (``source``); run it with the same ``start`` and ``end``."""
    return _RED.format(source=source(start_ns, end_ns), seconds=max(1, round((end_ns - start_ns) / 1e9)))
