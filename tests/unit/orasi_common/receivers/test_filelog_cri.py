"""The native reading of CRI blocks (``_wirescan.text_lines`` and ``cri_heads`` through ``cri.py``)
against an oracle written from the layout: lines as ``bytes.split``, the cut and
``bytes.rstrip`` make them; a head regular exactly when it has containerd's and CRI-O's layout
with a real date and a time that fits int64 nanoseconds, and then the per-line reading's time,
stream, tag and message. Edge cases by hand, then mutated heads (hypothesis), and the arguments
a caller could get wrong refused."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orasi_common.pdata import _wirescan
from orasi_common.receivers.filelog import cri
from orasi_common.receivers.filelog.parse import rfc3339_ns

_LAYOUT = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)"
    rb" (stdout|stderr) ([PF])(?: (.*))?",
    re.DOTALL,
)
_EPOCH = dt.datetime(1970, 1, 1)
_MAX_SECONDS = (2**63 - 1) // 10**9  # whole seconds whose every nanosecond fits int64


def expected(line: bytes) -> tuple[int, int, int, bool] | None:
    """(message start, time ns, stream code, partial) of a regular head; None for another line."""
    match = _LAYOUT.fullmatch(line)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    zone = match[8]
    if zone != b"Z" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        return None
    try:
        local = dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    offset = (
        0 if zone == b"Z" else (-1 if zone[:1] == b"-" else 1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    )
    seconds = (local - _EPOCH) // dt.timedelta(seconds=1) - offset
    fraction = int((match[7] or b"0").ljust(9, b"0"))
    if seconds < 0 or seconds >= _MAX_SECONDS:
        return None
    message = match.start(11) if match[11] is not None else len(line)
    return message, seconds * 10**9 + fraction, 0 if match[9] == b"stdout" else 1, match[10] == b"P"


def heads(lines: list[bytes]) -> list[tuple[int, int, int, bool] | None]:
    """What cri.fields reads of each line, placed one after another in a block (no newlines: the
    heads must not read past a line's end)."""
    block = b"".join(lines)
    ends = np.cumsum([len(line) for line in lines], dtype=np.int64)
    starts = ends - np.array([len(line) for line in lines], dtype=np.int64)
    found = cri.fields(block, starts, ends)
    out: list[tuple[int, int, int, bool] | None] = []
    for row, start in enumerate(starts.tolist()):
        if not found.regular[row]:
            assert (found.message[row], found.time[row], found.stream[row], found.partial[row]) == (
                start,
                0,
                -1,
                False,
            )
            out.append(None)
        else:
            fields = int(found.message[row]) - start, int(found.time[row]), int(found.stream[row])
            out.append((*fields, bool(found.partial[row])))
    return out


def assert_heads(lines: list[bytes]) -> None:
    got = heads(lines)
    for line, head in zip(lines, got, strict=True):
        assert head == expected(line), line
        if head is not None:  # the per-line reading's own fields
            pieces = line.split(b" ", 3)
            assert head[1] == rfc3339_ns(pieces[0]), line
            assert line[head[0] :] == (pieces[3] if len(pieces) == 4 else b""), line


def line(stamp: str, rest: str = " stdout F message") -> bytes:
    return (stamp + rest).encode()


def test_fraction_digits_zero_to_nine_and_ten_left_to_the_per_line_reading() -> None:
    lines = [line("2023-06-01T12:00:00Z")]
    lines += [line("2023-06-01T12:00:00." + "123456789"[:digits] + "Z") for digits in range(1, 10)]
    lines += [line("2023-06-01T12:00:00.1234567891Z"), line("2023-06-01T12:00:00.Z")]
    got = heads(lines)
    assert [head is not None for head in got] == [True] * 10 + [False, False]
    assert [head[1] % 10**9 for head in got[:10] if head] == [
        0,
        100_000_000,
        120_000_000,
        123_000_000,
        123_400_000,
        123_450_000,
        123_456_000,
        123_456_700,
        123_456_780,
        123_456_789,
    ]
    assert_heads(lines)


def test_zones_as_cri_o_and_containerd_write_them() -> None:
    base = int(dt.datetime(2023, 6, 1, 12, tzinfo=dt.UTC).timestamp()) * 10**9
    lines = [
        line("2023-06-01T12:00:00Z"),
        line("2023-06-01T14:00:00+02:00"),
        line("2023-06-01T06:30:00-05:30"),
        line("2023-06-02T11:59:00+23:59"),
        line("2023-06-01T12:00:00.5+00:00"),
    ]
    assert [head[1] if head else None for head in heads(lines)] == [base, base, base, base, base + 5 * 10**8]
    others = ["+24:00", "+01:60", "+0100", "+01", "z", "", "+01:00:00", "Z+01:00", "-1:00"]
    assert heads([line("2023-06-01T12:00:00" + zone) for zone in others]) == [None] * len(others)
    assert_heads(lines)


def test_dates_out_of_range_and_leap_years() -> None:
    regular = [
        "2024-02-29T12:00:00Z",  # a leap year
        "2000-02-29T12:00:00Z",  # divisible by 400
        "2023-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",  # time 0
        "1969-12-31T23:30:00-01:00",  # before 1970 in its zone, after it in UTC
        "2262-04-11T23:47:15.999999999Z",  # the last second below 2^63 ns
    ]
    irregular = [
        "2023-02-29T12:00:00Z",  # not a leap year
        "1900-02-29T12:00:00Z",  # divisible by 100
        "2100-02-29T12:00:00Z",
        "2023-04-31T12:00:00Z",
        "2023-13-01T12:00:00Z",
        "2023-00-01T12:00:00Z",
        "2023-06-00T12:00:00Z",
        "2023-06-32T12:00:00Z",
        "2023-06-01T24:00:00Z",
        "2023-06-01T12:60:00Z",
        "2023-06-01T12:00:60Z",  # a leap second: Python's datetime refuses it too
        "1969-12-31T23:59:59Z",  # before the epoch
        "1970-01-01T00:30:00+01:00",
        "0000-01-01T00:00:00Z",
        "2262-04-11T23:47:16Z",  # past 2^63 ns
        "9999-12-31T23:59:59Z",
        "2023-06-01t12:00:00Z",
        "2023-06-01 12:00:00Z",
        "2023-6-01T12:00:00Z",
        "\uff12\uff10\uff12\uff13-06-01T12:00:00Z",  # digits outside ASCII (fullwidth)
    ]
    got = heads([line(stamp) for stamp in regular + irregular])
    assert [head is not None for head in got] == [True] * len(regular) + [False] * len(irregular)
    assert got[3] is not None and got[3][1] == 0
    assert got[5] is not None and got[5][1] == 9_223_372_035_999_999_999
    assert_heads([line(stamp) for stamp in regular + irregular])


def test_streams_tags_and_messages() -> None:
    stamp = "2023-06-01T12:00:00Z"
    rests = [" stdout F", " stderr P", " stdout F x", " stdout F  two spaces", " stdout F \r inside"]
    got = heads([line(stamp, rest) for rest in rests])
    assert [(head[0], head[2], head[3]) if head else None for head in got] == [
        (29, 0, False),
        (29, 1, True),
        (30, 0, False),
        (30, 0, False),
        (30, 0, False),
    ]
    others = [
        " stdin F x",
        " stdout X x",
        " stdout FX",
        " stdout",
        " stdout ",
        "  stdout F x",
        " STDOUT F x",
        "",
    ]
    assert heads([line(stamp, rest) for rest in others]) == [None] * len(others)
    assert_heads([line(stamp, rest) for rest in rests + others])


def test_every_truncation_of_a_head_is_read_within_the_line() -> None:
    full = b"2023-06-01T12:00:00.123456789+02:00 stderr P message"
    cuts = [full[:n] for n in range(len(full) + 1)]
    got = heads(cuts)
    complete = full.index(b" P") + 2  # "... stderr P", "... stderr P ", "... stderr P m" and on
    assert [n for n, head in enumerate(got) if head is not None] == list(range(complete, len(full) + 1))
    assert_heads(cuts)


def test_the_minute_read_once_is_read_again_when_it_changes() -> None:
    lines = [
        line("2023-02-29T12:00:01Z"),  # the same (invalid) minute twice
        line("2023-02-29T12:00:02Z"),
        line("2023-02-28T12:00:03Z"),
        line("2023-02-28T12:00:04Z"),
        b"2023-02-28T12:00",  # the minute's 16 bytes and nothing after them
        line("2023-02-28T12:00:60Z"),
        line("2023-02-28T12:01:00Z"),
        line("2023-02-28T12:00:05.5-01:00"),
    ]
    assert [head is not None for head in heads(lines)] == [False, False, True, True, False, False, True, True]
    assert_heads(lines)


def split_reference(block: bytes, cut: int, limit: int) -> tuple[list[bytes], list[int], int]:
    """The lines as parse_lines cuts them, the offset past each, and how many were cut."""
    pieces = block[:cut].split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    offsets = list(np.cumsum([len(piece) + 1 for piece in pieces]))
    cut = [cri.whole_characters(piece[:limit]) if len(piece) > limit else piece for piece in pieces]
    return [piece.rstrip() for piece in cut], offsets, sum(len(piece) > limit for piece in pieces)


def assert_lines(block: bytes, cut: int, limit: int) -> None:
    found = cri.lines(block, cut, limit)
    got = [block[s:e] for s, e in zip(found.starts.tolist(), found.ends.tolist(), strict=True)]
    assert (got, found.offsets.tolist(), found.too_long) == split_reference(block, cut, limit), (
        block,
        cut,
        limit,
    )
    assert all(block[start - 1 : start] in (b"", b"\n") for start in found.starts.tolist())


def test_lines_empty_crlf_long_and_unterminated() -> None:
    block = (
        b"\n\n"  # empty lines
        + b"2023-06-01T12:00:00Z stdout F crlf\r\n"
        + b"2023-06-01T12:00:00Z stdout F "
        + b"x" * 70_000
        + b"\n"  # longer than the limit
        + b"2023-06-01T12:00:00Z stdout F "
        + "\u20ac".encode() * 30_000
        + b"\n"  # cut inside a character
        + b" \t\x0b\x0c\r \n"  # only whitespace
        + b"2023-06-01T12:00:00Z stdout F no newline"
    )
    for limit in (0, 1, 29, 30, 31, 65_536):
        for cut in (0, 1, 2, 40, len(block) - 5, len(block)):
            assert_lines(block, cut, limit)
    found = cri.lines(block, len(block), 65_536)
    assert found.too_long == 2 and found.offsets.tolist()[-1] == len(block) + 1  # (just past the cut)
    assert [
        head is not None
        for head in heads([block[s:e] for s, e in zip(found.starts, found.ends, strict=True)])
    ] == [
        False,
        False,
        True,
        True,
        True,
        False,
        True,
    ]
    assert_lines(b"", 0, 10)
    assert_lines(b"x", 1, 10)
    assert_lines(b"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\n", 9, 6)  # a 4-byte character cut after 2 of its bytes


def test_arguments_outside_the_data_are_refused() -> None:
    block = b"2023-06-01T12:00:00Z stdout F x\n"
    with pytest.raises(ValueError, match="cut"):
        _wirescan.text_lines(block, len(block) + 1, 10)
    with pytest.raises(ValueError, match="cut"):
        _wirescan.text_lines(block, -1, 10)
    with pytest.raises(ValueError, match="limit"):
        _wirescan.text_lines(block, len(block), -1)
    one = np.array([0], dtype=np.int64)
    for starts, ends in [
        (one, np.array([len(block) + 1], dtype=np.int64)),
        (np.array([-1], dtype=np.int64), one),
        (np.array([5], dtype=np.int64), np.array([4], dtype=np.int64)),
        (one, np.array([1, 2], dtype=np.int64)),
        (b"\0" * 7, b"\0" * 7),
    ]:
        with pytest.raises(ValueError, match="outside"):
            _wirescan.cri_heads(block, starts, ends)


_DIGITS = st.sampled_from("0123456789")


@st.composite
def near_heads(draw: st.DrawFn) -> bytes:
    """A CRI line, then now and then a byte of its head replaced, cut or doubled."""
    year = draw(st.sampled_from(["1969", "1970", "2000", "2024", "2100", "2262", "2263", "0000", "9999"]))
    month, day, hour, minute, second = (
        "".join(draw(st.lists(_DIGITS, min_size=2, max_size=2))) for _ in range(5)
    )
    stamp = f"{year}-{month}-{day}T{hour}:{minute}:{second}"
    digits = draw(st.integers(0, 11))
    if digits:
        stamp += "." + "".join(draw(st.lists(_DIGITS, min_size=digits - 1, max_size=digits - 1)))
    stamp += draw(st.sampled_from(["Z", "+02:00", "-05:30", "+23:59", "+24:00", "-00:60"]))
    rest = draw(st.sampled_from([" stdout F", " stderr P", " stdout F x", " stderr F  y "]))
    data = (stamp + rest).encode()
    for _ in range(draw(st.integers(0, 2))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.integers(0, 2))
        if how == 0:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif how == 1:
            data = data[:at]
        else:
            data = data[:at] + data[at : at + 1] + data[at:]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_heads(), min_size=1, max_size=20))
def test_mutated_heads_read_as_the_oracle_does(lines: list[bytes]) -> None:
    assert_heads(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from([b"\n", b"\r", b" ", b"\t", b"\x0c", b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xff"]),
        max_size=60,
    ),
    st.integers(0, 70),
    st.integers(0, 12),
)
def test_generated_blocks_split_as_bytes_do(pieces: list[bytes], cut: int, limit: int) -> None:
    block = b"".join(pieces)
    assert_lines(block, min(cut, len(block)), limit)
