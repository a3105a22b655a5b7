"""Metrics: ``ExportMetricsServiceRequest`` ⇄ OTAP tables, every metric type.

Tables written (* = optional, omitted when every row is empty)::

    UNIVARIATE_METRICS        id (u16, delta), resource*, scope*, schema_url*, metric_type (u8:
                              0 empty, 1 gauge, 2 sum, 3 histogram, 4 exponential histogram,
                              5 summary), name, description*, unit*,
                              aggregation_temporality* (i32), is_monotonic* (bool)
    NUMBER_DATA_POINTS        id* (u32, delta), parent_id (u16, delta), start_time_unix_nano*,
                              time_unix_nano, int_value* (i64), double_value* (f64), flags* (u32)
    SUMMARY_DATA_POINTS       id*, parent_id, start_time_unix_nano*, time_unix_nano, count* (u64),
                              sum* (f64), quantile* (list<struct<quantile f64, value f64>>), flags*
    HISTOGRAM_DATA_POINTS     id*, parent_id, start_time_unix_nano*, time_unix_nano, count*, sum*,
                              bucket_counts* (list<u64>), explicit_bounds* (list<f64>), flags*,
                              min*, max*
    EXP_HISTOGRAM_DATA_POINTS id*, parent_id, start_time_unix_nano*, time_unix_nano, count*, sum*,
                              scale* (i32), zero_count* (u64),
                              positive* / negative* {offset (i32), bucket_counts* (list<u64>)},
                              flags*, min*, max*, zero_threshold* (f64)
    *_DP_EXEMPLARS            id* (u32, delta), parent_id (u32, quasidelta on int_value and
                              double_value), time_unix_nano, int_value*, double_value*,
                              span_id* (fixed8), trace_id* (fixed16)
    METRIC_ATTRS              metric metadata (u16 parent ids)
    *_DP_ATTRS, *_DP_EXEMPLAR_ATTRS  data point and exemplar attributes (u32 parent ids)
    RESOURCE_ATTRS, SCOPE_ATTRS (see :mod:`.envelope`)

Null marks what OTLP leaves unset: a data point value or exemplar value of neither kind, an
absent histogram ``sum``/``min``/``max``, an absent ``positive``/``negative`` bucket set.
``aggregation_temporality`` is null for metric types without one, ``is_monotonic`` for all but sums.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from orasi_common.errors import MalformedData
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import add_attribute_table
from orasi_common.pdata.otap.common import (
    DELTA,
    QUASIDELTA,
    U16_MAX,
    Columns,
    Table,
    check_count,
    decode_ids,
    delta_encode,
    delta_ids,
    id_field,
    ids_binary,
    nonempty_str,
    nonzero_int32,
    nonzero_timestamps,
    nonzero_u32,
    quasi_delta_encode,
    timestamps,
    to_numpy,
    uints,
)
from orasi_common.pdata.otap.envelope import (
    EnvelopeDecoder,
    attributes_for,
    check_payloads,
    children_by_key,
    gather_request,
    root_or_empty,
)
from orasi_common.pdata.otap.lazy import LazyMetricsRequest
from orasi_common.pdata.otap.metric_tables import (
    EXP_HISTOGRAM,
    HISTOGRAM,
    KIND_OF_TYPE,
    NUMBER,
    SUMMARY,
    PointKind,
    check_owner_types,
    exemplar_parents,
    exemplar_table,
    list_rows,
    metric_ids_and_types,
    point_parents,
    point_table,
    quantiles_of,
)
from orasi_common.pdata.otap.payload_types import METRICS_PAYLOAD_TYPES, ArrowPayloadType, MetricType

P = ArrowPayloadType
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_TYPE_OF_FIELD = {
    None: MetricType.EMPTY,
    "gauge": MetricType.GAUGE,
    "sum": MetricType.SUM,
    "histogram": MetricType.HISTOGRAM,
    "exponential_histogram": MetricType.EXPONENTIAL_HISTOGRAM,
    "summary": MetricType.SUMMARY,
}
# metric field number of each data message, and the data point table(s) feeding it
_DATA_FIELD = {
    MetricType.GAUGE: 5,
    MetricType.SUM: 7,
    MetricType.HISTOGRAM: 9,
    MetricType.EXPONENTIAL_HISTOGRAM: 10,
    MetricType.SUMMARY: 11,
}


_METRIC_FIELDS = operator.attrgetter("name", "description", "unit", "metadata")
_WHICH_DATA = operator.methodcaller("WhichOneof", "data")
_PACK_DOUBLE = struct.Struct("<d").pack


def _has(field: str) -> Callable[[Any], bool]:
    return operator.methodcaller("HasField", field)


def encode_metrics(request: ExportMetricsServiceRequest) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a metrics export request (empty dict for a request without metrics)."""
    return encode_metrics_bytes(request.SerializeToString())


