"""What a query's parse tree promises about the rows it can read (used to skip reading the rest).

``trace_ids`` recognises the shape of a trace lookup: one SELECT over ``spans`` alone (no join,
no CTE, no set operation, no other reference to ``spans`` anywhere in the statement) whose WHERE
clause has, as one of its top-level AND terms, ``trace_id = 'literal'`` or ``trace_id IN
('literal', …)``. Then every row of ``spans`` that can reach the result has one of those ids,
and the engine may hand DuckDB only the row groups the trace index points to. Anything else,
however equivalent, answers None (no promise; every row is read).

``time_bounds`` finds, for every reference to a table, the bounds its SELECT puts on ``time``: the
top-level AND terms of the WHERE clause of the SELECT whose FROM names the table (directly, or
through regular joins) that compare its ``time`` (``time`` alone when the FROM is that one table,
``alias.time`` or ``table.time`` otherwise) with an expression that reads no column and no
subquery: ``<``, ``<=``, ``>``, ``>=``, ``=`` (either side) and ``BETWEEN``. Such a term rejects
every row outside the bound (a comparison with NULL is not true), even through an outer join, so
the scan may leave those rows out. The expressions are returned as parse trees, evaluated by the
engine in the query's own transaction (so ``now()`` is the query's ``now()``). A statement with a
CTE named like a table it reads gives no bounds at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def trace_ids(tree: dict[str, Any]) -> frozenset[str] | None:
    """The trace ids a parsed statement (``json_serialize_sql``) limits ``spans`` to, or None."""
    statements = tree.get("statements")
    if tree.get("error") or not isinstance(statements, list) or len(statements) != 1:
        return None
    node = statements[0].get("node")
    if not isinstance(node, dict) or node.get("type") != "SELECT_NODE":
        return None
    if node.get("cte_map", {}).get("map"):
        return None
    source = node.get("from_table")
    if not isinstance(source, dict) or source.get("type") != "BASE_TABLE":
        return None
    if (
        str(source.get("table_name", "")).lower() != "spans"
        or source.get("schema_name")
        or source.get("catalog_name")
    ):
        return None
    if _count_spans(tree) != 1:
        return None
    names = {"spans", str(source.get("alias") or "").lower()} - {""}
    found: frozenset[str] | None = None
    for term in _conjuncts(node.get("where_clause")):
        ids = _term_ids(term, names)
        if ids is not None:
            found = ids if found is None else found & ids
    return found


def _nodes(tree: object) -> Iterator[dict[str, Any]]:
    """Every object of a parse tree, at any depth."""
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _count_spans(tree: object) -> int:
    return sum(
        1
        for node in _nodes(tree)
        if node.get("type") == "BASE_TABLE" and str(node.get("table_name", "")).lower() == "spans"
    )


def _conjuncts(expression: object) -> list[dict[str, Any]]:
    if not isinstance(expression, dict):
        return []
    if expression.get("class") == "CONJUNCTION" and expression.get("type") == "CONJUNCTION_AND":
        return [term for child in expression.get("children", []) for term in _conjuncts(child)]
    return [expression]


def _term_ids(term: dict[str, Any], names: set[str]) -> frozenset[str] | None:
    kind = term.get("type")
    if term.get("class") == "COMPARISON" and kind == "COMPARE_EQUAL":
        left, right = term.get("left"), term.get("right")
        for column, value in ((left, right), (right, left)):
            literal = _string(value)
            if _is_trace_id(column, names) and literal is not None:
                return frozenset([literal])
        return None
    if term.get("class") == "OPERATOR" and kind == "COMPARE_IN":
        children = term.get("children", [])
        if len(children) < 2 or not _is_trace_id(children[0], names):
            return None
        literals = [_string(child) for child in children[1:]]
        if any(literal is None for literal in literals):
            return None
        return frozenset(literal for literal in literals if literal is not None)
    return None


def _is_trace_id(expression: object, names: set[str]) -> bool:
    if not isinstance(expression, dict) or expression.get("class") != "COLUMN_REF":
        return False
    parts = [str(part).lower() for part in expression.get("column_names", [])]
    return parts == ["trace_id"] or (len(parts) == 2 and parts[0] in names and parts[1] == "trace_id")


def _string(expression: object) -> str | None:
    if not isinstance(expression, dict) or expression.get("class") != "CONSTANT":
        return None
    literal = expression.get("literal")
    if (
        not isinstance(literal, dict)
        or literal.get("kind") != "STRING"
        or not isinstance(literal.get("text"), str)
    ):
        return None
    text: str = literal["text"]
    return text


@dataclass(frozen=True)
class TimeBounds:
    """What one reference's SELECT says about ``time``: rows are >= every lower, <= every upper."""

    lower: tuple[dict[str, Any], ...] = ()
    upper: tuple[dict[str, Any], ...] = ()


