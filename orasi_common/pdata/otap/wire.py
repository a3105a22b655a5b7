"""Protobuf wire format, read and written a column at a time with numpy and Arrow compute.

The codec never walks attributes one by one in Python. Reading: the raw ``KeyValue`` and
``AnyValue`` bytes of a whole batch sit in one Arrow binary array, and the functions here
decode a varint, or cut a field out, for every row at once. Writing: every field of every
row becomes a :class:`Segment` (tag, the rows that write it, its values), :func:`join` writes
the segments of each row in one native pass (``_wirescan.join``), and :func:`group_concat`
gathers the children of each parent, in any order, into one ``repeated`` field (a native
counting sort, ``_wirescan.group``), so a whole export request is assembled without a Python
loop over items and parsed once by upb at the end. :func:`first_codes` numbers the distinct
values of a column in one native hashing pass (the attribute encoder's value and key codes).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]

EMPTY = pa.scalar(b"", pa.binary())
_PAD = 16  # bytes of zeros after the data so that look-ahead reads never leave the buffer

# ---------------------------------------------------------------------------------------------
# Reading


def binary_buffers(arr: pa.Array) -> tuple[I64, U8]:
    """(offsets as int64 [n + 1], data padded with zeros) of a binary/string array."""
    arr = arr.cast(pa.binary()) if not pa.types.is_binary(arr.type) else arr
    n = len(arr)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4).astype(np.int64)
    if buffers[2] is None or offsets[-1] == offsets[0]:
        data = np.zeros(_PAD, dtype=np.uint8)
    else:
        raw = np.frombuffer(buffers[2], dtype=np.uint8, count=int(offsets[-1]))
        data = np.concatenate((raw, np.zeros(_PAD, dtype=np.uint8)))
    return offsets, data


def read_varint(data: U8, pos: I64) -> tuple[U64, I64, Bools]:
    """Decode the varint at each position: (value, length in bytes, well-formed)."""
    first = data[pos]
    value = (first & 0x7F).astype(np.uint64)
    length = np.ones(len(pos), dtype=np.int64)
    cont = first >= 0x80
    k = 1
    while k < 10 and cont.any():
        rows = np.flatnonzero(cont)
        byte = data[pos[rows] + k]
        value[rows] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        length[rows] += 1
        cont[rows] = byte >= 0x80
        k += 1
    return value, length, ~cont


def cut(arr: pa.Array, bounds: I64, picks: list[tuple[int, Bools | None]]) -> list[pa.Array]:
    """Cut byte ranges out of a binary array's data buffer, several arrays in one pass.

    ``bounds`` holds k offsets per row (shape n x k, absolute in the data buffer, non-decreasing
    through the whole array), so that segment j of row i spans [bounds[i, j], bounds[i, j + 1]).
    Each pick (j, valid) returns the array of segment j of every row (null where not valid).
    The segments are views over the original buffer until ``take`` copies them out.
    """
    n, k = bounds.shape
    data = arr.buffers()[2]
    spliced = pa.Array.from_buffers(
        pa.binary(), n * k - 1, [None, pa.py_buffer(bounds.astype(np.int32).ravel()), data]
    )
    out = []
    for j, valid in picks:
        index = np.arange(j, n * k, k, dtype=np.int64)
        out.append(spliced.take(pa.array(index, mask=None if valid is None else ~valid)))
    return out


def gather(data: U8, starts: I64, lengths: I64, valid: Bools | None, typ: pa.DataType) -> pa.Array:
    """A string/binary array of the byte ranges [start, start + length) of ``data``."""
    n = len(starts)
    if valid is not None:
        lengths = np.where(valid, lengths, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        index = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
        buf = data[index]
    else:
        buf = np.zeros(0, dtype=np.uint8)
    return from_parts(typ, offsets, buf, valid)


def from_parts(typ: pa.DataType, offsets: I64, data: U8, valid: Bools | None) -> pa.Array:
    """Build a string/binary array from its offsets, data and validity."""
    n = len(offsets) - 1
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - np.count_nonzero(valid))
    else:
        validity, null_count = None, 0
    return pa.Array.from_buffers(
        typ, n, [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)], null_count
    )


# ---------------------------------------------------------------------------------------------
# Writing


def varints(values: npt.NDArray[Any], valid: Bools | None = None) -> pa.Array:
    """Binary array of the varint encoding of each value (int64 as its two's complement)."""
    v = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    n = len(v)
    nbytes = np.ones(n, dtype=np.int64)
    rest = v >> np.uint64(7)
    while True:
        more = rest != 0
        if not more.any():
            break
        nbytes += more
        rest >>= np.uint64(7)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nbytes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1]
    for k in range(int(nbytes.max()) if n else 0):
        rows = nbytes > k
        byte = (v[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)
        byte |= (nbytes[rows] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[rows] + k] = byte.astype(np.uint8)
    return from_parts(pa.binary(), offsets, out, valid)


def fixed(values: npt.NDArray[Any], valid: Bools | None = None) -> pa.Array:
    """Binary array of the little-endian bytes of fixed-width values (fixed32/64, double)."""
    arr = np.ascontiguousarray(values)
    width = arr.dtype.itemsize
    n = len(arr)
    raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).view(np.uint8)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    return from_parts(pa.binary(), offsets, raw, valid)