def encode_metrics_bytes(data: bytes) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a serialized metrics export request."""
    envelope, metrics = gather_request(
        LazyMetricsRequest, data, "resource_metrics", "scope_metrics", "metrics"
    )
    n = len(metrics)
    if n == 0:
        return {}
    check_count(n, U16_MAX, "metrics")
    tables: dict[ArrowPayloadType, pa.RecordBatch] = {}
    name, description, unit, metadata = zip(*map(_METRIC_FIELDS, metrics), strict=True)
    kinds = list(map(_WHICH_DATA, metrics))
    types = np.fromiter((_TYPE_OF_FIELD[k] for k in kinds), dtype=np.uint8, count=n)
    temporality: list[int | None] = [None] * n
    monotonic: list[bool | None] = [None] * n
    points: dict[int, list[Any]] = {
        id(NUMBER): [],
        id(SUMMARY): [],
        id(HISTOGRAM): [],
        id(EXP_HISTOGRAM): [],
    }
    parents: dict[int, list[int]] = {key: [] for key in points}
    for row, (metric, kind) in enumerate(zip(metrics, kinds, strict=True)):
        if kind is None:
            continue
        data_msg = getattr(metric, kind)
        if kind in ("sum", "histogram", "exponential_histogram"):
            temporality[row] = data_msg.aggregation_temporality
        if kind == "sum":
            monotonic[row] = data_msg.is_monotonic
        dps = data_msg.data_points
        if dps:
            key = id(KIND_OF_TYPE[_TYPE_OF_FIELD[kind]])
            points[key].extend(dps)
            parents[key].extend(itertools.repeat(row, len(dps)))

    columns = Columns()
    columns.required("id", delta_ids(n, pa.uint16()), encoding=DELTA)
    envelope.add_to(columns, tables)
    columns.required("metric_type", pa.array(types, pa.uint8()))
    columns.required("name", pa.array(name, pa.string()))
    columns.optional("description", nonempty_str(description))
    columns.optional("unit", nonempty_str(unit))
    if any(temporality):
        columns.optional("aggregation_temporality", pa.array(temporality, pa.int32()))
    if any(monotonic):
        columns.optional("is_monotonic", pa.array(monotonic, pa.bool_()))
    tables[P.UNIVARIATE_METRICS] = columns.batch()
    add_attribute_table(tables, P.METRIC_ATTRS, metadata, pa.uint16())

    encoders: dict[int, Callable[[list[Any], I64, dict[ArrowPayloadType, pa.RecordBatch]], None]] = {
        id(NUMBER): _encode_number,
        id(SUMMARY): _encode_summary,
        id(HISTOGRAM): _encode_histogram,
        id(EXP_HISTOGRAM): _encode_exp_histogram,
    }
    for key, items in points.items():
        if items:
            encoders[key](items, np.asarray(parents[key], dtype=np.int64), tables)
    return tables


def _point_head(
    kind: PointKind,
    items: list[Any],
    parents: I64,
    attrs: Sequence[Any],
    exemplars: Sequence[Any] | None,
    tables: dict[ArrowPayloadType, pa.RecordBatch],
) -> Columns:
    """id, parent_id, start and time columns shared by the data point tables; encodes children."""
    n = len(items)
    has_attrs = add_attribute_table(tables, kind.attrs, attrs, pa.uint32())
    has_exemplars = False
    if exemplars is not None and kind.exemplars is not None:
        has_exemplars = _encode_exemplars(kind, exemplars, tables)
    columns = Columns()
    if has_attrs or has_exemplars:
        columns.add(id_field(pa.uint32()), delta_ids(n, pa.uint32()))
    columns.required("parent_id", delta_encode(parents, pa.uint16()), encoding=DELTA)
    starts = operator.attrgetter("start_time_unix_nano")
    times = operator.attrgetter("time_unix_nano")
    columns.optional("start_time_unix_nano", nonzero_timestamps(list(map(starts, items))))
    columns.required("time_unix_nano", timestamps(list(map(times, items))))
    return columns


def _encode_exemplars(
    kind: PointKind, per_point: Sequence[Any], tables: dict[ArrowPayloadType, pa.RecordBatch]
) -> bool:
    counts = np.fromiter(map(len, per_point), dtype=np.int64, count=len(per_point))
    if not counts.any():
        return False
    assert kind.exemplars is not None and kind.exemplar_attrs is not None
    exemplars = list(itertools.chain.from_iterable(per_point))
    parents = np.repeat(np.arange(len(per_point), dtype=np.int64), counts)
    n = len(exemplars)
    which = [e.WhichOneof("value") for e in exemplars]
    ints = [e.as_int if w == "as_int" else None for e, w in zip(exemplars, which, strict=True)]
    doubles = [e.as_double if w == "as_double" else None for e, w in zip(exemplars, which, strict=True)]
    keys = [
        (1, v) if w == "as_int" else (2, _PACK_DOUBLE(d)) if w == "as_double" else None
        for w, v, d in zip(which, ints, doubles, strict=True)
    ]
    same = np.zeros(n, dtype=np.bool_)
    if n > 1:
        same[1:] = np.fromiter(
            (a == b for a, b in zip(keys[1:], keys[:-1], strict=True)), dtype=np.bool_, count=n - 1
        )
    attrs = [e.filtered_attributes for e in exemplars]
    has_attrs = add_attribute_table(tables, kind.exemplar_attrs, attrs, pa.uint32())
    columns = Columns()
    if has_attrs:
        columns.add(id_field(pa.uint32()), delta_ids(n, pa.uint32()))
    columns.required("parent_id", uints(quasi_delta_encode(parents, same), pa.uint32()), encoding=QUASIDELTA)
    columns.required("time_unix_nano", timestamps([e.time_unix_nano for e in exemplars]))
    columns.optional("int_value", pa.array(ints, pa.int64()))
    columns.optional("double_value", pa.array(doubles, pa.float64()))
    columns.optional("span_id", ids_binary([e.span_id for e in exemplars], 8, "an exemplar's span_id"))
    columns.optional("trace_id", ids_binary([e.trace_id for e in exemplars], 16, "an exemplar's trace_id"))
    tables[kind.exemplars] = columns.batch()
    return True


def _nonzero_u64(values: Sequence[int]) -> pa.Array | None:
    arr = np.asarray(values, dtype=np.uint64)
    return pa.array(arr, pa.uint64()) if arr.any() else None


def _nonzero_f64(values: Sequence[float]) -> pa.Array | None:
    """Implicit-presence doubles: null for +0.0 (bit pattern zero), the value otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    zero = arr.view(np.uint64) == 0
    if zero.all():
        return None
    return pa.array(arr, pa.float64(), mask=zero)


