"""Which statements promise that only some trace ids of ``spans`` can reach the result."""

from __future__ import annotations

import pytest

from orasi_bridge.query import pushdown, sandbox

A = "0af7651916cd43dd8448eb211c80319c"
B = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("sql", "ids"),
    [
        (f"SELECT * FROM spans WHERE trace_id = '{A}'", {A}),
        (f"SELECT * FROM spans WHERE '{A}' = trace_id", {A}),
        (f"SELECT name FROM spans s WHERE s.trace_id IN ('{A}', '{B}') AND duration_ns > 5", {A, B}),
        (f"SELECT * FROM spans WHERE TRACE_ID = '{A}' AND trace_id IN ('{A}', '{B}') LIMIT 3", {A}),
        (f"SELECT count(*) FROM spans WHERE trace_id = '{A}' GROUP BY service_name", {A}),
    ],
)
def test_trace_lookups_are_recognised(sql: str, ids: set[str]) -> None:
    assert pushdown.trace_ids(sandbox.parse(sql)) == frozenset(ids)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM spans",
        f"SELECT * FROM spans WHERE trace_id = '{A}' OR duration_ns > 5",
        f"SELECT * FROM spans WHERE trace_id <> '{A}'",
        f"SELECT * FROM spans WHERE trace_id NOT IN ('{A}')",
        f"SELECT * FROM spans WHERE lower(trace_id) = '{A}'",
        f"SELECT * FROM spans WHERE trace_id = '{A}'::VARCHAR",
        "SELECT * FROM spans WHERE trace_id = span_id",
        f"SELECT * FROM spans WHERE parent_span_id = '{A}'",
        f"SELECT * FROM spans s JOIN logs l ON s.trace_id = l.trace_id WHERE s.trace_id = '{A}'",
        f"SELECT * FROM spans WHERE trace_id = '{A}' UNION ALL SELECT * FROM spans",
        f"SELECT * FROM spans WHERE trace_id = '{A}' AND span_id IN (SELECT parent_span_id FROM spans)",
        f"SELECT (SELECT count(*) FROM spans) FROM spans WHERE trace_id = '{A}'",
        f"WITH t AS (SELECT * FROM spans) SELECT * FROM t WHERE trace_id = '{A}'",
        f"SELECT * FROM (SELECT * FROM spans) WHERE trace_id = '{A}'",
        f"SELECT * FROM logs WHERE trace_id = '{A}'",
        f"SELECT * FROM other.spans WHERE trace_id = '{A}'",
        f"SELECT * FROM spans l, logs WHERE l.trace_id = '{A}'",
    ],
)
def test_anything_else_promises_nothing(sql: str) -> None:
    assert pushdown.trace_ids(sandbox.parse(sql)) is None
