"""check_request's native walk (``_wirescan.validate``) held against upb, python's protobuf parser.

A received request is never parsed: the walk must accept exactly the bytes upb's
``FromString`` accepts for the request type (a request upb refuses must never be acknowledged,
and one it parses must not be refused as malformed), and count the items ``count_items`` counts
in the parsed message. Generated requests, their mutations and arbitrary bytes are checked
against all three request types (bytes of one type read as another are full of known fields
with other wire types); the explicit cases below pin each upb behaviour the walk reproduces,
each checked against upb in the same test.
"""

from __future__ import annotations

import struct

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan
from orasi_common.pdata.otlp import count_items
from orasi_common.pdata.signal import SPECS, Signal
from orasi_common.pdata.validate import _SCHEMAS, check_request

from .strategies import mutations, requests

TRACES, LOGS, METRICS = Signal.TRACES, Signal.LOGS, Signal.METRICS


def walk(signal: Signal, data: bytes) -> int | None:
    """The walk's item count, or None when it refuses the bytes (invariants aside)."""
    try:
        items, _ = _wirescan.validate(data, _SCHEMAS[signal].code)
    except ValueError:
        return None
    return int(items)


def upb(signal: Signal, data: bytes) -> int | None:
    """count_items of what upb parses, or None when upb refuses the bytes."""
    try:
        return count_items(signal, SPECS[signal].request_type.FromString(data))
    except DecodeError:
        return None


def assert_like_upb(data: bytes) -> None:
    for signal in Signal:
        assert walk(signal, data) == upb(signal, data), signal


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated_requests_walk_as_upb_parses_them(request: object) -> None:
    assert_like_upb(request.SerializeToString())  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests().map(lambda m: m.SerializeToString()).flatmap(mutations))