def _tag(field: int, wire_type: int) -> bytes:
    key = (field << 3) | wire_type
    out = bytearray()
    while key >= 0x80:
        out.append((key & 0x7F) | 0x80)
        key >>= 7
    out.append(key)
    return bytes(out)


# the kinds of part the native writer (``_wirescan.join``) takes
_VARINT, _FIXED, _BYTES, _RAW = 0, 1, 2, 3


class Segment:
    """One field of a message being assembled, for every row at once: its tag, the rows that
    write it (``emit``) and its values: uint64 varints, fixed-width little-endian bytes
    (``width`` each), or for a length-delimited field a binary ``payload`` array. :func:`join`
    writes the fields of every row in one native pass.
    """

    __slots__ = ("emit", "kind", "payload", "tag", "values", "width")

    def __init__(
        self,
        kind: int,
        tag: bytes,
        emit: Bools,
        values: npt.NDArray[Any] | None = None,
        width: int = 0,
        payload: pa.Array | None = None,
    ) -> None:
        self.kind = kind
        self.tag = tag
        self.emit = np.ascontiguousarray(emit, dtype=np.bool_)
        self.values = values
        self.width = width
        self.payload = payload

    def part(self) -> tuple[int, bytes, Bools, Any, Any, int]:
        """The part as ``_wirescan.join`` takes it."""
        if self.payload is not None:
            offsets, data = offsets_and_data(self.payload)
            return self.kind, self.tag, self.emit, offsets, data, 0
        return self.kind, self.tag, self.emit, self.values, b"", self.width


def offsets_and_data(arr: pa.Array) -> tuple[npt.NDArray[np.int32], Any]:
    """The int32 offsets (absolute in the data buffer) and the data buffer of a binary array."""
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    return offsets, b"" if buffers[2] is None else buffers[2]


def _fixed_width(field: int, wire_type: int, values: npt.NDArray[Any], emit: Bools) -> Segment:
    raw = np.ascontiguousarray(values)
    raw = raw.astype(raw.dtype.newbyteorder("<"), copy=False)
    return Segment(_FIXED, _tag(field, wire_type), emit, raw, raw.dtype.itemsize)


def _varint_field(field: int, values: U64, emit: Bools) -> Segment:
    return Segment(_VARINT, _tag(field, 0), emit, np.ascontiguousarray(values, dtype=np.uint64))


def join(*parts: Segment | pa.Array) -> pa.Array:
    """Assemble each row's message from its parts (fields, or raw bytes such as grouped children)."""
    first = parts[0]
    n = len(first.emit) if isinstance(first, Segment) else len(first)
    native = []
    for part in parts:
        if isinstance(part, Segment):
            if part.emit.any():
                native.append(part.part())
        else:
            if not pa.types.is_binary(part.type):
                part = part.cast(pa.binary())
            native.append((_RAW, b"", is_valid(part), *offsets_and_data(part), 0))
    if n == 0 or not native:
        return empties(n)
    raw_offsets, data = _wirescan.join(n, native)
    offsets = np.frombuffer(raw_offsets, dtype=np.int64)
    if offsets[-1] >= 2**31:
        raise MalformedData("a message being assembled would exceed 2 GiB")
    return from_parts(pa.binary(), offsets, np.frombuffer(data, dtype=np.uint8), None)


def f_varint(field: int, values: npt.NDArray[Any], emit: Bools | None = None) -> Segment:
    """A varint field (int32/int64/uint32/uint64/bool/enum) where ``emit`` (default: non-zero)."""
    v = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    return _varint_field(field, v, v != 0 if emit is None else emit)


