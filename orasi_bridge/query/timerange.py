"""The query API's ``start`` / ``end``: RFC 3339 strings or Unix nanoseconds."""

from __future__ import annotations

import datetime as dt
import time

from orasi_common.errors import MalformedData

DEFAULT_WINDOW_NS = 3600 * 10**9


def to_nanos(value: str | int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise MalformedData(f"{name} must be an RFC 3339 time or Unix nanoseconds, not a boolean")
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedData(
            f"{name} {value!r} is neither RFC 3339 (2026-11-27T10:00:00Z) nor Unix nanoseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    delta = parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def resolve_range(start: str | int | None, end: str | int | None) -> tuple[int, int]:
    """[start, end] (inclusive) in Unix nanoseconds; absent end = now, absent start = end - 1 h."""
    end_ns = to_nanos(end, "end")
    end_ns = time.time_ns() if end_ns is None else end_ns
    start_ns = to_nanos(start, "start")
    start_ns = end_ns - DEFAULT_WINDOW_NS if start_ns is None else start_ns
    if start_ns > end_ns:
        raise MalformedData("start is after end")
    return start_ns, end_ns
