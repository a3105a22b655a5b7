"""Shared pieces of the OTAP codec: schemas and columns, id encodings, resource and scope.

Conventions of every table the encoder writes:

- Strings and binaries are plain (``utf8`` / ``binary`` / ``fixed_size_binary``); the stream
  layer dictionary-encodes them. The decoder accepts dictionary-encoded versions (u8/u16 or
  any integer indices) of any column, and any optional column missing.
- An optional column is omitted when every row holds the empty value of its OTLP field (zero,
  empty string, unset); required columns are always written.
- ``id`` columns are delta-encoded; ``parent_id`` columns are delta (data points) or
  quasi-delta (attributes, events, links, exemplars); each declares it with the field
  metadata ``encoding`` (``plain`` | ``delta`` | ``quasidelta``). The decoder follows the
  metadata and assumes the spec's default encoding when it is absent.
- Timestamps are ``timestamp[ns]`` holding the OTLP ``fixed64`` reinterpreted as int64 (two's
  complement, so every value survives); ``duration[ns]`` likewise (end - start, wrapping).

Resource and scope identity: each ``ResourceX`` and each ``ScopeX`` of the request gets its own
``resource.id`` / ``scope.id`` (delta-encoded), so two identical resources stay two groups and
the decoder rebuilds the exact grouping from runs of equal ids. An unset ``resource`` or
``scope`` message is a null struct row (its id child still carries the group id).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from orasi_common.errors import MalformedData, PayloadTooLarge
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.payload_types import ArrowPayloadType

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

ENCODING = b"encoding"
PLAIN, DELTA, QUASIDELTA = "plain", "delta", "quasidelta"

U16_MAX = 0xFFFF
TIMESTAMP = pa.timestamp("ns")
DURATION = pa.duration("ns")
TRACE_ID = pa.binary(16)
SPAN_ID = pa.binary(8)


@functools.lru_cache(maxsize=1024)
def fld(name: str, typ: pa.DataType, nullable: bool = True, encoding: str | None = None) -> pa.Field:
    """A schema field, with the ``encoding`` metadata when given."""
    metadata = {ENCODING: encoding.encode()} if encoding else None
    return pa.field(name, typ, nullable=nullable, metadata=metadata)


def id_field(typ: pa.DataType) -> pa.Field:
    """The optional, delta-encoded ``id`` column of a parent table."""
    return fld("id", typ, nullable=True, encoding=DELTA)


class Columns:
    """An ordered list of (field, array) that omits optional columns with nothing in them."""

    def __init__(self) -> None:
        self.fields: list[pa.Field] = []
        self.arrays: list[pa.Array] = []

    def add(self, field: pa.Field, array: pa.Array) -> None:
        if field.nullable is False and array.null_count:
            field = field.with_nullable(True)
        self.fields.append(field)
        self.arrays.append(array)

    def required(self, name: str, array: pa.Array, encoding: str | None = None) -> None:
        self.add(fld(name, array.type, nullable=False, encoding=encoding), array)

    def optional(self, name: str, array: pa.Array | None, encoding: str | None = None) -> None:
        """Add the column unless it is None or all null."""
        if array is None or (array.null_count == len(array) and len(array) > 0):
            return
        self.add(fld(name, array.type, encoding=encoding), array)

    def struct(self, name: str, mask: Bools | None = None) -> pa.Array | None:
        """The columns as a struct array (None if there are none); ``mask`` marks null rows."""
        if not self.arrays:
            return None
        arrow_mask = pa.array(mask, pa.bool_()) if mask is not None and mask.any() else None
        return pa.StructArray.from_arrays(self.arrays, fields=self.fields, mask=arrow_mask)

    def batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(self.arrays, schema=pa.schema(self.fields))


# ---------------------------------------------------------------------------------------------
# Encoding helpers: from Python/numpy values to the arrays the spec wants, None when empty.


def nonzero_u32(values: Sequence[int]) -> pa.Array | None:
    """A u32 column, or None when every value is zero."""
    if not any(values):
        return None
    return pa.array(values, pa.uint32())


def nonzero_int32(values: Sequence[int]) -> pa.Array | None:
    """An i32 column, or None when every value is zero."""
    if not any(values):
        return None
    return pa.array(values, pa.int32())


def nonempty_str(values: Sequence[str]) -> pa.Array | None:
    """A utf8 column with empty strings as nulls, or None when every string is empty."""
    if not any(values):
        return None
    return pa.array([v or None for v in values], pa.string())


def timestamps(values: Sequence[int] | npt.NDArray[Any], typ: pa.DataType = TIMESTAMP) -> pa.Array:
    """fixed64 nanoseconds as timestamp[ns] (values ≥ 2**63 wrap to negative, losslessly)."""
    arr = np.asarray(values, dtype=np.uint64).view(np.int64)
    return pa.array(arr, typ)


def nonzero_timestamps(values: Sequence[int]) -> pa.Array | None:
    """A timestamp[ns] column of fixed64 nanoseconds, or None when every value is zero."""
    if not any(values):
        return None
    return pa.array(np.asarray(values, dtype=np.uint64).view(np.int64), TIMESTAMP)


def ids_binary(values: Sequence[bytes], width: int, what: str) -> pa.Array | None:
    """A fixed_size_binary column for trace/span ids: empty ids are null; None when all empty.

    Raises MalformedData for an id of another length (OTLP requires exactly ``width`` bytes).
    """
    if not any(values):
        return None
    try:
        return pa.array(values, pa.binary(width))
    except (pa.ArrowInvalid, ValueError):
        pass
    for value in values:
        if value and len(value) != width:
            raise MalformedData(f"{what} must be {width} bytes or empty, got {len(value)} bytes") from None
    return pa.array([v or None for v in values], pa.binary(width))


def required_ids_binary(values: Sequence[bytes], width: int, what: str) -> pa.Array:
    arr = ids_binary(values, width, what)
    if arr is None:
        return pa.nulls(len(values), pa.binary(width))
    return arr


def uints(values: npt.NDArray[Any], typ: pa.DataType) -> pa.Array:
    """An unsigned integer column from a numpy array (casting in numpy is much faster)."""
    return pa.array(values.astype(typ.to_pandas_dtype(), copy=False), typ)


def delta_ids(n: int, typ: pa.DataType) -> pa.Array:
    """Delta encoding of the ids 0..n-1: [0, 1, 1, ...]."""
    arr = np.ones(n, dtype=typ.to_pandas_dtype())
    if n:
        arr[0] = 0
    return pa.array(arr, typ)


def delta_encode(values: I64, typ: pa.DataType) -> pa.Array:
    """Delta encoding of non-decreasing ids."""
    out = np.empty(len(values), dtype=np.int64)
    if len(values):
        out[0] = values[0]
        np.subtract(values[1:], values[:-1], out=out[1:])
    return uints(out, typ)


def lexsort(keys: Sequence[I64]) -> I64:
    """``np.lexsort(keys)`` (the last key primary, stable), as one stable sort of the keys packed
    into int64 when their ranges fit in 63 bits: several times faster than lexsort's pass per key."""
    n = len(keys[0])
    packed = np.zeros(n, dtype=np.int64)
    bits = 0
    if n:
        for key in reversed(keys):
            low = int(key.min())
            width = (int(key.max()) - low).bit_length()
            bits += width
            if bits > 63:
                return np.lexsort(keys)
            packed <<= width
            packed |= key - low
    out: I64 = np.argsort(packed, kind="stable")
    return out