def _optional_f64(items: list[Any], field: str) -> pa.Array | None:
    """Explicit-presence doubles: null where unset."""
    has = list(map(_has(field), items))
    if not any(has):
        return None
    get = operator.attrgetter(field)
    return pa.array([get(p) if h else None for p, h in zip(items, has, strict=True)], pa.float64())


def _list(values: Sequence[Any], typ: pa.DataType) -> pa.Array | None:
    """A list column of repeated scalars, or None when every list is empty."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if not lengths.any():
        return None
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = pa.array(list(itertools.chain.from_iterable(values)), typ)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat)


def _encode_number(items: list[Any], parents: I64, tables: dict[ArrowPayloadType, pa.RecordBatch]) -> None:
    get = operator.attrgetter("attributes", "exemplars", "flags")
    attrs, exemplars, flags = zip(*map(get, items), strict=True)
    columns = _point_head(NUMBER, items, parents, attrs, exemplars, tables)
    which = [p.WhichOneof("value") for p in items]
    ints = [p.as_int if w == "as_int" else None for p, w in zip(items, which, strict=True)]
    doubles = [p.as_double if w == "as_double" else None for p, w in zip(items, which, strict=True)]
    columns.optional("int_value", pa.array(ints, pa.int64()))
    columns.optional("double_value", pa.array(doubles, pa.float64()))
    columns.optional("flags", nonzero_u32(flags))
    tables[P.NUMBER_DATA_POINTS] = columns.batch()


def _encode_summary(items: list[Any], parents: I64, tables: dict[ArrowPayloadType, pa.RecordBatch]) -> None:
    get = operator.attrgetter("attributes", "count", "sum", "quantile_values", "flags")
    attrs, count, sum_, quantiles, flags = zip(*map(get, items), strict=True)
    columns = _point_head(SUMMARY, items, parents, attrs, None, tables)
    columns.optional("count", _nonzero_u64(count))
    columns.optional("sum", _nonzero_f64(sum_))
    lengths = np.fromiter(map(len, quantiles), dtype=np.int64, count=len(items))
    if lengths.any():
        flat = list(itertools.chain.from_iterable(quantiles))
        values = pa.StructArray.from_arrays(
            [
                pa.array([q.quantile for q in flat], pa.float64()),
                pa.array([q.value for q in flat], pa.float64()),
            ],
            names=["quantile", "value"],
        )
        offsets = np.zeros(len(items) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        columns.optional("quantile", pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values))
    columns.optional("flags", nonzero_u32(flags))
    tables[P.SUMMARY_DATA_POINTS] = columns.batch()


def _encode_histogram(items: list[Any], parents: I64, tables: dict[ArrowPayloadType, pa.RecordBatch]) -> None:
    get = operator.attrgetter("attributes", "exemplars", "count", "bucket_counts", "explicit_bounds", "flags")
    attrs, exemplars, count, buckets, bounds, flags = zip(*map(get, items), strict=True)
    columns = _point_head(HISTOGRAM, items, parents, attrs, exemplars, tables)
    columns.optional("count", _nonzero_u64(count))
    columns.optional("sum", _optional_f64(items, "sum"))
    columns.optional("bucket_counts", _list(buckets, pa.uint64()))
    columns.optional("explicit_bounds", _list(bounds, pa.float64()))
    columns.optional("flags", nonzero_u32(flags))
    columns.optional("min", _optional_f64(items, "min"))
    columns.optional("max", _optional_f64(items, "max"))
    tables[P.HISTOGRAM_DATA_POINTS] = columns.batch()


def _buckets(items: list[Any], field: str) -> pa.Array | None:
    present = np.fromiter(map(_has(field), items), dtype=np.bool_, count=len(items))
    if not present.any():
        return None
    sets = [getattr(p, field) for p in items]
    bucket_columns = Columns()
    bucket_columns.required("offset", pa.array([b.offset for b in sets], pa.int32()))
    bucket_columns.optional("bucket_counts", _list([b.bucket_counts for b in sets], pa.uint64()))
    return bucket_columns.struct(field, ~present)


def _encode_exp_histogram(
    items: list[Any], parents: I64, tables: dict[ArrowPayloadType, pa.RecordBatch]
) -> None:
    get = operator.attrgetter(
        "attributes", "exemplars", "count", "scale", "zero_count", "flags", "zero_threshold"
    )
    attrs, exemplars, count, scale, zero_count, flags, zero_threshold = zip(*map(get, items), strict=True)
    columns = _point_head(EXP_HISTOGRAM, items, parents, attrs, exemplars, tables)
    columns.optional("count", _nonzero_u64(count))
    columns.optional("sum", _optional_f64(items, "sum"))
    columns.optional("scale", nonzero_int32(scale))
    columns.optional("zero_count", _nonzero_u64(zero_count))
    columns.optional("positive", _buckets(items, "positive"))
    columns.optional("negative", _buckets(items, "negative"))
    columns.optional("flags", nonzero_u32(flags))
    columns.optional("min", _optional_f64(items, "min"))
    columns.optional("max", _optional_f64(items, "max"))
    columns.optional("zero_threshold", _nonzero_f64(zero_threshold))
    tables[P.EXP_HISTOGRAM_DATA_POINTS] = columns.batch()


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_metrics(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> ExportMetricsServiceRequest:
    """The metrics export request of a set of OTAP tables; MalformedData if they are not valid."""
    return ExportMetricsServiceRequest.FromString(decode_metrics_bytes(tables))


def decode_metrics_bytes(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> bytes:
    """Like :func:`decode_metrics`, but the serialized request."""
    checked = check_payloads(tables, METRICS_PAYLOAD_TYPES, "metrics")
    if P.MULTIVARIATE_METRICS in checked:
        raise MalformedData("MULTIVARIATE_METRICS payloads are not supported")
    batch = root_or_empty(checked, P.UNIVARIATE_METRICS)
    if batch is None:
        return b""
    root = Table.of(P.UNIVARIATE_METRICS, batch)
    n = root.n
    envelope = EnvelopeDecoder(root, checked)
    ids, ids_valid, types = metric_ids_and_types(root)
    parts: list[wire.Segment | pa.Array] = [wire.f_bytes(1, root.need("name", "utf8"))]
    for field, name in ((2, "description"), (3, "unit")):
        arr = root.get(name, "utf8")
        if arr is not None:
            parts.append(wire.f_bytes(field, arr))
    temporality = wire.f_varint(2, root.np("aggregation_temporality", "i32", np.int64))
    monotonic = wire.f_varint(3, root.np("is_monotonic", "bool", np.int64))
    grouped: dict[int, pa.Array] = {}
    for kind in (NUMBER, SUMMARY, HISTOGRAM, EXP_HISTOGRAM):
        points = _decode_points(kind, checked, ids, types)
        if points is not None:
            grouped[id(kind)] = points
    empty = wire.empties(n)
    for metric_type, field in _DATA_FIELD.items():
        rows = types == metric_type
        if not rows.any():
            continue
        data_parts: list[wire.Segment | pa.Array] = [grouped.get(id(KIND_OF_TYPE[metric_type]), empty)]
        if metric_type in (MetricType.SUM, MetricType.HISTOGRAM, MetricType.EXPONENTIAL_HISTOGRAM):
            data_parts.append(temporality)
        if metric_type == MetricType.SUM:
            data_parts.append(monotonic)
        parts.append(wire.f_bytes(field, wire.join(*data_parts), rows))
    metadata = attributes_for(checked, P.METRIC_ATTRS, 12, 16, ids, ids_valid)
    if metadata is not None:
        parts.append(metadata)
    metrics = wire.join(*parts)
    return envelope.assemble(wire.f_bytes(2, metrics, np.ones(n, dtype=np.bool_)))


def _decode_points(
    kind: PointKind,
    tables: Mapping[ArrowPayloadType, pa.RecordBatch],
    metric_ids: I64,
    metric_types: npt.NDArray[np.uint8],
) -> pa.Array | None:
    """Each metric's data points (``data_points`` field segments) from one table, or None."""
    table = point_table(kind, tables)
    if table is None:
        return None
    n = table.n
    ids, ids_valid = decode_ids(table, "id", "u32", DELTA)
    parents = point_parents(table)
    attrs = attributes_for(tables, kind.attrs, kind.attrs_field, 32, ids, ids_valid)
    exemplars = _decode_exemplars(kind, tables, ids, ids_valid)
    parts: list[wire.Segment | pa.Array] = []
    if attrs is not None:
        parts.append(attrs)
    if exemplars is not None:
        parts.append(exemplars)
    parts.append(wire.f_fixed64(2, table.np("start_time_unix_nano", "timestamp", np.int64)))
    parts.append(wire.f_fixed64(3, table.np("time_unix_nano", "timestamp", np.int64)))
    if kind is NUMBER:
        _number_fields(table, parts)
    elif kind is SUMMARY:
        _summary_fields(table, parts)
    elif kind is HISTOGRAM:
        _histogram_fields(table, parts)
    else:
        _exp_histogram_fields(table, parts)
    points = wire.f_bytes(1, wire.join(*parts), np.ones(n, dtype=np.bool_))
    grouped = children_by_key(
        parents, points, metric_ids, np.ones(len(metric_ids), dtype=np.bool_), kind.points.name
    )
    check_owner_types(kind, table, parents, metric_ids, metric_types)
    return grouped