def test_mutated_requests_walk_as_upb_parses_them(data: bytes) -> None:
    assert_like_upb(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_walk_as_upb_parses_them(data: bytes) -> None:
    assert_like_upb(data)


# --- building requests by hand --------------------------------------------------------------


def varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def field(number: int, wire: int, payload: bytes = b"") -> bytes:
    tag = varint(number << 3 | wire)
    return tag + varint(len(payload)) + payload if wire == 2 else tag + payload


def group(number: int, inside: bytes = b"") -> bytes:
    return field(number, 3) + inside + field(number, 4)


def spans(*span: bytes) -> bytes:
    """A traces request: one resource, one scope holding these serialized spans."""
    return field(1, 2, field(2, 2, b"".join(field(2, 2, s) for s in span)))


def log_record(record: bytes) -> bytes:
    return field(1, 2, field(2, 2, field(2, 2, record)))


def metric(*parts: bytes) -> bytes:
    return field(1, 2, field(2, 2, field(2, 2, b"".join(parts))))


def histogram_point(point: bytes) -> bytes:
    return metric(field(9, 2, field(1, 2, point)))  # Metric.histogram.data_points


def nested_body(levels: int, inside: bytes = b"") -> bytes:
    """A logs request whose innermost message sits ``levels`` messages below the request:
    resource logs, scope logs, log record, body (AnyValue), then ArrayValue / AnyValue in turn."""
    body = inside
    for level in range(levels, 4, -1):
        body = field(5 if level % 2 == 1 else 1, 2, body)  # AnyValue.array_value, ArrayValue.values
    return log_record(field(5, 2, body))


BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ab\xe2\x82"]
GOOD_UTF8 = [b"", b"\x00", "é€𝄞".encode(), b"x" * 17 + "€".encode()]


def refused(signal: Signal, data: bytes, why: str) -> None:
    """upb refuses the bytes, and so does check_request, saying ``why``."""
    assert upb(signal, data) is None
    with pytest.raises(
        MalformedData, match=f"not a valid protobuf {SPECS[signal].request_type.__name__}: .*{why}"
    ):
        check_request(signal, data)


def accepted(signal: Signal, data: bytes, items: int) -> None:
    assert upb(signal, data) == items
    assert check_request(signal, data) == items


@pytest.mark.parametrize("text", BAD_UTF8)
def test_strings_must_be_valid_utf8(text: bytes) -> None:
    refused(TRACES, spans(field(5, 2, text)), "bad UTF-8")  # a span's name
    attribute = field(9, 2, field(1, 2, text))  # a span attribute's key
    refused(TRACES, spans(attribute), "bad UTF-8")
    value = field(9, 2, field(1, 2, b"k") + field(2, 2, field(1, 2, text)))  # its string value
    refused(TRACES, spans(value), "bad UTF-8")
    accepted(TRACES, spans(field(1, 2, b"\xff" * 16 + text[:0])), 1)  # bytes: anything goes
    accepted(TRACES, spans(field(99, 2, text)), 1)  # an unknown field is not a string
    accepted(TRACES, spans(field(5, 0, b"\x01")), 1)  # nor a name with another wire type


@pytest.mark.parametrize("text", GOOD_UTF8)
def test_valid_utf8_is_accepted(text: bytes) -> None:
    accepted(TRACES, spans(field(5, 2, text)), 1)


@pytest.mark.parametrize(
    "odd",
    [
        field(1, 0, b"\x01"),  # resource_spans as a varint
        field(1, 1, bytes(8)),  # as fixed64
        field(1, 5, bytes(4)),  # as fixed32
        group(1),  # as a group
    ],
)
def test_a_known_field_with_another_wire_type_is_skipped_as_unknown(odd: bytes) -> None:
    accepted(TRACES, odd + spans(b"") + odd, 1)


def test_known_scalar_fields_with_other_wire_types_are_unknown() -> None:
    for odd in (
        field(5, 0, b"\x01"),  # name (string) as a varint
        field(1, 0, b"\x01"),  # trace_id (bytes) as a varint
        field(7, 0, b"\x01"),  # start_time_unix_nano (fixed64) as a varint
        field(7, 2, b"\x81"),  # ... as LEN: a singular scalar is never packed
        field(6, 5, bytes(4)),  # kind (enum) as fixed32
        field(6, 2, b"\xff"),  # ... as LEN, its content not a varint
    ):
        accepted(TRACES, spans(odd, odd), 2)


def test_enums_are_open_and_varints_of_ten_bytes_are_accepted() -> None:
    accepted(TRACES, spans(field(6, 0, varint(2**64 - 1))), 1)
    accepted(TRACES, spans(field(6, 0, b"\xff" * 9 + b"\x7f")), 1)  # bits past the 64th dropped
    refused(TRACES, spans(field(6, 0, b"\xff" * 10 + b"\x01")), "over-long varint")


def test_repeated_scalars_packed_or_not() -> None:
    counts = struct.pack("<3Q", 1, 2, 3)
    accepted(METRICS, histogram_point(field(6, 2, counts)), 1)  # bucket_counts, packed
    unpacked = b"".join(field(6, 1, counts[i : i + 8]) for i in range(0, 24, 8))
    accepted(METRICS, histogram_point(unpacked + field(6, 2, b"")), 1)  # unpacked, then empty packed
    accepted(METRICS, histogram_point(field(6, 0, b"\x05") + field(6, 5, bytes(4))), 1)  # other wire types
    accepted(METRICS, histogram_point(field(7, 2, struct.pack("<2d", 1.5, 2.5))), 1)  # explicit_bounds
    for length in (1, 7, 9, 23):
        refused(METRICS, histogram_point(field(6, 2, bytes(length))), "not a multiple of the width")
    accepted(METRICS, _exponential(field(2, 2, b"\x01\x81\x01" + b"\xff" * 9 + b"\x01")), 1)
    accepted(METRICS, _exponential(field(2, 0, b"\x07") + field(2, 1, bytes(8))), 1)
    refused(METRICS, _exponential(field(2, 2, b"\x01\x81")), "packed varint")
    refused(METRICS, _exponential(field(2, 2, b"\xff" * 10 + b"\x01")), "packed varint")


def _exponential(buckets: bytes) -> bytes:
    """A metrics request with one exponential histogram point whose positive buckets hold ``buckets``."""
    return metric(field(10, 2, field(1, 2, field(8, 2, buckets))))


def test_messages_nest_at_most_100_deep() -> None:
    accepted(LOGS, nested_body(100), 1)
    refused(LOGS, nested_body(101), "nested more than 100 deep")


def test_groups_count_towards_the_depth() -> None:
    """Groups inside a message at depth d nest at most 100 - d deep, as upb counts them."""

    def groups(n: int) -> bytes:
        return b"".join(field(100 + i, 3) for i in range(n)) + b"".join(
            field(100 + i, 4) for i in reversed(range(n))
        )

    accepted(TRACES, groups(100), 0)
    refused(TRACES, groups(101), "group")
    accepted(LOGS, nested_body(50, groups(50)), 1)
    refused(LOGS, nested_body(50, groups(51)), "group")
    accepted(LOGS, nested_body(99, groups(1)), 1)
    refused(LOGS, nested_body(100, groups(1)), "group")


def test_groups_are_skipped() -> None:
    inside = (
        field(1, 0, b"\x96\x01") + field(2, 2, b"\xff") + group(3) + field(0, 2, b"") + field(4, 1, bytes(8))
    )
    accepted(TRACES, group(7, inside) + spans(b"", b"") + group(8), 2)
    accepted(TRACES, spans(group(99, field(0, 0, b"\x00"))), 1)  # field 0 inside a group
    refused(TRACES, field(7, 3) + field(8, 4), "group")  # closed by another field's end tag
    refused(TRACES, field(7, 3) + field(1, 0, b"\x01"), "group")  # never closed
    refused(TRACES, field(7, 4), "end of group")
    refused(TRACES, field(0, 3) + field(0, 4), "field number 0")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\x01", "field number 0"),
        (b"\x02\x00", "field number 0"),
        (b"\x0e\x00", "unknown wire type"),
        (b"\x0f\x00", "unknown wire type"),
        (b"\xf8\xff\xff\xff\x1f\x07", "field number"),
        (b"\x88\x80\x80\x80\x80\x00\x00", "over-long field tag"),
        (b"\x0a\x80\x80\x80\x80\x0f", "length"),
        (b"\x12\x80\x80\x80\x80\x0f", "truncated"),
        (b"\x0a\x80\x80\x80\x80\x80\x00", "over-long length"),
        (b"\x0a\x05abc", "length past the end"),
        (b"\x12\x05abc", "unknown here"),
        (b"\x09\x01\x02", "truncated"),
    ],
)
def test_malformed_wire_format_is_refused(data: bytes, why: str) -> None:
    refused(TRACES, data, why)


