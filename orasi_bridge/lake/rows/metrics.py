"""Metrics → the lake's ``metric_points`` rows (one per data point), from either form, a column at
a time: serialized OTLP with the native field scan (:func:`otlp_batch`), OTAP straight from the
metric and data point tables (:func:`otap_batch`). Neither makes a Python object per point.

Rows follow the request: each metric's points in order. Per point type, the value columns hold::

    gauge, sum             value (as_double, or as_int as a double), int_value (as_int)
    histogram              count, sum, min, max, bucket_counts, explicit_bounds
    exponential_histogram  count, sum, min, max, scale, zero_count, positive_* / negative_*
    summary                count, sum, quantiles

and null elsewhere, except ``quantiles`` and ``exemplars``, empty lists (Iceberg reads back a
null list of structs as an empty one, and rows in memory must read the same). ``sum``, ``min``
and ``max`` of histograms are null when unset; an unset bucket set has offset 0 and no counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_bridge.lake import schema
from orasi_bridge.lake.rows.columns import (
    TEMPORALITY,
    children,
    constant,
    hex_ids,
    lists,
    micros,
    record_batch,
    regions,
    text,
)
from orasi_bridge.lake.rows.otlp import Types, attribute_maps, field_text, ids, numbers, walk
from orasi_common.errors import MalformedData
from orasi_common.pdata.canonical import F64, empty_types, typed_wire_attribute_maps
from orasi_common.pdata.canonical_otap import table_attribute_maps, typed_table_attribute_maps
from orasi_common.pdata.envelope import Envelope, OtapEnvelope, optional_strings
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.common import DELTA, Keys, Table, decode_ids, to_numpy
from orasi_common.pdata.otap.envelope import root_table
from orasi_common.pdata.otap.metric_tables import (
    EXP_HISTOGRAM,
    HISTOGRAM,
    NUMBER,
    SUMMARY,
    check_owner_types,
    exemplar_parents,
    exemplar_table,
    metric_ids_and_types,
    point_parents,
    point_table,
    quantiles_of,
)
from orasi_common.pdata.otap.payload_types import METRICS_PAYLOAD_TYPES, MetricType
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.protoscan import (
    I64,
    I64_WIRE,
    LEN,
    U8,
    VARINT,
    Bools,
    Buffer,
    Fields,
    gather,
    items_at,
    nested_at,
    pick,
)

GAUGE, SUM, HIST, EXP, SUMMARY_TYPE = (
    MetricType.GAUGE,
    MetricType.SUM,
    MetricType.HISTOGRAM,
    MetricType.EXPONENTIAL_HISTOGRAM,
    MetricType.SUMMARY,
)
_TYPE_NAMES = np.array([None, "gauge", "sum", "histogram", "exponential_histogram", "summary"], dtype=object)
_KINDS = (NUMBER, SUMMARY, HISTOGRAM, EXP_HISTOGRAM)
_EXEMPLARS = pa.list_(schema.EXEMPLAR)
_QUANTILES = pa.list_(schema.QUANTILE)
_INTS, _DOUBLES = pa.list_(pa.int64()), pa.list_(pa.float64())


def point_rows(
    tenant: str, region: str, metrics: Mapping[str, Any], metric_of_point: I64, **points: Any
) -> pa.RecordBatch:
    """The rows from per-metric columns (the envelope's, ``metric_name``, ``unit``,
    ``description``; ``metric_type`` as OTAP codes, ``temporality`` and ``monotonic`` as numbers)
    and per-point columns (``start`` and ``time`` int64 nanoseconds, the rest the lake's)."""
    metrics = dict(metrics)
    types: U8 = metrics.pop("metric_type")[metric_of_point]
    temporality: I64 = metrics.pop("temporality")[metric_of_point]
    monotonic: Bools = metrics.pop("monotonic")[metric_of_point]
    start, time = points.pop("start"), points.pop("time")
    n = len(time)
    take = pa.array(metric_of_point, pa.int64())
    codes, inverse = np.unique(temporality.astype(np.int32), return_inverse=True)
    temporality_names = np.array([TEMPORALITY.get(int(code)) for code in codes], dtype=object)
    temporal = (types == SUM) | (types == HIST) | (types == EXP)
    per_point = {name: column.take(take) for name, column in metrics.items()}
    return record_batch(
        schema.METRIC_POINTS,
        {
            **points,
            **per_point,
            "tenant": constant(tenant, n),
            **regions(per_point, region, n),
            "metric_type": pa.array(_TYPE_NAMES[types], pa.string()),
            "is_monotonic": pa.array(monotonic, pa.bool_(), mask=types != SUM),
            "aggregation_temporality": pa.array(
                temporality_names[inverse.reshape(-1)], pa.string(), mask=~temporal
            ),
            "start_time_unix_nano": pa.array(start, mask=start == 0),
            "time_unix_nano": pa.array(time),
            "time": micros(time),
        },
    )


def _list_array(counts: I64, values: pa.Array, keep: Bools, kind: pa.DataType) -> pa.Array:
    """Lists of ``counts[i]`` consecutive ``values`` per row, null where not ``keep``."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), values.cast(kind.value_type), type=kind, mask=pa.array(~keep)
    )


def _empty_lists(n: int, kind: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], kind.value_type), type=kind
    )


def _ranges(starts: I64, counts: I64) -> I64:
    """``starts[i], starts[i] + 1, ... (counts[i] values)`` for every i, concatenated."""
    total = int(counts.sum())
    before = np.repeat(np.cumsum(counts) - counts, counts)
    out: I64 = np.repeat(starts, counts) + (np.arange(total, dtype=np.int64) - before)
    return out


# ---------------------------------------------------------------------------------------------
# From serialized OTLP

_DATA_FIELDS = np.array([5, 7, 9, 10, 11])  # Metric.gauge, sum, histogram, exponential_histogram, summary
_TYPE_OF_FIELD = np.zeros(12, dtype=np.uint8)
_TYPE_OF_FIELD[_DATA_FIELDS] = [GAUGE, SUM, HIST, EXP, SUMMARY_TYPE]
# Field numbers in a data point by metric type (OTAP codes; -1: none), where they differ.
_ATTRS_FIELD = np.array([-1, 7, 7, 9, 1, 7])
_EXEMPLARS_FIELD = np.array([-1, 5, 5, 8, 11, -1])
_FLAGS_FIELD = np.array([-1, 8, 8, 10, 10, 8])
_MIN_FIELD = np.array([-1, -1, -1, 11, 12, -1])
_MAX_FIELD = np.array([-1, -1, -1, 12, 13, -1])


def _data(fields: Fields, n: int) -> tuple[U8, I64]:
    """The ``data`` oneof of each metric: its type, and the rows of the occurrences that make its
    value (the last member's, after any other member's; protobuf merges them)."""
    rows = np.flatnonzero(np.isin(fields.number, _DATA_FIELDS) & (fields.wire_type == LEN))
    msg, member = fields.msg[rows], fields.number[rows]
    changes = np.flatnonzero((msg[1:] == msg[:-1]) & (member[1:] != member[:-1]))
    last_change = np.full(n, -1, dtype=np.int64)
    last_change[msg[changes]] = changes
    types = np.zeros(n, dtype=np.uint8)
    types[msg] = _TYPE_OF_FIELD[member]  # the last member wins
    return types, rows[np.arange(len(rows)) > last_change[msg]]


def _rows_by_type(fields: Fields, number_of_msg: I64, *tags_wire: int) -> I64:
    """The rows of each message's field ``number_of_msg[msg]`` (a field number meaning something
    else in each data point type) with one of these wire types."""
    number = number_of_msg[fields.msg]
    return np.flatnonzero((fields.number == number) & (number >= 0) & np.isin(fields.wire_type, tags_wire))


def _zigzag32(values: I64) -> I64:
    low = values & 0xFFFFFFFF
    out: I64 = ((low >> 1) ^ -(low & 1)).astype(np.int32).astype(np.int64)
    return out


def _packed_fixed64(data: bytes, sizes: I64) -> tuple[I64, npt.NDArray[np.uint64]]:
    if bool(np.any(sizes % 8)):
        raise MalformedData("a packed fixed64 field's length is not a multiple of 8")
    return sizes // 8, np.frombuffer(data, dtype="<u8").astype(np.uint64)


def _packed_varints(data: bytes, sizes: I64) -> tuple[I64, npt.NDArray[np.uint64]]:
    raw = np.frombuffer(data, dtype=np.uint8)
    if not len(raw):
        return np.zeros(len(sizes), dtype=np.int64), np.zeros(0, dtype=np.uint64)
    last = np.flatnonzero(raw < 0x80)  # the last byte of each varint
    ends = np.cumsum(sizes)
    if bool(np.any(raw[ends[sizes > 0] - 1] >= 0x80)):
        raise MalformedData("a packed varint field ends inside a varint")
    starts = np.r_[0, last[:-1] + 1].astype(np.int64)
    lengths = last - starts + 1
    if bool(np.any(lengths > 10)):
        raise MalformedData("a varint is longer than 10 bytes")
    shift = (7 * (np.arange(len(raw)) - np.repeat(starts, lengths))).astype(np.uint64)
    parts = (raw & 0x7F).astype(np.uint64) << shift
    values = np.bitwise_or.reduceat(parts, starts)
    counts = np.searchsorted(last, ends - 1, "right") - np.searchsorted(last, ends - sizes, "left")
    return counts.astype(np.int64), values


Unpack = Callable[[bytes, I64], tuple[I64, npt.NDArray[np.uint64]]]


def _repeated(
    buf: Buffer, fields: Fields, rows: I64, n: int, unpack: Unpack
) -> tuple[I64, npt.NDArray[np.uint64]]:
    """(values per message, the values as u64 bits in wire order) of a repeated scalar field
    whose rows are given: packed occurrences (LEN, read by ``unpack``) and single values."""
    packed = fields.wire_type[rows] == LEN
    starts, ends = fields.start[rows[packed]], fields.end[rows[packed]]
    in_packs, packed_values = unpack(gather(buf, starts, ends)[1], ends - starts)
    counts = np.ones(len(rows), dtype=np.int64)
    counts[packed] = in_packs
    first = np.cumsum(counts) - counts
    out = np.zeros(int(counts.sum()), dtype=np.uint64)
    out[first[~packed]] = fields.value[rows[~packed]]
    out[_ranges(first[packed], in_packs)] = packed_values
    return np.bincount(fields.msg[rows], weights=counts, minlength=n).astype(np.int64), out


def _last_double(fields: Fields, row: I64) -> tuple[F64, Bools]:
    """The double of each message's row (-1: absent, 0.0)."""
    return pick(fields.value, row).view(np.float64), row >= 0


