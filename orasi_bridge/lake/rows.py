"""OTLP export requests → Arrow record batches of the lake's tables.

Work per resource and per scope (service name, resource attributes, scope name) is done once and
repeated into the columns; per-item work is a handful of field reads and the attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_bridge.lake import schema
from orasi_bridge.lake.attributes import as_pairs, body_text, canonical, value_type
from orasi_common.pdata import Signal

TABLE_OF_SIGNAL = {Signal.TRACES: "spans", Signal.LOGS: "logs", Signal.METRICS: "metric_points"}
UNKNOWN_SERVICE = "unknown_service"

_SPAN_KIND = {v: k.removeprefix("SPAN_KIND_") for k, v in trace_pb2.Span.SpanKind.items()}
_STATUS = {v: k.removeprefix("STATUS_CODE_") for k, v in trace_pb2.Status.StatusCode.items()}
_TEMPORALITY = {
    v: k.removeprefix("AGGREGATION_TEMPORALITY_") for k, v in metrics_pb2.AggregationTemporality.items()
}

Pairs = list[tuple[str, str | None]]


def _hex(value: bytes) -> str | None:
    return value.hex() if value else None


class _MapColumn:
    """Builds a MAP(VARCHAR, VARCHAR) column from per-row key/value pairs without per-row objects."""

    def __init__(self) -> None:
        self.offsets = [0]
        self.keys: list[str] = []
        self.values: list[str | None] = []

    def append(self, pairs: Pairs) -> None:
        for key, value in pairs:
            self.keys.append(key)
            self.values.append(value)
        self.offsets.append(len(self.keys))

    def append_attributes(self, attributes: Iterable[common_pb2.KeyValue]) -> None:
        """One row of OTLP KeyValues, canonicalized as `as_pairs` does (a repeated key keeps its
        last value, at its first position) without building the pairs."""
        self.extend_attributes([attributes])

    def extend_attributes(self, rows: Iterable[Iterable[common_pb2.KeyValue]]) -> None:
        """Rows of OTLP KeyValues (see `append_attributes`)."""
        # A non-empty ``string_value`` can only come from a string value and a non-zero
        # ``int_value`` from an int; anything else (empty strings, zeros included) goes through
        # `canonical`, whose strings these are.
        keys, values, offsets = self.keys, self.values, self.offsets
        for attributes in rows:
            row = {
                kv.key: v.string_value or (str(i) if (i := v.int_value) else canonical(v))
                for kv in attributes
                for v in [kv.value]
            }
            keys.extend(row)
            values.extend(row.values())
            offsets.append(len(keys))

    def repeat(self, pairs: Pairs, times: int) -> None:
        keys = [k for k, _ in pairs]
        values = [v for _, v in pairs]
        size = len(pairs)
        for _ in range(times):
            self.keys.extend(keys)
            self.values.extend(values)
            self.offsets.append(self.offsets[-1] + size)

    def finish(self) -> pa.Array:
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, pa.string()),
            type=schema.ATTRIBUTES,
        )


def _time_column(nanos: Sequence[int]) -> pa.Array:
    micros = pc.divide(pa.array(nanos, pa.int64()), 1000)
    return micros.cast(pa.int64()).cast(schema.TIME)


def _resource_info(resource: Any) -> tuple[Pairs, str]:
    pairs = as_pairs(resource.attributes)
    service = next((v for k, v in pairs if k == "service.name" and v), None)
    return pairs, service or UNKNOWN_SERVICE


def _events(span: Any) -> list[dict[str, Any]]:
    return [
        {
            "time_unix_nano": e.time_unix_nano,
            "name": e.name,
            "attributes": as_pairs(e.attributes),
            "dropped_attributes_count": e.dropped_attributes_count,
        }
        for e in span.events
    ]


def _links(span: Any) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": _hex(link.trace_id),
            "span_id": _hex(link.span_id),
            "trace_state": link.trace_state or None,
            "attributes": as_pairs(link.attributes),
            "flags": link.flags,
        }
        for link in span.links
    ]


def spans_batch(request: Message, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.SPANS.names}
    attributes, resource_attributes = _MapColumn(), _MapColumn()
    kind_of, status_of = _SPAN_KIND.get, _STATUS.get
    for resource_spans in request.resource_spans:  # type: ignore[attr-defined]
        resource_pairs, service = _resource_info(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            spans = list(scope_spans.spans)
            n = len(spans)
            if not n:
                continue
            c["service_name"] += [service] * n
            c["scope_name"] += [scope_spans.scope.name or None] * n
            c["scope_version"] += [scope_spans.scope.version or None] * n
            resource_attributes.repeat(resource_pairs, n)
            # Column by column over the scope's spans: one comprehension per column rather than
            # a dozen appends per span. ``b"".hex() or None`` is `_hex`.
            c["name"] += [s.name for s in spans]
            c["kind"] += [kind_of(k) or str(k) for k in [s.kind for s in spans]]
            c["trace_id"] += [s.trace_id.hex() or None for s in spans]
            c["span_id"] += [s.span_id.hex() or None for s in spans]
            c["parent_span_id"] += [s.parent_span_id.hex() or None for s in spans]
            c["trace_state"] += [s.trace_state or None for s in spans]
            c["flags"] += [s.flags for s in spans]
            starts = [s.start_time_unix_nano for s in spans]
            ends = [s.end_time_unix_nano for s in spans]
            c["start_time_unix_nano"] += starts
            c["end_time_unix_nano"] += ends
            c["duration_ns"] += [end - start for start, end in zip(starts, ends, strict=True)]
            statuses = [s.status for s in spans]
            c["status_code"] += [status_of(st.code) or str(st.code) for st in statuses]
            c["status_message"] += [st.message or None for st in statuses]
            c["dropped_attributes_count"] += [s.dropped_attributes_count for s in spans]
            attributes.extend_attributes([s.attributes for s in spans])
            c["events"] += [_events(s) if s.events else [] for s in spans]
            c["links"] += [_links(s) if s.links else [] for s in spans]
    rows = len(c["name"])
    c["tenant"] = [tenant] * rows
    c["region"] = [region] * rows
    return _finish(schema.SPANS, c, attributes, resource_attributes, c["start_time_unix_nano"])


def logs_batch(request: Message, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.LOGS.names}
    attributes, resource_attributes = _MapColumn(), _MapColumn()
    times: list[int] = []
    for resource_logs in request.resource_logs:  # type: ignore[attr-defined]
        resource_pairs, service = _resource_info(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            records = scope_logs.log_records
            n = len(records)
            if not n:
                continue
            c["service_name"] += [service] * n
            c["scope_name"] += [scope_logs.scope.name or None] * n
            c["scope_version"] += [scope_logs.scope.version or None] * n
            resource_attributes.repeat(resource_pairs, n)
            for record in records:
                observed = record.observed_time_unix_nano
                c["time_unix_nano"].append(record.time_unix_nano or None)
                c["observed_time_unix_nano"].append(observed or None)
                times.append(record.time_unix_nano or observed)
                c["severity_number"].append(record.severity_number)
                c["severity_text"].append(record.severity_text or None)
                c["event_name"].append(record.event_name or None)
                c["body"].append(body_text(record.body))
                c["body_type"].append(value_type(record.body))
                c["trace_id"].append(_hex(record.trace_id))
                c["span_id"].append(_hex(record.span_id))
                c["flags"].append(record.flags)
                attributes.append_attributes(record.attributes)
    rows = len(times)
    c["tenant"] = [tenant] * rows
    c["region"] = [region] * rows
    return _finish(schema.LOGS, c, attributes, resource_attributes, times)


_POINT_DEFAULTS: dict[str, Any] = dict.fromkeys(
    [
        "value",
        "int_value",
        "count",
        "sum",
        "min",
        "max",
        "bucket_counts",
        "explicit_bounds",
        "scale",
        "zero_count",
        "positive_offset",
        "positive_bucket_counts",
        "negative_offset",
        "negative_bucket_counts",
    ]
)
# Empty, not null, for points that are not summaries: Iceberg writes (pyiceberg's projection of
# list<struct>) turn a null list of structs into an empty one, and hot rows must read the same.
_POINT_DEFAULTS["quantiles"] = []


def _exemplars(point: Any) -> list[dict[str, Any]]:
    return [
        {
            "time_unix_nano": e.time_unix_nano,
            "value": e.as_double if e.HasField("as_double") else float(e.as_int),
            "trace_id": _hex(e.trace_id),
            "span_id": _hex(e.span_id),
            "filtered_attributes": as_pairs(e.filtered_attributes),
        }
        for e in point.exemplars
    ]


def _optional(point: Any, name: str) -> float | None:
    return getattr(point, name) if point.HasField(name) else None


def _point_values(metric_type: str, point: Any) -> dict[str, Any]:
    """The value columns of one data point."""
    if metric_type in ("gauge", "sum"):
        if point.HasField("as_int"):
            return {"value": float(point.as_int), "int_value": point.as_int}
        return {"value": point.as_double}
    if metric_type == "histogram":
        return {
            "count": point.count,
            "sum": _optional(point, "sum"),
            "min": _optional(point, "min"),
            "max": _optional(point, "max"),
            "bucket_counts": list(point.bucket_counts),
            "explicit_bounds": list(point.explicit_bounds),
        }
    if metric_type == "exponential_histogram":
        return {
            "count": point.count,
            "sum": _optional(point, "sum"),
            "min": _optional(point, "min"),
            "max": _optional(point, "max"),
            "scale": point.scale,
            "zero_count": point.zero_count,
            "positive_offset": point.positive.offset,
            "positive_bucket_counts": list(point.positive.bucket_counts),
            "negative_offset": point.negative.offset,
            "negative_bucket_counts": list(point.negative.bucket_counts),
        }
    # summary
    return {
        "count": point.count,
        "sum": point.sum,
        "quantiles": [{"quantile": q.quantile, "value": q.value} for q in point.quantile_values],
    }


def metric_points_batch(request: Message, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.METRIC_POINTS.names}
    attributes, resource_attributes = _MapColumn(), _MapColumn()
    for resource_metrics in request.resource_metrics:  # type: ignore[attr-defined]
        resource_pairs, service = _resource_info(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_name = scope_metrics.scope.name or None
            scope_version = scope_metrics.scope.version or None
            for metric in scope_metrics.metrics:
                metric_type = metric.WhichOneof("data")
                if metric_type is None:
                    continue
                data = getattr(metric, metric_type)
                points = data.data_points
                n = len(points)
                if not n:
                    continue
                temporality = (
                    _TEMPORALITY.get(data.aggregation_temporality)
                    if metric_type in ("sum", "histogram", "exponential_histogram")
                    else None
                )
                c["service_name"] += [service] * n
                c["metric_name"] += [metric.name] * n
                c["metric_type"] += [metric_type] * n
                c["unit"] += [metric.unit or None] * n
                c["description"] += [metric.description or None] * n
                c["is_monotonic"] += [data.is_monotonic if metric_type == "sum" else None] * n
                c["aggregation_temporality"] += [temporality] * n
                c["scope_name"] += [scope_name] * n
                c["scope_version"] += [scope_version] * n
                resource_attributes.repeat(resource_pairs, n)
                for point in points:
                    c["start_time_unix_nano"].append(point.start_time_unix_nano or None)
                    c["time_unix_nano"].append(point.time_unix_nano)
                    c["flags"].append(point.flags)
                    c["exemplars"].append(_exemplars(point) if metric_type != "summary" else [])
                    attributes.append_attributes(point.attributes)
                    for name, value in (_POINT_DEFAULTS | _point_values(metric_type, point)).items():
                        c[name].append(value)
    rows = len(c["time_unix_nano"])
    c["tenant"] = [tenant] * rows
    c["region"] = [region] * rows
    return _finish(schema.METRIC_POINTS, c, attributes, resource_attributes, c["time_unix_nano"])


def _finish(
    table_schema: pa.Schema,
    columns: dict[str, list[Any]],
    attributes: _MapColumn,
    resource_attributes: _MapColumn,
    times: Sequence[int],
) -> pa.RecordBatch:
    arrays = []
    for field in table_schema:
        if field.name == "attributes":
            arrays.append(attributes.finish())
        elif field.name == "resource_attributes":
            arrays.append(resource_attributes.finish())
        elif field.name == "time":
            arrays.append(_time_column(times))
        else:
            arrays.append(_array(columns[field.name], field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=table_schema)


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_list(kind) and values and not any(values) and None not in values:
        # Every row an empty list (the usual events, links, exemplars): offsets alone are far
        # cheaper than converting the Python lists.
        offsets = pa.array([0] * (len(values) + 1), pa.int32())
        return pa.ListArray.from_arrays(offsets, pa.array([], kind.value_type), type=kind)
    return pa.array(values, kind)


CONVERTERS = {Signal.TRACES: spans_batch, Signal.LOGS: logs_batch, Signal.METRICS: metric_points_batch}


def to_record_batch(signal: Signal, request: Message, tenant: str, region: str) -> pa.RecordBatch:
    """The lake rows of one OTLP export request."""
    return CONVERTERS[signal](request, tenant, region)