def _optional_double(table: Table, name: str, field: int, parts: list[wire.Segment | pa.Array]) -> None:
    arr = table.get(name, "f64")
    if arr is not None:
        parts.append(wire.f_fixed64(field, to_numpy(arr, np.float64), wire.is_valid(arr)))


def _number_fields(table: Table, parts: list[wire.Segment | pa.Array]) -> None:
    _optional_double(table, "double_value", 4, parts)
    ints = table.get("int_value", "i64")
    if ints is not None:
        parts.append(wire.f_fixed64(6, to_numpy(ints, np.int64), wire.is_valid(ints)))
    parts.append(wire.f_varint(8, table.np("flags", "u32", np.int64)))


def _summary_fields(table: Table, parts: list[wire.Segment | pa.Array]) -> None:
    parts.append(wire.f_fixed64(4, table.np("count", "u64", np.uint64)))
    parts.append(wire.f_fixed64(5, table.np("sum", "f64", np.float64)))
    found = quantiles_of(table)
    if found is not None:
        quantiles, sub = found
        items = wire.join(
            wire.f_fixed64(1, sub.np("quantile", "f64", np.float64)),
            wire.f_fixed64(2, sub.np("value", "f64", np.float64)),
        )
        framed = wire.f_bytes(6, items, np.ones(len(items), dtype=np.bool_))
        parts.append(wire.group_concat(framed, list_rows(quantiles), table.n))
    parts.append(wire.f_varint(8, table.np("flags", "u32", np.int64)))


