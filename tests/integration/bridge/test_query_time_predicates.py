"""Predicates on `time` in the SQL itself bound the Iceberg scan (ARCHITECTURE §6, issue 18).

Without `start`/`end`, a SELECT whose WHERE compares `time` with a constant expression
(`now() - INTERVAL 1 DAY`, `TIMESTAMP '...'`, a string, `BETWEEN`) reads that window, open where
the SQL leaves it open; a table reference with no such predicate reads the default window, the
last hour. With `start`/`end`, the SQL's predicates narrow them. Each case runs on buffered rows
and again on committed files, and the stats show the window and the files the scan kept.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from integration.bridge import otlp_data as data
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine
from orasi_common.pdata import Signal

HOUR = data.HOUR
US = 1000
SPANS = {"A": data.T0 - 2 * HOUR, "B": data.T0, "C": data.T0 + 2 * HOUR}
# `time` is microseconds: the window of a bound is the bound at µs precision.
T0_US = data.T0 // US * US


@pytest.fixture
async def three_files(writer: LakeWriter) -> LakeWriter:
    """A, B and C (two hours apart around T0, in 2024: outside the default window) in three files."""
    for name, start in SPANS.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
        await writer.consume(data.batch(Signal.LOGS, data.log_request(start + 1, f"log {name}")))
        await writer.flush()
    return writer


async def run(engine: QueryEngine, sql: str, **bounds: Any) -> tuple[list[Any], dict[str, Any]]:
    result = await engine.execute(sql, "default", **bounds)
    assert result.rows is not None
    return [row[0] if len(row) == 1 else row for row in result.rows], result.stats


CASES: list[tuple[str, dict[str, Any], list[Any], list[int | None]]] = [
    # No time predicate, no start/end: the last hour (2024's rows are older).
    ("SELECT name FROM spans ORDER BY 1", {}, [], []),
    (
        "SELECT name FROM spans WHERE time >= TIMESTAMP '2024-05-31 16:00:00' ORDER BY 1",
        {},
        ["B", "C"],
        [1_717_171_200 * 10**9, None],
    ),
    (
        "SELECT name FROM spans WHERE TIMESTAMP '2024-05-31 16:00:00' <= time ORDER BY 1",
        {},
        ["B", "C"],
        [1_717_171_200 * 10**9, None],
    ),
    (
        "SELECT name FROM spans WHERE time < '2024-05-31T17:00:00Z' ORDER BY 1",
        {},
        ["A", "B"],
        [None, 1_717_174_800 * 10**9],
    ),
    (
        "SELECT name FROM spans WHERE time BETWEEN '2024-05-31T15:00:00Z' AND '2024-05-31T17:00:00+00:00'",
        {},
        ["B"],
        [1_717_167_600 * 10**9, 1_717_174_800 * 10**9],
    ),
    (f"SELECT name FROM spans WHERE time = make_timestamptz({T0_US // US})", {}, ["B"], [T0_US, T0_US]),
    # Several terms: the narrowest; other terms are left to DuckDB.
    (
        "SELECT s.name FROM spans AS s WHERE s.time > '2024-05-31T12:00:00Z' AND s.name <> 'A' "
        "AND s.time <= '2024-05-31T17:00:00Z'",
        {},
        ["B"],
        [1_717_156_800 * 10**9, 1_717_174_800 * 10**9],
    ),
    # start/end are narrowed by the SQL's predicates.
    (
        "SELECT name FROM spans WHERE time > '2024-05-31T15:00:00Z' ORDER BY 1",
        {"start": data.T0 - 3 * HOUR, "end": data.T0 + 3 * HOUR},
        ["B", "C"],
        [1_717_167_600 * 10**9, data.T0 + 3 * HOUR],
    ),
    # A bound that is not a constant (a subquery) bounds nothing: the default window.
    ("SELECT name FROM spans WHERE time > (SELECT min(time) FROM logs)", {}, [], []),
    # OR is not a bound either.
    ("SELECT name FROM spans WHERE time > '2024-01-01' OR name = 'A'", {}, [], []),
]


async def test_time_predicates_bound_the_scan(writer: LakeWriter, engine: QueryEngine) -> None:
    for name, start in SPANS.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
    problems = []
    for state in ("hot", "committed"):
        if state == "committed":
            await writer.flush()
        for sql, bounds, expected, window in CASES:
            got, stats = await run(engine, sql, **bounds)
            if got != expected:
                problems.append(f"{state} {sql} {bounds}: got {got}, want {expected}")
            if window and stats["windows"]["spans"] != window:
                problems.append(f"{state} {sql}: window {stats['windows']['spans']}, want {window}")
    assert not problems, "\n".join(problems)


async def test_files_outside_the_window_are_not_read(three_files: LakeWriter, engine: QueryEngine) -> None:
    got, stats = await run(engine, "SELECT name FROM spans WHERE time > '2024-05-31T17:00:00Z'")
    assert got == ["C"]
    assert stats["files"] == 1
    got, stats = await run(engine, "SELECT name FROM spans WHERE time > '2024-05-31T12:00:00Z' ORDER BY 1")
    assert got == ["A", "B", "C"]
    assert stats["files"] == 3


async def test_each_table_has_its_own_window(three_files: LakeWriter, engine: QueryEngine) -> None:
    sql = (
        "SELECT name FROM spans WHERE time < '2024-05-31T15:00:00Z' "
        "UNION ALL SELECT body FROM logs WHERE time > '2024-05-31T17:00:00Z' ORDER BY 1"
    )
    got, stats = await run(engine, sql)
    assert got == ["A", "log C"]
    assert stats["windows"] == {
        "logs": [1_717_174_800 * 10**9, None],
        "spans": [None, 1_717_167_600 * 10**9],
    }
    assert stats["start_unix_nano"] is None and stats["end_unix_nano"] is None
    assert stats["files"] == 2  # spans' A and logs' C, of six
    # A join: each side bounded by its qualified predicate.
    sql = (
        "SELECT s.name, l.body FROM spans s, logs l "
        "WHERE s.time >= '2024-05-31T16:00:00Z' AND l.time <= '2024-05-31T17:00:00Z' ORDER BY 1, 2"
    )
    got, stats = await run(engine, sql)
    assert got == [("B", "log A"), ("B", "log B"), ("C", "log A"), ("C", "log B")]
    assert stats["windows"] == {
        "logs": [None, 1_717_174_800 * 10**9],
        "spans": [1_717_171_200 * 10**9, None],
    }


async def test_a_table_named_twice_reads_the_union_of_its_windows(
    three_files: LakeWriter, engine: QueryEngine
) -> None:
    sql = (
        "SELECT name FROM spans WHERE time < '2024-05-31T15:00:00Z' "
        "UNION ALL SELECT name FROM spans WHERE time > '2024-05-31T17:00:00Z' ORDER BY 1"
    )
    got, stats = await run(engine, sql)
    assert got == ["A", "C"]
    assert stats["windows"]["spans"] == [None, None]
    # Window by window: the files of A and C, not B's between them.
    assert stats["ranges"]["spans"] == [[None, 1_717_167_600 * 10**9], [1_717_174_800 * 10**9, None]]
    assert stats["files"] == 2
    # Both references also bounded by start/end: each window within them, B's file still not read.
    got, stats = await run(engine, sql, start=data.T0 - 3 * HOUR, end=data.T0 + 3 * HOUR)
    assert got == ["A", "C"]
    assert stats["ranges"]["spans"] == [
        [data.T0 - 3 * HOUR, 1_717_167_600 * 10**9],
        [1_717_174_800 * 10**9, data.T0 + 3 * HOUR],
    ]
    assert stats["files"] == 2
    # Overlapping windows are read as one.
    sql = (
        "SELECT name FROM spans WHERE time < '2024-05-31T17:00:00Z' "
        "UNION ALL SELECT name FROM spans WHERE time > '2024-05-31T15:00:00Z' ORDER BY 1"
    )
    got, stats = await run(engine, sql)
    assert got == ["A", "B", "B", "C"]
    assert stats["ranges"]["spans"] == [[None, None]]
    assert stats["files"] == 3


async def test_now_relative_predicates(writer: LakeWriter, engine: QueryEngine) -> None:
    now = time.time_ns()
    for name, start in {
        "two-days-ago": now - 48 * HOUR,
        "12h-ago": now - 12 * HOUR,
        "recent": now - HOUR // 2,
    }.items():
        await writer.consume(data.batch(Signal.TRACES, data.span_request(start, name)))
    for state in ("hot", "committed"):
        if state == "committed":
            await writer.flush()
        got, stats = await run(
            engine, "SELECT name FROM spans WHERE time > now() - INTERVAL 1 DAY ORDER BY 1"
        )
        assert got == ["12h-ago", "recent"], state
        start, end = stats["windows"]["spans"]
        assert end is None
        assert now - 24 * HOUR <= start <= time.time_ns() - 24 * HOUR
        got, _ = await run(engine, "SELECT name FROM spans")
        assert got == ["recent"], state  # the default window: the last hour