def _wire_exemplars(buf: Buffer, points: Fields, types: U8, n: int) -> pa.Array:
    found = items_at(buf, points, _rows_by_type(points, _EXEMPLARS_FIELD[types], LEN))
    m, f = len(found), found.fields
    value_row = f.last_of(np.flatnonzero((f.tag == (3 << 3 | I64_WIRE)) | (f.tag == (6 << 3 | I64_WIRE))), m)
    bits = pick(f.value, value_row)
    is_int = pick(f.number, value_row) == 6
    struct = pa.StructArray.from_arrays(
        [
            pa.array(numbers(f, 2, I64_WIRE, m)),
            pa.array(np.where(is_int, bits.view(np.int64).astype(np.float64), bits.view(np.float64))),
            ids(buf, f, 5, m),
            ids(buf, f, 4, m),
            attribute_maps(buf, f, 7, m),
        ],
        fields=list(schema.EXEMPLAR),
    )
    return lists(found.parent, n, struct)


def _wire_buckets(buf: Buffer, points: Fields, number: int, keep: Bools, n: int) -> tuple[pa.Array, pa.Array]:
    """(offset, bucket_counts) of ExponentialHistogramDataPoint.positive (8) or negative (9)."""
    buckets = nested_at(buf, points, np.flatnonzero((points.tag == (number << 3 | LEN)) & keep[points.msg]))
    rows = np.flatnonzero((buckets.number == 2) & np.isin(buckets.wire_type, (LEN, VARINT)))
    counts, values = _repeated(buf, buckets, rows, n, _packed_varints)
    offset = _zigzag32(numbers(buckets, 1, VARINT, n))
    return pa.array(offset, pa.int32(), mask=~keep), _list_array(
        counts, pa.array(values.view(np.int64)), keep, _INTS
    )