def _packed_fixed64(
    table: Table, name: str, kind: str, dtype: Any, field: int, parts: list[wire.Segment | pa.Array]
) -> None:
    arr = table.get(name, "list")
    if arr is None:
        return
    values = arr.flatten()
    expected = pa.uint64() if kind == "u64" else pa.float64()
    if values.type != expected:
        raise table.fail(f"column {name!r} has type {arr.type}, expected list<{expected}>")
    flat = to_numpy(values, dtype)
    items = wire.fixed(flat)
    grouped = wire.group_concat(items, list_rows(arr), table.n)
    parts.append(wire.f_bytes(field, grouped))


def _histogram_fields(table: Table, parts: list[wire.Segment | pa.Array]) -> None:
    parts.append(wire.f_fixed64(4, table.np("count", "u64", np.uint64)))
    _optional_double(table, "sum", 5, parts)
    _packed_fixed64(table, "bucket_counts", "u64", np.uint64, 6, parts)
    _packed_fixed64(table, "explicit_bounds", "f64", np.float64, 7, parts)
    parts.append(wire.f_varint(10, table.np("flags", "u32", np.int64)))
    _optional_double(table, "min", 11, parts)
    _optional_double(table, "max", 12, parts)


def _bucket_field(table: Table, name: str, field: int, parts: list[wire.Segment | pa.Array]) -> None:
    buckets = table.struct(name)
    if buckets is None:
        return
    sub_parts = [wire.f_sint(1, buckets.np("offset", "i32", np.int64))]
    counts = buckets.get("bucket_counts", "list")
    if counts is not None:
        values = counts.flatten()
        if values.type != pa.uint64():
            raise buckets.fail(f"column 'bucket_counts' has type {counts.type}, expected list<uint64>")
        packed = wire.group_concat(wire.varints(to_numpy(values, np.uint64)), list_rows(counts), table.n)
        sub_parts.append(wire.f_bytes(2, packed))
    assert buckets.validity is not None
    parts.append(wire.f_bytes(field, wire.join(*sub_parts), buckets.validity))


