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

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orasi_common.pdata import _wirescan

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]

STDOUT, STDERR = 0, 1  # stream codes of regular lines
_REACH = 48  # bytes after a line's start that fields() reads: 32, and 16 from a zone at 19-29
_WHITESPACE = np.isin(np.arange(256), list(b" \t\n\r\x0b\x0c"))  # the bytes bytes.rstrip() drops
_STRIP_ROUNDS = 4  # trailing whitespace bytes dropped vectorised; longer runs per line
_FIRST_YEAR = 1970  # months from 1970 to 2262 (times in ns past int64 are left to the per-line reading)
_MONTH_STARTS = np.array(  # days from 1970-01-01 to the first of each month
    [(dt.date(y, m, 1) - dt.date(1970, 1, 1)).days for y in range(1970, 2263) for m in range(1, 13)],
    dtype=np.int64,
)
_MONTH_LENGTHS = np.array([calendar.monthrange(y, m)[1] for y in range(1970, 2263) for m in range(1, 13)])
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000  # times in ns that fit in int64
_U = np.uint64
_ALL = _U(2**64 - 1)
_LOW_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)
_STDOUT, _STDERR = (_U(int.from_bytes(name, "little")) for name in (b" stdout ", b" stderr "))


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
    one), each cut to ``limit`` bytes (:func:`whole_characters`) and then right-stripped as
    ``bytes.rstrip`` does."""
    u8 = np.frombuffer(block, dtype=np.uint8, count=cut)
    newlines = np.flatnonzero(u8 == 10)
    if cut and block[cut - 1] != 10:
        newlines = np.append(newlines, cut)
    starts = np.empty(len(newlines), dtype=np.int64)
    starts[:1] = 0
    starts[1:] = newlines[:-1] + 1
    long = newlines - starts > limit
    ends = np.where(long, starts + limit, newlines)
    for row in np.flatnonzero(long).tolist():
        ends[row] = starts[row] + len(whole_characters(block[starts[row] : ends[row]]))
    for _ in range(_STRIP_ROUNDS):
        strip = _WHITESPACE[u8[np.maximum(ends - 1, 0)]] & (ends > starts)
        if not strip.any():
            break
        ends -= strip
    else:
        rows = np.flatnonzero(_WHITESPACE[u8[np.maximum(ends - 1, 0)]] & (ends > starts))
        for row in rows.tolist():
            ends[row] = starts[row] + len(block[starts[row] : ends[row]].rstrip())
    return Lines(starts, ends, newlines + 1, int(np.count_nonzero(long)))


def whole_characters(cut: bytes) -> bytes:
    """``cut`` (the start of a longer line) without the bytes of a UTF-8 character that the cut
    split, so that a valid line stays valid (at most 3 bytes dropped)."""
    for back in range(1, min(4, len(cut)) + 1):
        byte = cut[-back]
        if byte < 0x80:  # ASCII: nothing split
            return cut
        if byte >= 0xC0:  # the first byte of a character of 2, 3 or 4 bytes
            return cut if back >= (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) else cut[:-back]
    return cut


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
    """The fields of the lines ``block[starts[i]:ends[i]]`` (cut and stripped by :func:`lines`).

    Each line's first 32 bytes and the 16 from its zone on are copied out (two native gathers)
    and read as little-endian 64-bit words, eight bytes per operation: a template check of the
    digits and separators, digit pairs and the fraction's digits combined in place (SWAR); the
    days to a month's start, and its length, come from a table (1970 to 2262)."""
    length = ends - starts
    ok = (length >= 29) & (starts + _REACH <= len(block))  # "<20-byte time> stdout F"; bytes to read
    if len(block) < _REACH:  # a line within _REACH of the end is left to the per-line reading
        ok[:] = False
        block = bytes(_REACH)
    at = np.where(ok, starts, 0)
    head = _words(block, at, 32)  # "YYYY-MM-" "DDTHH:MM" ":SS.ffff" "fffffZ s"
    ok &= _matches(head[2], ":dd?????")  # (the first two words: _minutes)
    # the fraction: "." and 1-9 digits, or none
    dot = _byte(head[2], 3) == ord(".")
    fraction_bytes: U64 = (head[2] >> _U(32)) | (head[3] << _U(32))  # bytes 20-27
    leading = _leading_digits(fraction_bytes)
    ninth, tenth = _byte(head[3], 4) - _U(48) <= 9, _byte(head[3], 5) - _U(48) <= 9
    count = np.where(leading < 8, leading, 8 + ninth + (ninth & tenth)).astype(np.int64)
    ok &= ~dot | ((count >= 1) & (count <= 9))
    count[~dot] = 0
    kept: U64 = np.where(
        count >= 8, _ALL, (_U(1) << (np.minimum(count, 7).astype(np.uint64) * _U(8))) - _U(1)
    )
    fraction = _eight_digits(fraction_bytes & kept).astype(np.int64) * 10
    fraction += np.where(count >= 9, _byte(head[3], 4).astype(np.int64) - 48, 0)
    # the zone (Z, or ±HH:MM), then " stdout " or " stderr ", the tag and a space
    zone = np.where(dot, 20 + count, 19)
    after = _words(block, at + zone, 16)
    sign = _byte(after[0], 0)
    utc = sign == ord("Z")
    pairs = _pairs(after[0])
    hours, minutes = _byte(pairs, 1).astype(np.int64), _byte(pairs, 4).astype(np.int64)
    signed = ((sign == ord("+")) | (sign == ord("-"))) & _matches(after[0], "?dd:dd??")
    signed &= (hours <= 23) & (minutes <= 59)
    ok &= utc | signed
    offset = np.where(signed, np.where(sign == ord("-"), -60, 60) * (hours * 60 + minutes), 0)
    stream = np.where(
        utc, (after[0] >> _U(8)) | (after[1] << _U(56)), (after[0] >> _U(48)) | (after[1] << _U(16))
    )
    tag = np.where(utc, _byte(after[1], 1), _byte(after[1], 6))
    space_after = np.where(utc, _byte(after[1], 2), _byte(after[1], 7))
    out = stream == _STDOUT
    partial = tag == ord("P")
    ok &= (out | (stream == _STDERR)) & (partial | (tag == ord("F")))
    space = zone + np.where(utc, 1, 6)
    bare = length == space + 9  # "time stream F" and nothing after it
    ok &= (bare | (space_after == 32)) & (space + 9 <= length)
    # the date and the time of day to the minute, read once per run of lines that share their
    # first 16 bytes (the lines of one minute) when runs are few, then the second
    change = np.ones(len(head[0]), dtype=np.bool_)
    change[1:] = (head[0][1:] != head[0][:-1]) | (head[1][1:] != head[1][:-1])
    firsts = np.flatnonzero(change)
    if 4 * len(firsts) <= len(change):
        run = np.cumsum(change) - 1
        valid, minutes = _minutes(head[0][firsts], head[1][firsts])
        valid, minutes = valid[run], minutes[run]
    else:
        valid, minutes = _minutes(head[0], head[1])
    second = _byte(_pairs(head[2]), 1).astype(np.int64)
    ok &= valid & (second <= 59)
    seconds = minutes + second - offset
    ok &= (seconds >= 0) & (seconds < _MAX_SECONDS)
    return Fields(
        regular=ok,
        message=np.where(bare, ends, starts + space + 10),
        stream=np.where(out, STDOUT, STDERR),
        partial=partial,
        time=seconds * 1_000_000_000 + fraction,
    )