def f_sint(field: int, values: npt.NDArray[Any], emit: Bools | None = None) -> Segment:
    """A zigzag (sint32/sint64) field."""
    v = np.ascontiguousarray(values).astype(np.int64)
    zigzag = ((v << 1) ^ (v >> 63)).view(np.uint64)
    return _varint_field(field, zigzag, v != 0 if emit is None else emit)


def f_fixed64(field: int, values: npt.NDArray[Any], emit: Bools | None = None) -> Segment:
    """A fixed64/sfixed64/double field; default emit: non-zero bit patterns."""
    v = np.ascontiguousarray(values)
    return _fixed_width(field, 1, v, v.view(np.uint64) != 0 if emit is None else emit)


def f_fixed32(field: int, values: npt.NDArray[Any], emit: Bools | None = None) -> Segment:
    """A fixed32 field."""
    v = np.ascontiguousarray(values).astype(np.uint32, copy=False)
    return _fixed_width(field, 5, v, v != 0 if emit is None else emit)


def lengths_of(arr: pa.Array) -> I64:
    """Byte length of each value of a binary/string array (0 for nulls), from its offsets."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    lengths = np.diff(offsets).astype(np.int64)
    if arr.null_count:
        lengths[~is_valid(arr)] = 0
    return lengths


def f_bytes(field: int, payload: pa.Array | Segment, emit: Bools | None = None) -> Segment:
    """A length-delimited field (string, bytes, message); default emit: non-empty. Nulls never."""
    if isinstance(payload, Segment):
        payload = join(payload)
    if pa.types.is_string(payload.type):
        payload = payload.view(pa.binary())  # the same buffers: no copy, no UTF-8 check
    elif not pa.types.is_binary(payload.type):
        payload = payload.cast(pa.binary())
    valid = is_valid(payload)
    chosen = valid & (lengths_of(payload) > 0) if emit is None else emit & valid
    return Segment(_BYTES, _tag(field, 2), chosen, payload=payload)


def f_packed_fixed64(field: int, values: pa.Array) -> Segment:
    """A packed repeated fixed64/double field from a list array (empty lists skipped)."""
    counts = np.asarray(values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    flat = np.ascontiguousarray(values.flatten().to_numpy(zero_copy_only=False))
    raw = flat.astype(flat.dtype.newbyteorder("<"), copy=False).view(np.uint8)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts * 8, out=offsets[1:])
    payload = from_parts(pa.binary(), offsets, raw, None)
    return Segment(_BYTES, _tag(field, 2), counts > 0, payload=payload)


def group_concat(children: pa.Array | Segment, parent_rows: I64, n_parents: int) -> pa.Array:
    """Concatenate the children of each parent; ``parent_rows[i]`` is child i's parent (0..n-1).

    Children keep their relative order within a parent (null children are empty).
    """
    if isinstance(children, Segment):
        children = join(children)
    if len(children) == 0:
        return empties(n_parents)
    if not pa.types.is_binary(children.type):
        children = (
            children.view(pa.binary()) if pa.types.is_string(children.type) else children.cast(pa.binary())
        )
    offsets, data = offsets_and_data(children)
    starts, ends = offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)
    if children.null_count:
        ends = np.where(is_valid(children), ends, starts)
    parents = np.ascontiguousarray(parent_rows, dtype=np.int64)
    bounds, raw = _wirescan.group(data, starts, ends, parents, n_parents)  # a stable counting sort
    grouped_offsets = np.frombuffer(bounds, dtype=np.int64)
    return from_parts(pa.binary(), grouped_offsets, np.frombuffer(raw, dtype=np.uint8), None)


def empties(n: int) -> pa.Array:
    """A binary array of ``n`` empty values."""
    return from_parts(pa.binary(), np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8), None)


_SEED = secrets.randbits(64)  # keys the native hash of first_codes (its strings come from senders)


def first_codes(arr: pa.Array) -> tuple[I64, I64]:
    """A code for each value of a binary or string array, equal for equal values, numbered in
    order of first appearance as ``pyarrow.compute.dictionary_encode`` numbers them (nulls -1,
    taking no code), and the row where each code first appears: one native hashing pass."""
    offsets, data = offsets_and_data(arr)
    raw, firsts = _wirescan.codes(data, offsets, is_valid(arr), _SEED)
    return np.frombuffer(raw, dtype=np.int64), np.frombuffer(firsts, dtype=np.int64)


def is_valid(arr: pa.Array) -> Bools:
    """The validity of each row as a numpy bool array."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=np.bool_)
    out: Bools = arr.is_valid().to_numpy(zero_copy_only=False)
    return out
