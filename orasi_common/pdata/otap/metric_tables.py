"""The OTAP metric tables as both the codec and the lake read them.

The data point tables come in four kinds (``PointKind``: number, summary, histogram, exponential
histogram), each with its attribute, exemplar and exemplar attribute payload types and the field
numbers of its OTLP message; the readers here find a kind's table and its exemplars (checked to
have their times), decode the ids that tie points to metrics and exemplars to points, check that
a point belongs to a metric of its kind, and open a summary's quantile structs. The tables'
columns are drawn in :mod:`.metrics`, which writes them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.common import (
    DELTA,
    QUASIDELTA,
    U16_MAX,
    Table,
    child_table,
    decode_ids,
    quasi_delta_decode,
    to_numpy,
)
from orasi_common.pdata.otap.payload_types import ArrowPayloadType, MetricType

P = ArrowPayloadType
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class PointKind:
    """One data point table: its payload types and the field numbers of its OTLP message."""

    def __init__(
        self,
        points: ArrowPayloadType,
        attrs: ArrowPayloadType,
        exemplars: ArrowPayloadType | None,
        exemplar_attrs: ArrowPayloadType | None,
        attrs_field: int,
        exemplars_field: int,
        metric_types: tuple[MetricType, ...],
    ) -> None:
        self.points = points
        self.attrs = attrs
        self.exemplars = exemplars
        self.exemplar_attrs = exemplar_attrs
        self.attrs_field = attrs_field
        self.exemplars_field = exemplars_field
        self.metric_types = metric_types


NUMBER = PointKind(
    P.NUMBER_DATA_POINTS,
    P.NUMBER_DP_ATTRS,
    P.NUMBER_DP_EXEMPLARS,
    P.NUMBER_DP_EXEMPLAR_ATTRS,
    7,
    5,
    (MetricType.GAUGE, MetricType.SUM),
)
SUMMARY = PointKind(P.SUMMARY_DATA_POINTS, P.SUMMARY_DP_ATTRS, None, None, 7, 0, (MetricType.SUMMARY,))
HISTOGRAM = PointKind(
    P.HISTOGRAM_DATA_POINTS,
    P.HISTOGRAM_DP_ATTRS,
    P.HISTOGRAM_DP_EXEMPLARS,
    P.HISTOGRAM_DP_EXEMPLAR_ATTRS,
    9,
    8,
    (MetricType.HISTOGRAM,),
)
EXP_HISTOGRAM = PointKind(
    P.EXP_HISTOGRAM_DATA_POINTS,
    P.EXP_HISTOGRAM_DP_ATTRS,
    P.EXP_HISTOGRAM_DP_EXEMPLARS,
    P.EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS,
    1,
    11,
    (MetricType.EXPONENTIAL_HISTOGRAM,),
)
KIND_OF_TYPE = {
    MetricType.GAUGE: NUMBER,
    MetricType.SUM: NUMBER,
    MetricType.HISTOGRAM: HISTOGRAM,
    MetricType.EXPONENTIAL_HISTOGRAM: EXP_HISTOGRAM,
    MetricType.SUMMARY: SUMMARY,
}


def metric_ids_and_types(root: Table) -> tuple[I64, Bools, npt.NDArray[np.uint8]]:
    """The id (all valid) and the metric type of each row of UNIVARIATE_METRICS."""
    ids, ids_valid = decode_ids(root, "id", "u16", DELTA)
    if not ids_valid.all():
        raise root.fail("required column 'id' is missing or has nulls")
    types = to_numpy(root.full("metric_type", "u8"), np.uint8)
    if bool(np.any(types > max(MetricType))):
        raise root.fail(f"unknown metric_type {int(types.max())}")
    return ids, ids_valid, types


def point_table(kind: PointKind, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> Table | None:
    """A data point table (None when it has no rows, and then neither may its children)."""
    return _timed(child_table(tables, kind.points, kind.attrs, kind.exemplars, kind.exemplar_attrs))


def _timed(table: Table | None) -> Table | None:
    if table is not None and table.get("time_unix_nano", "timestamp") is None:
        raise table.fail("required column 'time_unix_nano' is missing")
    return table


def point_parents(table: Table) -> I64:
    """The metric id each data point belongs to."""
    parents = to_numpy(table.full("parent_id", "u16"), np.int64)
    if table.encoding("parent_id", DELTA) == DELTA:
        parents = np.cumsum(parents) & U16_MAX
    return parents


def check_owner_types(
    kind: PointKind, table: Table, parents: I64, metric_ids: I64, metric_types: npt.NDArray[np.uint8]
) -> None:
    """MalformedData when a data point belongs to a metric of a type this table does not hold."""
    owners = np.unique(parents)
    owner_rows = np.searchsorted(np.sort(metric_ids), owners)
    order = np.argsort(metric_ids)
    owner_types = metric_types[order[np.minimum(owner_rows, len(order) - 1)]]
    if not bool(np.all(np.isin(owner_types, np.asarray(kind.metric_types, dtype=np.uint8)))):
        raise table.fail("a data point belongs to a metric of another type")


def quantiles_of(table: Table) -> tuple[pa.Array, Table] | None:
    """A summary table's ``quantile`` list column and the table of its structs, or None."""
    quantiles = table.get("quantile", "list")
    if quantiles is None:
        return None
    values = quantiles.flatten()
    if not pa.types.is_struct(values.type):
        raise table.fail(f"column 'quantile' has type {quantiles.type}, expected list<struct>")
    fields = {values.type.field(i).name: values.field(i) for i in range(values.type.num_fields)}
    return quantiles, Table(f"{table.name}.quantile", fields, len(values))