def otlp_batch(data: bytes, tenant: str, region: str, typed: Types | None = None) -> pa.RecordBatch:
    """The ``metric_points`` rows of a serialized ExportMetricsServiceRequest."""
    buf, envelope, m, metric = walk(data)
    metric_type, data_rows = _data(metric, m)
    inner = nested_at(buf, metric, data_rows)
    found = items_at(buf, inner, inner.rows(1, LEN))
    n, p = len(found), found.fields
    types = metric_type[found.parent]
    number, hist, exp, summary = (
        (types == GAUGE) | (types == SUM),
        types == HIST,
        types == EXP,
        types == SUMMARY_TYPE,
    )
    histograms = hist | exp

    def tagged(field: int, *wire_types: int, of: Bools) -> I64:
        return np.flatnonzero((p.number == field) & np.isin(p.wire_type, wire_types) & of[p.msg])

    value_row = p.last_of(
        np.flatnonzero(np.isin(p.tag, (4 << 3 | I64_WIRE, 6 << 3 | I64_WIRE)) & number[p.msg]), n
    )
    bits, is_int = pick(p.value, value_row), pick(p.number, value_row) == 6
    sum_, has_sum = _last_double(p, p.last(5, I64_WIRE, n))
    low, has_low = _last_double(p, p.last_of(_rows_by_type(p, _MIN_FIELD[types], I64_WIRE), n))
    high, has_high = _last_double(p, p.last_of(_rows_by_type(p, _MAX_FIELD[types], I64_WIRE), n))
    bucket_counts, bucket_values = _repeated(buf, p, tagged(6, LEN, I64_WIRE, of=hist), n, _packed_fixed64)
    bound_counts, bound_values = _repeated(buf, p, tagged(7, LEN, I64_WIRE, of=hist), n, _packed_fixed64)
    quantiles = items_at(buf, p, tagged(6, LEN, of=summary))
    q, qf = len(quantiles), quantiles.fields
    positive = _wire_buckets(buf, p, 8, exp, n)
    negative = _wire_buckets(buf, p, 9, exp, n)
    flags = pick(p.value, p.last_of(_rows_by_type(p, _FLAGS_FIELD[types], VARINT), n)).view(np.int64)
    return point_rows(
        tenant,
        region,
        {
            **envelope.item_columns(),
            "metric_name": field_text(buf, metric, 1, m),
            "description": optional_strings(buf, metric, 2, m),
            "unit": optional_strings(buf, metric, 3, m),
            "metric_type": metric_type,
            "temporality": numbers(inner, 2, VARINT, m),
            "monotonic": numbers(inner, 3, VARINT, m) != 0,
        },
        found.parent,
        start=numbers(p, 2, I64_WIRE, n),
        time=numbers(p, 3, I64_WIRE, n),
        value=pa.array(
            np.where(is_int, bits.view(np.int64).astype(np.float64), bits.view(np.float64)), mask=~number
        ),
        int_value=pa.array(bits.view(np.int64), mask=~(number & is_int)),
        count=pa.array(numbers(p, 4, I64_WIRE, n), mask=~(histograms | summary)),
        sum=pa.array(sum_, mask=~((histograms & has_sum) | summary)),
        min=pa.array(low, mask=~(histograms & has_low)),
        max=pa.array(high, mask=~(histograms & has_high)),
        bucket_counts=_list_array(bucket_counts, pa.array(bucket_values.view(np.int64)), hist, _INTS),
        explicit_bounds=_list_array(bound_counts, pa.array(bound_values.view(np.float64)), hist, _DOUBLES),
        scale=pa.array(_zigzag32(numbers(p, 6, VARINT, n)), pa.int32(), mask=~exp),
        zero_count=pa.array(numbers(p, 7, I64_WIRE, n), mask=~exp),
        positive_offset=positive[0],
        positive_bucket_counts=positive[1],
        negative_offset=negative[0],
        negative_bucket_counts=negative[1],
        quantiles=lists(
            quantiles.parent,
            n,
            pa.StructArray.from_arrays(
                [pa.array(numbers(qf, i, I64_WIRE, q).view(np.float64)) for i in (1, 2)],
                fields=list(schema.QUANTILE),
            ),
        ),
        exemplars=_wire_exemplars(buf, p, types, n),
        flags=pa.array(flags & 0xFFFFFFFF),
        attributes=_point_attributes(buf, p, types, n, envelope, found.parent, typed),
    )


