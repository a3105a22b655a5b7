"""Attribute tables and AnyValue columns, both ways, without a Python step per attribute.

Encoding starts from the raw bytes of each ``KeyValue`` (see :mod:`.lazy`). Rows in the
canonical shape protobuf serializers write (a key shorter than 128 bytes, then a value holding
one string, int, double, bool or bytes) are cut apart with numpy; the rest (maps, arrays,
odd encodings) go through upb and the CBOR encoder one by one.

Table layout (``parent_id`` u16 or u32, ``encoding`` = ``quasidelta``)::

    parent_id  key (utf8)  type (u8)  str  int  double  bool  bytes  ser

Rows are ordered by their position in their parent's list, then grouped by key and by value
(type included, in order of first appearance), parents ascending within a group (see
``_sorted``): rows sharing key and value come together with their parents ascending,
while each parent's rows stay in their OTLP order, which is what lets the decoder (grouping
rows by parent, stably) give back every attribute list exactly. Tables dominated by
high-cardinality keys keep the OTLP order instead. ``parent_id`` holds the delta from the
previous row whenever type, key and value equal the previous row's (types str, int, double,
bool and bytes; doubles compared bit for bit), else the id itself. Value columns hold only the
active value of each row; a column with no value in it is omitted.

A ``KeyValue`` whose ``value`` field is unset (rather than set to an empty AnyValue) is a
type-0 row whose ``ser`` holds the single CBOR byte ``undefined`` (0xf7): readers that follow
the spec ignore ``ser`` on type-0 rows, and this decoder gives the unset field back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orasi_common.errors import MalformedData
from orasi_common.pdata.canonical import ATTRIBUTES, Values, key_value_maps
from orasi_common.pdata.otap import cbor, wire
from orasi_common.pdata.otap.common import (
    QUASIDELTA,
    Columns,
    Keys,
    Table,
    quasi_delta_decode,
    quasi_delta_encode,
    to_numpy,
    uints,
)
from orasi_common.pdata.otap.payload_types import ArrowPayloadType

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

UNSET_MARKER = b"\xf7"
_NO_ROWS = np.zeros(0, dtype=np.int64)
_DELTA_TYPES = np.array([1, 2, 3, 4, 7], dtype=np.uint8)
_DELTA_TYPE = np.zeros(256, dtype=np.bool_)
_DELTA_TYPE[_DELTA_TYPES] = True
# AnyValue field tags: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7
_T_STR, _T_BOOL, _T_INT, _T_DOUBLE, _T_ARRAY, _T_KVLIST, _T_BYTES = 0x0A, 0x10, 0x18, 0x21, 0x2A, 0x32, 0x3A


@dataclass(slots=True)
class AnyColumns:
    """AnyValues as OTAP columns: the type code and one column per active field."""

    type: U8
    str: pa.Array | None
    int: pa.Array | None
    double: pa.Array | None
    bool: pa.Array | None
    bytes: pa.Array | None
    ser: pa.Array | None


def _python_any(value: AnyValue) -> tuple[int, object]:
    """(type code, column value) of one AnyValue."""
    kind = value.WhichOneof("value")
    if kind is None:
        return 0, None
    if kind == "string_value":
        return 1, value.string_value
    if kind == "int_value":
        return 2, value.int_value
    if kind == "double_value":
        return 3, value.double_value
    if kind == "bool_value":
        return 4, value.bool_value
    if kind == "kvlist_value":
        return 5, cbor.encode_any_value(value)
    if kind == "array_value":
        return 6, cbor.encode_any_value(value)
    if kind == "bytes_value":
        return 7, value.bytes_value
    cbor.encode_any_value(value)  # raises the explanatory MalformedData
    raise AssertionError(kind)


_COLUMN_OF_TYPE = {1: "str", 2: "int", 3: "double", 4: "bool", 5: "ser", 6: "ser", 7: "bytes"}
_ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "bytes": pa.binary(),
    "ser": pa.binary(),
}


# by AnyValue tag: the type code, whether the payload is length-delimited, sizes before the payload
_CODE_OF_TAG = np.zeros(256, dtype=np.uint8)
_CODE_OF_TAG[[_T_STR, _T_INT, _T_DOUBLE, _T_BOOL, _T_BYTES]] = [1, 2, 3, 4, 7]
_DELIMITED = np.zeros(256, dtype=np.int64)
_DELIMITED[[_T_STR, _T_BYTES]] = 1
_SIZE = np.zeros(256, dtype=np.int64)  # bytes of the value when the payload length is not counted
_SIZE[[_T_STR, _T_BYTES, _T_BOOL]] = 2
_SIZE[_T_DOUBLE] = 9
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_VARIED = 2
_VARIED_SHARE = 10
_SAMPLE = 2048  # rows on which a large table's sorting is decided first
_SMALL = 48  # below this many rows, Python beats numpy's per-call overhead


@dataclass(slots=True)
class _Scan:
    """Where the values of canonical AnyValues are, row by row."""

    types: U8
    slow: Bools
    payload: I64  # where a string/bytes payload starts (it ends where the value ends)
    int_col: pa.Array | None
    double_col: pa.Array | None
    bool_col: pa.Array | None


def _scan_any(data: U8, start: I64, end: I64, fast: Bools) -> _Scan:
    """Scan the AnyValues in [start, end) of the ``fast`` rows; the others are type 0.

    Canonical (scanned) AnyValues: empty, or one string, int, double, bool (0/1) or bytes field
    with minimal varints and a length under 16384 bytes. Other rows are flagged ``slow``.
    Equal canonical values have equal bytes, which the quasi-delta encoder relies on.
    """
    n = len(start)
    tag = data[start]
    types = _CODE_OF_TAG[tag]
    b1 = data[start + 1]
    two = b1 >= 0x80
    length = b1.astype(np.int64)
    two_ok = None
    if two.any():
        b2 = data[start + 2].astype(np.int64)
        length = np.where(two, (length & 0x7F) | (b2 << 7), length)
        two_ok = ~two | ((b2 > 0) & (b2 < 0x80))
    delimited = _DELIMITED[tag]
    extra = delimited * (length + two)
    payload = start + 1 + delimited * (1 + two)
    expected = start + _SIZE[tag] + extra
    int_rows = np.flatnonzero(fast & (types == 2))
    if len(int_rows):
        pos = start[int_rows] + 1
        window = data[pos[:, None] + np.arange(10)]
        last = np.argmin(window >= 0x80, axis=1)
        nbytes = last + 1
        kept = np.arange(10) <= last[:, None]
        ints = (((window & 0x7F).astype(np.uint64) << _SHIFTS) * kept).sum(axis=1, dtype=np.uint64)
        ok = (window[np.arange(len(int_rows)), last] < 0x80) & (
            (nbytes == 1) | (window[np.arange(len(int_rows)), last] != 0)
        )
        expected[int_rows] = np.where(ok, pos + nbytes, -1)
    good = (expected == end) & (types != 0)
    if two_ok is not None:
        good &= two_ok | (delimited == 0)
    is_bool = fast & (types == 4)
    if is_bool.any():
        good &= ~is_bool | (b1 <= 1)
    empty = start == end
    good |= empty
    slow = fast & ~good
    types[~(fast & good) | empty] = 0
    int_col = double_col = bool_col = None
    if len(int_rows):
        full = np.zeros(n, dtype=np.uint64)
        full[int_rows] = ints
        int_col = pa.array(full.view(np.int64), pa.int64(), mask=types != 2)
    if (types == 4).any():
        bool_col = pa.array(b1 != 0, pa.bool_(), mask=types != 4)
    double_rows = np.flatnonzero(types == 3)
    if len(double_rows):
        doubles = np.zeros(n, dtype=np.float64)
        doubles[double_rows] = data[(start[double_rows] + 1)[:, None] + np.arange(8)].view("<f8").ravel()
        double_col = pa.array(doubles, pa.float64(), mask=types != 3)
    return _Scan(types, slow, payload, int_col, double_col, bool_col)


def _utf8(arr: pa.Array, what: str) -> pa.Array:
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        raise MalformedData(f"{what} is not valid UTF-8") from None


def _patch(cols: AnyColumns, rows: I64, values: list[tuple[int, object]]) -> None:
    """Overwrite rows with values computed in Python."""
    n = len(cols.type)
    mask = np.zeros(n, dtype=np.bool_)
    mask[rows] = True
    arrow_mask = pa.array(mask, pa.bool_())
    for row, (code, _) in zip(rows, values, strict=True):
        cols.type[row] = code
    for name, typ in _ARROW_TYPES.items():
        replacement = [v if _COLUMN_OF_TYPE.get(code) == name else None for code, v in values]
        if all(r is None for r in replacement):
            continue
        current = getattr(cols, name)
        if current is None:
            current = pa.nulls(n, typ)
        setattr(cols, name, pc.replace_with_mask(current, arrow_mask, pa.array(replacement, typ)))


@dataclass(slots=True)
class KeyValues:
    key: pa.Array
    values: AnyColumns
    unset: Bools
    equal_to_previous: Bools  # the attribute quasi-delta rule, row by row
    # each row as a KeyValue in canonical form: equal bytes <=> equal key, type and value (for
    # the delta types; rows of other types may be null)
    canonical: pa.Array


def _canonical(key: str, code: int, value: object) -> bytes | None:
    av = AnyValue()
    if code == 1:
        av.string_value = value  # type: ignore[assignment]
    elif code == 2:
        av.int_value = value  # type: ignore[assignment]
    elif code == 3:
        av.double_value = value  # type: ignore[assignment]
    elif code == 4:
        av.bool_value = value  # type: ignore[assignment]
    elif code == 7:
        av.bytes_value = value  # type: ignore[assignment]
    else:
        return None  # empty, map and slice rows are never delta-encoded
    return KeyValue(key=key, value=av).SerializeToString()


def _parse_one(raw: bytes) -> tuple[str, int, object, bool]:
    """(key, type code, column value, value unset) of one serialized KeyValue."""
    try:
        kv = KeyValue.FromString(raw)
    except DecodeError as exc:
        raise MalformedData(f"an attribute is not a valid KeyValue: {exc}") from None
    if not kv.HasField("value"):
        return kv.key, 0, None, True
    code, value = _python_any(kv.value)
    return kv.key, code, value, False


def _key_values_python(raws: list[bytes]) -> KeyValues:
    """The small-table path: one upb parse per row."""
    n = len(raws)
    keys: list[str] = []
    codes = np.zeros(n, dtype=np.uint8)
    unset = np.zeros(n, dtype=np.bool_)
    columns: dict[str, list[object]] = {name: [None] * n for name in _ARROW_TYPES}
    canonical: list[bytes | None] = []
    for row, raw in enumerate(raws):
        key, code, value, value_unset = _parse_one(raw)
        keys.append(key)
        codes[row] = code
        unset[row] = value_unset
        if code:
            columns[_COLUMN_OF_TYPE[code]][row] = value
        canonical.append(_canonical(key, code, value))
    eq = np.zeros(n, dtype=np.bool_)
    for row in range(1, n):
        eq[row] = canonical[row] is not None and canonical[row] == canonical[row - 1]
    arrays = {
        name: pa.array(values, _ARROW_TYPES[name]) if any(v is not None for v in values) else None
        for name, values in columns.items()
    }
    cols = AnyColumns(
        codes, arrays["str"], arrays["int"], arrays["double"], arrays["bool"], arrays["bytes"], arrays["ser"]
    )
    return KeyValues(pa.array(keys, pa.string()), cols, unset, eq, pa.array(canonical, pa.binary()))


def _cut_values(
    arr: pa.Array, key_start: I64 | None, key_end: I64 | None, scan: _Scan, value_end: I64, fast: Bools
) -> tuple[pa.Array | None, pa.Array | None, pa.Array | None]:
    """(keys, string values, bytes values) cut out of the raw bytes in one pass."""
    n = len(value_end)
    is_str, is_bytes = scan.types == 1, scan.types == 7
    payload = np.where(is_str | is_bytes, scan.payload, value_end)
    if key_start is None or key_end is None:
        bounds = np.stack([payload, value_end], axis=1)
        value_pick = 0
        picks: list[tuple[int, Bools | None]] = []
    else:
        ks = np.where(fast, key_start, value_end)
        ke = np.where(fast, key_end, value_end)
        bounds = np.stack([ks, ke, payload, value_end], axis=1)
        value_pick = 2
        picks = [(0, None)]
    has_str, has_bytes = bool(is_str.any()), bool(is_bytes.any())
    if has_str:
        picks.append((value_pick, is_str))
    if has_bytes:
        picks.append((value_pick, is_bytes))
    if not picks or arr.buffers()[2] is None:
        empty = wire.empties(n)
        return (empty if key_start is not None else None), None, None
    cut = wire.cut(arr, bounds, picks)
    keys = cut.pop(0) if key_start is not None else None
    strs = cut.pop(0) if has_str else None
    byts = cut.pop(0) if has_bytes else None
    return keys, strs, byts


def parse_key_values(raws: pa.Array | list[bytes]) -> KeyValues:
    """Columns of serialized KeyValue messages, one per row."""
    n = len(raws)
    if n < _SMALL:
        return _key_values_python(raws if isinstance(raws, list) else raws.to_pylist())
    arr = raws if isinstance(raws, pa.Array) else pa.array(raws, pa.binary())
    offsets, data = wire.binary_buffers(arr)
    start, end = offsets[:-1], offsets[1:]
    key_len = data[start + 1].astype(np.int64)
    pos = start + 2 + key_len
    # the value tag must lie inside this row: past its end are the next row's bytes (a
    # KeyValue without a value followed by one like ``12 00`` would otherwise look canonical)
    inside = pos < end
    pos = np.where(inside, pos, end)
    value_len = data[pos + 1].astype(np.int64)
    size = 1
    fast = inside & (data[start] == 0x0A) & (key_len > 0) & (key_len < 0x80) & (data[pos] == 0x12)
    long_values = value_len >= 0x80
    if long_values.any():
        b2 = data[pos + 2].astype(np.int64)
        value_len = np.where(long_values, (value_len & 0x7F) | (b2 << 7), value_len)
        fast &= ~long_values | ((b2 > 0) & (b2 < 0x80))
        size = 1 + long_values
    value_start = pos + 1 + size
    fast &= value_start + value_len == end
    value_start = np.where(fast, value_start, end)
    scan = _scan_any(data, value_start, end, fast)
    slow = ~fast | scan.slow
    keys, strs, byts = _cut_values(arr, start + 2, pos, scan, end, ~slow)
    assert keys is not None
    cols = AnyColumns(
        scan.types,
        None if strs is None else _utf8(strs, "a string attribute value"),
        scan.int_col,
        scan.double_col,
        scan.bool_col,
        byts,
        None,
    )
    keys = _utf8(keys, "an attribute key")
    unset = np.zeros(n, dtype=np.bool_)
    canonical = arr
    if slow.any():
        rows = np.flatnonzero(slow)
        parsed: list[tuple[int, object]] = []
        slow_keys: list[str] = []
        slow_canonical: list[bytes | None] = []
        for row in rows:
            key, code, value, value_unset = _parse_one(arr[int(row)].as_py())
            unset[row] = value_unset
            slow_keys.append(key)
            parsed.append((code, value))
            slow_canonical.append(_canonical(key, code, value))
        _patch(cols, rows, parsed)
        mask = pa.array(slow, pa.bool_())
        keys = pc.replace_with_mask(keys, mask, pa.array(slow_keys, pa.string()))
        canonical = pc.replace_with_mask(arr, mask, pa.array(slow_canonical, pa.binary()))
    eq = np.zeros(n, dtype=np.bool_)
    same = pc.equal(canonical.slice(1), canonical.slice(0, n - 1)).fill_null(False)
    eq[1:] = np.asarray(same.to_numpy(zero_copy_only=False), dtype=np.bool_) & _DELTA_TYPE[cols.type[1:]]
    return KeyValues(keys, cols, unset, eq, canonical)


def parse_any_values(raws: pa.Array, present: Bools) -> AnyColumns:
    """Columns of serialized AnyValue messages (log bodies); rows not ``present`` are type 0."""
    offsets, data = wire.binary_buffers(raws)
    start, end = offsets[:-1], offsets[1:]
    scan = _scan_any(data, start, end, present)
    _, strs, byts = _cut_values(raws, None, None, scan, end, present & ~scan.slow)
    cols = AnyColumns(
        scan.types,
        None if strs is None else _utf8(strs, "a string log body"),
        scan.int_col,
        scan.double_col,
        scan.bool_col,
        byts,
        None,
    )
    if scan.slow.any():
        rows = np.flatnonzero(scan.slow)
        parsed = []
        for row in rows:
            try:
                value = AnyValue.FromString(raws[int(row)].as_py())
            except DecodeError as exc:
                raise MalformedData(f"a log body is not a valid AnyValue: {exc}") from None
            parsed.append(_python_any(value))
        _patch(cols, rows, parsed)
    return cols


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
    same = (t == types[:-1]) & np.isin(t, _DELTA_TYPES)
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


def _codes(arr: pa.Array) -> I64:
    """Each row's index among the distinct values of the column, in order of first appearance
    (nulls -1)."""
    out: I64 = to_numpy(pc.dictionary_encode(arr).indices, np.int64, -1).astype(np.int64, copy=True)
    return out


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


def _varied_rows(kv: KeyValues, n: int) -> tuple[I64, I64, Bools | None]:
    """For the first ``n`` rows: (value code, key code, the rows of keys with varied values),
    the last None when those rows are too many to sort the table (see ``_sorted``).

    Value codes are equal exactly when key, type and value are (-1 for types never
    delta-encoded); codes count in order of first appearance.
    """
    types = kv.values.type[:n]
    delta = _DELTA_TYPE[types]
    pair = _codes(kv.canonical.slice(0, n))
    pair[~delta] = -1
    key = _codes(kv.key.slice(0, n))
    # a row brings a new value when its code exceeds every code before it
    seen = np.maximum.accumulate(pair)
    first = np.empty(n, dtype=np.bool_)
    first[0] = pair[0] >= 0
    first[1:] = pair[1:] > seen[:-1]
    keys = int(key.max()) + 1
    distinct = np.bincount(key[first], minlength=keys)
    varied = distinct * _VARIED > np.bincount(key[delta], minlength=keys)
    varied_rows = varied[key]
    if int(varied_rows.sum()) * _VARIED_SHARE > n:
        return pair, key, None
    return pair, key, varied_rows


def _sorted(kv: KeyValues, parents: I64) -> tuple[I64, Bools] | None:
    """The row order of the table and its quasi-delta rule, or None to keep the OTLP order.

    Rows are ordered by their position among their parent's attributes, then grouped by key and
    by value (type included; groups in order of first appearance), then by parent. Each
    parent's rows keep their OTLP order (their positions differ), so the
    decoder's stable grouping by parent gives back every attribute list exactly; meanwhile rows
    sharing key and value come together with their parents ascending, so parent ids become
    small deltas and the value columns runs. A key with more distinct values than half its
    rows (request ids, ports) is not sorted by value, since its parent ids could not be
    deltas; when such keys hold more than a tenth of the rows, the OTLP order (each parent's
    ids together) compresses better and is kept.
    """
    n = len(parents)
    if n < 2:
        return None
    if n > _SAMPLE and _varied_rows(kv, _SAMPLE)[2] is None:
        return None  # judged on the first rows, which costs a fraction of the whole
    pair, key, varied_rows = _varied_rows(kv, n)
    if varied_rows is None:
        return None
    order: I64 = np.lexsort((parents, np.where(varied_rows, -1, pair), key, _positions(parents)))
    pair = pair[order]
    eq = np.zeros(n, dtype=np.bool_)
    eq[1:] = (pair[1:] == pair[:-1]) & (pair[1:] >= 0)
    return order, eq


def _take(arr: pa.Array | None, order: pa.Array) -> pa.Array | None:
    return None if arr is None else arr.take(order)


def encode_attributes(
    raws: pa.Array | list[bytes], parents: I64, parent_type: pa.DataType
) -> pa.RecordBatch | None:
    """The attribute table of serialized KeyValues (``parents``: each one's parent id)."""
    if len(raws) == 0:
        return None
    kv = parse_key_values(raws)
    cols, keys, unset, eq = kv.values, kv.key, kv.unset, kv.equal_to_previous
    sort = _sorted(kv, parents)
    if sort is not None:
        order, eq = sort
        take = pa.array(order, pa.int64())
        cols = AnyColumns(
            cols.type[order],
            _take(cols.str, take),
            _take(cols.int, take),
            _take(cols.double, take),
            _take(cols.bool, take),
            _take(cols.bytes, take),
            _take(cols.ser, take),
        )
        keys, unset, parents = keys.take(take), unset[order], parents[order]
    columns = Columns()
    columns.required("parent_id", uints(quasi_delta_encode(parents, eq), parent_type), encoding=QUASIDELTA)
    columns.required("key", keys)
    columns.required("type", pa.array(cols.type, pa.uint8()))
    any_columns_to(columns, cols, unset)
    return columns.batch()


# ---------------------------------------------------------------------------------------------
# Decoding


def any_value_bytes(table: Table, types: U8) -> tuple[pa.Array, Bools]:
    """Serialized AnyValue of each row of a table/struct with the attribute value columns.

    Also returns the rows marked "value unset" (type 0 with ``ser`` = undefined).
    """
    n = len(types)
    if bool(np.any(types > 7)):
        raise table.fail(f"attribute type {int(types.max())} is not a value type (0-7)")
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
            for row in complex_rows:
                decoded = cbor.decode_any_value(ser[int(row)].as_py())
                kind = decoded.WhichOneof("value")
                expected = "kvlist_value" if types[row] == 5 else "array_value"
                if kind != expected:
                    raise table.fail(f"row {int(row)}: type {int(types[row])} needs a CBOR {expected[:-6]}")
                values[int(row)] = decoded.SerializeToString()
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


# ---------------------------------------------------------------------------------------------
# Canonical strings (the lake), straight from the typed columns


def table_values(table: Table, types: U8) -> Values:
    """The values of a table or struct with the attribute value columns, for rendering as
    canonical strings; a row whose type's column is null (or absent) is an empty value."""
    if bool(np.any(types > 7)):
        raise table.fail(f"attribute type {int(types.max())} is not a value type (0-7)")
    found: dict[int, tuple[I64, pa.Array]] = {}
    for code, (name, kind) in _TYPED_COLUMNS.items():
        column = table.get(name, kind)
        if column is None:
            found[code] = _NO_ROWS, pa.array([], _ARROW_TYPES[name])
        else:
            rows = np.flatnonzero((types == code) & wire.is_valid(column))
            found[code] = rows, column.take(pa.array(rows))
    values = Values(np.zeros(len(types), dtype=np.uint8))
    for code, (rows, _) in found.items():
        values.types[rows] = code
    values.string_rows, values.string = found[1]
    values.integer_rows, values.integer = found[2][0], to_numpy(found[2][1], np.int64)
    values.double_rows, values.double = found[3][0], to_numpy(found[3][1], np.float64)
    values.boolean_rows, values.boolean = found[4][0], to_numpy(found[4][1], np.bool_)
    values.binary_rows, values.binary = found[7][0], found[7][1].to_pylist()
    values.nested_rows = np.sort(np.concatenate((found[5][0], found[6][0])))
    for row, raw in zip(values.nested_rows.tolist(), _ser(found), strict=True):
        decoded = cbor.decode_any_value(raw)
        expected = "kvlist_value" if types[row] == 5 else "array_value"
        if decoded.WhichOneof("value") != expected:
            raise table.fail(f"row {row}: type {int(types[row])} needs a CBOR {expected[:-6]}")
        values.nested.append(decoded)
    return values


# the column holding each type's values (maps and arrays: their CBOR in ``ser``)
_TYPED_COLUMNS = {
    1: ("str", "utf8"),
    2: ("int", "i64"),
    3: ("double", "f64"),
    4: ("bool", "bool"),
    5: ("ser", "binary"),
    6: ("ser", "binary"),
    7: ("bytes", "binary"),
}


def _ser(found: dict[int, tuple[I64, pa.Array]]) -> list[bytes]:
    """The CBOR of the map and array rows, in row order."""
    both = found[5][1].to_pylist() + found[6][1].to_pylist()
    order = np.argsort(np.concatenate((found[5][0], found[6][0])), kind="stable")
    return [both[i] for i in order.tolist()]


def table_attribute_maps(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch], payload: ArrowPayloadType, width_bits: int, keys: Keys
) -> pa.Array:
    """The canonical attribute map of each row of a parent table (``keys``) from its attribute table."""
    empty = pa.array([[]], ATTRIBUTES)
    batch = tables.get(payload)
    if batch is None or batch.num_rows == 0:
        return pa.repeat(empty[0], keys.n) if keys.n else empty.slice(0, 0)
    table, parents, names, types = attribute_table(batch, payload, width_bits)
    owner = keys.of(parents, payload.name)
    order = pa.array(np.argsort(owner, kind="stable"))
    values = table_values(table, types).render()
    per_key = key_value_maps(names.take(order), values.take(order), np.sort(owner), len(keys.unique))
    return keys.spread(per_key, empty)
