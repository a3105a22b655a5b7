"""Lines of a log file → encoded OTLP log records, a block at a time.

A block is the bytes of one file from an offset where a record starts. It is split into lines
with ``bytes.split`` and each line read by its format::

    cri     `<RFC 3339 time> <stdout|stderr> <P|F> <message>` (CRI-O, containerd): P lines are
            parts of one record, joined (per stream) up to the next F line
    docker  `{"log": "...\\n", "stream": "stdout", "time": "<RFC 3339>"}` (Docker's json-file):
            a log without its final newline is a part, joined up to the next one that has it
            (the record keeps that newline, as the Collector's container parser does)
    none    the line is the message
    auto    cri or docker from the file's first line (none when it is neither)

A line longer than ``max_line_bytes`` is cut there (at a UTF-8 character's start, counted),
trailing whitespace of each line is dropped, and a joined record takes its first part's time, as
the Collector's filelog receiver and container parser do (its reference test holds the two
together). Then, with ``line_start_pattern``, messages that do not match it are appended (``\\n``-joined)
to the record before them. A record's time is the runtime's (the line's time; none for `none`),
its attribute ``log.iostream`` the stream; severity comes from a regex's `severity` group on the
message, or from a field of a JSON message, read as its name says (``SEVERITIES``).

Only complete records leave a block: a part whose last piece is not in the block yet, the last
multiline record (more lines may belong to it) and a line without its newline stay for the next
read — unless the block is ``final`` (the file has been idle for the force-flush period, or is
being closed); a line without its newline only when the file is closed after it (or when one
line fills a whole block). ``Parsed.end`` is the offset just past the last record that left: the reader
commits it once the records are accepted, so a block always starts where a record starts, and
reading the same bytes again gives the same records.

Two readings give the same records. The per-line one (:func:`parse_lines`) reads every
format and rule, writing each record into OTLP's LogRecord encoding (``wire.py``) with a few
byte joins, and makes a message valid UTF-8 (invalid bytes replaced) when its block is not.
The columnar one reads the common case — a `cri` block that is valid UTF-8, without
``line_start_pattern`` — a block at a time: lines, fields and times read by C into numpy
columns (``cri.py``; a line outside containerd's and CRI-O's layout is read per line), partial runs
joined per line when the block has any, and the encoder's frame and every record written in
one native pass straight from the block (:meth:`Encoder.encode_columns`); severity rules are
applied per message on that path too. ``Parsed.data`` is the same bytes from either.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from orasi_common.pdata import _wirescan
from orasi_common.receivers.filelog import cri
from orasi_common.receivers.wire import field as wire_field
from orasi_common.receivers.wire import key_values, varint

SEVERITIES: dict[str, tuple[int, str]] = {
    "trace": (1, "TRACE"),
    "debug": (5, "DEBUG"),
    "info": (9, "INFO"),
    "information": (9, "INFO"),
    "notice": (10, "INFO2"),
    "warn": (13, "WARN"),
    "warning": (13, "WARN"),
    "error": (17, "ERROR"),
    "err": (17, "ERROR"),
    "critical": (18, "ERROR2"),
    "crit": (18, "ERROR2"),
    "alert": (19, "ERROR3"),
    "fatal": (21, "FATAL"),
    "panic": (21, "FATAL"),
    "emerg": (22, "FATAL2"),
}
_TIMES = struct.Struct("<BQBQ")  # time_unix_nano (1), observed_time_unix_nano (11), fixed64 both
_CRI = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) [PF]")
_STREAMS = {name: key_values([("log.iostream", name)], 6) for name in ("stdout", "stderr")}
_VARINT, _FIXED, _BYTES, _RAW = 0, 1, 2, 3  # the part kinds of _wirescan.join
_NO_STREAM = -1  # the stream code of a line that is not CRI
_SURROGATES = re.compile("[\ud800-\udfff]")
_COLUMNS_MAX_BYTES = 2**30  # blocks read by columns: their offsets (and joined parts') fit int32
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Rules:
    """How one receiver reads its files (from its Config)."""

    format: str = "auto"
    line_start: re.Pattern[str] | None = None
    severity_regex: re.Pattern[str] | None = None
    severity_field: str | None = None
    max_line_bytes: int = 64 * 1024


@dataclass(slots=True)
class Parsed:
    data: bytes = b""  # the encoder's frame, then the records (ScopeLogs.log_records fields)
    count: int = 0  # records in ``data``
    end: int = 0  # offset (in the block) just past the last record in ``records``
    too_long: int = 0  # lines cut to max_line_bytes


def detect(first_line: bytes) -> str:
    if first_line.startswith(b"{"):
        return "docker"
    if _CRI.match(first_line):
        return "cri"
    return "none"


def valid_text(value: str) -> str:
    """``value`` as UTF-8 can encode it: a lone surrogate (a JSON escape such as ``\\ud800``, or a
    byte of a file name that is not UTF-8) becomes U+FFFD, as Go's JSON decoder makes it."""
    return _SURROGATES.sub("\ufffd", value)


