"""protoscan / _wirescan: every field of many messages, checked against upb and a Python walker.

The walker below is the reference for the wire format as the scanner documents it: value
varints of at most ten bytes (bits past the 64th dropped, as upb does), tags and lengths of at
most five, field numbers 1..2**29-1, fixed-width and length-delimited payloads within the
message, groups (wire types 3/4) skipped, each closed by its own field number (inside a group
field number 0 is accepted, as upb accepts it there), nesting at most
100 deep (upb's limits). Generated OTLP messages are compared field by field, at every level, with what upb
serializes for each field; arbitrary and mutated bytes must scan to what the walker says or raise
MalformedData.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.errors import MalformedData
from orasi_common.pdata.protoscan import (
    LEN,
    Buffer,
    Fields,
    gather,
    hex_strings,
    items,
    nested,
    pick,
    scan,
    strings,
)

from .strategies import REQUESTS, mutations, requests

Row = tuple[int, int, int, int]  # tag, payload start, payload end, value


class Malformed(Exception):
    pass


# --- the reference walker -------------------------------------------------------------------


def _varint(data: bytes, pos: int, end: int, max_bytes: int = 10) -> tuple[int, int]:
    value = 0
    for i in range(max_bytes):
        if pos >= end:
            break
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value & (2**64 - 1), pos
    raise Malformed("varint")


def _skip(data: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos, end)[1]
    width = {1: 8, 5: 4}.get(wire_type)
    if width is not None:
        if end - pos < width:
            raise Malformed("fixed")
        return pos + width
    if wire_type == 2:
        length, pos = _varint(data, pos, end, 5)
        if length > end - pos:
            raise Malformed("length")
        return pos + length
    raise Malformed("wire type")


def _skip_group(data: bytes, pos: int, end: int, number: int) -> int:
    open_groups = [number]
    while open_groups:
        tag, pos = _varint(data, pos, end, 5)  # field 0 is accepted inside a group, as upb does
        if tag & 7 == 3:
            open_groups.append(tag >> 3)
            if len(open_groups) > 100:
                raise Malformed("groups too deep")
        elif tag & 7 == 4:
            if open_groups.pop() != tag >> 3:
                raise Malformed("a group closed by another field's end tag")
        else:
            pos = _skip(data, pos, end, tag & 7)
    return pos


def walk(data: bytes, pos: int, end: int) -> list[Row]:
    """The fields of data[pos:end] as the scanner documents them."""
    out = []
    while pos < end:
        tag, pos = _varint(data, pos, end, 5)
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number < 2**29:
            raise Malformed("field number")
        if wire_type == 3:
            pos = _skip_group(data, pos, end, number)
            continue
        if wire_type == 0:
            value, after = _varint(data, pos, end)
            out.append((tag, pos, after, value))
        elif wire_type in (1, 5):
            after = _skip(data, pos, end, wire_type)
            out.append((tag, pos, after, int.from_bytes(data[pos:after], "little")))
        elif wire_type == 2:
            _, start = _varint(data, pos, end, 5)
            after = _skip(data, pos, end, 2)
            out.append((tag, start, after, 0))
        else:
            raise Malformed("wire type")
        pos = after
    return out


def rows_of(fields: Fields, msg: int) -> list[Row]:
    at = fields.msg == msg
    return list(
        zip(
            fields.tag[at].tolist(),
            fields.start[at].tolist(),
            fields.end[at].tolist(),
            fields.value[at].tolist(),
            strict=True,
        )
    )


def scan_one(data: bytes, start: int = 0, end: int | None = None) -> Fields:
    end = len(data) if end is None else end
    return scan(Buffer(data), np.array([start], dtype=np.int64), np.array([end], dtype=np.int64))


def assert_well_formed(fields: Fields, starts: list[int], ends: list[int]) -> None:
    """Rows in message order, and every payload inside its message."""
    assert np.all(np.diff(fields.msg) >= 0)
    assert np.all((fields.msg >= 0) & (fields.msg < len(starts)))
    lo, hi = np.asarray(starts)[fields.msg], np.asarray(ends)[fields.msg]
    assert np.all((lo <= fields.start) & (fields.start <= fields.end) & (fields.end <= hi))
    assert np.all((fields.number >= 1) & (fields.number < 2**29))
    assert set(fields.wire_type.tolist()) <= {0, 1, 2, 5}


def assert_scans_like_walker(data: bytes, starts: list[int], ends: list[int]) -> None:
    """scan raises MalformedData exactly when the walker rejects one of the messages, and
    otherwise lists the walker's fields."""
    try:
        expected: list[list[Row]] | None = [walk(data, s, e) for s, e in zip(starts, ends, strict=True)]
    except Malformed:
        expected = None
    if expected is None:
        with pytest.raises(MalformedData):
            scan(Buffer(data), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))
        return
    fields = scan(Buffer(data), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))
    assert_well_formed(fields, starts, ends)
    assert [rows_of(fields, i) for i in range(len(starts))] == expected