def _exp_histogram_fields(table: Table, parts: list[wire.Segment | pa.Array]) -> None:
    parts.append(wire.f_fixed64(4, table.np("count", "u64", np.uint64)))
    _optional_double(table, "sum", 5, parts)
    parts.append(wire.f_sint(6, table.np("scale", "i32", np.int64)))
    parts.append(wire.f_fixed64(7, table.np("zero_count", "u64", np.uint64)))
    _bucket_field(table, "positive", 8, parts)
    _bucket_field(table, "negative", 9, parts)
    parts.append(wire.f_varint(10, table.np("flags", "u32", np.int64)))
    _optional_double(table, "min", 12, parts)
    _optional_double(table, "max", 13, parts)
    parts.append(wire.f_fixed64(14, table.np("zero_threshold", "f64", np.float64)))


def _decode_exemplars(
    kind: PointKind, tables: Mapping[ArrowPayloadType, pa.RecordBatch], point_ids: I64, point_valid: Bools
) -> pa.Array | None:
    table = exemplar_table(kind, tables)
    if table is None:
        return None
    assert kind.exemplars is not None
    n = table.n
    ids, ids_valid = decode_ids(table, "id", "u32", DELTA)
    parents = exemplar_parents(table)
    ints = table.get("int_value", "i64")
    parts: list[wire.Segment | pa.Array] = []
    attrs = attributes_for(tables, kind.exemplar_attrs, 7, 32, ids, ids_valid)  # type: ignore[arg-type]
    if attrs is not None:
        parts.append(attrs)
    parts.append(wire.f_fixed64(2, table.np("time_unix_nano", "timestamp", np.int64)))
    _optional_double(table, "double_value", 3, parts)
    for field, name, id_kind in ((4, "span_id", "id8"), (5, "trace_id", "id16")):
        arr = table.get(name, id_kind)
        if arr is not None:
            parts.append(wire.f_bytes(field, arr))
    if ints is not None:
        parts.append(wire.f_fixed64(6, to_numpy(ints, np.int64), wire.is_valid(ints)))
    exemplars = wire.f_bytes(kind.exemplars_field, wire.join(*parts), np.ones(n, dtype=np.bool_))
    return children_by_key(parents, exemplars, point_ids, point_valid, kind.exemplars.name)


__all__ = ["decode_metrics", "decode_metrics_bytes", "encode_metrics", "encode_metrics_bytes"]
