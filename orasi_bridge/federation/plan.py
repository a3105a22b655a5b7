"""How a global query is split between the regions and the coordinator (pure: parse trees only).

Three shapes, tried in this order; each gives the same answer as the SQL over the union of the
regions' tables:

``partial``  one SELECT over one lake table (no join, CTE, subquery, window, DISTINCT, QUALIFY,
             ROLLUP/CUBE/GROUPING SETS) whose aggregates are all ``count``, ``sum``, ``min``, ``max``
             or ``avg`` (no DISTINCT, FILTER or ORDER BY inside them) and whose other column
             references are GROUP BY expressions. Each region runs::

                 SELECT <group expressions> AS __g0.., <partial aggregates> AS __a0..
                 FROM <table> WHERE <where> GROUP BY <group expressions>

             (``avg(x)`` as ``sum(x), count(x)``), and the coordinator runs the original SELECT over
             the union of those rows, every group expression replaced by its ``__g`` column and every
             aggregate by its merge (``count`` → ``sum``, ``sum`` → ``sum``, ``min`` → ``min``,
             ``max`` → ``max``, ``avg`` → ``sum / sum``); HAVING, ORDER BY and LIMIT run there.
             Only one row per group and region travels.
``top``      one SELECT over one lake table without aggregates (same exclusions) that has a
             constant LIMIT: each region sends its first ``limit + offset`` rows in the query's
             order (the table's columns the SQL uses), and the coordinator runs the SQL over their
             union. Rows beyond a region's first ``limit + offset`` cannot reach the result.
``raw``      anything else (joins, quantiles, DISTINCT, windows, …): each region sends the rows of
             every lake table the SQL names, in the table's time window (``QueryEngine.windows``),
             with only the columns the SQL uses, and the coordinator runs the SQL once over their
             union. Exact for every query, at the price of shipping the rows.

Every lake row carries its lake's ``region`` column, so the rows of the union say where they come
from.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from orasi_bridge.lake.schema import TABLES
from orasi_bridge.query import sandbox

PARTIALS = "__orasi_partials"
MERGEABLE = frozenset({"count_star", "count", "sum", "min", "max", "avg"})
_POSITION = {"query_location", "query_location_length", "alias"}


@dataclass(frozen=True)
class Plan:
    kind: Literal["partial", "top", "raw"]
    coordinator_sql: str
    region_sql: dict[str, str] = field(default_factory=dict)
    """``partial`` / ``top``: the table (or ``PARTIALS``) → the SQL each region runs (with the
    request's start/end). ``raw``: table → SQL each region runs over the table's window."""
    tables: tuple[str, ...] = ()
    """The lake tables the SQL names."""
    sql: str = ""
    """The query as it was sent."""
    scalar: tuple[tuple[str, int], ...] = ()
    """``partial`` plans whose select list is nothing but aggregates, without GROUP BY, HAVING,
    ORDER BY or LIMIT (``SELECT count(*) FROM spans``): per result column, its aggregate
    (``count``, ``sum``, ``min``, ``max``, ``avg``) and its first partial (``__a<n>``), so the
    coordinator can merge the regions' one-row answers without running SQL."""


def plan(sql: str) -> Plan:
    """The plan of a checked SELECT (``sandbox.check_statement``)."""
    tree = sandbox.parse(sql)
    node = _single_table_select(tree)
    if node is not None:
        found = _partial(sql, tree, node) or _top(sql, tree, node)
        if found is not None:
            return found
    found = raw(sql, tree)
    if _limit_zero(tree):  # only the columns are wanted (a client describing a query)
        found = Plan(
            "raw", sql, {n: f"{text} LIMIT 0" for n, text in found.region_sql.items()}, found.tables, sql
        )
    return found


def _limit_zero(tree: dict[str, Any]) -> bool:
    """The statement ends in LIMIT 0: whatever the tables hold, the result has no rows."""
    statements = tree.get("statements") or []
    node = (statements[0].get("node") or {}) if len(statements) == 1 else {}
    return any(
        m.get("type") == "LIMIT_MODIFIER" and _integer(m.get("limit")) == 0 and not m.get("offset")
        for m in node.get("modifiers", [])
    )


def raw(sql: str, tree: dict[str, Any] | None = None) -> Plan:
    """The plan that ships every row of the tables the SQL names (exact for any SELECT)."""
    tree = sandbox.parse(sql) if tree is None else tree
    tables = tuple(sorted(sandbox.tables_in(tree) & TABLES.keys()))
    parts = {name: f"SELECT {_columns(tree, name)} FROM {name}" for name in tables}
    return Plan("raw", sql, parts, tables, sql)


def _single_table_select(tree: dict[str, Any]) -> dict[str, Any] | None:
    """The SELECT node when the statement is one plain SELECT over one lake table."""
    statements = tree.get("statements") or []
    if len(statements) != 1:
        return None
    node: dict[str, Any] = statements[0].get("node") or {}
    source = node.get("from_table") or {}
    if (
        node.get("type") != "SELECT_NODE"
        or node.get("cte_map", {}).get("map")
        or source.get("type") != "BASE_TABLE"
        or str(source.get("table_name", "")).lower() not in TABLES
        or source.get("schema_name")
        or source.get("catalog_name")
        or source.get("sample")
        or source.get("at_clause")
        or node.get("sample")
        or node.get("qualify")
        or node.get("aggregate_handling") != "STANDARD_HANDLING"
        or any(m.get("type") not in ("ORDER_MODIFIER", "LIMIT_MODIFIER") for m in node.get("modifiers", []))
        or sandbox.tables_in(tree) != {str(source["table_name"]).lower()}
    ):
        return None
    for inner in _nodes(node):
        if inner.get("class") in ("SUBQUERY", "WINDOW") or (
            inner.get("type") == "SELECT_NODE" and inner is not node
        ):
            return None
    return node


def _partial(sql: str, tree: dict[str, Any], node: dict[str, Any]) -> Plan | None:
    groups = node.get("group_expressions") or []
    sets = node.get("group_sets") or []
    if sets not in ([], [list(range(len(groups)))]) or (groups and not sets):
        return None
    aggregates = aggregate_functions()
    outer = [node.get("select_list") or [], node.get("having"), _orders(node)]
    functions = [n for n in _nodes(outer) if n.get("class") == "FUNCTION"]
    used = [f for f in functions if str(f.get("function_name")).lower() in aggregates]
    if not used and not groups:
        return None
    if any(
        str(f["function_name"]).lower() not in MERGEABLE
        or f.get("distinct")
        or f.get("filter")
        or (f.get("order_bys") or {}).get("orders")
        or f.get("export_state")
        for f in used
    ):
        return None
    table_columns = {c.lower() for c in TABLES[str(node["from_table"]["table_name"]).lower()].names}
    names = _table_names(node)
    for expression in groups:  # a GROUP BY position or alias names a select item: not handled here
        if not _columns_only(expression, table_columns, names) or not any(
            n.get("class") == "COLUMN_REF" for n in _nodes(expression)
        ):
            return None
    keys = [_bare(g) for g in groups]
    partials: list[str] = []
    aliases = {str(e.get("alias")).lower() for e in node.get("select_list") or [] if e.get("alias")}

    def merge(expression: Any) -> Any:
        if isinstance(expression, list):
            return [merge(item) for item in expression]
        if not isinstance(expression, dict):
            return expression
        if expression.get("class") not in (None, "TYPE") and _bare(expression) in keys:
            return _keep_alias(_column(f"__g{keys.index(_bare(expression))}"), expression)
        if (
            expression.get("class") == "FUNCTION"
            and str(expression.get("function_name")).lower() in MERGEABLE
        ):
            return _keep_alias(_merged(expression, partials), expression)
        if expression.get("class") == "COLUMN_REF":
            parts = [str(p).lower() for p in expression.get("column_names", [])]
            if len(parts) != 1 or parts[0] not in aliases:
                raise _NotMergeable
        return {key: merge(value) for key, value in expression.items()}

    coordinator = copy.deepcopy(node)
    try:
        coordinator["select_list"] = merge(node.get("select_list"))
        coordinator["having"] = merge(node.get("having"))
        coordinator["modifiers"] = merge(node.get("modifiers"))
    except _NotMergeable:
        return None
    coordinator["from_table"] = {**copy.deepcopy(node["from_table"]), "table_name": PARTIALS, "alias": ""}
    coordinator["from_table"]["qualified_name"] = {"path": [PARTIALS]}
    coordinator["where_clause"] = None
    coordinator["group_expressions"] = [_column(f"__g{i}") for i in range(len(groups))]
    regional = copy.deepcopy(node)
    regional["select_list"] = [{**copy.deepcopy(g), "alias": f"__g{i}"} for i, g in enumerate(groups)] + [
        {**_expression(text), "alias": f"__a{i}"} for i, text in enumerate(partials)
    ]
    regional["having"] = None
    regional["modifiers"] = []
    table = str(node["from_table"]["table_name"]).lower()
    return Plan(
        "partial",
        _print(tree, coordinator),
        {PARTIALS: _print(tree, regional)},
        (table,),
        sql,
        _scalar(node) if not groups else (),
    )


def _scalar(node: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """``Plan.scalar`` of a partial plan's SELECT without GROUP BY (empty when it has HAVING,
    modifiers, or a select item that is not one aggregate). The partials are numbered in the
    order ``_merged`` appends them: the select list's aggregates, one by one."""
    if node.get("having") or node.get("modifiers"):
        return ()
    found: list[tuple[str, int]] = []
    first = 0
    for item in node.get("select_list") or []:
        name = str(item.get("function_name")).lower() if item.get("class") == "FUNCTION" else ""
        if name not in MERGEABLE:
            return ()
        found.append(("count" if name == "count_star" else name, first))
        first += 2 if name == "avg" else 1
    return tuple(found)


class _NotMergeable(Exception):
    """A column reference outside the aggregates and the GROUP BY expressions."""


def _merged(function: dict[str, Any], partials: list[str]) -> dict[str, Any]:
    """The coordinator's expression for one aggregate; its partials appended to ``partials``."""
    name = str(function["function_name"]).lower()
    arguments = [_print_expression(a["expression"]) for a in function.get("arguments", [])]
    argument = arguments[0] if arguments else ""
    first = len(partials)
    if name in ("count", "count_star"):
        partials.append(f"count({argument})")
        return _expression(f"coalesce(CAST(sum(__a{first}) AS BIGINT), 0)")
    if name == "avg":
        partials.extend([f"sum({argument})", f"count({argument})"])
        return _expression(f"sum(__a{first}) / sum(__a{first + 1})")
    partials.append(f"{name}({', '.join(arguments)})")
    return _expression(f"{name}(__a{first})")


def _top(sql: str, tree: dict[str, Any], node: dict[str, Any]) -> Plan | None:
    if node.get("group_expressions") or node.get("having"):
        return None
    aggregates = aggregate_functions()
    if any(
        n.get("class") == "FUNCTION" and str(n.get("function_name")).lower() in aggregates
        for n in _nodes(node)
    ):
        return None
    limits = [m for m in node.get("modifiers", []) if m.get("type") == "LIMIT_MODIFIER"]
    if len(limits) != 1 or limits[0].get("limit_type") != "ROW_COUNT":
        return None
    count = _integer(limits[0].get("limit"))
    offset = _integer(limits[0].get("offset")) if limits[0].get("offset") else 0
    if count is None or offset is None:
        return None
    table = str(node["from_table"]["table_name"]).lower()
    table_columns = {c.lower() for c in TABLES[table].names}
    names = _table_names(node)
    orders = _orders(node)
    if not all(_columns_only(order, table_columns, names) for order in orders):
        return None
    regional = copy.deepcopy(node)
    regional["select_list"] = [_expression(c) for c in _columns(tree, table).split(", ")]
    regional["modifiers"] = [
        m for m in copy.deepcopy(node.get("modifiers", [])) if m.get("type") != "LIMIT_MODIFIER"
    ]
    regional["modifiers"].append(
        {**copy.deepcopy(limits[0]), "limit": _expression(str(count + offset)), "offset": None}
    )
    return Plan("top", sql, {table: _print(tree, regional)}, (table,), sql)


# -- parse-tree helpers -------------------------------------------------------------------------

_aggregates: frozenset[str] | None = None
_lock = threading.Lock()


def aggregate_functions() -> frozenset[str]:
    """The names of DuckDB's aggregate functions (asked once, in the sandbox)."""
    global _aggregates
    with _lock:
        if _aggregates is None:
            connection = sandbox.connect(1, "256MB")
            try:
                rows = connection.execute(
                    "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                    "WHERE function_type = 'aggregate'"
                ).fetchall()
            finally:
                connection.close()
            _aggregates = frozenset(str(row[0]) for row in rows) | {"count_star"}
        return _aggregates


def _nodes(tree: object) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack: list[object] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _orders(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        order["expression"]
        for modifier in node.get("modifiers", [])
        if modifier.get("type") == "ORDER_MODIFIER"
        for order in modifier.get("orders", [])
    ]


def _table_names(node: dict[str, Any]) -> set[str]:
    source = node["from_table"]
    return {str(source.get("alias") or source["table_name"]).lower()}


def _columns_only(expression: dict[str, Any], columns: set[str], names: set[str]) -> bool:
    """True when every column ``expression`` reads is a column of the table (no alias, no star)."""
    for inner in _nodes(expression):
        if inner.get("class") in ("STAR", "LAMBDA", "SUBQUERY"):
            return False
        if inner.get("class") == "COLUMN_REF":
            parts = [str(p).lower() for p in inner.get("column_names", [])]
            if parts and parts[0] in names and len(parts) > 1:
                parts = parts[1:]
            if not parts or parts[0] not in columns:
                return False
    return True


def _columns(tree: dict[str, Any], table: str) -> str:
    """The select list of the table's columns the statement may use (``*`` when it cannot tell)."""
    nodes = _nodes(tree)
    if any(n.get("class") in ("STAR", "LAMBDA") or n.get("ref_type") == "NATURAL" for n in nodes):
        return "*"
    named: set[str] = set()
    for n in nodes:
        if n.get("class") == "COLUMN_REF":
            named.update(str(p).lower() for p in n.get("column_names", []))
        named.update(str(c).lower() for c in n.get("using_columns") or [])
    chosen = [c for c in TABLES[table].names if c.lower() in named]
    return ", ".join(f'"{c}"' for c in chosen) if chosen else "*"


def _bare(expression: object) -> object:
    """An expression without positions and aliases, to compare two expressions."""
    if isinstance(expression, dict):
        return {k: _bare(v) for k, v in expression.items() if k not in _POSITION}
    if isinstance(expression, list):
        return [_bare(v) for v in expression]
    return expression


def _keep_alias(replacement: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """``replacement`` named as the original was in the result (its alias, else its text)."""
    alias = original.get("alias")
    if not alias and original.get("class") == "COLUMN_REF":
        alias = str(original["column_names"][-1])  # DuckDB names a column reference by the column
    if not alias:
        alias = _print_expression({**original, "alias": ""})
    return {**replacement, "alias": alias}


def _column(name: str) -> dict[str, Any]:
    return _expression(name)


def _integer(expression: object) -> int | None:
    if not isinstance(expression, dict) or expression.get("class") != "CONSTANT":
        return None
    literal = expression.get("literal") or {}
    text = literal.get("text")
    return int(text) if isinstance(text, str) and text.isdigit() else None


def _expression(text: str) -> dict[str, Any]:
    tree = sandbox.parse(f"SELECT {text}")
    expression: dict[str, Any] = tree["statements"][0]["node"]["select_list"][0]
    return expression


def _print(tree: dict[str, Any], node: dict[str, Any]) -> str:
    document = copy.deepcopy(tree)
    document["statements"][0]["node"] = node
    return tree_sql(document)


def _print_expression(expression: dict[str, Any]) -> str:
    document = sandbox.parse("SELECT NULL")
    document["statements"][0]["node"]["select_list"] = [expression]
    text = tree_sql(document)
    return text.removeprefix("SELECT ")


_printer_lock = threading.Lock()
_printer: Any = None


def tree_sql(tree: dict[str, Any]) -> str:
    """The SQL text of a parse tree (``json_deserialize_sql``, in the sandbox)."""
    global _printer
    with _printer_lock:
        if _printer is None:
            _printer = sandbox.connect(1, "256MB")
        row = _printer.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()
    return str(row[0]) if row else ""
