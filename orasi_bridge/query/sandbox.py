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

import json
import threading
from typing import Any

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
    """Names of the tables a (checked) statement reads: parsed (never bound), in the sandbox."""
    return tables_in(parse(sql))


_parser: duckdb.DuckDBPyConnection | None = None  # sandboxed too; it only parses, never binds
_parser_lock = threading.Lock()


def parse(sql: str) -> dict[str, Any]:
    """The parse tree of a (checked) statement (``json_serialize_sql``; never bound), in the sandbox."""
    with _parser_lock:
        global _parser
        if _parser is None:
            _parser = connect(1, "256MB")
        row = _parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree: dict[str, Any] = json.loads(row[0]) if row else {}
    if tree.get("error"):
        raise QueryRefused(f"the SQL does not parse: {tree.get('error_message')}")
    return tree


def tables_in(tree: dict[str, Any]) -> set[str]:
    """Names of the base tables a parse tree reads (lower case)."""
    found: set[str] = set()
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                found.add(node["table_name"].lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


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
