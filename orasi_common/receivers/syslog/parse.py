"""Syslog messages (RFC 5424 and RFC 3164) and TCP framing (RFC 6587) → OTLP log records.

A message becomes one LogRecord, as the Collector's syslog parser reads it::

    PRI                → severity (below), attributes facility (int) and priority (int)
    TIMESTAMP          → time_unix_nano (RFC 3164's has no year nor zone: the receive year,
                         the previous one when that would be more than a day ahead; the
                         configured ``location``)
    HOSTNAME           → attribute hostname          APP-NAME / TAG → appname
    PROCID / TAG[pid]  → proc_id                     MSGID → msg_id (RFC 5424)
    VERSION            → version (RFC 5424)
    STRUCTURED-DATA    → attributes structured_data.<SD-ID>.<PARAM-NAME> (string values,
                         escapes resolved); an element without parameters → structured_data.<SD-ID> = ""
    MSG                → body (a UTF-8 BOM and a trailing line end dropped; invalid UTF-8 replaced)

    severity  0 emerg   1 alert   2 crit    3 err     4 warning 5 notice  6 info    7 debug
    OTLP      FATAL2 22 ERROR3 19 ERROR2 18 ERROR 17  WARN 13   INFO2 10  INFO 9    DEBUG 5

``-`` (RFC 5424's nil value) leaves a field out. A message without a valid PRI, or that does
not follow its RFC's header, is MalformedMessage (counted and left out by the receiver).

TCP framing (RFC 6587) is told by a connection's first byte: a digit means octet counting
(``LEN SP MSG``), anything else newline-terminated messages. ``Framer`` splits a connection's
bytes as they arrive, in bulk (``bytes.split`` on whole blocks for newline framing); a length
that is not a number, a message longer than the limit, or a line longer than the limit without
its newline is a FramingError, which ends the connection (the stream cannot be resynchronised).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

SEVERITY = (
    (22, "emerg"),
    (19, "alert"),
    (18, "crit"),
    (17, "err"),
    (13, "warning"),
    (10, "notice"),
    (9, "info"),
    (5, "debug"),
)
_PRI = re.compile(rb"<(\d{1,3})>")
_RFC5424 = re.compile(rb"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_RFC3164 = re.compile(
    rb"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d) (\S+) ([^\s:\[]+)(?:\[([^\]]*)\])?:? ?"
)
_MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
_SD_PARAM = re.compile(rb' ?([^\s=\]"]+)="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_ID = re.compile(rb"\[([^\s=\]\"]+)")
_UNESCAPE = re.compile(rb'\\([\\"\]])')
_BOM = b"\xef\xbb\xbf"


class MalformedMessage(ValueError):
    """A syslog message that does not follow its RFC; the text says what is wrong."""


class FramingError(ValueError):
    """The TCP stream cannot be split into messages any more; ``messages`` are those completed
    before the break, still good."""

    def __init__(self, problem: str, messages: list[bytes] | None = None) -> None:
        super().__init__(problem)
        self.messages = messages or []


@dataclass(slots=True)
class Record:
    time_unix_nano: int
    severity_number: int
    severity_text: str
    body: str
    attributes: dict[str, str | int]


def parse(message: bytes, protocol: str, zone: dt.tzinfo, now: dt.datetime) -> Record:
    """One message (without its framing) → a Record; ``protocol`` is rfc5424, rfc3164 or auto."""
    pri = _PRI.match(message)
    if pri is None:
        raise MalformedMessage("the message does not start with a <PRI> field")
    priority = int(pri[1])
    if priority > 191:
        raise MalformedMessage(f"PRI {priority} is out of range (0..191)")
    rest = message[pri.end() :]
    number, text = SEVERITY[priority & 7]
    attributes: dict[str, str | int] = {"priority": priority, "facility": priority >> 3}
    if protocol == "rfc5424" or (protocol == "auto" and rest.startswith(b"1 ")):
        time_ns, body = _rfc5424(rest, attributes)
    else:
        time_ns, body = _rfc3164(rest, attributes, zone, now)
    if body.startswith(_BOM):
        body = body[3:]
    if body.endswith(b"\n"):  # a sender's line end inside an octet-counted frame (rsyslog's)
        body = body.rstrip(b"\r\n")
    return Record(time_ns, number, text, body.decode("utf-8", "replace"), attributes)


def _nil(value: bytes) -> str | None:
    return None if value == b"-" else value.decode("utf-8", "replace")


def _rfc5424(rest: bytes, attributes: dict[str, str | int]) -> tuple[int, bytes]:
    header = _RFC5424.match(rest)
    if header is None:
        raise MalformedMessage(
            "not an RFC 5424 header (VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID after <PRI>)"
        )
    attributes["version"] = 1
    timestamp, *fields = header.groups()
    for name, value in zip(("hostname", "appname", "proc_id", "msg_id"), fields, strict=True):
        text = _nil(value)
        if text is not None:
            attributes[name] = text
    time_ns = 0 if timestamp == b"-" else _rfc3339(timestamp)
    after = rest[header.end() :]
    if after.startswith(b"-"):
        return time_ns, after[2:]  # "- MSG" (or "-" alone)
    end = _structured_data(after, attributes)
    return time_ns, after[end + 1 :] if after[end : end + 1] == b" " else after[end:]


def _rfc3339(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"timestamp {text!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise MalformedMessage(f"timestamp {text!r} has no time zone")
    return _epoch_ns(parsed)


def _epoch_ns(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _structured_data(data: bytes, attributes: dict[str, str | int]) -> int:
    """Parse ``[id p="v" ...]...`` at the start of ``data``; the offset just past it."""
    at = 0
    while data[at : at + 1] == b"[":
        element = _SD_ID.match(data, at)
        if element is None:
            raise MalformedMessage("a STRUCTURED-DATA element has no SD-ID")
        prefix = "structured_data." + element[1].decode("utf-8", "replace")
        at = element.end()
        params = 0
        while True:
            param = _SD_PARAM.match(data, at)
            if param is None:
                break
            value = _UNESCAPE.sub(rb"\1", param[2]).decode("utf-8", "replace")
            attributes[f"{prefix}.{param[1].decode('utf-8', 'replace')}"] = value
            at = param.end()
            params += 1
        if data[at : at + 1] != b"]":
            raise MalformedMessage(f"the STRUCTURED-DATA element {prefix[16:]!r} is not closed by ]")
        if not params:
            attributes[prefix] = ""
        at += 1
    return at


def _rfc3164(
    rest: bytes, attributes: dict[str, str | int], zone: dt.tzinfo, now: dt.datetime
) -> tuple[int, bytes]:
    header = _RFC3164.match(rest)
    if header is None:
        raise MalformedMessage("not an RFC 3164 header (Mmm dd hh:mm:ss HOSTNAME TAG: after <PRI>)")
    month = _MONTHS.get(header[1])
    if month is None:
        raise MalformedMessage(f"{header[1]!r} is not a month")
    local_now = now.astimezone(zone)
    try:
        moment = dt.datetime(
            local_now.year, month, int(header[2]), int(header[3]), int(header[4]), int(header[5]), tzinfo=zone
        )
    except ValueError as error:
        raise MalformedMessage(f"the timestamp is not a date: {error}") from None
    if moment - local_now > dt.timedelta(days=1):  # December's message read in January
        moment = moment.replace(year=moment.year - 1)
    attributes["hostname"] = header[6].decode("utf-8", "replace")
    attributes["appname"] = header[7].decode("utf-8", "replace")
    if header[8] is not None:
        attributes["proc_id"] = header[8].decode("utf-8", "replace")
    return _epoch_ns(moment), rest[header.end() :]


def zone_of(location: str) -> dt.tzinfo:
    return dt.UTC if location.upper() == "UTC" else ZoneInfo(location)


class Framer:
    """Splits one TCP connection's bytes into messages (RFC 6587), ``limit`` bytes at most each."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = b""
        self._octet_counting: bool | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data``; FramingError when the stream is broken."""
        buffer = self._buffer + data if self._buffer else data
        if self._octet_counting is None and buffer:
            self._octet_counting = buffer[:1].isdigit()
        if self._octet_counting:
            messages, self._buffer = self._counted(buffer)
            return messages
        *lines, self._buffer = buffer.split(b"\n")
        out: list[bytes] = []
        for line in lines:
            if len(line) > self._limit:
                raise FramingError(
                    f"a line of {len(line)} bytes is longer than max_message_bytes ({self._limit})", out
                )
            line = line.rstrip(b"\r")
            if line:
                out.append(line)
        if len(self._buffer) > self._limit:
            raise FramingError(
                f"a line is longer than max_message_bytes ({self._limit}) and has no newline yet", out
            )
        return out

    def _counted(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        out: list[bytes] = []
        at = 0
        size = len(buffer)
        while at < size:
            space = buffer.find(b" ", at, at + 11)
            if space < 0:
                if size - at > 10:
                    raise FramingError("an octet-counted frame does not start with LEN SP", out)
                break
            length_text = buffer[at:space]
            if not length_text.isdigit() or length_text.startswith(b"0"):
                raise FramingError(f"the frame length {length_text[:10]!r} is not a number", out)
            length = int(length_text)
            if length > self._limit:
                raise FramingError(
                    f"a frame of {length} bytes is longer than max_message_bytes ({self._limit})", out
                )
            end = space + 1 + length
            if end > size:
                break
            out.append(buffer[space + 1 : end])
            at = end
            # some senders end octet-counted frames with a newline too
            if buffer[at : at + 1] == b"\n":
                at += 1
        return out, buffer[at:]

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def octet_counting(self) -> bool:
        return bool(self._octet_counting)
