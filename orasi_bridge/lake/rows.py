"""OTLP export requests → Arrow record batches of the lake's tables.

Spans and logs are read straight from the serialized request with
:mod:`orasi_common.pdata.protoscan`: one native scan per nesting level lists every field, and
each column is then picked out with numpy, for all items at once (no Python step per item; the
cost is mostly per call, so the writer converts many requests merged into one). Metric points,
with their per-type shapes, come from the parsed message, with the work per resource and per
scope done once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_bridge.lake import schema
from orasi_bridge.lake.attributes import (
    VALUE_TYPE_NAMES,
    any_value_strings,
    as_pairs,
    attribute_maps,
    body_text,
    canonical,
)
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.protoscan import (
    I32_WIRE,
    I64,
    I64_WIRE,
    LEN,
    VARINT,
    Buffer,
    Fields,
    hex_strings,
    items,
    nested,
    scan,
    strings,
)

TABLE_OF_SIGNAL = {Signal.TRACES: "spans", Signal.LOGS: "logs", Signal.METRICS: "metric_points"}
UNKNOWN_SERVICE = "unknown_service"

SPAN_KIND: dict[int, str] = {v: k.removeprefix("SPAN_KIND_") for k, v in trace_pb2.Span.SpanKind.items()}
STATUS: dict[int, str] = {v: k.removeprefix("STATUS_CODE_") for k, v in trace_pb2.Status.StatusCode.items()}
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


class _Envelope:
    """The resources and scopes of a serialized export request and the items they hold.

    ``resource_field``/``scope_field``/``item_field`` are the field numbers of ResourceX in the
    request, of ScopeX in ResourceX and of the items in ScopeX (1, 2, 2 for every signal).
    """

    def __init__(self, buf: Buffer) -> None:
        request = scan(buf, np.zeros(1, dtype=np.int64), np.array([buf.u8.size], dtype=np.int64))
        resources = items(buf, request, 1)
        scopes = items(buf, resources.fields, 2)
        self.items = items(buf, scopes.fields, 2)
        self.n = len(self.items)
        n_resources, n_scopes = len(resources), len(scopes)
        scope_of_item = self.items.parent
        resource_of_item = scopes.parent[scope_of_item]
        resource = nested(buf, resources.fields, 1)
        resource_attributes = items(buf, resource, 1)
        maps = attribute_maps(buf, resource_attributes, n_resources)
        self.resource_attributes = maps.take(pa.array(resource_of_item))
        self.service_name = service_names(maps).take(pa.array(resource_of_item))
        scope = nested(buf, scopes.fields, 1)
        self.scope_name = _optional_strings(buf, scope, 1, n_scopes).take(pa.array(scope_of_item))
        self.scope_version = _optional_strings(buf, scope, 2, n_scopes).take(pa.array(scope_of_item))


def service_names(resource_maps: pa.Array) -> pa.Array:
    """Each resource's ``service.name`` (its last, as in `as_pairs`), or UNKNOWN_SERVICE."""
    n = len(resource_maps)
    keys, values = resource_maps.keys, resource_maps.items
    offsets = np.asarray(resource_maps.offsets, dtype=np.int64)
    owner = np.repeat(np.arange(n), np.diff(offsets))
    hits = np.flatnonzero(np.asarray(pc.equal(keys, "service.name").fill_null(False), dtype=np.bool_))
    chosen = np.full(n, -1, dtype=np.int64)
    chosen[owner[hits]] = hits
    padded = pa.concat_arrays([values, pa.nulls(1, pa.string())])
    names = padded.take(pa.array(np.where(chosen >= 0, chosen, len(values))))
    return pc.if_else(pc.fill_null(pc.not_equal(names, ""), False), names, UNKNOWN_SERVICE)


