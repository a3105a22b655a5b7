"""A global aggregate without GROUP BY (``Plan.scalar``) is merged in Python from the regions'
one-row answers; held here against DuckDB running the coordinator's SQL over the same answers, and
against the query over all the rows at once (no servers)."""

from __future__ import annotations

import math
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from orasi_bridge.federation.coordinator import _merge_scalar
from orasi_bridge.federation.plan import PARTIALS, plan

NAN = float("nan")
REGIONS: list[dict[str, list[Any]]] = [
    {"i": [3, 1, 4, None], "d": [1.5, -2.25, 1e300, None]},
    {"i": [None, None], "d": [None, None]},  # only NULLs
    {"i": [], "d": []},  # no rows
    {"i": [2**62, 2**62], "d": [NAN, 0.5]},  # a sum past BIGINT; NaN
]
SCALAR = [
    "SELECT count(*) AS n FROM t",
    "SELECT count(i) AS n, sum(i) AS s, min(i), max(i) AS hi, avg(i) AS mean FROM t",
    "SELECT sum(d) AS s, min(d) AS lo, max(d) AS hi, avg(d) AS mean, count(d) FROM t",
    "SELECT min(d) AS lo, max(i) AS hi FROM t",
]


def tables(regions: list[dict[str, list[Any]]]) -> list[pa.Table]:
    schema = pa.schema({"i": pa.int64(), "d": pa.float64()})
    return [pa.table(region, schema=schema) for region in regions]


def run(sql: str, **tables: pa.Table) -> duckdb.DuckDBPyRelation:
    connection = duckdb.connect()
    for name, table in tables.items():
        connection.register(name, table)
    return connection.sql(sql)


def same(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]) -> bool:
    return len(left) == len(right) and all(
        (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        or (a == pytest.approx(b, rel=1e-12) if isinstance(a, float) else a == b)
        for row_a, row_b in zip(left, right, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )


@pytest.mark.parametrize("sql", SCALAR)
@pytest.mark.parametrize("regions", [REGIONS, REGIONS[:1], REGIONS[1:3]], ids=["all", "one", "empty"])
def test_a_scalar_aggregate_merged_in_python_equals_duckdb(
    sql: str, regions: list[dict[str, list[Any]]]
) -> None:
    found = plan(sql.replace(" FROM t", " FROM spans"))
    assert found.scalar, sql
    region_sql = found.region_sql[PARTIALS].replace(" FROM spans", " FROM t")
    answers = [run(region_sql, t=table).to_arrow_table() for table in tables(regions)]
    everything = run(sql, t=pa.concat_tables(tables(regions)))
    columns = [(name, str(kind)) for name, kind in zip(everything.columns, everything.types, strict=True)]

    rows = _merge_scalar(found, columns, answers, as_arrow=False)
    assert rows is not None and rows.rows is not None and rows.columns == columns
    expected = run(found.coordinator_sql, **{PARTIALS: pa.concat_tables(answers)}).fetchall()
    assert same(rows.rows, expected), (rows.rows, expected)
    assert same(rows.rows, everything.fetchall())

    arrow = _merge_scalar(found, columns, answers, as_arrow=True)
    assert arrow is not None and arrow.arrow is not None
    assert arrow.arrow.schema == run(sql, t=pa.concat_tables(tables(regions))).to_arrow_table().schema
    assert same([tuple(arrow.arrow.to_pylist()[0].values())], rows.rows)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) + 1 AS n FROM spans",  # an expression around the aggregate
        "SELECT service_name, count(*) FROM spans GROUP BY service_name",
        "SELECT count(*) FROM spans HAVING count(*) > 1",
        "SELECT count(*) FROM spans LIMIT 0",
    ],
)
def test_other_aggregates_are_merged_by_duckdb(sql: str) -> None:
    found = plan(sql)
    assert found.kind == "partial" and not found.scalar
    one = pa.table({"__a0": pa.array([1], pa.int64())})
    assert _merge_scalar(found, [("n", "BIGINT")], [one], as_arrow=False) is None


def test_a_partial_that_is_not_a_number_is_merged_by_duckdb() -> None:
    found = plan("SELECT max(time) AS t FROM spans")
    assert found.scalar
    answer = pa.table({"__a0": pa.array([0], pa.timestamp("us", tz="UTC"))})
    assert _merge_scalar(found, [("t", "TIMESTAMP WITH TIME ZONE")], [answer], as_arrow=False) is None