def _minutes(date_words: U64, clock_words: U64) -> tuple[Bools, I64]:
    """Of the words "YYYY-MM-" and "DDTHH:MM": whether they are digits and separators in range as
    datetime takes them (1970 to 2262), and the seconds from the epoch to that minute."""
    valid = _matches(date_words, "dddd-dd-") & _matches(clock_words, "ddTdd:dd")
    date, clock = _pairs(date_words), _pairs(clock_words)
    year = _byte(date, 0).astype(np.int64) * 100 + _byte(date, 2).astype(np.int64)
    month, day = _byte(date, 5).astype(np.int64), _byte(clock, 0).astype(np.int64)
    months = (year - _FIRST_YEAR) * 12 + month - 1  # since January 1970
    hour, minute = _byte(clock, 3).astype(np.int64), _byte(clock, 6).astype(np.int64)
    known = (months >= 0) & (months < len(_MONTH_STARTS)) & (month >= 1) & (month <= 12)
    months[~known] = 0
    valid &= known & (day >= 1) & (day <= _MONTH_LENGTHS[months]) & (hour <= 23) & (minute <= 59)
    seconds: I64 = (_MONTH_STARTS[months] + day - 1) * 86400 + hour * 3600 + minute * 60
    return valid, seconds


def _words(block: bytes, offsets: I64, width: int) -> list[U64]:
    """The ``width`` bytes at each offset as width / 8 little-endian words (an array each)."""
    copied = _wirescan.gather(block, offsets, offsets + width)
    return list(np.frombuffer(copied, dtype="<u8").reshape(-1, width // 8).T.copy())


def _template(pattern: str) -> tuple[np.uint64, np.uint64, np.uint64]:
    """(mask, value, digits) of 8 bytes: d a digit, ? any byte, anything else itself; digits
    has 0xF0 at the digits' bytes."""
    mask = value = digits = 0
    for k, char in enumerate(pattern):
        if char == "d":
            mask, value, digits = mask | 0xF0 << 8 * k, value | 0x30 << 8 * k, digits | 0xF0 << 8 * k
        elif char != "?":
            mask, value = mask | 0xFF << 8 * k, value | ord(char) << 8 * k
    return _U(mask), _U(value), _U(digits)


_TEMPLATES = {pattern: _template(pattern) for pattern in ("dddd-dd-", "ddTdd:dd", ":dd?????", "?dd:dd??")}


def _matches(words: U64, pattern: str) -> Bools:
    """Whether each word's bytes fit the pattern: literal bytes equal, digits 0x30-0x39 (high
    nibble 3, and still 3 once 6 is added: no carry out of the low nibble)."""
    mask, value, digits = _TEMPLATES[pattern]
    six = digits >> _U(4) & _U(0x0606060606060606)
    result: Bools = ((words & mask) == value) & (((words + six) & digits) == (value & digits))
    return result


def _byte(words: U64, k: int) -> U64:
    result: U64 = (words >> _U(8 * k)) & _U(0xFF)
    return result


def _pairs(words: U64) -> U64:
    """Byte k becomes 10 * digit k + digit k + 1: the two-digit number starting there."""
    digits = words & _LOW_NIBBLES
    result: U64 = digits * _U(10) + (digits >> _U(8))
    return result


def _leading_digits(words: U64) -> U64:
    """How many of each word's bytes, from the first, are ASCII digits (0-8)."""
    x = words ^ _U(0x3030303030303030)
    not_digit = (((x & _U(0x7F7F7F7F7F7F7F7F)) + _U(0x7676767676767676)) | x) & _U(0x8080808080808080)
    lowest = not_digit & (~not_digit + _U(1))
    result: U64 = np.bitwise_count(lowest - _U(1)).astype(np.uint64) >> _U(3)  # 8 when none
    return result


def _eight_digits(words: U64) -> U64:
    """The number the 8 digit bytes of each word spell (the first the most significant)."""
    value = _pairs(words) & _U(0x00FF00FF00FF00FF)
    value = (value * _U(100) + (value >> _U(16))) & _U(0x0000FFFF0000FFFF)
    result: U64 = (value * _U(10000) + (value >> _U(32))) & _U(0xFFFFFFFF)
    return result