def utf8(value: str) -> bytes:
    """``value`` encoded as UTF-8 (see :func:`valid_text`)."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        return valid_text(value).encode()


_seconds_cache: dict[bytes, int] = {}


def rfc3339_ns(stamp: bytes) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with up to 9 fraction digits (0 if not one,
    or if Orasi cannot store it: before 1970, or at or past 2^63 ns — 2262 —, which a request's
    validation refuses). The whole-second part is cached: lines of one second share it."""
    head = stamp[:19]
    seconds = _seconds_cache.get(head)
    rest = stamp[19:]
    if seconds is None:
        try:
            parsed = dt.datetime.strptime(head.decode("ascii"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
        except (ValueError, UnicodeDecodeError):
            return 0
        seconds = int(parsed.timestamp())
        if len(_seconds_cache) > 4096:
            _seconds_cache.clear()
        _seconds_cache[head] = seconds
    fraction = 0
    if rest.startswith(b"."):
        digits = len(rest) - len(rest[1:].lstrip(b"0123456789"))
        fraction = int(rest[1:digits].ljust(9, b"0")[:9] or b"0")
        rest = rest[digits:]
    if rest not in (b"Z", b"z"):
        try:
            offset = dt.datetime.strptime(rest.decode("ascii").replace(":", ""), "%z").utcoffset()
        except (ValueError, UnicodeDecodeError):
            return 0
        seconds -= int(offset.total_seconds()) if offset else 0
    time_ns = seconds * 1_000_000_000 + fraction
    return time_ns if 0 <= time_ns < 2**63 else 0


class Encoder:
    """LogRecords of one file: its fixed attribute bytes, the observed time, the severity rules,
    and ``frame``: the bytes put before records of a given length (a request's headers, its
    resource and scope; none by default)."""

    def __init__(
        self,
        rules: Rules,
        attributes: bytes,
        observed_ns: int,
        frame: Callable[[int], bytes] | None = None,
    ) -> None:
        self._rules = rules
        self._attributes = attributes
        self._observed = observed_ns
        self._severity = self._severity_of if rules.severity_regex or rules.severity_field else None
        self.frame: Callable[[int], bytes] = frame or _no_frame

    def encode(self, time_ns: int, message: bytes, stream: str | None) -> bytes:
        body = wire_field(1, message)  # AnyValue.string_value
        parts = [_TIMES.pack(0x09, time_ns, 0x59, self._observed), b"\x2a", varint(len(body)), body]
        if self._severity is not None:
            parts.append(self._severity(message))
        parts.append(self._attributes)
        if stream is not None:
            parts.append(_STREAMS.get(stream) or key_values([("log.iostream", stream)], 6))
        record = b"".join(parts)
        return b"\x12" + varint(len(record)) + record  # ScopeLogs.log_records

    def encode_columns(
        self, source: bytes, starts: I64, ends: I64, times: I64, streams: I64, names: list[str]
    ) -> bytes:
        """The frame, then what ``encode`` gives for each message ``source[starts[i]:ends[i]]``
        (valid UTF-8), time ``times[i]`` (0 to 2**63) and stream ``names[streams[i]]`` (none for
        -1): the lengths computed for all records, then everything written in one native pass
        straight from ``source`` (no copy of the messages before it)."""
        n = len(starts)
        lengths = ends - starts
        tails = [self._attributes] + [
            self._attributes + (_STREAMS.get(name) or key_values([("log.iostream", name)], 6))
            for name in names
        ]
        tail_lengths = np.array([len(tail) for tail in tails], dtype=np.int64)[streams + 1]
        severities = b""
        severity_lengths = np.zeros(n, dtype=np.int64)
        if self._severity is not None:
            found = [self._severity(source[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
            severities = b"".join(found)
            severity_lengths = np.fromiter(map(len, found), dtype=np.int64, count=n)
        body = 1 + _varint_size(lengths) + lengths  # AnyValue{string_value}
        size = 19 + _varint_size(body) + body + severity_lengths + tail_lengths
        every = np.ones(n, dtype=np.bool_)
        first = np.zeros(n, dtype=np.bool_)
        first[0] = True
        frame = self.frame(int((1 + _varint_size(size) + size).sum()))
        frame_offsets = np.full(n + 1, len(frame), dtype=np.int32)
        frame_offsets[0] = 0
        parts = [
            (_RAW, b"", first, frame_offsets, frame, 0),  # row 0 only
            (_VARINT, b"\x12", every, size.astype(np.uint64), b"", 0),  # ScopeLogs.log_records
            (_FIXED, b"\x09", every, times.astype("<u8"), b"", 8),
            (_FIXED, b"\x59", every, np.full(n, self._observed, dtype="<u8"), b"", 8),
            (_VARINT, b"\x2a", every, body.astype(np.uint64), b"", 0),
            *_slices(_BYTES, b"\x0a", source, every, starts, ends),
        ]
        if self._severity is not None:
            parts.append((_RAW, b"", every, _offsets(severity_lengths), severities, 0))
        for index in np.flatnonzero(np.bincount(streams + 1, minlength=len(tails))).tolist():
            parts.extend(_slices(_RAW, b"", tails[index], streams == index - 1, 0, len(tails[index])))
        return _wirescan.join(n, parts)[1]

    def _severity_of(self, message: bytes) -> bytes:
        text: str | None = None
        rules = self._rules
        if rules.severity_field is not None and message.startswith(b"{"):
            try:
                document = json.loads(message)
            except ValueError:
                document = None
            value = document.get(rules.severity_field) if isinstance(document, dict) else None
            if isinstance(value, str):
                text = value
        if text is None and rules.severity_regex is not None:
            match = rules.severity_regex.search(message.decode("utf-8", "replace"))
            if match:
                text = str(match["severity"] or "")
        if not text:
            return b""
        number, _ = SEVERITIES.get(text.lower(), (0, ""))
        encoded_text = utf8(text)
        return b"\x10" + varint(number) + b"\x1a" + varint(len(encoded_text)) + encoded_text


def parse_block(
    block: bytes, fmt: str, rules: Rules, encoder: Encoder, final: bool, tail: bool = False
) -> Parsed:
    """The complete records at the start of ``block`` (see the module's rules); ``final``: the
    last record and open parts are complete; ``tail``: so is a last line without its newline."""
    cut = _complete(block, tail)
    if fmt == "cri" and rules.line_start is None and 0 < cut < _COLUMNS_MAX_BYTES and _is_utf8(block, cut):
        return _parse_cri(block, cut, rules, encoder, final)
    return parse_lines(block, fmt, rules, encoder, final, tail)


def parse_lines(
    block: bytes, fmt: str, rules: Rules, encoder: Encoder, final: bool, tail: bool = False
) -> Parsed:
    """``parse_block``, a line at a time (every format and rule)."""
    out = Parsed()
    cut = _complete(block, tail)
    if not cut:
        return out
    text = block[:cut]
    clean: Callable[[bytes], bytes] = _same if _is_utf8(text, cut) else _valid_utf8
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    # (message, time, stream, end) of every complete entry, parts joined; ``end`` is the offset
    # up to which every line belongs to this entry or an earlier one, -1 while a part is open
    entries: list[Entry] = []
    limit = rules.max_line_bytes
    offset = settled = 0  # settled: entries before this index have their end
    if fmt == "cri":
        pending: dict[bytes, tuple[bytes, list[bytes]]] = {}  # stream → first part's time, parts
        for line in lines:
            offset += len(line) + 1
            if len(line) > limit:
                line = cri.whole_characters(line[:limit])
                out.too_long += 1
            pieces = line.rstrip().split(b" ", 3)
            if len(pieces) < 3:
                entries.append((line.rstrip(), 0, None, -1))  # not CRI: kept as it is
            else:
                stamp, stream, message = pieces[0], pieces[1], pieces[3] if len(pieces) == 4 else b""
                if pieces[2] == b"P":
                    if stream in pending:
                        pending[stream][1].append(message)
                    else:
                        pending[stream] = (stamp, [message])
                else:
                    started = pending.pop(stream, None)
                    if started is not None:
                        stamp, message = started[0], b"".join([*started[1], message])
                    entries.append((message, rfc3339_ns(stamp), stream.decode("ascii", "replace"), -1))
            if not pending:
                settled = _settle(entries, settled, offset)
        if pending and final:
            for stream, (stamp, parts) in pending.items():
                entries.append((b"".join(parts), rfc3339_ns(stamp), stream.decode("ascii", "replace"), -1))
            settled = _settle(entries, settled, offset)
    elif fmt == "docker":
        joined: list[str] = []
        joined_stamp: object = None  # the first part's time
        for line in lines:
            offset += len(line) + 1
            if len(line) > limit:
                out.too_long += 1
            try:
                document = json.loads(line)
                log, stream, stamp = document["log"], document.get("stream"), document.get("time")
            except (ValueError, KeyError, TypeError):
                entries.append((cri.whole_characters(line[:limit]), 0, None, -1))
            else:
                if not joined:
                    joined_stamp = stamp
                joined.append(log if isinstance(log, str) else str(log))
                if joined[-1].endswith("\n"):
                    message = cri.whole_characters(utf8("".join(joined))[:limit])  # its newline kept
                    joined = []
                    time_ns = rfc3339_ns(utf8(joined_stamp)) if isinstance(joined_stamp, str) else 0
                    name = valid_text(stream) if isinstance(stream, str) else None
                    entries.append((message, time_ns, name, -1))
            if not joined:
                settled = _settle(entries, settled, offset)
        if joined and final:
            entries.append((cri.whole_characters(utf8("".join(joined))[:limit]), 0, None, -1))
            settled = _settle(entries, settled, offset)
    else:
        for line in lines:
            offset += len(line) + 1
            if len(line) > limit:
                line = cri.whole_characters(line[:limit])
                out.too_long += 1
            entries.append((line.rstrip(), 0, None, offset))
        settled = len(entries)
    del entries[settled:]  # waiting for a part that is not in the block yet
    if final and entries and entries[-1][3] > len(text):  # the last line had no newline
        entries[-1] = (*entries[-1][:3], len(text))
    _emit(out, entries, rules, encoder, clean, final)
    return out


Entry = tuple[bytes, int, "str | None", int]


def _complete(block: bytes, tail: bool) -> int:
    """The length of the lines of ``block`` that may be read: up to its last newline (or all)."""
    cut = block.rfind(b"\n") + 1
    return len(block) if tail and cut < len(block) else cut


def _is_utf8(block: bytes, cut: int) -> bool:
    """Whether ``block[:cut]`` is valid UTF-8 (ASCII checked without a copy)."""
    if np.frombuffer(block, dtype=np.uint8, count=cut).max(initial=0) < 0x80:
        return True
    try:
        block[:cut].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _varint_size(values: I64) -> I64:
    """The bytes of each value's varint (values below 2**35: lengths)."""
    size: I64 = 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21) + (values >= 1 << 28)
    return size


_Part = tuple[int, bytes, npt.NDArray[np.bool_], npt.NDArray[Any], bytes, int]


def _slices(
    kind: int, tag: bytes, data: bytes, rows: npt.NDArray[np.bool_], starts: I64 | int, ends: I64 | int
) -> list[_Part]:
    """``_wirescan.join`` parts writing ``data[starts[i]:ends[i]]`` (a field ``tag`` of ``kind``
    _BYTES or _RAW) for each of the ``rows``. Join reads row i's slice between offsets i and i + 1,
    so one part takes the even rows and one the odd rows: the slices need not be adjacent (nor
    distinct: the same bytes for every row)."""
    n = len(rows)
    parts = []
    for parity in (0, 1):
        offsets = np.zeros(n + 1, dtype=np.int32)
        offsets[parity:n:2] = starts if isinstance(starts, int) else starts[parity::2]
        offsets[parity + 1 :: 2] = ends if isinstance(ends, int) else ends[parity::2]
        emit = rows.copy()
        emit[1 - parity :: 2] = False
        if emit.any():
            parts.append((kind, tag, emit, offsets, data, 0))
    return parts


def _no_frame(length: int) -> bytes:
    return b""


def _offsets(lengths: I64) -> npt.NDArray[np.int32]:
    """Arrow-style offsets of pieces of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:], dtype=np.int32)
    return offsets


def _parse_cri(block: bytes, cut: int, rules: Rules, encoder: Encoder, final: bool) -> Parsed:
    """``parse_lines`` for the lines ``block[:cut]`` of a `cri` block, valid UTF-8, without
    multiline rules, by columns."""
    found = cri.lines(block, cut, rules.max_line_bytes)
    starts, ends, offsets = found.starts, found.ends, found.offsets
    columns = cri.fields(block, starts, ends)
    message, stream, partial, times = columns.message, columns.stream, columns.partial, columns.time
    names = ["stdout", "stderr"]
    codes = {name.encode(): code for code, name in enumerate(names)}
    for row in np.flatnonzero(~columns.regular).tolist():  # read as the per-line reading does
        start, end = int(starts[row]), int(ends[row])
        pieces = block[start:end].split(b" ", 3)
        if len(pieces) < 3:  # not CRI: the line is the message
            message[row], stream[row], partial[row], times[row] = start, _NO_STREAM, False, 0
            continue
        time_ns = rfc3339_ns(pieces[0])
        if pieces[1] not in codes:
            codes[pieces[1]] = len(names)
            names.append(pieces[1].decode("ascii", "replace"))
        message[row] = end - len(pieces[3]) if len(pieces) == 4 else end
        stream[row], partial[row], times[row] = codes[pieces[1]], pieces[2] == b"P", time_ns
    source = block
    if partial.any():
        source, message, ends, times, stream, offsets = _join_partials(
            block, message, ends, times, stream, partial, offsets, final
        )
    out = Parsed(too_long=found.too_long, count=len(message))
    if out.count:
        out.data = encoder.encode_columns(source, message, ends, times, stream, names)
        out.end = int(offsets[-1])
        if final and out.end > cut:  # the last line had no newline
            out.end = cut
    return out


def _join_partials(
    block: bytes,
    message: I64,
    ends: I64,
    times: I64,
    stream: I64,
    partial: npt.NDArray[np.bool_],
    offsets: I64,
    final: bool,
) -> tuple[bytes, I64, I64, I64, I64, I64]:
    """The entries of lines with partial (P) ones among them, a line at a time as ``parse_lines``
    joins them: (source, message starts, ends, times, streams, offsets) with each joined
    message appended to ``block`` in ``source``."""
    starts_l, ends_l, times_l = message.tolist(), ends.tolist(), times.tolist()
    streams_l, partial_l, offsets_l = stream.tolist(), partial.tolist(), offsets.tolist()
    entries: list[tuple[int, int, int, int]] = []  # message start and end in source, time, stream
    settled: list[int] = []  # the offset of each entry that has its end
    pending: dict[int, tuple[int, list[int]]] = {}  # stream → its first part's row, its parts' rows
    joined: list[bytes] = []
    at = len(block)

    def join(code: int, first: int, rows: list[int]) -> None:
        nonlocal at
        part = b"".join([block[starts_l[r] : ends_l[r]] for r in rows])
        joined.append(part)
        entries.append((at, at + len(part), times_l[first], code))
        at += len(part)

    for row, code in enumerate(streams_l):
        if code == _NO_STREAM:
            entries.append((starts_l[row], ends_l[row], 0, code))
        elif partial_l[row]:
            pending.setdefault(code, (row, []))[1].append(row)
        else:
            started = pending.pop(code, None)
            if started is None:
                entries.append((starts_l[row], ends_l[row], times_l[row], code))
            else:
                join(code, started[0], [*started[1], row])
        if not pending:
            settled.extend([offsets_l[row]] * (len(entries) - len(settled)))
    if pending and final:
        for code, (first, rows) in pending.items():
            join(code, first, rows)
        settled.extend([offsets_l[-1]] * (len(entries) - len(settled)))
    columns = np.ascontiguousarray(np.array(entries[: len(settled)], dtype=np.int64).reshape(-1, 4).T)
    return (
        block + b"".join(joined),
        columns[0],
        columns[1],
        columns[2],
        columns[3],
        np.array(settled, dtype=np.int64),
    )


def _settle(entries: list[Entry], settled: int, offset: int) -> int:
    """Every entry from ``settled`` on ends at ``offset`` (no part is open any more)."""
    for index in range(settled, len(entries)):
        message, time_ns, stream, _ = entries[index]
        entries[index] = (message, time_ns, stream, offset)
    return len(entries)


def _same(message: bytes) -> bytes:
    return message


def _valid_utf8(message: bytes) -> bytes:
    return message.decode("utf-8", "replace").encode()


def _emit(
    out: Parsed,
    entries: list[Entry],
    rules: Rules,
    encoder: Encoder,
    clean: Callable[[bytes], bytes],
    final: bool,
) -> None:
    encode = encoder.encode
    records: list[bytes] = []
    start = rules.line_start
    if start is None:
        for message, time_ns, stream, end in entries:
            records.append(encode(time_ns, clean(message), stream))
            out.end = end
    else:
        group: list[Entry] = []
        for entry in entries:
            if group and start.match(entry[0].decode("utf-8", "replace")):
                records.append(_encode_group(out, group, encode, clean))
                group = []
            group.append(entry)
        if group and final:
            records.append(_encode_group(out, group, encode, clean))
    if records:
        out.data, out.count = b"".join([encoder.frame(sum(map(len, records))), *records]), len(records)


def _encode_group(
    out: Parsed,
    group: list[Entry],
    encode: Callable[[int, bytes, str | None], bytes],
    clean: Callable[[bytes], bytes],
) -> bytes:
    message = b"\n".join(entry[0] for entry in group)
    out.end = group[-1][3]
    return encode(group[0][1], clean(message), group[0][2])
