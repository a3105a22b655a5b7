"""CRI lines a block at a time: where each line's fields are and what its time is, with numpy.

``parse.py`` reads a `cri` block through these columns (its per-line reading stays the
reference, and a test holds the two together). :func:`lines` finds the lines of a block and
cuts them as the per-line reading does (``max_line_bytes``, trailing whitespace);
:func:`fields` reads the head of every line at once, for the layout containerd and CRI-O
write::

    YYYY-MM-DDTHH:MM:SS[.d{1,9}](Z|±HH:MM) (stdout|stderr) (P|F)[ message]

and gives its message's byte range, stream, tag and time (digit arithmetic on the bytes). A
line outside that layout — another stream, a time out of range or in another form, a head
that is not CRI — is marked irregular and left to the per-line reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

STDOUT, STDERR = 0, 1  # stream codes of regular lines
_HEAD = 45  # bytes from a line's start read: the longest time (35), " stdout F "
_WHITESPACE = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)  # what bytes.rstrip() drops
_STRIP_ROUNDS = 4  # trailing whitespace bytes dropped vectorised; longer runs per line
_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000  # times in ns that fit in int64
_POW10 = 10 ** np.arange(8, -1, -1, dtype=np.int64)  # the weight of each fraction digit


@dataclass(frozen=True, slots=True)
class Lines:
    """The lines of a block: ``[starts, ends)`` cut to ``max_line_bytes`` with trailing
    whitespace dropped; ``offsets``: just past each line's newline; ``too_long``: lines cut."""

    starts: I64
    ends: I64
    offsets: I64
    too_long: int


def lines(block: bytes, cut: int, limit: int) -> Lines:
    """The lines of ``block[:cut]`` as ``bytes.split(b"\\n")`` gives them (without a last empty
    one), each cut to ``limit`` bytes and then right-stripped as ``bytes.rstrip`` does."""
    u8 = np.frombuffer(block, dtype=np.uint8, count=cut)
    newlines = np.flatnonzero(u8 == 10)
    if cut and block[cut - 1] != 10:
        newlines = np.append(newlines, cut)
    starts = np.empty(len(newlines), dtype=np.int64)
    starts[:1] = 0
    starts[1:] = newlines[:-1] + 1
    long = newlines - starts > limit
    ends = np.where(long, starts + limit, newlines)
    for _ in range(_STRIP_ROUNDS):
        rows = np.flatnonzero(ends > starts)
        rows = rows[np.isin(u8[ends[rows] - 1], _WHITESPACE)]
        if not len(rows):
            break
        ends[rows] -= 1
    else:
        rows = np.flatnonzero(ends > starts)
        for row in rows[np.isin(u8[ends[rows] - 1], _WHITESPACE)].tolist():
            ends[row] = starts[row] + len(block[starts[row] : ends[row]].rstrip())
    return Lines(starts, ends, newlines + 1, int(np.count_nonzero(long)))


@dataclass(frozen=True, slots=True)
class Fields:
    """Per line: ``regular`` (the layout above; the other columns hold only there), the message
    ``[message, ends)``, the stream code, whether the tag is P, the time in ns since the epoch."""

    regular: Bools
    message: I64
    stream: I64
    partial: Bools
    time: I64


