"""The lake's tables: their Arrow schemas (the public contract of ARCHITECTURE §5, plus extras).

Timestamps are kept twice: as nanosecond integers (exact) and as the microsecond ``time``
column (Iceberg v2 timestamps) that tables are partitioned by day on (by month: ``MONTHLY``).
"""

from __future__ import annotations

import pyarrow as pa

from orasi_common.pdata.canonical import ATTRIBUTES

NAMESPACE = "orasi"

TIME = pa.timestamp("us", tz="UTC")

EVENT = pa.struct(
    [
        ("time_unix_nano", pa.int64()),
        ("name", pa.string()),
        ("attributes", ATTRIBUTES),
        ("dropped_attributes_count", pa.int64()),
    ]
)
LINK = pa.struct(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("trace_state", pa.string()),
        ("attributes", ATTRIBUTES),
        ("flags", pa.int64()),
    ]
)
QUANTILE = pa.struct([("quantile", pa.float64()), ("value", pa.float64())])
EXEMPLAR = pa.struct(
    [
        ("time_unix_nano", pa.int64()),
        ("value", pa.float64()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("filtered_attributes", ATTRIBUTES),
    ]
)


VIOLATIONS = "schema_violations"
"""Added by the schema registry's ``flag`` validation: ``key: reason`` per violation (null: none).
Optional and last, so that lakes made before it get it appended (``catalog.ensure_table``)."""

# every table starts with who sent a row and from where, and ends with the partition column
# (then the columns added since the first release, in the order they were added)
_HEAD = (("tenant", pa.string()), ("region", pa.string()), ("service_name", pa.string()))
_TAIL = (("time", TIME), (VIOLATIONS, pa.list_(pa.string())), ("lake_region", pa.string()))
# the item's attributes, its resource's attributes, and its instrumentation scope
_CONTEXT = (
    ("attributes", ATTRIBUTES),
    ("resource_attributes", ATTRIBUTES),
    ("scope_name", pa.string()),
    ("scope_version", pa.string()),
)


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    """A table of ``fields`` between the common head and tail; only ``tenant`` is required."""
    columns = (*_HEAD, *fields, *_TAIL)
    return pa.schema([pa.field(name, kind, nullable=name != "tenant") for name, kind in columns])


SPANS = _schema(
    ("name", pa.string()),
    ("kind", pa.string()),
    ("trace_id", pa.string()),
    ("span_id", pa.string()),
    ("parent_span_id", pa.string()),
    ("trace_state", pa.string()),
    ("flags", pa.int64()),
    ("start_time_unix_nano", pa.int64()),
    ("end_time_unix_nano", pa.int64()),
    ("duration_ns", pa.int64()),
    ("status_code", pa.string()),
    ("status_message", pa.string()),
    *_CONTEXT,
    ("events", pa.list_(EVENT)),
    ("links", pa.list_(LINK)),
    ("dropped_attributes_count", pa.int64()),
)

LOGS = _schema(
    ("time_unix_nano", pa.int64()),
    ("observed_time_unix_nano", pa.int64()),
    ("severity_number", pa.int32()),
    ("severity_text", pa.string()),
    ("event_name", pa.string()),
    ("body", pa.string()),
    ("body_type", pa.string()),
    ("trace_id", pa.string()),
    ("span_id", pa.string()),
    ("flags", pa.int64()),
    *_CONTEXT,
)

METRIC_POINTS = _schema(
    ("metric_name", pa.string()),
    ("metric_type", pa.string()),
    ("unit", pa.string()),
    ("description", pa.string()),
    ("is_monotonic", pa.bool_()),
    ("aggregation_temporality", pa.string()),
    ("start_time_unix_nano", pa.int64()),
    ("time_unix_nano", pa.int64()),
    ("value", pa.float64()),
    ("int_value", pa.int64()),
    ("count", pa.int64()),
    ("sum", pa.float64()),
    ("min", pa.float64()),
    ("max", pa.float64()),
    ("bucket_counts", pa.list_(pa.int64())),
    ("explicit_bounds", pa.list_(pa.float64())),
    ("scale", pa.int32()),
    ("zero_count", pa.int64()),
    ("positive_offset", pa.int32()),
    ("positive_bucket_counts", pa.list_(pa.int64())),
    ("negative_offset", pa.int32()),
    ("negative_bucket_counts", pa.list_(pa.int64())),
    ("quantiles", pa.list_(QUANTILE)),
    ("exemplars", pa.list_(EXEMPLAR)),
    ("flags", pa.int64()),
    *_CONTEXT,
)

SPAN_METRICS_1M = pa.schema(
    [
        pa.field(name, kind, nullable=name != "tenant")
        for name, kind in (
            *_HEAD,
            ("name", pa.string()),
            ("kind", pa.string()),
            ("status_code", pa.string()),
            ("span_count", pa.int64()),
            ("error_count", pa.int64()),
            ("duration_sum_ns", pa.int64()),
            ("duration_min_ns", pa.int64()),
            ("duration_max_ns", pa.int64()),
            ("duration_buckets", pa.list_(pa.int32())),
            ("duration_bucket_counts", pa.list_(pa.int64())),
            ("late", pa.bool_()),
            ("time", TIME),
        )
    ]
)
"""Derived from the spans at each flush (``spanmetrics``): partial aggregates per minute."""

SPAN_METRICS_1H = SPAN_METRICS_1M
"""The hourly rollup (``spanmetrics.rollup``): the same columns, ``time`` the hour's start."""

MONTHLY = frozenset({"span_metrics_1h"})
"""Tables partitioned by month(time) and tenant rather than day(time) and tenant: the hourly
rollup holds 24 rows per group and day, so a day partition would be a file of a few hundred rows
and a 30-day query would open 30 of them (``catalog.ensure_table`` evolves a day-partitioned one;
compaction merges a month's files; retention deletes the expired days' rows of a month)."""

AUDIT = _schema(
    ("event", pa.string()),
    ("actor", pa.string()),
    ("outcome", pa.string()),
    ("sql_hash", pa.string()),
    ("sql", pa.string()),
    ("row_count", pa.int64()),
    ("duration_ms", pa.float64()),
    ("details", pa.string()),
)
"""The bridge's audit events (``lake/audit.py``): queries and registry changes; ``details`` is JSON."""

TABLES: dict[str, pa.Schema] = {
    "spans": SPANS,
    "logs": LOGS,
    "metric_points": METRIC_POINTS,
    "span_metrics_1m": SPAN_METRICS_1M,
    "span_metrics_1h": SPAN_METRICS_1H,
    "audit": AUDIT,
}