def _point_attributes(
    buf: Buffer, p: Fields, types: U8, n: int, envelope: Envelope, metric_of_point: I64, typed: Types | None
) -> pa.Array:
    """The points' attribute maps; with ``typed``, their types and their resources' too."""
    attributes = items_at(buf, p, _rows_by_type(p, _ATTRS_FIELD[types], LEN))
    maps, kinds = typed_wire_attribute_maps(buf, attributes, n, typed is not None)
    if typed is not None and kinds is not None:
        typed["attributes"] = kinds
        resource = envelope.item_resource_types()
        if resource is not None:
            typed["resource_attributes"] = resource.take(pa.array(metric_of_point))
    return maps


# ---------------------------------------------------------------------------------------------
# From OTAP tables


def _table_lists(table: Table, name: str, kind: pa.DataType) -> pa.Array:
    """A list column of a data point table as the lake's (unsigned counts as int64 bits; null or
    absent lists empty)."""
    n = table.n
    arr = table.get(name, "list")
    if arr is None:
        return _empty_lists(n, kind)
    flat = arr.flatten()
    expected = pa.uint64() if kind == _INTS else pa.float64()
    if flat.type != expected:
        raise table.fail(f"column {name!r} has type {arr.type}, expected list<{expected}>")
    values = pa.array(to_numpy(flat, np.uint64).view(np.int64)) if kind == _INTS else flat
    return _list_array(to_numpy(arr.value_lengths(), np.int64), values, np.ones(n, dtype=np.bool_), kind)