_LOWER = {"COMPARE_GREATERTHAN", "COMPARE_GREATERTHANOREQUALTO"}
_UPPER = {"COMPARE_LESSTHAN", "COMPARE_LESSTHANOREQUALTO"}
_FLIPPED = {
    "COMPARE_GREATERTHAN": "COMPARE_LESSTHAN",
    "COMPARE_GREATERTHANOREQUALTO": "COMPARE_LESSTHANOREQUALTO",
    "COMPARE_LESSTHAN": "COMPARE_GREATERTHAN",
    "COMPARE_LESSTHANOREQUALTO": "COMPARE_GREATERTHANOREQUALTO",
    "COMPARE_EQUAL": "COMPARE_EQUAL",
}


def time_bounds(tree: dict[str, Any]) -> dict[str, list[TimeBounds]]:
    """Table name (lower case) → the ``time`` bounds of each of its references in the statement."""
    references: dict[int, tuple[str, TimeBounds]] = {}
    ctes: set[str] = set()
    for node in _nodes(tree):
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            references.setdefault(id(node), (node["table_name"].lower(), TimeBounds()))
        if node.get("type") == "SELECT_NODE":
            ctes.update(str(entry.get("key", "")).lower() for entry in node.get("cte_map", {}).get("map", []))
            for table, bounds in _select_bounds(node):
                references[id(table)] = (table["table_name"].lower(), bounds)
    found: dict[str, list[TimeBounds]] = {}
    for name, bounds in references.values():
        found.setdefault(name, []).append(TimeBounds() if name in ctes else bounds)
    return found


def _select_bounds(node: dict[str, Any]) -> list[tuple[dict[str, Any], TimeBounds]]:
    tables = _from_tables(node.get("from_table"))
    if tables is None:
        return []
    single = len(tables) == 1 and node.get("from_table") is tables[0]
    result = []
    for table in tables:
        names = {str(table.get("alias") or table["table_name"]).lower()}
        lower: list[dict[str, Any]] = []
        upper: list[dict[str, Any]] = []
        for term in _conjuncts(node.get("where_clause")):
            for kind, bound in _time_terms(term, names, single):
                (lower if kind in _LOWER or kind == "COMPARE_EQUAL" else upper).append(bound)
                if kind == "COMPARE_EQUAL":
                    upper.append(bound)
        result.append((table, TimeBounds(tuple(lower), tuple(upper))))
    return result


def _from_tables(source: object) -> list[dict[str, Any]] | None:
    """The base tables a FROM joins with regular joins (None when it holds anything else that
    could change which rows a table contributes, e.g. ASOF or positional joins)."""
    if not isinstance(source, dict):
        return None
    if source.get("type") == "BASE_TABLE" and isinstance(source.get("table_name"), str):
        if source.get("schema_name") or source.get("catalog_name"):
            return None
        return [source]
    if source.get("type") == "JOIN" and source.get("ref_type") in ("REGULAR", "CROSS"):
        left, right = _from_tables(source.get("left")), _from_tables(source.get("right"))
        return (left or []) + (right or [])
    return []


def _time_terms(term: dict[str, Any], names: set[str], single: bool) -> list[tuple[str, dict[str, Any]]]:
    kind = term.get("type")
    if term.get("class") == "COMPARISON" and kind in _FLIPPED:
        left, right = term.get("left"), term.get("right")
        if _is_time(left, names, single) and _is_constant(right):
            return [(str(kind), right)]  # type: ignore[list-item]
        if _is_time(right, names, single) and _is_constant(left):
            return [(_FLIPPED[str(kind)], left)]  # type: ignore[list-item]
    if term.get("class") == "BETWEEN" and _is_time(term.get("input"), names, single):
        low, high = term.get("lower"), term.get("upper")
        found = []
        if _is_constant(low):
            found.append(("COMPARE_GREATERTHANOREQUALTO", low))
        if _is_constant(high):
            found.append(("COMPARE_LESSTHANOREQUALTO", high))
        return found  # type: ignore[return-value]
    return []


def _is_time(expression: object, names: set[str], single: bool) -> bool:
    if not isinstance(expression, dict) or expression.get("class") != "COLUMN_REF":
        return False
    parts = [str(part).lower() for part in expression.get("column_names", [])]
    return (single and parts == ["time"]) or (len(parts) == 2 and parts[0] in names and parts[1] == "time")


def _is_constant(expression: object) -> bool:
    """An expression of literals, casts and scalar functions only (no column, no subquery)."""
    if not isinstance(expression, dict):
        return False
    forbidden = ("COLUMN_REF", "SUBQUERY", "WINDOW", "STAR", "PARAMETER", "LAMBDA")
    return not any(node.get("class") in forbidden for node in _nodes(expression))
