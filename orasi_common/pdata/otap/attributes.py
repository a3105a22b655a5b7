"""Attribute tables, both ways: serialized ``KeyValue``\\ s → an OTAP attribute table (RESOURCE_ATTRS,
SPAN_ATTRS, ...) → each row as a serialized ``KeyValue`` framed for its parent message.

Encoding parses the ``KeyValue`` bytes into value columns (:mod:`.value_scan`), once per distinct
``KeyValue`` where they repeat, and orders and delta-encodes the rows; decoding checks a table,
undoes the parent id encoding and serializes each row again, with numpy and Arrow rather than a
Python step per attribute.

Table layout (``parent_id`` u16 or u32, ``encoding`` = ``quasidelta``)::

    parent_id  key (utf8)  type (u8)  str  int  double  bool  bytes  ser

Rows are ordered by their position in their parent's list, then grouped by key and by value
(type included, in order of first appearance), parents ascending within a group: rows sharing
key and value come together with their parents ascending, while each parent's rows stay in
their OTLP order, which is what lets the decoder (grouping rows by parent, stably) give back
every attribute list exactly. Where grouping by key alone, or the OTLP order, compresses better
(by an estimate, see ``_ordered``) that order is used instead. ``parent_id`` holds the delta from the
previous row whenever type, key and value equal the previous row's (types str, int, double,
bool and bytes; doubles compared bit for bit), else the id itself. Value columns hold only the
active value of each row; a column with no value in it is omitted.

A ``KeyValue`` whose ``value`` field is unset (rather than set to an empty AnyValue) is a
type-0 row whose ``ser`` holds the single CBOR byte ``undefined`` (0xf7): readers that follow
the spec ignore ``ser`` on type-0 rows, and this decoder gives the unset field back.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import zstandard
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from orasi_common.pdata.otap import cbor, wire
from orasi_common.pdata.otap.common import (
    QUASIDELTA,
    Columns,
    Table,
    lexsort,
    quasi_delta_decode,
    quasi_delta_encode,
    to_numpy,
    uints,
)
from orasi_common.pdata.otap.payload_types import ArrowPayloadType
from orasi_common.pdata.otap.value_scan import (
    IS_DELTA_TYPE,
    AnyColumns,
    KeyValues,
    key_values_native,
    parse_key_values,
)

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]
KeySet = tuple[tuple[str, bool], ...]

UNSET_MARKER = b"\xf7"
_VARIED = 2
_VARIED_SHARE = 10


def _adjacent_equal(arr: pa.Array | None, n: int) -> Bools:
    """eq[i] = arr[i + 1] == arr[i], nulls never equal (length n - 1)."""
    if arr is None or arr.null_count == n:
        return np.zeros(max(n - 1, 0), dtype=np.bool_)
    if pa.types.is_floating(arr.type):
        bits = to_numpy(arr, np.float64).view(np.int64)
        valid = wire.is_valid(arr)
        out: Bools = (bits[1:] == bits[:-1]) & valid[1:] & valid[:-1]
        return out
    result = pc.equal(arr.slice(1), arr.slice(0, n - 1)).fill_null(False)
    return np.asarray(result.to_numpy(zero_copy_only=False), dtype=np.bool_)


def equal_to_previous(
    types: U8,
    key: pa.Array,
    str_: pa.Array | None,
    int_: pa.Array | None,
    double: pa.Array | None,
    bool_: pa.Array | None,
    bytes_: pa.Array | None,
) -> Bools:
    """The attribute quasi-delta rule: same type (str, int, double, bool or bytes), key and value."""
    n = len(types)
    eq = np.zeros(n, dtype=np.bool_)
    if n < 2:
        return eq
    t = types[1:]
    same = (t == types[:-1]) & IS_DELTA_TYPE[t]
    if not same.any():
        return eq
    same &= _adjacent_equal(key, n)
    value = (
        ((t == 1) & _adjacent_equal(str_, n))
        | ((t == 2) & _adjacent_equal(int_, n))
        | ((t == 3) & _adjacent_equal(double, n))
        | ((t == 4) & _adjacent_equal(bool_, n))
        | ((t == 7) & _adjacent_equal(bytes_, n))
    )
    eq[1:] = same & value
    return eq


def any_columns_to(columns: Columns, cols: AnyColumns, unset: Bools | None = None) -> None:
    """Append the value columns (omitting empty ones) to a table or struct under construction."""
    columns.optional("str", cols.str)
    columns.optional("int", cols.int)
    columns.optional("double", cols.double)
    columns.optional("bool", cols.bool)
    columns.optional("bytes", cols.bytes)
    ser = cols.ser
    if unset is not None and unset.any():
        marker = pa.array([UNSET_MARKER if u else None for u in unset.tolist()], pa.binary())
        ser = marker if ser is None else pc.if_else(pa.array(unset, pa.bool_()), marker, ser)
    columns.optional("ser", ser)


def _positions(parents: I64) -> I64:
    """Each row's position among its parent's rows (0 for the first), in table order."""
    n = len(parents)
    index = np.arange(n, dtype=np.int64)
    if n > 1 and bool(np.any(parents[1:] < parents[:-1])):
        by_parent = np.argsort(parents, kind="stable")
        out = np.empty(n, dtype=np.int64)
        out[by_parent] = _positions(parents[by_parent])
        return out
    first = np.ones(n, dtype=np.bool_)
    first[1:] = parents[1:] != parents[:-1]
    return index - np.maximum.accumulate(np.where(first, index, 0))


@dataclass(slots=True)
class _Rows:
    """The parsed KeyValues of a table's rows: ``kv`` holds either every row (``of_row`` None)
    or each distinct serialized KeyValue once, in order of first appearance, and ``of_row``
    each row's index into it. ``raw_codes``: with every row in ``kv``, the codes of the rows'
    bytes (:func:`wire.first_codes`) when those are the canonical ones, else None."""

    kv: KeyValues
    of_row: I64 | None
    raw_codes: I64 | None = None


_DISTINCT_SHARE = 2  # rows are parsed once per distinct KeyValue when at most 1/2 are distinct


def _parse_rows(raws: pa.Array | list[bytes]) -> _Rows:
    """The KeyValues of ``raws``, parsed once per distinct serialized KeyValue where they repeat
    (attributes mostly do: a thousand spans' rows hold a few hundred distinct ones)."""
    n = len(raws)
    if n < _TRIAL_ROWS:
        return _Rows(parse_key_values(raws), None)
    arr = raws if isinstance(raws, pa.Array) else pa.array(raws, pa.binary())
    codes, firsts = wire.first_codes(arr)
    if len(firsts) * _DISTINCT_SHARE <= n:
        return _Rows(key_values_native(arr.take(pa.array(firsts))), codes)
    kv = key_values_native(arr)
    return _Rows(kv, None, codes if kv.canonical is arr else None)  # canonical rows: codes hold


def _row_codes(rows: _Rows, n: int) -> tuple[U8, I64, I64, pa.Array]:
    """Each row's type, value code (as :func:`wire.first_codes` numbers the canonical
    KeyValues, key, type and value; -1 where canonical is null) and key code (numbered in order of
    first appearance), and the keys in code order."""
    kv, of_row = rows.kv, rows.of_row
    if of_row is None:
        types = kv.values.type[:n]
        if rows.raw_codes is not None:
            pair = rows.raw_codes[:n].copy()
        else:
            pair = wire.first_codes(kv.canonical.slice(0, n))[0].copy()
        keys_in_rows = kv.key.slice(0, n)
        key, key_firsts = wire.first_codes(keys_in_rows)
        return types, pair, key, keys_in_rows.take(pa.array(key_firsts))
    # codes of the distinct KeyValues, spread to the rows: distinct ones are in order of first
    # appearance, so first appearances among them are first appearances among the rows
    key_of, key_firsts = wire.first_codes(kv.key)
    return (
        kv.values.type[of_row],
        wire.first_codes(kv.canonical)[0][of_row],
        key_of[of_row],
        kv.key.take(pa.array(key_firsts)),
    )


def _varied_rows(rows: _Rows, n: int) -> tuple[I64, I64, Bools | None, KeySet]:
    """For the first ``n`` rows: (value code, key code, the rows of keys with varied values,
    the keys, sorted, each with whether its values vary), the third None when those rows are
    too many to group the table by value (see ``_ordered``).

    Value codes are equal exactly when key, type and value are (-1 for types never
    delta-encoded); codes count in order of first appearance.
    """
    types, pair, key, key_names_in_order = _row_codes(rows, n)
    delta = IS_DELTA_TYPE[types]
    pair[~delta] = -1
    # a row brings a new value when its code exceeds every code before it
    seen = np.maximum.accumulate(pair)
    first = np.empty(n, dtype=np.bool_)
    first[0] = pair[0] >= 0
    first[1:] = pair[1:] > seen[:-1]
    keys = int(key.max()) + 1
    distinct = np.bincount(key[first], minlength=keys)
    varied = distinct * _VARIED > np.bincount(key[delta], minlength=keys)
    varied_rows = varied[key]
    names = key_names_in_order.to_pylist()
    key_names = tuple(sorted(zip(names, varied.tolist(), strict=True)))
    if int(varied_rows.sum()) * _VARIED_SHARE > n:
        return pair, key, None, key_names
    return pair, key, varied_rows, key_names


_ZSTD = zstandard.ZstdCompressor(level=1)
_SLACK = 16
_TRIAL_ROWS = 64  # smaller tables take the first candidate: their estimates would be noise


def _same_value(pair: I64) -> Bools:
    """The quasi-delta rule from value codes: a row whose key, type and value equal the
    previous row's (a delta-encoded type) stores the delta of its parent id."""
    eq = np.zeros(len(pair), dtype=np.bool_)
    eq[1:] = (pair[1:] == pair[:-1]) & (pair[1:] >= 0)
    return eq


def _cost(order: I64 | None, parents: I64, key: I64, pair: I64, dtype: Any) -> int:
    """Compressed bytes of the quasi-delta parent ids, key codes and value codes in row order
    ``order`` (None: as they are): what the order changes in the table's size, estimated."""
    if order is not None:
        parents, key, pair = parents[order], key[order], pair[order]
    encoded = quasi_delta_encode(parents, _same_value(pair))
    columns = (encoded.astype(dtype), key.astype(np.int32), pair.astype(np.int32))
    return sum(len(_ZSTD.compress(column.tobytes())) for column in columns)


# The order chosen for a table is kept, in this process, for the next tables of the same payload
# type and keys, and candidates are estimated again only every REVIEW_EVERY-th such table: a
# stream's tables keep their keys and value mix from batch to batch, while estimating every
# candidate costs a fifth of encoding a batch. (A decoder accepts any order; the choice moves
# bytes only.) At most CHOICES_KEPT choices are kept, the oldest dropped first.
REVIEW_EVERY = 16
CHOICES_KEPT = 256
_BY_VALUE, _BY_KEY, _OTLP = "by value", "by key", "otlp"


@dataclass
class _Choice:
    kind: str
    left: int  # tables that take ``kind`` before the candidates are estimated again


_CHOICES: dict[Hashable, _Choice] = {}


def _ordered(
    rows: _Rows, parents: I64, parent_type: pa.DataType, stream: Hashable | None = None
) -> tuple[I64 | None, Bools]:
    """The row order of the table, None to keep OTLP's, and its quasi-delta rule in that order.

    Every candidate keeps each parent's rows in their OTLP order (rows are ordered by their
    position among their parent's attributes before anything but the parent), so the
    decoder's stable grouping by parent gives back every attribute list exactly. Candidates:

    - by position, key, value and parent: rows sharing key and value together, so the value
      columns make runs and the parent ids deltas (the quasi-delta rule: a delta only where
      key, type and value equal the previous row's). A key with more distinct values than half
      its rows (request ids, ports) is not grouped by value;
    - by position, key and parent: each key's rows together, parents ascending;
    - OTLP's order: each parent's rows together, parent ids ascending.

    The one whose quasi-delta parent ids, key and value codes compress smallest is chosen;
    tables of the same ``stream`` (a payload type) and keys reuse it, see ``REVIEW_EVERY``.
    """
    n = len(parents)
    if n < 2:
        return None, np.zeros(n, dtype=np.bool_)
    pair, key, varied_rows, key_names = _varied_rows(rows, n)
    positions = _positions(parents)

    def order(kind: str) -> I64 | None:
        if kind == _OTLP:
            return None
        if kind == _BY_KEY:
            return lexsort((parents, key, positions))
        assert varied_rows is not None
        return lexsort((parents, np.where(varied_rows, -1, pair), key, positions))

    kinds = [_BY_KEY, _OTLP] if varied_rows is None else [_BY_VALUE, _BY_KEY, _OTLP]
    memo = None if stream is None or n < _TRIAL_ROWS else (stream, key_names)
    choice = None if memo is None else _CHOICES.get(memo)
    if choice is not None and choice.left > 0 and choice.kind in kinds:
        choice.left -= 1
        best = order(choice.kind)
    elif n < _TRIAL_ROWS:
        best = order(kinds[0])  # nothing to compare: estimates would be noise
    else:
        candidates = [order(kind) for kind in kinds]
        dtype = parent_type.to_pandas_dtype()
        # each later candidate must win by _SLACK bytes per rank: on small tables the estimates
        # differ by noise
        costs = [
            _cost(candidate, parents, key, pair, dtype) + rank * _SLACK
            for rank, candidate in enumerate(candidates)
        ]
        rank = costs.index(min(costs))
        best = candidates[rank]
        if memo is not None:
            _CHOICES.pop(memo, None)
            while len(_CHOICES) >= CHOICES_KEPT:
                del _CHOICES[next(iter(_CHOICES))]
            _CHOICES[memo] = _Choice(kinds[rank], REVIEW_EVERY - 1)
    return best, _same_value(pair if best is None else pair[best])


def _take(arr: pa.Array | None, order: pa.Array) -> pa.Array | None:
    return None if arr is None else arr.take(order)


def encode_attributes(
    raws: pa.Array | list[bytes],
    parents: I64,
    parent_type: pa.DataType,
    payload: ArrowPayloadType | None = None,
) -> pa.RecordBatch | None:
    """The attribute table of serialized KeyValues (``parents``: each one's parent id);
    ``payload`` names the table's type, whose earlier tables' row order it may reuse."""
    if len(raws) == 0:
        return None
    rows = _parse_rows(raws)
    kv = rows.kv
    cols, keys, unset = kv.values, kv.key, kv.unset
    order, eq = _ordered(rows, parents, parent_type, payload)
    if order is not None:
        parents = parents[order]
    # the rows of kv in table order (one take from the distinct KeyValues when parsed so)
    index = order if rows.of_row is None else rows.of_row if order is None else rows.of_row[order]
    if index is not None:
        take = pa.array(index, pa.int64())
        cols = AnyColumns(
            cols.type[index],
            _take(cols.str, take),
            _take(cols.int, take),
            _take(cols.double, take),
            _take(cols.bool, take),
            _take(cols.bytes, take),
            _take(cols.ser, take),
        )
        keys, unset = keys.take(take), unset[index]
    columns = Columns()
    columns.required("parent_id", uints(quasi_delta_encode(parents, eq), parent_type), encoding=QUASIDELTA)
    columns.required("key", keys)
    columns.required("type", pa.array(cols.type, pa.uint8()))
    any_columns_to(columns, cols, unset)
    return columns.batch()


# Tables of attribute lists that repeat from batch to batch (the resources and scopes of one
# sender's requests) are kept, in this process, by their payload type, parent id type and exact
# KeyValue bytes: a batch whose lists are all equal to an earlier one's takes that table rather
# than parsing and ordering the same rows again. At most REPEATS_KEPT tables of at most
# REPEATS_MAX_ROWS rows are kept, the oldest dropped first.
REPEATS_KEPT = 64
REPEATS_MAX_ROWS = 1024
_REPEATS: dict[Hashable, pa.RecordBatch | None] = {}
_NOT_KEPT = object()


def add_attribute_table(
    tables: dict[ArrowPayloadType, pa.RecordBatch],
    payload: ArrowPayloadType,
    lists: Sequence[Any],
    parent_type: pa.DataType,
    counts: I64 | None = None,
    repeats: bool = False,
) -> bool:
    """Encode the attribute lists of consecutive entities (parent ids 0, 1, ...) as
    ``tables[payload]`` (``counts``: each list's length, when the caller has them already);
    True if there was any attribute. ``repeats``: the lists often come again in later batches
    (resources, scopes), whose table is then taken from the ones kept (see ``REPEATS_KEPT``)."""
    if counts is None:
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    if not counts.any():
        return False
    raws = list(itertools.chain.from_iterable(lists))
    key = None
    if repeats and len(raws) <= REPEATS_MAX_ROWS:
        key = (payload, str(parent_type), counts.tobytes(), tuple(raws))
        kept = _REPEATS.get(key, _NOT_KEPT)
        if kept is not _NOT_KEPT:
            if kept is not None:
                tables[payload] = kept
            return True
    batch = encode_attributes(
        raws, np.repeat(np.arange(len(lists), dtype=np.int64), counts), parent_type, payload
    )
    if key is not None:
        while len(_REPEATS) >= REPEATS_KEPT:
            _REPEATS.pop(next(iter(_REPEATS)), None)
        _REPEATS[key] = batch
    if batch is not None:
        tables[payload] = batch
    return True


# ---------------------------------------------------------------------------------------------
# Decoding


def check_value_types(table: Table, types: U8) -> None:
    """MalformedData (naming the table) when a type code is not an AnyValue type (0-7)."""
    if bool(np.any(types > 7)):
        raise table.fail(f"attribute type {int(types.max())} is not a value type (0-7)")


def nested_value(table: Table, types: U8, row: int, ser: bytes) -> AnyValue:
    """The map (type 5) or array (type 6) of a row, from the CBOR in its ``ser`` column;
    MalformedData when the CBOR holds anything else."""
    decoded = cbor.decode_any_value(ser)
    expected = "kvlist_value" if types[row] == 5 else "array_value"
    if decoded.WhichOneof("value") != expected:
        raise table.fail(f"row {row}: type {int(types[row])} needs a CBOR {expected[:-6]}")
    return decoded


def any_value_bytes(table: Table, types: U8) -> tuple[pa.Array, Bools]:
    """Serialized AnyValue of each row of a table/struct with the attribute value columns.

    Also returns the rows marked "value unset" (type 0 with ``ser`` = undefined).
    """
    n = len(types)
    check_value_types(table, types)
    parts: list[wire.Segment | pa.Array] = []
    str_ = table.get("str", "utf8")
    if str_ is not None:
        parts.append(wire.f_bytes(1, str_, (types == 1) & wire.is_valid(str_)))
    int_ = table.get("int", "i64")
    if int_ is not None:
        parts.append(wire.f_varint(3, to_numpy(int_, np.int64), (types == 2) & wire.is_valid(int_)))
    double = table.get("double", "f64")
    if double is not None:
        parts.append(wire.f_fixed64(4, to_numpy(double, np.float64), (types == 3) & wire.is_valid(double)))
    bool_ = table.get("bool", "bool")
    if bool_ is not None:
        parts.append(wire.f_varint(2, to_numpy(bool_, np.int64), (types == 4) & wire.is_valid(bool_)))
    bytes_ = table.get("bytes", "binary")
    if bytes_ is not None:
        parts.append(wire.f_bytes(7, bytes_, (types == 7) & wire.is_valid(bytes_)))
    ser = table.get("ser", "binary")
    unset = np.zeros(n, dtype=np.bool_)
    if ser is not None:
        ser_valid = wire.is_valid(ser)
        complex_rows = np.flatnonzero(((types == 5) | (types == 6)) & ser_valid)
        empty_rows = np.flatnonzero((types == 0) & ser_valid)
        if len(empty_rows):
            marked = pc.equal(ser.take(pa.array(empty_rows)), pa.scalar(UNSET_MARKER, pa.binary()))
            unset[empty_rows[np.asarray(marked.to_numpy(zero_copy_only=False), dtype=np.bool_)]] = True
        if len(complex_rows):
            values: list[bytes | None] = [None] * n
            for row in complex_rows.tolist():
                values[row] = nested_value(table, types, row, ser[row].as_py()).SerializeToString()
            parts.append(pa.array(values, pa.binary()))
    if not parts:
        return wire.empties(n), unset
    return wire.join(*parts), unset  # at most one part writes each row


def attribute_table(
    batch: pa.RecordBatch, payload: ArrowPayloadType, width_bits: int
) -> tuple[Table, I64, pa.Array, U8]:
    """An attribute table checked, with its decoded parent ids, keys and value types."""
    table = Table.of(payload, batch)
    encoded = to_numpy(table.full("parent_id", "u16" if width_bits == 16 else "u32"), np.int64)
    keys = table.full("key", "utf8")
    types = to_numpy(table.full("type", "u8"), np.uint8)
    encoding = table.encoding("parent_id", QUASIDELTA)
    if encoding == QUASIDELTA:
        eq = equal_to_previous(
            types,
            keys,
            table.get("str", "utf8"),
            table.get("int", "i64"),
            table.get("double", "f64"),
            table.get("bool", "bool"),
            table.get("bytes", "binary"),
        )
        parents = quasi_delta_decode(encoded, eq, width_bits)
    elif encoding == "delta":
        parents = np.cumsum(encoded) & ((1 << width_bits) - 1)
    else:
        parents = encoded
    return table, parents, keys, types


def decode_attributes(
    batch: pa.RecordBatch, payload: ArrowPayloadType, field_number: int, width_bits: int
) -> tuple[I64, wire.Segment]:
    """(parent id, the row as field ``field_number`` of its parent message) for each row."""
    table, parents, keys, types = attribute_table(batch, payload, width_bits)
    values, unset = any_value_bytes(table, types)
    kv = wire.join(wire.f_bytes(1, keys), wire.f_bytes(2, values, ~unset))
    return parents, wire.f_bytes(field_number, kv, np.ones(len(kv), dtype=np.bool_))
