"""The DuckDB sandbox every query runs in.

Defence in depth:
1. the SQL must be exactly one SELECT statement (DuckDB's own parser decides), which refuses
   COPY, ATTACH, INSTALL/LOAD, SET, PRAGMA, DDL, DML and multiple statements;
2. the connection is in-memory with external access disabled (no files, no network, no
   extension loading) and its configuration locked;
3. it holds only the caller's tenant's rows of the lake tables, registered as Arrow sources;
4. a time limit (the query is interrupted) and a row limit bound every query.
"""

from __future__ import annotations

import duckdb

from orasi_common.errors import PermanentError


class QueryRefused(PermanentError):
    """The SQL is not allowed, failed, or went over a limit (HTTP 400)."""


def check_statement(sql: str) -> None:
    """Raise QueryRefused unless ``sql`` is one SELECT statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"send exactly one statement (got {len(statements)})")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(
            f"only SELECT queries are allowed; this is a {kind.name} statement (the query API is read-only)"
        )


def referenced_tables(sql: str) -> set[str]:
    """Names of the tables a (checked) statement reads."""
    with duckdb.connect(":memory:") as connection:
        return {name.lower() for name in connection.get_table_names(sql)}


def connect(threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with no way out of the sandbox."""
    return duckdb.connect(
        ":memory:",
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "threads": threads,
            "memory_limit": memory_limit,
            "lock_configuration": True,
        },
    )