def list_rows(arr: pa.Array) -> I64:
    """The row of each flattened list element."""
    lengths = np.asarray(arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.repeat(np.arange(len(arr), dtype=np.int64), lengths)


def exemplar_table(kind: PointKind, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> Table | None:
    """An exemplar table (None when it has no rows, and then neither may its attributes)."""
    return (
        None if kind.exemplars is None else _timed(child_table(tables, kind.exemplars, kind.exemplar_attrs))
    )


def exemplar_parents(table: Table) -> I64:
    """The data point id each exemplar belongs to (quasi-delta on its value by default)."""
    encoded = to_numpy(table.full("parent_id", "u32"), np.int64)
    encoding = table.encoding("parent_id", QUASIDELTA)
    if encoding == QUASIDELTA:
        n = table.n
        ints, doubles = table.get("int_value", "i64"), table.get("double_value", "f64")
        eq = _null_safe_equal(ints, n) & _null_safe_equal(doubles, n)
        return quasi_delta_decode(encoded, eq, 32)
    if encoding == DELTA:
        out: I64 = np.cumsum(encoded) & 0xFFFFFFFF
        return out
    return encoded


def _null_safe_equal(arr: pa.Array | None, n: int) -> Bools:
    """eq[i]: row i's value equals row i-1's, nulls equal to nulls, doubles bit for bit."""
    eq = np.zeros(n, dtype=np.bool_)
    if n < 2:
        return eq
    if arr is None:
        eq[1:] = True
        return eq
    valid = wire.is_valid(arr)
    values = to_numpy(arr, np.float64 if pa.types.is_floating(arr.type) else np.int64).view(np.int64)
    same = (values[1:] == values[:-1]) & valid[1:] & valid[:-1]
    eq[1:] = same | (~valid[1:] & ~valid[:-1])
    return eq


__all__ = [
    "EXP_HISTOGRAM",
    "HISTOGRAM",
    "KIND_OF_TYPE",
    "NUMBER",
    "SUMMARY",
    "PointKind",
    "check_owner_types",
    "exemplar_parents",
    "exemplar_table",
    "list_rows",
    "metric_ids_and_types",
    "point_parents",
    "point_table",
    "quantiles_of",
]
