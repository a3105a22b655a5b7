"""`start` / `end` bound the `time` column of every table a query names (ARCHITECTURE §6).

Bounds are RFC 3339 strings or Unix nanoseconds (as ints or digit strings), inclusive at both
ends and compared at the microsecond precision of `time`; an absent end is now and an absent
start is end - 1 h. Each case is checked on buffered rows and again on committed ones (the
bounds are pushed into the Iceberg scan too).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from integration.bridge import otlp_data as data
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine
from orasi_common.errors import MalformedData, PermanentError
from orasi_common.pdata import Signal

HOUR = data.HOUR
# Three spans two hours apart; B starts at T0 = 2024-05-31T16:08:37.123456789Z.
SPANS = {"A": data.T0 - 2 * HOUR, "B": data.T0, "C": data.T0 + 2 * HOUR}


async def names(engine: QueryEngine, **bounds: Any) -> list[str]:
    result = await engine.execute("SELECT name FROM spans ORDER BY name", "default", **bounds)
    assert result.rows is not None
    return [row[0] for row in result.rows]


@pytest.fixture
async def three_spans(writer: LakeWriter) -> LakeWriter:
    for name, start in SPANS.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
    return writer


CASES: list[tuple[dict[str, Any], list[str]]] = [
    # RFC 3339 with Z, with an offset, with and without fractions.
    ({"start": "2024-05-31T15:08:37Z", "end": "2024-05-31T17:08:37Z"}, ["B"]),
    ({"start": "2024-05-31T17:08:37+02:00", "end": "2024-05-31T19:08:37+02:00"}, ["B"]),
    ({"start": "2024-05-31T12:00:00.5Z", "end": "2024-05-31T23:59:59.999999999Z"}, ["A", "B", "C"]),
    # Unix nanoseconds as integers and as digit strings.
    ({"start": data.T0 - HOUR, "end": data.T0 + HOUR}, ["B"]),
    ({"start": str(data.T0 - HOUR), "end": str(data.T0 + 3 * HOUR)}, ["B", "C"]),
    # Inclusive at both ends (to the microsecond of the `time` column).
    ({"start": "2024-05-31T16:08:37.123456Z", "end": "2024-05-31T16:08:37.123456Z"}, ["B"]),
    ({"start": SPANS["A"], "end": "2024-05-31T16:08:37.123455Z"}, ["A"]),
    ({"start": "2024-05-31T16:08:37.123457Z", "end": SPANS["C"]}, ["C"]),
    # Only a start: the end is now. Only an end: the start is one hour before it.
    ({"start": data.T0 - HOUR}, ["B", "C"]),
    ({"end": data.T0 + HOUR}, ["B"]),
    # Bounds apply at the microsecond of `time` (the start truncated to µs), so a row whose exact
    # start lies in [start, end] is never left out: C starts at ...123456789 ns, `time` ...123456 µs.
    ({"end": (SPANS["C"] // 1000) * 1000}, ["C"]),
    ({"end": (SPANS["C"] // 1000) * 1000 - 1}, []),
    ({"end": SPANS["C"] - 1}, ["C"]),
    ({"start": SPANS["C"], "end": SPANS["C"]}, ["C"]),
]


async def test_bounds_filter_rows(three_spans: LakeWriter, engine: QueryEngine) -> None:
    for state in ("hot", "committed"):
        if state == "committed":
            await three_spans.flush()
        problems = []
        for bounds, expected in CASES:
            got = await names(engine, **bounds)
            if got != expected:
                problems.append(f"{state} {bounds}: got {got}, want {expected}")
        assert not problems, "\n".join(problems)


async def test_bounds_are_reported_in_stats(three_spans: LakeWriter, engine: QueryEngine) -> None:
    result = await engine.execute(
        "SELECT count(*) FROM spans", "default", "2024-05-31T16:00:00Z", str(data.T0)
    )
    assert result.stats["start_unix_nano"] == 1_717_171_200 * 10**9
    assert result.stats["end_unix_nano"] == data.T0
    assert result.rows == [(1,)]


async def test_bounds_apply_to_every_table_named(writer: LakeWriter, engine: QueryEngine) -> None:
    for name, start in SPANS.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
        await writer.consume(data.batch(Signal.LOGS, data.log_request(start + 1, f"log {name}")))
    sql = "SELECT name FROM spans UNION ALL SELECT body FROM logs ORDER BY 1"
    result = await engine.execute(sql, "default", data.T0 - HOUR, data.T0 + HOUR)
    assert result.rows == [("B",), ("log B",)]
    assert result.stats["tables"] == ["logs", "spans"]


async def test_default_window_is_the_last_hour(writer: LakeWriter, engine: QueryEngine) -> None:
    now = time.time_ns()
    for name, start in {
        "two-hours-ago": now - 2 * HOUR,
        "half-an-hour-ago": now - HOUR // 2,
        "future": now + HOUR,
    }.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
    for state in ("hot", "committed"):
        if state == "committed":
            await writer.flush()
        result = await engine.execute("SELECT name FROM spans", "default")
        assert result.rows == [("half-an-hour-ago",)], state
        window = result.stats["end_unix_nano"] - result.stats["start_unix_nano"]
        assert window == HOUR
        assert now <= result.stats["end_unix_nano"] <= time.time_ns()
    assert await names(engine, start=now - 3 * HOUR, end=now + 2 * HOUR) == [
        "future",
        "half-an-hour-ago",
        "two-hours-ago",
    ]


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({"start": data.T0 + 1, "end": data.T0}, "start is after end"),
        ({"start": "yesterday"}, "neither RFC 3339"),
        ({"end": "2024-13-45T00:00:00Z"}, "neither RFC 3339"),
        ({"start": True}, "not a boolean"),
    ],
)
async def test_bad_bounds_are_refused(engine: QueryEngine, bounds: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedData) as raised:
        await engine.execute("SELECT count(*) FROM spans", "default", **bounds)
    assert isinstance(raised.value, PermanentError)
    assert message in raised.value.message
