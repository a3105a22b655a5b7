"""Serialized OTLP ``AnyValue`` and ``KeyValue`` messages as OTAP value columns, without a Python
step per value.

Input: the raw bytes of each message, one per row (see :mod:`.lazy`). Output: :class:`AnyColumns`
(the OTAP type code of each row and one column per value kind: ``str``, ``int``, ``double``,
``bool``, ``bytes``, and ``ser`` for the CBOR of maps and arrays) and, for ``KeyValue``\\ s,
:class:`KeyValues` (keys, values, which rows leave ``value`` unset, and each row's canonical
bytes for the attribute quasi-delta rule).

Rows in the canonical shape protobuf serializers write (a key shorter than 128 bytes, then a
value holding one string, int, double, bool or bytes, with minimal varints) are cut apart with
numpy; the rest (maps, arrays, odd encodings) go through upb and the CBOR encoder one by one, as
do tables too small for numpy to pay. Both paths give the same columns. Invalid UTF-8 or
protobuf raises :class:`~orasi_common.errors.MalformedData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan
from orasi_common.pdata.otap import cbor, wire

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

# the types the attribute quasi-delta rule compares (str, int, double, bool, bytes): rows of these
# types have canonical bytes (``KeyValues.canonical``), equal exactly when key and value are
DELTA_TYPES = np.array([1, 2, 3, 4, 7], dtype=np.uint8)
IS_DELTA_TYPE = np.zeros(256, dtype=np.bool_)
IS_DELTA_TYPE[DELTA_TYPES] = True
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

    def columns(self, strs: pa.Array | None, byts: pa.Array | None, what: str) -> AnyColumns:
        """The value columns of the rows, given the string and bytes values cut out of them
        (``what``: the values, for the message that strings are not UTF-8)."""
        string = None if strs is None else _utf8(strs, what)
        return AnyColumns(self.types, string, self.int_col, self.double_col, self.bool_col, byts, None)


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
    arrays = {
        name: pa.array(values, _ARROW_TYPES[name]) if any(v is not None for v in values) else None
        for name, values in columns.items()
    }
    cols = AnyColumns(
        codes, arrays["str"], arrays["int"], arrays["double"], arrays["bool"], arrays["bytes"], arrays["ser"]
    )
    return KeyValues(pa.array(keys, pa.string()), cols, unset, pa.array(canonical, pa.binary()))


def _cut_values(arr: pa.Array, scan: _Scan, value_end: I64) -> tuple[pa.Array | None, pa.Array | None]:
    """(string values, bytes values) cut out of the raw bytes in one pass."""
    is_str, is_bytes = scan.types == 1, scan.types == 7
    payload = np.where(is_str | is_bytes, scan.payload, value_end)
    bounds = np.stack([payload, value_end], axis=1)
    picks: list[tuple[int, Bools | None]] = []
    has_str, has_bytes = bool(is_str.any()), bool(is_bytes.any())
    if has_str:
        picks.append((0, is_str))
    if has_bytes:
        picks.append((0, is_bytes))
    if not picks or arr.buffers()[2] is None:
        return None, None
    cut = wire.cut(arr, bounds, picks)
    strs = cut.pop(0) if has_str else None
    byts = cut.pop(0) if has_bytes else None
    return strs, byts


def _slices(data: Any, start: I64, end: I64, valid: Bools | None, typ: pa.DataType) -> pa.Array:
    """The byte ranges [start, end) of ``data`` as a binary or string array (null where not
    ``valid``), not checked again: ``key_values`` checked the UTF-8 of the strings it cut."""
    offsets = np.zeros(len(start) + 1, dtype=np.int64)
    np.cumsum(end - start, out=offsets[1:])
    raw = _wirescan.gather(data, np.ascontiguousarray(start), np.ascontiguousarray(end))
    return wire.from_parts(typ, offsets, np.frombuffer(raw, dtype=np.uint8), valid)


def parse_key_values(raws: pa.Array | list[bytes]) -> KeyValues:
    """Columns of serialized KeyValue messages, one per row."""
    n = len(raws)
    if n < _SMALL:
        return _key_values_python(raws if isinstance(raws, list) else raws.to_pylist())
    return key_values_native(raws if isinstance(raws, pa.Array) else pa.array(raws, pa.binary()))


def key_values_native(arr: pa.Array) -> KeyValues:
    """:func:`parse_key_values` by the native pass whatever the number of rows (``canonical`` is
    ``arr`` itself when every row is canonical already)."""
    n = len(arr)
    offsets, data = wire.offsets_and_data(arr)
    # one native pass cuts the canonical rows apart (the rules of _scan_any, the key before, and
    # UTF-8 checked: a row with bad UTF-8 goes to upb, which refuses it)
    table = np.frombuffer(_wirescan.key_values(data, offsets), dtype=np.int64).reshape(7, n)
    key_start, key_end, codes, payload_start, payload_end, bits, slow_rows = table
    types = codes.astype(np.uint8)
    slow = slow_rows.astype(np.bool_)
    keys = _slices(data, key_start, key_end, None, pa.string())
    cols = AnyColumns(types, None, None, None, None, None, None)
    is_str, is_bytes = types == 1, types == 7
    if is_str.any():
        starts = np.where(is_str, payload_start, payload_end)
        cols.str = _slices(data, starts, payload_end, is_str, pa.string())
    if is_bytes.any():
        starts = np.where(is_bytes, payload_start, payload_end)
        cols.bytes = _slices(data, starts, payload_end, is_bytes, pa.binary())
    for code, name, typ in ((2, "int", pa.int64()), (3, "double", pa.float64()), (4, "bool", pa.bool_())):
        other = types != code
        if not other.all():  # zeros under the nulls, as they compress best
            values = np.where(other, 0, bits)
            column = values != 0 if code == 4 else values.view(np.float64) if code == 3 else values
            setattr(cols, name, pa.array(column, typ, mask=other))
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
    return KeyValues(keys, cols, unset, canonical)


def parse_any_values(raws: pa.Array, present: Bools) -> AnyColumns:
    """Columns of serialized AnyValue messages (log bodies); rows not ``present`` are type 0."""
    offsets, data = wire.binary_buffers(raws)
    start, end = offsets[:-1], offsets[1:]
    scan = _scan_any(data, start, end, present)
    strs, byts = _cut_values(raws, scan, end)
    cols = scan.columns(strs, byts, "a string log body")
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
