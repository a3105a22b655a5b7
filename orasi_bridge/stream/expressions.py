"""The stream processors' SQL expressions: DuckDB's dialect (the query API's), over one lake row's
columns (``name``, ``attributes['http.route']``, ``body``, …).

``check`` compiles an expression against the empty table of each lake table it applies to, when
the configuration loads, and names what is wrong (an unknown column, a type error); ``evaluate``
computes expressions over a record batch's Arrow columns (DuckDB reads only the columns they
name). Both run in the query sandbox (``query.sandbox``: no files, network or extensions), on a
connection per thread, and refuse anything but an expression over the row (a subquery reading
another table, a second statement).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import duckdb
import pyarrow as pa

from orasi_bridge.query.sandbox import QueryRefused, check_statement, connect, parse, referenced_tables

ROWS = "rows"
"""The name the record batch has in an expression's query."""

_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    connection: duckdb.DuckDBPyConnection | None = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = connect(1, "1GB")
    return connection


def lake_tables() -> dict[str, pa.Schema]:
    """The lake's table schemas (imported here, not at the top: the lake's config imports the
    stream's, and the lake package imports its config before its schema)."""
    from orasi_bridge.lake.schema import TABLES

    return TABLES


def _query(expressions: list[str]) -> str:
    columns = ", ".join(f"({expression}) AS e{i}" for i, expression in enumerate(expressions))
    return f"SELECT {columns} FROM {ROWS}"


def _run(rows: pa.RecordBatch | pa.Table, sql: str) -> pa.Table:
    connection = _connection()
    connection.register(ROWS, rows)
    try:
        return connection.sql(sql).to_arrow_table()
    finally:
        connection.unregister(ROWS)


def result_type(expression: str, table: str) -> pa.DataType:
    """The Arrow type of ``expression`` over ``table``'s rows; ValueError saying what is wrong
    (its first line of DuckDB's message, e.g. the column that does not exist) otherwise."""
    sql = _query([expression])
    try:
        check_statement(sql)
        if referenced_tables(sql) - {ROWS}:
            raise QueryRefused("an expression reads the row's columns only, not other tables")
        result = _run(lake_tables()[table].empty_table(), sql)
        if result.num_rows:  # an aggregate: one value for all rows, even none
            raise QueryRefused("an expression gives one value per row (no aggregates)")
        schema = result.schema
    except QueryRefused as error:
        raise ValueError(error.message) from None
    except duckdb.Error as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{first} (over the {table} table)") from None
    return schema.field(0).type


@functools.lru_cache(maxsize=256)
def _referenced(sql: str) -> tuple[frozenset[str] | None, bool]:
    """The names of the columns the query reads (None: all of them, through a ``*``), and whether
    it reads other rows than each value's own (a window function)."""
    found: set[str] = set()
    star = window = False
    stack: list[Any] = [parse(sql)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("class")
            star, window = star or kind == "STAR", window or kind == "WINDOW"
            if kind == "COLUMN_REF":
                found.update(part for part in node.get("column_names", ()) if isinstance(part, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return (None if star else frozenset(found)), window


def reads(expressions: list[str]) -> frozenset[str] | None:
    """The columns of its own row that each value of ``expressions`` reads (None: every column,
    or other rows too: a window function)."""
    if not expressions:
        return frozenset()
    found, window = _referenced(_query(expressions))
    return None if window else found


def _columns(sql: str, names: tuple[str, ...]) -> list[str]:
    """The columns of ``names`` the query reads (at least one, so that the rows are counted)."""
    found, _ = _referenced(sql)
    if found is None:
        return list(names)
    return [name for name in names if name in found] or [names[0]]


def evaluate(rows: pa.RecordBatch, expressions: list[str]) -> list[pa.Array]:
    """Each expression's value per row of ``rows``, in row order (blocking: DuckDB, one thread).
    Only the columns the expressions name are handed to DuckDB (converting the others, nested
    ones above all, would cost more than the expressions)."""
    sql = _query(expressions)
    result = _run(rows.select(_columns(sql, tuple(rows.schema.names))), sql)
    return [column.combine_chunks() for column in result.columns]


__all__ = ["ROWS", "evaluate", "reads", "result_type"]
