"""Protobuf wire format, many messages at a time: the fields of every message as numpy arrays.

Reading fields through generated classes costs a Python call per field per item. :func:`scan`
instead lists every field of a set of messages (byte ranges of one buffer) in one native call
(``_wirescan.c``, bounds-checked, run without the GIL); the columns a converter needs are then
picked out and gathered with numpy, a few array operations per field *number* for all items.

A field that does not decode raises :class:`MalformedData`; nothing reads out of bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

VARINT, I64_WIRE, LEN, I32_WIRE = 0, 1, 2, 5
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class Buffer:
    """Serialized bytes and their numpy view."""

    def __init__(self, data: bytes) -> None:
        self.raw = data
        self.u8: U8 = np.frombuffer(data, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Fields:
    """Every field of the scanned messages, in message order then wire order (one row per field).

    ``msg`` is the index of the message in the scanned set; ``start``/``end`` bound the payload
    (for LEN fields, after the length prefix); ``value`` is the decoded varint, or the
    little-endian fixed64/fixed32 bits.
    """

    msg: I64
    tag: I64  # field number << 3 | wire type
    start: I64
    end: I64
    value: U64

    @property
    def number(self) -> I64:
        return self.tag >> 3

    @property
    def wire_type(self) -> I64:
        return self.tag & 7

    def rows(self, number: int, wire_type: int) -> I64:
        """Indices of the fields with this number and wire type."""
        return np.flatnonzero(self.tag == (number << 3 | wire_type))

    def last(self, number: int, wire_type: int, n_msgs: int) -> I64:
        """For each message, the row of its last such field (-1 when absent): a singular field
        keeps the last value on the wire."""
        return self.last_of(self.rows(number, wire_type), n_msgs)

    def last_of(self, rows: I64, n_msgs: int) -> I64:
        """For each message, the last of ``rows`` (ascending) it holds, -1 for none."""
        out = np.full(n_msgs, -1, dtype=np.int64)
        out[self.msg[rows]] = rows  # rows ascend, so the last write per message wins
        return out

    def subset(self, rows: I64) -> Fields:
        """These rows only."""
        return Fields(self.msg[rows], self.tag[rows], self.start[rows], self.end[rows], self.value[rows])

    def last_range(self, number: int, n_msgs: int) -> tuple[I64, I64]:
        """(start, end) of each message's last LEN field ``number`` (an empty range if absent)."""
        rows = self.last(number, LEN, n_msgs)
        return pick(self.start, rows), pick(self.end, rows)

    def last_value(self, number: int, wire_type: int, n_msgs: int) -> U64:
        """Each message's last value of a scalar field (0 where absent), as raw 64 bits."""
        return pick(self.value, self.last(number, wire_type, n_msgs))


def pick(values: npt.NDArray[Any], rows: I64, default: int = 0) -> npt.NDArray[Any]:
    """``values[rows]``, with ``default`` where a row is -1 (absent)."""
    out = np.full(len(rows), default, dtype=values.dtype)
    hit = rows >= 0
    out[hit] = values[rows[hit]]
    return out


def scan(buf: Buffer, starts: I64, ends: I64) -> Fields:
    """The fields of the messages ``buf[starts[i]:ends[i]]``."""
    try:
        records = _wirescan.scan(
            buf.raw, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64)
        )
    except ValueError as exc:
        raise MalformedData(f"the data is not valid protobuf: {exc}") from None
    table = np.frombuffer(records, dtype=np.int64).reshape(5, -1)
    return Fields(table[0], table[1], table[2], table[3], table[4].view(np.uint64))


def gather(buf: Buffer, starts: I64, ends: I64) -> tuple[npt.NDArray[np.int32], bytes]:
    """Arrow-style offsets and the concatenated bytes of the slices ``buf[starts[i]:ends[i]]``."""
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise MalformedData("a string column would exceed 2 GiB")
    data = _wirescan.gather(
        buf.raw, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64)
    )
    return offsets.astype(np.int32), data


def strings(buf: Buffer, starts: I64, ends: I64, valid: Bools | None = None) -> pa.Array:
    """A UTF-8 string array of the slices (null where ``valid`` is False)."""
    offsets, data = gather(buf, starts, ends)
    return strings_from(offsets, data, np.ones(len(starts), dtype=np.bool_) if valid is None else valid)


def hex_strings(buf: Buffer, starts: I64, ends: I64) -> pa.Array:
    """Lowercase hex of each slice; null for an empty one (ids in the lake)."""
    offsets, data = gather(buf, starts, ends)
    raw = np.frombuffer(data, dtype=np.uint8)
    text = np.empty(2 * len(raw), dtype=np.uint8)
    text[0::2] = _HEX[raw >> 4]
    text[1::2] = _HEX[raw & 15]
    valid = ends > starts
    return strings_from(2 * offsets, text, valid)


def strings_from(
    offsets: npt.NDArray[np.int32], data: npt.NDArray[np.uint8] | bytes, valid: Bools
) -> pa.Array:
    """A string array from Arrow offsets and bytes, null where ``valid`` is False; MalformedData
    when some string is not UTF-8 (as protobuf parsers refuse it)."""
    mask = None if valid.all() else pa.array(valid).buffers()[1]
    nulls = int(len(valid) - np.count_nonzero(valid))
    array = pa.StringArray.from_buffers(len(valid), pa.py_buffer(offsets), pa.py_buffer(data), mask, nulls)
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        raise MalformedData("a string field is not valid UTF-8") from None
    return array


@dataclass(frozen=True, slots=True)
class Items:
    """The occurrences of a repeated message field: one item each, with the index of its parent."""

    parent: I64
    fields: Fields

    def __len__(self) -> int:
        return len(self.parent)


def items(buf: Buffer, fields: Fields, number: int) -> Items:
    """Each occurrence of message field ``number`` as an item, scanned."""
    return items_at(buf, fields, fields.rows(number, LEN))


def items_at(buf: Buffer, fields: Fields, rows: I64) -> Items:
    """The messages held by these LEN rows (ascending) as items, scanned."""
    return Items(fields.msg[rows], scan(buf, fields.start[rows], fields.end[rows]))


def nested(buf: Buffer, fields: Fields, number: int) -> Fields:
    """The fields of singular message field ``number``, keyed by the parent message.

    Several occurrences of one parent's field merge, as protobuf parsers merge them: their
    fields are listed together, in wire order.
    """
    return nested_at(buf, fields, fields.rows(number, LEN))


def nested_at(buf: Buffer, fields: Fields, rows: I64) -> Fields:
    """The fields of the messages held by these LEN rows, keyed by the parent message."""
    inner = scan(buf, fields.start[rows], fields.end[rows])
    return Fields(fields.msg[rows][inner.msg], inner.tag, inner.start, inner.end, inner.value)