def _table_exemplars(kind: Any, tables: Mapping[P, pa.RecordBatch], point_keys: Keys, n: int) -> pa.Array:
    table = exemplar_table(kind, tables)
    if table is None:
        return _empty_lists(n, _EXEMPLARS)
    m = table.n
    ints, doubles = table.get("int_value", "i64"), table.get("double_value", "f64")
    value = np.zeros(m, dtype=np.float64)
    if doubles is not None:
        value = np.where(wire.is_valid(doubles), to_numpy(doubles, np.float64), value)
    if ints is not None:  # the decoder writes as_int after as_double: it wins, as the last on the wire
        value = np.where(wire.is_valid(ints), to_numpy(ints, np.int64).astype(np.float64), value)
    struct = pa.StructArray.from_arrays(
        [
            pa.array(table.np("time_unix_nano", "timestamp", np.int64)),
            pa.array(value),
            hex_ids(table.get("trace_id", "id16"), m),
            hex_ids(table.get("span_id", "id8"), m),
            table_attribute_maps(
                tables, kind.exemplar_attrs, 32, Keys(*decode_ids(table, "id", "u32", DELTA))
            ),
        ],
        fields=list(schema.EXEMPLAR),
    )
    return children(exemplar_parents(table), point_keys, struct, kind.exemplars.name)