def test_trailing_garbage_and_truncation_are_refused() -> None:
    data = spans(field(5, 2, b"name"))
    refused(TRACES, data + b"\x80", "field tag")
    refused(TRACES, data[:-1], "length past the end")
    refused(TRACES, data + b"\x0a", "length")


def test_the_empty_request_holds_no_items() -> None:
    for signal in Signal:
        accepted(signal, b"", 0)
        accepted(signal, field(1, 2, b""), 0)


def test_items_are_counted_as_the_parsed_message_holds_them() -> None:
    accepted(TRACES, spans(b"", b"", b"") + spans(b""), 4)
    accepted(LOGS, log_record(b"") + log_record(b""), 2)
    point = field(1, 2, b"")
    gauge1, gauge2, sum1 = field(5, 2, point), field(5, 2, point + point), field(7, 2, point)
    accepted(METRICS, metric(gauge1, gauge2), 3)  # the same case: the two merge
    accepted(METRICS, metric(gauge1, sum1, gauge2), 2)  # another case replaces the value
    accepted(METRICS, metric(gauge2, field(7, 0, b"\x01"), gauge1), 3)  # sum as a varint: unknown
    summary = field(11, 2, point + point)
    histograms = field(9, 2, point) + field(10, 2, point + point)
    accepted(METRICS, metric(summary) + metric(histograms), 4)


def test_a_violation_is_reported_unless_the_bytes_are_malformed() -> None:
    """An id of the wrong length names its path; bytes upb refuses later still say so."""
    short_id = field(1, 2, b"\x01\x02\x03")
    data = spans(b"", field(99, 2, b"x") + field(2, 0, b"\x01") + short_id)
    assert upb(TRACES, data) == 2
    with pytest.raises(
        MalformedData, match=r"^resource_spans\[0\]\.scope_spans\[0\]\.spans\[1\]\.trace_id: must be 16"
    ):
        check_request(TRACES, data)
    with pytest.raises(MalformedData, match=r"not a valid protobuf ExportTraceServiceRequest: .*bad UTF-8"):
        check_request(TRACES, spans(short_id, field(5, 2, b"\xff")))


def test_a_bad_program_is_refused_not_followed() -> None:
    code = bytearray(_SCHEMAS[TRACES].code)
    for at in (0, 4, 8, len(code) - 16):  # the type count, two offsets, a kind
        broken = bytearray(code)
        broken[at : at + 4] = (10**6).to_bytes(4, "little")
        with pytest.raises(ValueError, match="program"):
            _wirescan.validate(spans(b""), bytes(broken))
    with pytest.raises(ValueError, match="program"):
        _wirescan.validate(b"", b"\x01\x00")
