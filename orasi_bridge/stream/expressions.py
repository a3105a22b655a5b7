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
import pyarrow.compute as pc

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


IMPURE = frozenset(
    {
        *("random", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "nextval", "currval", "setseed"),
        *("now", "today", "get_current_time", "get_current_timestamp", "transaction_timestamp"),
        *("current_date", "current_time", "current_timestamp", "current_localtime", "current_localtimestamp"),
    }
)
"""Functions whose value is not the same for equal arguments in every query (random ones, the
time: a value of them computed for one batch may not serve the next)."""

DISTINCT_ROWS = 1024
"""Record batches of at least this many rows whose expressions read one column of few distinct
values are evaluated over those values (``evaluate``)."""

CACHED_VALUES = 65_536
"""The most distinct values whose expressions' values a thread remembers per query."""


@functools.lru_cache(maxsize=256)
def _referenced(sql: str) -> tuple[frozenset[str] | None, bool, bool]:
    """The names of the columns the query reads (None: all of them, through a ``*``), whether it
    reads other rows than each value's own (a window function), and whether it calls a function
    of ``IMPURE`` (some, like ``current_timestamp``, are column names to the parser)."""
    found: set[str] = set()
    star = window = volatile = False
    stack: list[Any] = [parse(sql)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("class")
            star, window = star or kind == "STAR", window or kind == "WINDOW"
            if kind == "COLUMN_REF":
                found.update(part for part in node.get("column_names", ()) if isinstance(part, str))
            name = str(node.get("function_name")).lower() if kind == "FUNCTION" else None
            volatile = volatile or name in IMPURE
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return (None if star else frozenset(found)), window, volatile


def reads(expressions: list[str]) -> frozenset[str] | None:
    """The columns of its own row that each value of ``expressions`` reads (None: every column,
    or other rows too: a window function)."""
    if not expressions:
        return frozenset()
    found, window, _ = _referenced(_query(expressions))
    return None if window else found


def _columns(sql: str, names: tuple[str, ...]) -> list[str]:
    """The columns of ``names`` the query reads (at least one, so that the rows are counted)."""
    found, _, _ = _referenced(sql)
    if found is None:
        return list(names)
    return [name for name in names if name in found] or [names[0]]


def evaluate(rows: pa.RecordBatch, expressions: list[str]) -> list[pa.Array]:
    """Each expression's value per row of ``rows``, in row order (blocking: DuckDB, one thread).
    Only the columns the expressions name are handed to DuckDB (converting the others, nested
    ones above all, would cost more than the expressions)."""
    sql = _query(expressions)
    columns = _columns(sql, tuple(rows.schema.names))
    encoded = _distinct(rows, columns, sql)
    if encoded is not None:  # each distinct value's, then each row takes its value's
        return [values.take(encoded.indices) for values in _of_values(sql, columns[0], encoded.dictionary)]
    result = _run(rows.select(columns), sql)
    return [column.combine_chunks() for column in result.columns]


def _distinct(rows: pa.RecordBatch, columns: list[str], sql: str) -> pa.DictionaryArray | None:
    """The one column the expressions read, dictionary-encoded, when its values are few (a
    quarter of the rows at most), of a string or integer type, and the expressions' values depend
    on the row's value alone (no other column, window or ``IMPURE`` function); None otherwise.

    A DuckDB query costs about a millisecond whatever its rows, plus the conversion of each row in
    and out: over an operation name or an enum, each batch's distinct values mostly have their
    values computed already (``_of_values``), and the dictionary encoding costs a few percent of
    the query."""
    if len(columns) != 1 or rows.num_rows < DISTINCT_ROWS:
        return None
    found, window, impure = _referenced(sql)
    column = rows.column(columns[0])
    kind = column.type
    if (
        window
        or impure
        or found is None
        or not found <= {columns[0]}
        or not (pa.types.is_string(kind) or pa.types.is_integer(kind))
    ):
        return None
    encoded = pc.dictionary_encode(column, null_encoding="encode")
    if len(encoded.dictionary) * 4 > rows.num_rows:
        return None
    return encoded


def _of_values(sql: str, name: str, values: pa.Array) -> list[pa.Array]:
    """The query's values for each of ``values`` (distinct, of the column ``name``): those this
    thread computed before, and the others computed now and remembered (up to ``CACHED_VALUES``
    per query, then forgotten all at once)."""
    cache: dict[tuple[str, str], tuple[pa.Array, list[pa.Array]]] = _local.__dict__.setdefault("values", {})
    known, results = cache.get((sql, name), (pa.array([], values.type), []))
    where = pc.index_in(values, value_set=known)
    missing = values.filter(where.is_null())
    if len(missing):
        computed = _run(pa.record_batch([missing], names=[name]), sql).columns
        fresh = [column.combine_chunks() for column in computed]
        if not results or len(known) + len(missing) > CACHED_VALUES:
            known, results = missing, fresh
        else:
            known = pa.concat_arrays([known, missing])
            results = [pa.concat_arrays([old, new]) for old, new in zip(results, fresh, strict=True)]
        cache[(sql, name)] = (known, results)
        where = pc.index_in(values, value_set=known)
    return [result.take(where) for result in results]


__all__ = ["ROWS", "evaluate", "reads", "result_type"]