# --- generated OTLP messages ------------------------------------------------------------------


def _field_bytes(message: Message, field: FieldDescriptor, value: Any) -> bytes:
    """What upb serializes for one value of one field, or for a whole packed list (tag included)."""
    only = type(message)()
    if field.is_repeated:
        target = getattr(only, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            target.add().CopyFrom(value)
        elif isinstance(value, list):
            target.extend(value)
        else:
            target.append(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(only, field.name).CopyFrom(value)
    else:
        setattr(only, field.name, value)
    return only.SerializeToString()


def assert_scan_matches_upb(buf: Buffer, fields: Fields, msg: int, message: Message) -> None:
    """The scanned fields of one message are the ones upb holds, in order, with the same
    bytes; the payloads of message fields are scanned in turn and compared likewise."""
    expected = []
    for field, value in message.ListFields():
        packed = field.is_repeated and field.type not in (
            FieldDescriptor.TYPE_MESSAGE,
            FieldDescriptor.TYPE_STRING,
            FieldDescriptor.TYPE_BYTES,
        )
        if packed:  # one LEN field for the whole list
            expected.append((field, list(value)))
        elif field.is_repeated:
            expected += [(field, v) for v in value]
        else:
            expected.append((field, value))
    at = np.flatnonzero(fields.msg == msg)
    assert [int(n) for n in fields.number[at]] == [f.number for f, _ in expected]
    raw = buf.raw
    for row, (field, value) in zip(at.tolist(), expected, strict=True):
        tag, start, end = int(fields.tag[row]), int(fields.start[row]), int(fields.end[row])
        whole = _field_bytes(message, field, value)  # tag, length prefix if any, payload
        ((upb_tag, upb_start, upb_end, upb_value),) = walk(whole, 0, len(whole))
        assert (tag, raw[start:end], int(fields.value[row])) == (upb_tag, whole[upb_start:upb_end], upb_value)
        if tag & 7 == 0 and not isinstance(value, list):  # the decoded varint is the value
            number = int(fields.value[row])
            if field.type in (FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64):
                assert (number >> 1) ^ -(number & 1) == value
            else:
                assert number == int(value) % 2**64
        if isinstance(value, Message):
            inner = scan(buf, np.array([start], dtype=np.int64), np.array([end], dtype=np.int64))
            assert_scan_matches_upb(buf, inner, 0, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_scan_lists_the_fields_upb_decodes(request: Message) -> None:
    data = request.SerializeToString()
    buf = Buffer(data)
    fields = scan(buf, np.zeros(1, dtype=np.int64), np.array([len(data)], dtype=np.int64))
    assert_well_formed(fields, [0], [len(data)])
    assert rows_of(fields, 0) == walk(data, 0, len(data))
    assert_scan_matches_upb(buf, fields, 0, request)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_scan_of_many_messages_is_the_scans_of_each(batch: list[Message], data: st.DataObject) -> None:
    """Messages of one buffer (in any order, overlapping or repeated) scan as they do alone."""
    blobs = [m.SerializeToString() for m in batch]
    raw = b"".join(blobs)
    bounds = np.cumsum([0] + [len(b) for b in blobs]).tolist()
    pick_order = data.draw(st.lists(st.integers(0, len(blobs) - 1), max_size=6))
    starts = [bounds[i] for i in pick_order]
    ends = [bounds[i + 1] for i in pick_order]
    fields = scan(Buffer(raw), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))
    assert_well_formed(fields, starts, ends)
    for k, i in enumerate(pick_order):
        alone = scan_one(raw, bounds[i], bounds[i + 1])
        assert rows_of(fields, k) == rows_of(alone, 0)
        assert_scan_matches_upb(Buffer(raw), fields, k, batch[i])


# --- arbitrary and mutated bytes ------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.data())
def test_arbitrary_bytes_scan_like_the_walker_or_raise(data: bytes, draw: st.DataObject) -> None:
    n = draw.draw(st.integers(0, 4))
    starts, ends = [], []
    for _ in range(n):
        s = draw.draw(st.integers(0, len(data)))
        starts.append(s)
        ends.append(draw.draw(st.integers(s, len(data))))
    assert_scans_like_walker(data, starts, ends)


def _scan_everything(data: bytes) -> int:
    """Scans data, then every LEN payload as a message in turn (MalformedData stops a branch);
    returns how many messages scanned."""
    pending, done = [(0, len(data))], 0
    while pending and done < 200:
        start, end = pending.pop()
        try:
            fields = scan_one(data, start, end)
        except MalformedData:
            continue
        done += 1
        assert_well_formed(fields, [start], [end])
        lengthy = fields.wire_type == LEN
        pending += zip(fields.start[lengthy].tolist(), fields.end[lengthy].tolist(), strict=True)
    return done


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests().map(lambda m: m.SerializeToString()).flatmap(mutations))
def test_mutated_requests_scan_like_the_walker_or_raise(data: bytes) -> None:
    assert_scans_like_walker(data, [0], [len(data)])
    _scan_everything(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests().map(lambda m: m.SerializeToString()).flatmap(mutations))
def test_what_upb_accepts_scans_and_matches_upb(data: bytes) -> None:
    """Mutations upb still parses (as the request type they came from) must scan, at every level."""
    for request in REQUESTS:
        try:
            message = request.FromString(data)
        except Exception:
            continue
        fields = scan_one(data)
        assert rows_of(fields, 0) == walk(data, 0, len(data))
        assert set(fields.number.tolist()) >= {f.number for f, _ in message.ListFields()}
        assert _scan_everything(data) >= 1


# --- explicit malformed and edge cases ------------------------------------------------------

MALFORMED = {
    "empty tag varint at the end": b"\x08\x01\x80",
    "truncated varint value": b"\x08\xff\xff",
    "varint of eleven bytes": b"\x08" + b"\xff" * 10 + b"\x01",
    "length past the end": b"\x12\x05abc",
    "huge length": b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    "truncated length": b"\x12\x80",
    "field number 0": b"\x00\x01",
    "field number 0 as LEN": b"\x02\x00",
    "field number 2**29": b"\x80\x80\x80\x80\x10\x00",
    "wire type 6": b"\x0e\x00",
    "wire type 7": b"\x0f\x00",
    "unmatched end group": b"\x0c",
    "end group after a field": b"\x08\x01\x14",
    "unterminated group": b"\x0b\x08\x01",
    "group holding a bad length": b"\x0b\x12\x09ab\x0c",
    "group holding wire type 6": b"\x0b\x0e\x0c",
    "groups nested 101 deep": b"\x0b" * 101 + b"\x0c" * 101,
    "a tag of six bytes": b"\x88\x80\x80\x80\x80\x00\x00",
    "a length of six bytes": b"\x12\x80\x80\x80\x80\x80\x00",
    "truncated fixed64": b"\x09\x01\x02\x03",
    "truncated fixed32": b"\x0d\x01\x02",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_messages_raise(data: bytes) -> None:
    assert_scans_like_walker(data, [0], [len(data)])
    with pytest.raises(MalformedData):
        scan_one(data)
    # the same message after a valid one in the same call: the error is not swallowed
    with pytest.raises(MalformedData):
        scan(Buffer(b"\x08\x01" + data), np.array([0, 2]), np.array([2, 2 + len(data)]))


def test_a_truncation_inside_a_message_is_malformed_though_the_buffer_goes_on() -> None:
    data = b"\x12\x03abc\x08\x01"
    with pytest.raises(MalformedData):
        scan_one(data, 0, 4)  # the LEN field's payload runs past the message's end
    with pytest.raises(MalformedData):
        scan_one(data, 5, 6)  # a varint cut by the message's end
    assert rows_of(scan_one(data, 0, 5), 0) == [(0x12, 2, 5, 0)]


def test_end_group_of_another_field_is_malformed() -> None:
    """A group must end with its own field number (upb: 'Wire format was corrupt')."""
    data = b"\x0b\x14"  # start group 1, end group 2
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(data)
    with pytest.raises(MalformedData):
        scan_one(data)


@pytest.mark.parametrize(
    "group", [b"\x0b\x00\x00\x0c", b"\x0b\x02\x00\x0c", b"\x0b\x03\x04\x0c", b"\x0b\x10\x12\x00\x12\x0c"]
)
def test_field_0_inside_a_group_is_skipped_as_upb_skips_it(group: bytes) -> None:
    ExportTraceServiceRequest.FromString(group + b"\x12\x00")  # upb accepts it
    assert rows_of(scan_one(group + b"\x12\x00"), 0) == [(0x12, len(group) + 2, len(group) + 2, 0)]


def test_groups_are_skipped() -> None:
    group = b"\x1b" + b"\x08\x96\x01" + b"\x12\x02hi" + b"\x0b\x0c" + b"\x09" + bytes(8) + b"\x1c"
    deep = b"\x23" * 64 + b"\x24" * 64
    data = b"\x08\x05" + group + b"\x15\x01\x00\x00\x00" + deep + b"\x22\x01x"
    assert ExportTraceServiceRequest.FromString(data) is not None  # upb accepts it too
    assert rows_of(scan_one(data), 0) == [
        (0x08, 1, 2, 5),
        (0x15, len(group) + 3, len(group) + 7, 1),
        (0x22, len(data) - 1, len(data), 0),
    ]


def test_varints_of_ten_bytes() -> None:
    most = b"\x08" + b"\xff" * 9 + b"\x01"
    assert rows_of(scan_one(most), 0) == [(8, 1, 11, 2**64 - 1)]
    padded = b"\x08" + b"\x80" * 9 + b"\x00"
    assert rows_of(scan_one(padded), 0) == [(8, 1, 11, 0)]
    # the 10th byte carries one bit; upb drops the rest, and so must the scanner
    wide = b"\x08" + b"\xff" * 9 + b"\x7f"
    assert rows_of(scan_one(wide), 0) == [(8, 1, 11, 2**64 - 1)]
    negative = ExportLogsServiceRequest()
    negative.resource_logs.add().scope_logs.add().log_records.add(severity_number=-1)  # type: ignore[arg-type]
    record = negative.resource_logs[0].scope_logs[0].log_records[0].SerializeToString()
    assert rows_of(scan_one(record), 0) == [(0x10, 1, 11, 2**64 - 1)]


def test_fixed_width_values_are_little_endian() -> None:
    data = b"\x09" + bytes(range(1, 9)) + b"\x15\xff\xff\xff\xff"
    assert rows_of(scan_one(data), 0) == [(9, 1, 9, 0x0807060504030201), (0x15, 10, 14, 0xFFFFFFFF)]


def test_the_largest_field_number() -> None:
    data = b"\xf8\xff\xff\xff\x0f\x07"
    assert rows_of(scan_one(data), 0) == [((2**29 - 1) << 3, 5, 6, 7)]


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        ([-1], [2]),
        ([0], [5]),
        ([3], [2]),
        ([0], [2**62]),
        ([2**62], [2**62 + 1]),
        ([0, 0], [4, 9]),
        ([-(2**63)], [0]),
    ],
)
def test_messages_outside_the_buffer_raise(starts: list[int], ends: list[int]) -> None:
    with pytest.raises(MalformedData):
        scan(Buffer(b"\x08\x01\x08\x02"), np.array(starts), np.array(ends))