def fields(block: bytes, starts: I64, ends: I64) -> Fields:
    """The fields of the lines ``block[starts[i]:ends[i]]`` (cut and stripped by :func:`lines`)."""
    n = len(starts)
    rows = _Rows(block)
    ok = ends - starts >= 29  # the shortest regular line: "<20-byte time> stdout F"
    head = rows.at(starts, 30)
    digit = [column - np.uint8(48) for column in head]  # a digit's value, or more than 9
    for column in _DATE_DIGITS:
        ok &= digit[column] <= 9
    for column, byte in _SEPARATORS.items():
        ok &= head[column] == byte
    # the fraction: "." and 1-9 digits, or none
    dot = head[19] == ord(".")
    count = np.full(n, 10, dtype=np.int64)  # digits after the dot
    for column in range(29, 19, -1):
        count[digit[column] > 9] = column - 20
    ok &= ~dot | ((count >= 1) & (count <= 9))
    count[~dot] = 0
    fraction = np.zeros(n, dtype=np.int64)
    for k in range(9):
        fraction = fraction * 10 + np.where(count > k, digit[20 + k], 0)
    # the zone: Z, or ±HH:MM; then the space, the stream, the tag and the message
    zone = 19 + dot + count
    zone_bytes = rows.at(starts + zone, 6)
    utc = zone_bytes[0] == ord("Z")
    minus = zone_bytes[0] == ord("-")
    signed = minus | (zone_bytes[0] == ord("+"))
    hours = (zone_bytes[1] - np.uint8(48)).astype(np.int64) * 10 + (zone_bytes[2] - np.uint8(48))
    minutes = (zone_bytes[4] - np.uint8(48)).astype(np.int64) * 10 + (zone_bytes[5] - np.uint8(48))
    for column in (1, 2, 4, 5):
        signed &= zone_bytes[column] - np.uint8(48) <= 9
    signed &= (zone_bytes[3] == ord(":")) & (hours <= 23) & (minutes <= 59)
    ok &= utc | signed
    offset = np.where(signed, np.where(minus, -60, 60) * (hours * 60 + minutes), 0)
    space = zone + np.where(signed, 6, 1)
    tail = rows.at(starts + space, 10)  # " stdout F " or " stderr P"
    out = tail[4] == ord("o")
    ok &= (tail[0] == 32) & (tail[1] == ord("s")) & (tail[2] == ord("t")) & (tail[3] == ord("d"))
    ok &= np.where(
        out,
        (tail[5] == ord("u")) & (tail[6] == ord("t")),
        (tail[4] == ord("e")) & (tail[5] == ord("r")) & (tail[6] == ord("r")),
    )
    partial = tail[8] == ord("P")
    ok &= (tail[7] == 32) & (partial | (tail[8] == ord("F")))
    length = ends - starts
    bare = length == space + 9  # "time stream F" and nothing after it
    ok &= (bare | (tail[9] == 32)) & (space + 9 <= length)

    # the date and the time of day, in range as datetime takes them
    def number(*columns: int) -> I64:
        value: I64 = digit[columns[0]].astype(np.int64)
        for column in columns[1:]:
            value = value * 10 + digit[column]
        return value

    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _MONTH_DAYS[np.where(month_ok, month - 1, 0)] + ((month == 2) & leap)
    ok &= (year >= 1) & month_ok & (day >= 1) & (day <= days_in_month)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    seconds = _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    ok &= (seconds >= 0) & (seconds < _MAX_SECONDS)
    return Fields(
        regular=ok,
        message=np.where(bare, ends, starts + space + 10),
        stream=np.where(out, STDOUT, STDERR),
        partial=partial,
        time=seconds * 1_000_000_000 + fraction,
    )


class _Rows:
    """Bytes of a text from given offsets, a row per column; bytes past its end read as 0."""

    def __init__(self, text: bytes) -> None:
        u8 = np.frombuffer(text, dtype=np.uint8)
        self._last = len(u8) - _HEAD  # the last offset the text holds a whole head from
        self._body = np.lib.stride_tricks.sliding_window_view(u8, _HEAD) if self._last >= 0 else None
        self._end = np.concatenate((u8[max(self._last, 0) :], np.zeros(2 * _HEAD, dtype=np.uint8)))
        self._end_rows = np.lib.stride_tricks.sliding_window_view(self._end, _HEAD)

    def at(self, offsets: I64, width: int) -> npt.NDArray[np.uint8]:
        """(width, n): row k holds the byte at ``offsets + k`` of each."""
        near = offsets > self._last
        if self._body is None or near.all():
            return np.ascontiguousarray(self._end_rows[offsets - max(self._last, 0), :width].T)
        out = self._body[np.minimum(offsets, self._last), :width]
        if near.any():
            out[near] = self._end_rows[offsets[near] - self._last, :width]
        return np.ascontiguousarray(out.T)


def _days_since_epoch(year: I64, month: I64, day: I64) -> I64:
    """Days from 1970-01-01 to the (proleptic Gregorian) date: Howard Hinnant's days_from_civil."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    result: I64 = era * 146097 + day_of_era - 719468
    return result
