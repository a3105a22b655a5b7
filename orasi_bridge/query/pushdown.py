"""What a query's parse tree promises about the rows it can read (used to skip reading the rest).

``trace_ids`` recognises the shape of a trace lookup: one SELECT over ``spans`` alone (no join,
no CTE, no set operation, no other reference to ``spans`` anywhere in the statement) whose WHERE
clause has, as one of its top-level AND terms, ``trace_id = 'literal'`` or ``trace_id IN
('literal', …)``. Then every row of ``spans`` that can reach the result has one of those ids,
and the engine may hand DuckDB only the row groups the trace index points to. Anything else,
however equivalent, answers None (no promise; every row is read).
"""

from __future__ import annotations

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


def _count_spans(tree: object) -> int:
    count = 0
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and str(node.get("table_name", "")).lower() == "spans":
                count += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


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