def _table_buckets(table: Table, name: str) -> dict[str, pa.Array]:
    n = table.n
    buckets = table.struct(name)
    if buckets is None:
        offset, counts = np.zeros(n, dtype=np.int64), _empty_lists(n, _INTS)
    else:
        offset, counts = buckets.np("offset", "i32", np.int64), _table_lists(buckets, "bucket_counts", _INTS)
    return {f"{name}_offset": pa.array(offset, pa.int32()), f"{name}_bucket_counts": counts}


def _optional(table: Table, name: str) -> pa.Array:
    arr = table.get(name, "f64")
    return pa.nulls(table.n, pa.float64()) if arr is None else arr


def _count(table: Table) -> pa.Array:
    return pa.array(table.np("count", "u64", np.uint64).view(np.int64))


def _number_values(table: Table) -> dict[str, pa.Array]:
    ints = table.get("int_value", "i64")
    int_valid = wire.is_valid(ints) if ints is not None else np.zeros(table.n, dtype=np.bool_)
    value = table.np("double_value", "f64", np.float64)
    if ints is not None:  # as_int is written after as_double: the last on the wire wins
        value = np.where(int_valid, to_numpy(ints, np.int64).astype(np.float64), value)
    return {
        "value": pa.array(value),
        "int_value": pa.array(table.np("int_value", "i64", np.int64), mask=~int_valid),
    }


def _summary_values(table: Table) -> dict[str, pa.Array]:
    found = quantiles_of(table)
    if found is None:
        listed = _empty_lists(table.n, _QUANTILES)
    else:
        quantiles, sub = found
        values = pa.StructArray.from_arrays(
            [pa.array(sub.np(name, "f64", np.float64)) for name in ("quantile", "value")],
            fields=list(schema.QUANTILE),
        )
        lengths = to_numpy(quantiles.value_lengths(), np.int64)
        listed = _list_array(lengths, values, np.ones(table.n, dtype=np.bool_), _QUANTILES)
    return {"count": _count(table), "sum": pa.array(table.np("sum", "f64", np.float64)), "quantiles": listed}


def _histogram_values(table: Table) -> dict[str, pa.Array]:
    return {
        "count": _count(table),
        **{name: _optional(table, name) for name in ("sum", "min", "max")},
        "bucket_counts": _table_lists(table, "bucket_counts", _INTS),
        "explicit_bounds": _table_lists(table, "explicit_bounds", _DOUBLES),
    }


def _exp_histogram_values(table: Table) -> dict[str, pa.Array]:
    return {
        "count": _count(table),
        **{name: _optional(table, name) for name in ("sum", "min", "max")},
        "scale": pa.array(table.np("scale", "i32", np.int64), pa.int32()),
        "zero_count": pa.array(table.np("zero_count", "u64", np.uint64).view(np.int64)),
        **_table_buckets(table, "positive"),
        **_table_buckets(table, "negative"),
    }


_VALUES: dict[int, Callable[[Table], dict[str, pa.Array]]] = {
    id(NUMBER): _number_values,
    id(SUMMARY): _summary_values,
    id(HISTOGRAM): _histogram_values,
    id(EXP_HISTOGRAM): _exp_histogram_values,
}
_NAMES = schema.METRIC_POINTS.names
# the columns of one data point (the rest come from its metric, resource and scope)
_POINT_COLUMNS = {
    f.name: f.type
    for f in schema.METRIC_POINTS
    if _NAMES.index("value") <= _NAMES.index(f.name) <= _NAMES.index("attributes")
}


