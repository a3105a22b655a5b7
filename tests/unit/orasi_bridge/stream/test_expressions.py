"""Expressions over one column of few distinct values are computed once per value (and remembered
across batches): held against the query over every row, which they must equal."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from orasi_bridge.stream import expressions
from orasi_bridge.stream.expressions import evaluate

from .rows import spans

NAMES = ["GET /users/1", "GET /users/22", "HGET", None, "POST /cart"]


def many(count: int = 2048, names: list[Any] = NAMES, **row: Any) -> pa.RecordBatch:
    return spans(*({"name": names[i % len(names)], "duration_ns": i % 7, **row} for i in range(count)))


def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each DuckDB query run from now on."""
    calls: list[int] = []
    run = expressions._run
    monkeypatch.setattr(
        expressions, "_run", lambda batch, query: calls.append(batch.num_rows) or run(batch, query)
    )
    return calls


def direct(rows: pa.RecordBatch, sql: list[str], monkeypatch: pytest.MonkeyPatch) -> list[pa.Array]:
    with monkeypatch.context() as patched:
        patched.setattr(expressions, "_distinct", lambda *_: None)
        return evaluate(rows, sql)


@pytest.mark.parametrize(
    "sql",
    [
        ["NOT coalesce((name IN ('HGET', 'HMSET')), false)"],
        ["regexp_replace(name, '/[0-9]+', '/{id}', 'g')", "CAST(('prod') AS VARCHAR)"],
        ["name IS NULL", "length(name)"],
        ["duration_ns * 2 + 1"],
        ["'constant'"],
    ],
)
def test_values_over_distinct_values_equal_the_query_over_every_row(
    sql: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = many()
    calls = counted(monkeypatch)
    first = evaluate(rows, sql)
    assert calls and max(calls) <= len(NAMES) + 7  # the distinct values only
    assert first == direct(rows, sql, monkeypatch)
    calls.clear()
    again = many(names=[*NAMES, "GET /users/333"])  # one value not seen yet
    second = evaluate(again, sql)
    assert max(calls, default=0) <= 1
    assert second == direct(again, sql, monkeypatch)


@pytest.mark.parametrize(
    "sql",
    [
        "name || CAST(random() AS VARCHAR)",
        "name || CAST(current_timestamp AS VARCHAR)",
        "name || CAST(now() AS VARCHAR)",
        "name || service_name",
        "name || CAST(row_number() OVER () AS VARCHAR)",
    ],
)
def test_values_that_are_not_the_row_values_alone_are_computed_per_row(
    sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = many()
    calls = counted(monkeypatch)
    evaluate(rows, [sql])
    assert calls == [rows.num_rows]


def test_many_distinct_values_and_small_batches_are_computed_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counted(monkeypatch)
    unique = many(names=[f"op {i}" for i in range(2048)])
    small = many(count=100)
    for rows in (unique, small):
        evaluate(rows, ["upper(name)"])
    assert calls == [2048, 100]


def test_the_values_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expressions, "CACHED_VALUES", 6)
    sql = ["upper(name)"]
    for names in (NAMES, ["a", "b", "c"], NAMES):
        rows = many(names=names)
        assert evaluate(rows, sql) == direct(rows, sql, monkeypatch)
    known, _ = expressions._local.values[(expressions._query(sql), "name")]
    assert len(known) == len(NAMES)  # forgotten when a, b and c came, then NAMES again
