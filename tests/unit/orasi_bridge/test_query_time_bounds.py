"""Which terms of a statement bound the `time` of each table reference (``pushdown.time_bounds``)."""

from __future__ import annotations

import pytest

from orasi_bridge.query import pushdown, sandbox


def shape(sql: str) -> dict[str, list[tuple[int, int]]]:
    """Per table: (number of lower bounds, number of upper bounds) of each reference."""
    found = pushdown.time_bounds(sandbox.parse(sql))
    return {name: sorted((len(b.lower), len(b.upper)) for b in bounds) for name, bounds in found.items()}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM spans WHERE time > now() - INTERVAL 1 DAY", {"spans": [(1, 0)]}),
        ("SELECT * FROM spans WHERE now() - INTERVAL 1 DAY < time", {"spans": [(1, 0)]}),
        ("SELECT * FROM spans WHERE time BETWEEN '2024-01-01' AND '2024-01-02'", {"spans": [(1, 1)]}),
        ("SELECT * FROM spans WHERE time = TIMESTAMP '2024-01-01'", {"spans": [(1, 1)]}),
        ("SELECT * FROM spans s WHERE s.time <= '2024-01-01' AND name = 'x'", {"spans": [(0, 1)]}),
        ("SELECT * FROM spans WHERE spans.time >= '2024-01-01'", {"spans": [(1, 0)]}),
        (
            "SELECT * FROM spans s LEFT JOIN logs l ON s.trace_id = l.trace_id WHERE l.time > '2024-01-01'",
            {"spans": [(0, 0)], "logs": [(1, 0)]},
        ),
        (
            "SELECT count(*) FROM spans WHERE time > '2024-01-01' UNION ALL SELECT count(*) FROM spans",
            {"spans": [(0, 0), (1, 0)]},
        ),
        (
            "WITH recent AS (SELECT * FROM logs WHERE time > now() - INTERVAL 2 HOUR) SELECT * FROM recent",
            {"logs": [(1, 0)], "recent": [(0, 0)]},
        ),
    ],
)
def test_bounds_are_found(sql: str, expected: dict[str, list[tuple[int, int]]]) -> None:
    assert shape(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM spans",
        "SELECT * FROM spans WHERE time > '2024-01-01' OR name = 'x'",
        "SELECT * FROM spans WHERE NOT (time < '2024-01-01')",
        "SELECT * FROM spans WHERE time > (SELECT max(time) FROM spans)",
        "SELECT * FROM spans WHERE time > start_time_unix_nano",
        "SELECT * FROM spans WHERE time + INTERVAL 1 HOUR > now()",
        # Unqualified `time` in a join could be either table's: no bound.
        "SELECT * FROM spans, (SELECT 1 AS x) t WHERE time > '2024-01-01'",
        # An ASOF join's rows depend on rows the bound would drop.
        "SELECT * FROM spans s ASOF JOIN logs l ON s.trace_id = l.trace_id AND s.time >= l.time "
        "WHERE s.time > '2024-01-01'",
        # A CTE that hides a table name: nothing is promised.
        "WITH spans AS (SELECT * FROM logs) SELECT * FROM spans WHERE time > '2024-01-01'",
        "SELECT * FROM main.spans WHERE time > '2024-01-01'",
    ],
)
def test_no_bound_without_a_promise(sql: str) -> None:
    found = pushdown.time_bounds(sandbox.parse(sql))
    assert found, "every statement here names a table"
    assert all(not b.lower and not b.upper for bounds in found.values() for b in bounds), found