def otap_batch(
    tables: Mapping[Any, pa.RecordBatch], tenant: str, region: str, typed: Types | None = None
) -> pa.RecordBatch:
    """The ``metric_points`` rows of one OTAP metrics batch (``typed``: as ``otlp_batch``'s)."""
    checked, root = root_table(tables, METRICS_PAYLOAD_TYPES, P.UNIVARIATE_METRICS, "metrics")
    if root is None:
        return pa.RecordBatch.from_pylist([], schema.METRIC_POINTS)
    m = root.n
    metric_ids, ids_valid, metric_type = metric_ids_and_types(root)
    keys = Keys(metric_ids, ids_valid)
    owners: list[I64] = []
    parts: list[dict[str, pa.Array]] = []
    for kind in _KINDS:
        table = point_table(kind, checked)
        if table is None:
            continue
        parents = point_parents(table)
        check_owner_types(kind, table, parents, metric_ids, metric_type)
        owners.append(keys.of(parents, kind.points.name))
        point_keys = Keys(*decode_ids(table, "id", "u32", DELTA))
        values = _VALUES[id(kind)](table)
        attributes, kinds = typed_table_attribute_maps(checked, kind.attrs, 32, point_keys, typed is not None)
        parts.append(
            {
                "start": pa.array(table.np("start_time_unix_nano", "timestamp", np.int64)),
                "time": pa.array(table.np("time_unix_nano", "timestamp", np.int64)),
                "flags": pa.array(table.np("flags", "u32", np.int64)),
                "attributes": attributes,
                **({} if kinds is None else {"attribute_types": kinds}),
                "exemplars": _table_exemplars(kind, checked, point_keys, table.n),
                **values,
            }
        )
    # Each metric row's points, in table order (rows sharing an id all get them, as in the decoder).
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    by_key = np.argsort(owner, kind="stable")
    per_key = np.bincount(owner, minlength=len(keys.unique))
    first_of_key = np.cumsum(per_key) - per_key
    key_of_metric = keys.index
    counts = per_key[key_of_metric]
    order = pa.array(by_key[_ranges(first_of_key[key_of_metric], counts)])
    sizes = [len(part["time"]) for part in parts]
    columns = {
        name: pa.concat_arrays(
            [_default(part.get(name), kind, size) for part, size in zip(parts, sizes, strict=True)]
        ).take(order)
        if parts
        else pa.array([], kind)
        for name, kind in {**_POINT_COLUMNS, "start": pa.int64(), "time": pa.int64()}.items()
    }
    start, time = columns.pop("start"), columns.pop("time")
    envelope = OtapEnvelope(root, checked)
    metric_of_point = np.repeat(np.arange(m, dtype=np.int64), counts)
    if typed is not None:
        kinds = [part["attribute_types"] for part in parts]
        typed["attributes"] = pa.concat_arrays(kinds).take(order) if kinds else empty_types(0)
        resource = envelope.item_resource_types()
        if resource is not None:
            typed["resource_attributes"] = resource.take(pa.array(metric_of_point))
    return point_rows(
        tenant,
        region,
        {
            **envelope.item_columns(),
            "metric_name": text(root.need("name", "utf8"), m, False),
            "description": text(root.get("description", "utf8"), m, True),
            "unit": text(root.get("unit", "utf8"), m, True),
            "metric_type": metric_type,
            "temporality": root.np("aggregation_temporality", "i32", np.int64),
            "monotonic": root.np("is_monotonic", "bool", np.bool_),
        },
        metric_of_point,
        start=to_numpy(start, np.int64),
        time=to_numpy(time, np.int64),
        **columns,
    )


def _default(column: pa.Array | None, kind: pa.DataType, n: int) -> pa.Array:
    """A part's column, or what rows of other point types hold (null, or empty lists of structs)."""
    if column is not None:
        return column.cast(kind) if column.type != kind else column
    if kind in (_QUANTILES, _EXEMPLARS):
        return _empty_lists(n, kind)
    return pa.nulls(n, kind)