def _strings(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """A string field of each message ("" when absent)."""
    start, end = fields.last_range(number, n)
    return strings(buf, start, end)


def _optional_strings(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """A string field of each message, null when empty."""
    start, end = fields.last_range(number, n)
    return strings(buf, start, end, end > start)


def _ids(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    start, end = fields.last_range(number, n)
    return hex_strings(buf, start, end)


def _uint32s(fields: Fields, number: int, n: int) -> I64:
    """A uint32 varint field of each message (0 when absent; wider varints keep their low 32 bits,
    as protobuf parsers do)."""
    return _numbers(fields, number, VARINT, n) & 0xFFFFFFFF


def _numbers(fields: Fields, number: int, wire_type: int, n: int) -> I64:
    """A numeric field of each message as int64 bits (0 when absent)."""
    return fields.last_value(number, wire_type, n).view(np.int64)


def enum_names(codes: I64, names: dict[int, str]) -> pa.Array:
    """Enum values by name (unknown values as their number)."""
    as_int32 = codes.astype(np.int32)
    unique, inverse = np.unique(as_int32, return_inverse=True)
    labels = pa.array([names.get(int(u)) or str(int(u)) for u in unique], pa.string())
    return labels.take(pa.array(inverse.reshape(-1)))


def _lists(parents: I64, n_parents: int, values: pa.Array) -> pa.Array:
    offsets = np.zeros(n_parents + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=n_parents), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _events(buf: Buffer, spans: Fields, n: int) -> pa.Array:
    events = items(buf, spans, 11)
    m, f = len(events), events.fields
    struct = pa.StructArray.from_arrays(
        [
            pa.array(_numbers(f, 1, I64_WIRE, m)),
            _strings(buf, f, 2, m),
            attribute_maps(buf, items(buf, f, 3), m),
            pa.array(_uint32s(f, 4, m)),
        ],
        fields=list(schema.EVENT),
    )
    return _lists(events.parent, n, struct)


def _links(buf: Buffer, spans: Fields, n: int) -> pa.Array:
    links = items(buf, spans, 13)
    m, f = len(links), links.fields
    struct = pa.StructArray.from_arrays(
        [
            _ids(buf, f, 1, m),
            _ids(buf, f, 2, m),
            _optional_strings(buf, f, 3, m),
            attribute_maps(buf, items(buf, f, 4), m),
            pa.array(_numbers(f, 6, I32_WIRE, m)),
        ],
        fields=list(schema.LINK),
    )
    return _lists(links.parent, n, struct)


def spans_batch(data: bytes, tenant: str, region: str) -> pa.RecordBatch:
    """The ``spans`` rows of a serialized ExportTraceServiceRequest."""
    buf = Buffer(data)
    envelope = _Envelope(buf)
    n, spans = envelope.n, envelope.items.fields
    start = _numbers(spans, 7, I64_WIRE, n)
    end = _numbers(spans, 8, I64_WIRE, n)
    status = nested(buf, spans, 15)
    columns = {
        "tenant": pa.array(np.full(n, tenant, dtype=object), pa.string()),
        "region": pa.array(np.full(n, region, dtype=object), pa.string()),
        "service_name": envelope.service_name,
        "name": _strings(buf, spans, 5, n),
        "kind": enum_names(_numbers(spans, 6, VARINT, n), SPAN_KIND),
        "trace_id": _ids(buf, spans, 1, n),
        "span_id": _ids(buf, spans, 2, n),
        "parent_span_id": _ids(buf, spans, 4, n),
        "trace_state": _optional_strings(buf, spans, 3, n),
        "flags": pa.array(_numbers(spans, 16, I32_WIRE, n)),
        "start_time_unix_nano": pa.array(start),
        "end_time_unix_nano": pa.array(end),
        "duration_ns": pa.array(end - start),
        "status_code": enum_names(_numbers(status, 3, VARINT, n), STATUS),
        "status_message": _optional_strings(buf, status, 2, n),
        "attributes": attribute_maps(buf, items(buf, spans, 9), n),
        "resource_attributes": envelope.resource_attributes,
        "scope_name": envelope.scope_name,
        "scope_version": envelope.scope_version,
        "events": _events(buf, spans, n),
        "links": _links(buf, spans, n),
        "dropped_attributes_count": pa.array(_uint32s(spans, 10, n)),
        "time": micros(start),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema.SPANS], schema=schema.SPANS)


def logs_batch(data: bytes, tenant: str, region: str) -> pa.RecordBatch:
    """The ``logs`` rows of a serialized ExportLogsServiceRequest."""
    buf = Buffer(data)
    envelope = _Envelope(buf)
    n, logs = envelope.n, envelope.items.fields
    time_ns = _numbers(logs, 1, I64_WIRE, n)
    observed = _numbers(logs, 11, I64_WIRE, n)
    body_rows = logs.rows(5, LEN)
    body, body_kind = any_value_strings(
        buf, logs.start[body_rows], logs.end[body_rows], logs.msg[body_rows], n, body_text
    )
    columns = {
        "tenant": pa.array(np.full(n, tenant, dtype=object), pa.string()),
        "region": pa.array(np.full(n, region, dtype=object), pa.string()),
        "service_name": envelope.service_name,
        "time_unix_nano": pa.array(time_ns, mask=time_ns == 0),
        "observed_time_unix_nano": pa.array(observed, mask=observed == 0),
        "severity_number": pa.array(_numbers(logs, 2, VARINT, n).astype(np.int32)),
        "severity_text": _optional_strings(buf, logs, 3, n),
        "event_name": _optional_strings(buf, logs, 12, n),
        "body": body,
        "body_type": pa.array(VALUE_TYPE_NAMES[body_kind], pa.string()),
        "trace_id": _ids(buf, logs, 9, n),
        "span_id": _ids(buf, logs, 10, n),
        "flags": pa.array(_numbers(logs, 8, I32_WIRE, n)),
        "attributes": attribute_maps(buf, items(buf, logs, 6), n),
        "resource_attributes": envelope.resource_attributes,
        "scope_name": envelope.scope_name,
        "scope_version": envelope.scope_version,
        "time": micros(np.where(time_ns != 0, time_ns, observed)),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema.LOGS], schema=schema.LOGS)


def micros(nanos: I64) -> pa.Array:
    return pa.array(nanos // 1000).cast(schema.TIME)


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


def to_record_batch(batch: Batch, region: str) -> pa.RecordBatch:
    """The lake rows of one batch (traces and logs straight from their serialized form)."""
    if batch.signal is Signal.TRACES:
        return spans_batch(batch.raw, batch.tenant, region)
    if batch.signal is Signal.LOGS:
        return logs_batch(batch.raw, batch.tenant, region)
    return metric_points_batch(batch.message, batch.tenant, region)