def test_starts_and_ends_of_different_lengths_raise() -> None:
    with pytest.raises((MalformedData, ValueError)):
        scan(Buffer(b"\x08\x01"), np.array([0, 0]), np.array([2]))


def test_empty_messages_and_no_messages() -> None:
    assert len(scan(Buffer(b""), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).msg) == 0
    fields = scan(Buffer(b"\x08\x01"), np.array([0, 2, 1, 0]), np.array([0, 2, 1, 2]))
    assert fields.msg.tolist() == [3] and fields.value.tolist() == [1]


# --- the helpers ----------------------------------------------------------------------------


def test_gather_strings_hex_and_pick() -> None:
    buf = Buffer(b"hello\x00\xab\xcdworld")
    starts, ends = np.array([0, 5, 7, 8, 3]), np.array([5, 7, 7, 13, 3])
    offsets, data = gather(buf, starts, ends)
    assert offsets.tolist() == [0, 5, 7, 7, 12, 12] and data == b"hello\x00\xab" + b"world"
    assert strings(buf, np.array([0, 8, 3]), np.array([5, 13, 3])).to_pylist() == ["hello", "world", ""]
    masked = strings(buf, np.array([0, 3]), np.array([5, 3]), np.array([True, False]))
    assert masked.to_pylist() == ["hello", None]
    assert hex_strings(buf, np.array([5, 0, 2]), np.array([8, 0, 4])).to_pylist() == ["00abcd", None, "6c6c"]
    assert pick(np.array([10, 20, 30]), np.array([2, -1, 0]), default=7).tolist() == [30, 7, 10]
    with pytest.raises((MalformedData, ValueError)):
        gather(buf, np.array([10]), np.array([16]))
    with pytest.raises((MalformedData, ValueError)):
        gather(buf, np.array([3]), np.array([2]))