def check_count(n: int, limit: int, what: str) -> None:
    if n > limit + 1:
        raise PayloadTooLarge(
            f"an OTAP batch holds at most {limit + 1} {what} (their ids are {limit.bit_length()}-bit); "
            f"got {n}: split the request first (orasi_common.pdata.otlp.split_request)"
        )


def quasi_delta_encode(parents: I64, equal_to_previous: Bools) -> I64:
    """Quasi-delta: a row equal to the previous one (per the table's rule) stores the delta."""
    out = parents.copy()
    if len(parents) > 1:
        rows = np.flatnonzero(equal_to_previous[1:]) + 1
        out[rows] = parents[rows] - parents[rows - 1]
    return out


# ---------------------------------------------------------------------------------------------
# Decoding helpers


def undict(arr: pa.Array) -> pa.Array:
    """The array with any dictionary encoding removed (recursively inside structs and lists)."""
    typ = arr.type
    if pa.types.is_dictionary(typ):
        return undict(arr.dictionary_decode())
    if pa.types.is_struct(typ) and any(_has_dict(typ.field(i).type) for i in range(typ.num_fields)):
        children = [undict(arr.field(i)) for i in range(typ.num_fields)]
        fields = [typ.field(i).with_type(c.type) for i, c in enumerate(children)]
        return pa.StructArray.from_arrays(
            children, fields=fields, mask=arr.is_null() if arr.null_count else None
        )
    if (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and _has_dict(typ.value_type):
        return arr.cast(_plain_type(typ))
    return arr


def _has_dict(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        return True
    if pa.types.is_struct(typ):
        return any(_has_dict(typ.field(i).type) for i in range(typ.num_fields))
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _has_dict(typ.value_type)
    return False


def _plain_type(typ: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(typ):
        return _plain_type(typ.value_type)
    if pa.types.is_struct(typ):
        return pa.struct(
            [pa.field(typ.field(i).name, _plain_type(typ.field(i).type)) for i in range(typ.num_fields)]
        )
    if pa.types.is_list(typ):
        return pa.list_(_plain_type(typ.value_type))
    if pa.types.is_large_list(typ):
        return pa.large_list(_plain_type(typ.value_type))
    return typ


_KINDS: dict[str, Callable[[pa.DataType], bool]] = {
    "utf8": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
    "binary": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t),
    "u8": pa.types.is_uint8,
    "u16": pa.types.is_uint16,
    "u32": pa.types.is_uint32,
    "u64": pa.types.is_uint64,
    "i32": pa.types.is_int32,
    "i64": pa.types.is_int64,
    "f64": pa.types.is_float64,
    "bool": pa.types.is_boolean,
    "timestamp": lambda t: pa.types.is_timestamp(t) and t.unit == "ns",
    "duration": lambda t: pa.types.is_duration(t) and t.unit == "ns",
    "id16": lambda t: pa.types.is_fixed_size_binary(t) and t.byte_width == 16,
    "id8": lambda t: pa.types.is_fixed_size_binary(t) and t.byte_width == 8,
    "struct": pa.types.is_struct,
    "list": lambda t: pa.types.is_list(t) or pa.types.is_large_list(t),
}
_NORMAL: dict[str, pa.DataType] = {"utf8": pa.string(), "binary": pa.binary()}


class Table:
    """Typed, validated access to the columns of one decoded OTAP record batch (or struct)."""

    def __init__(self, payload: ArrowPayloadType | str, columns: Mapping[str, pa.Array], n: int) -> None:
        self.name = payload.name if isinstance(payload, ArrowPayloadType) else payload
        self.columns = columns
        self.n = n
        self.fields: dict[str, pa.Field] = {}
        self.validity: Bools | None = None  # for a struct column: which rows are non-null

    @classmethod
    def of(cls, payload: ArrowPayloadType, batch: pa.RecordBatch) -> Table:
        if not isinstance(batch, pa.RecordBatch):
            raise MalformedData(f"the {payload.name} payload is not an Arrow record batch")
        table = cls(payload, dict(zip(batch.schema.names, batch.columns, strict=True)), batch.num_rows)
        table.fields = {f.name: f for f in batch.schema}
        return table

    def fail(self, why: str) -> MalformedData:
        return MalformedData(f"invalid {self.name} table: {why}")

    def get(self, name: str, kind: str) -> pa.Array | None:
        """The column (dictionary-decoded, type-checked), or None if it is absent."""
        arr = self.columns.get(name)
        if arr is None:
            return None
        arr = undict(arr)
        if not _KINDS[kind](arr.type):
            raise self.fail(f"column {name!r} has type {arr.type}, expected {kind}")
        normal = _NORMAL.get(kind)
        if normal is not None and arr.type != normal:
            arr = arr.cast(normal)
        return arr

    def need(self, name: str, kind: str) -> pa.Array:
        arr = self.get(name, kind)
        if arr is None:
            raise self.fail(f"required column {name!r} is missing")
        return arr

    def full(self, name: str, kind: str) -> pa.Array:
        """A required column that may hold no null."""
        arr = self.need(name, kind)
        if arr.null_count:
            raise self.fail(f"{name} has nulls")
        return arr

    def struct(self, name: str) -> Table | None:
        arr = self.get(name, "struct")
        if arr is None:
            return None
        typ = arr.type
        children = {typ.field(i).name: arr.field(i) for i in range(typ.num_fields)}
        sub = Table(f"{self.name}.{name}", children, self.n)
        sub.fields = {typ.field(i).name: typ.field(i) for i in range(typ.num_fields)}
        sub.validity = wire.is_valid(arr)
        return sub

    def encoding(self, name: str, default: str) -> str:
        field = self.fields.get(name)
        if field is None or not field.metadata or ENCODING not in field.metadata:
            return default
        value: str = field.metadata[ENCODING].decode(errors="replace")
        if value not in (PLAIN, DELTA, QUASIDELTA):
            raise self.fail(f"column {name!r} declares unknown encoding {value!r}")
        return value

    # typed numpy views ---------------------------------------------------------------------

    def np(self, name: str, kind: str, dtype: Any, default: int | float = 0) -> npt.NDArray[Any]:
        """The column as a numpy array of ``dtype`` with nulls (or a missing column) as default."""
        arr = self.get(name, kind)
        if arr is None:
            return np.full(self.n, default, dtype=dtype)
        return to_numpy(arr, dtype, default)

    def valid(self, name: str, kind: str) -> Bools:
        arr = self.get(name, kind)
        if arr is None:
            return np.zeros(self.n, dtype=np.bool_)
        return wire.is_valid(arr)


def to_numpy(arr: pa.Array, dtype: Any, default: int | float = 0) -> npt.NDArray[Any]:
    if pa.types.is_timestamp(arr.type) or pa.types.is_duration(arr.type):
        arr = arr.cast(pa.int64())
    if pa.types.is_boolean(arr.type):
        out = arr.fill_null(bool(default)).to_numpy(zero_copy_only=False)
        return np.asarray(out, dtype=dtype)
    if arr.null_count:
        arr = arr.fill_null(pa.scalar(default, arr.type))
    return np.asarray(arr.to_numpy(zero_copy_only=False)).astype(dtype, copy=False)


def decode_ids(table: Table, name: str, kind: str, default: str) -> tuple[I64, Bools]:
    """A (possibly delta-encoded) id column: (values, valid); nulls are excluded from deltas."""
    arr = table.get(name, kind)
    if arr is None:
        return np.zeros(table.n, dtype=np.int64), np.zeros(table.n, dtype=np.bool_)
    valid = wire.is_valid(arr)
    values = to_numpy(arr, np.int64)
    if table.encoding(name, default) == DELTA:
        mask = (1 << (8 * arr.type.byte_width)) - 1
        dense = np.cumsum(values[valid]) & mask
        values = np.zeros(len(values), dtype=np.int64)
        values[valid] = dense
    return values, valid


class Keys:
    """The rows of a parent table by id: children (attributes, events, links, data points) attach
    to every row whose id their ``parent_id`` names; a parent id naming no row is MalformedData."""

    def __init__(self, ids: I64, valid: Bools) -> None:
        self.n = n = len(ids)
        # the ids 0..n-1 in row order (what encoders write): a parent id is its row
        self.identity = bool(valid.all()) and bool(np.array_equal(ids, np.arange(n)))
        if self.identity:
            self.unique = self.index = np.arange(n, dtype=np.int64)
            self.one_each = True
            return
        self.unique, inverse = np.unique(ids[valid], return_inverse=True)
        self.index = np.full(n, len(self.unique), dtype=np.int64)  # the extra slot: nothing
        self.index[valid] = inverse.reshape(-1)
        self.one_each = (
            bool(valid.all()) and len(self.unique) == n and bool(np.all(self.index == np.arange(n)))
        )  # every row its own id, in id order: per-key values are already per-row

    def of(self, parents: I64, what: str) -> I64:
        """The position in ``unique`` of each parent id."""
        if self.identity:
            outside = (parents < 0) | (parents >= self.n)
            if bool(outside.any()):
                first = int(parents[outside][0])
                raise MalformedData(f"{what}: parent_id {first} points to no row of the parent table")
            return parents
        pos = np.searchsorted(self.unique, parents)
        clipped = np.minimum(pos, max(len(self.unique) - 1, 0))
        if len(parents) and (len(self.unique) == 0 or not bool(np.all(self.unique[clipped] == parents))):
            bad = parents if len(self.unique) == 0 else parents[self.unique[clipped] != parents]
            raise MalformedData(f"{what}: parent_id {int(bad[0])} points to no row of the parent table")
        out: I64 = clipped.astype(np.int64, copy=False)
        return out

    def spread(self, per_key: pa.Array, empty: pa.Array) -> pa.Array:
        """Per-row values from one value per unique id (``empty``, one value, for rows without)."""
        if self.one_each:
            return per_key
        return pa.concat_arrays([per_key, empty]).take(pa.array(self.index))


def child_table(
    tables: Mapping[Any, pa.RecordBatch], payload: ArrowPayloadType, *dependents: Any
) -> Table | None:
    """A child table (events, links, data points, exemplars), None when it has no rows, in which
    case the tables that point into it (``dependents``) must have none either (MalformedData)."""
    batch = tables.get(payload)
    if batch is not None and batch.num_rows:
        return Table.of(payload, batch)
    for dependent in dependents:
        if dependent is not None and dependent in tables and tables[dependent].num_rows:
            raise MalformedData(f"{dependent.name}: there is no {payload.name} table for its parent ids")
    return None


def quasi_delta_decode(encoded: I64, equal_to_previous: Bools, width_bits: int) -> I64:
    """Undo quasi-delta: runs of rows equal to their predecessor accumulate deltas."""
    n = len(encoded)
    if n == 0:
        return encoded
    starts = ~equal_to_previous
    starts[0] = True
    csum = np.cumsum(encoded)
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    out: I64 = (encoded[start_idx] + csum - csum[start_idx]) & ((1 << width_bits) - 1)
    return out


def row_index(parent_ids: I64, ids: I64, valid: Bools, what: str) -> I64:
    """For each parent id, the row whose id it is; MalformedData if some point nowhere."""
    rows = np.flatnonzero(valid)
    keys = ids[rows]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if len(sorted_keys) > 1 and bool(np.any(sorted_keys[1:] == sorted_keys[:-1])):
        raise MalformedData(f"{what}: the parent table has duplicate ids")
    pos = np.searchsorted(sorted_keys, parent_ids)
    pos_clipped = np.minimum(pos, max(len(sorted_keys) - 1, 0))
    if len(sorted_keys) == 0 or not bool(np.all(sorted_keys[pos_clipped] == parent_ids)):
        missing = parent_ids if len(sorted_keys) == 0 else parent_ids[sorted_keys[pos_clipped] != parent_ids]
        raise MalformedData(f"{what}: parent_id {int(missing[0])} points to no row of the parent table")
    out: I64 = rows[order[pos_clipped]]
    return out


def runs(*keys: npt.NDArray[Any]) -> I64:
    """Group number of each row: a new group starts wherever any key differs from the row before."""
    n = len(keys[0])
    change = np.zeros(n, dtype=np.bool_)
    if n:
        change[0] = True
    for key in keys:
        if n > 1:
            change[1:] |= key[1:] != key[:-1]
    return np.cumsum(change) - 1


def first_rows(groups: I64) -> I64:
    """Index of the first row of each group (groups numbered 0.. in row order)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.ones(len(groups), dtype=np.bool_)
    change[1:] = groups[1:] != groups[:-1]
    return np.flatnonzero(change)


def string_codes(arr: pa.Array | None, n: int) -> I64:
    """Integer codes, equal for equal values (null its own code), for run detection."""
    if arr is None:
        return np.zeros(n, dtype=np.int64)
    if pa.types.is_binary(arr.type) or pa.types.is_string(arr.type):
        return wire.first_codes(arr)[0]  # nulls -1
    encoded = pc.dictionary_encode(arr, null_encoding="encode")
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