def test_last_items_and_nested_merge() -> None:
    # msg 0: f1=LEN{f1=1}, f2=7, f1=LEN{f2=2}, f2=8 ; msg 1: f1=LEN{f1=3}
    a = b"\x0a\x02\x08\x01" + b"\x10\x07" + b"\x0a\x02\x10\x02" + b"\x10\x08"
    b = b"\x0a\x02\x08\x03"
    buf = Buffer(a + b)
    fields = scan(buf, np.array([0, len(a)]), np.array([len(a), len(a) + len(b)]))
    assert fields.last(2, 0, 3).tolist() == [3, -1, -1]
    assert pick(fields.value, fields.last(2, 0, 2)).tolist() == [8, 0]
    inner = nested(buf, fields, 1)  # the two occurrences of msg 0's field 1 merge
    assert inner.msg.tolist() == [0, 0, 1] and inner.tag.tolist() == [0x08, 0x10, 0x08]
    assert inner.value.tolist() == [1, 2, 3]
    repeated = items(buf, fields, 1)
    assert len(repeated) == 3 and repeated.parent.tolist() == [0, 0, 1]
    assert repeated.fields.msg.tolist() == [0, 1, 2] and repeated.fields.value.tolist() == [1, 2, 3]
    with pytest.raises(MalformedData):
        nested(Buffer(b"\x0a\x01\x08"), scan_one(b"\x0a\x01\x08"), 1)
