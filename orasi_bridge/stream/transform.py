"""The ``transform`` processor: sets columns and attribute keys from expressions, deletes
attribute keys; one DuckDB query per record batch computes every new column."""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

from orasi_bridge.stream.config import MAPS, TransformConfig, target
from orasi_bridge.stream.expressions import evaluate


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _map_expression(column: str, sets: dict[str, str], deleted: list[str]) -> str:
    """The new value of an attribute map: ``sets`` (key → expression) over it, null values and
    ``deleted`` keys removed."""
    merged = column
    if sets:
        entries = ", ".join(f"{_literal(key)}: CAST(({value}) AS VARCHAR)" for key, value in sets.items())
        merged = f"map_concat({column}, MAP {{{entries}}})"
    keep = "kv.value IS NOT NULL"
    if deleted:
        keep += f" AND kv.key NOT IN ({', '.join(_literal(key) for key in deleted)})"
    return f"map_from_entries(list_filter(map_entries({merged}), lambda kv: {keep}))"


class Transform:
    def __init__(self, config: TransformConfig) -> None:
        columns: dict[str, str] = {}
        sets: dict[str, dict[str, str]] = defaultdict(dict)
        deleted: dict[str, list[str]] = defaultdict(list)
        for key, expression in config.set.items():
            named = target(key)
            if named.key is None:
                columns[named.column] = expression
            else:
                sets[named.column][named.key] = expression
        for key in config.delete:
            named = target(key)
            if named.column in MAPS and named.key is not None:
                deleted[named.column].append(named.key)
            else:
                deleted["attributes"].append(key)
        for column in MAPS:
            if column in sets or column in deleted:
                columns[column] = _map_expression(column, sets[column], deleted[column])
        self._columns = list(columns)
        self._expressions = list(columns.values())

    def apply(self, table: str, tenant: str, rows: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array | None]:
        values = evaluate(rows, self._expressions)
        for column, value in zip(self._columns, values, strict=True):
            index = rows.schema.get_field_index(column)
            field = rows.schema.field(index)
            rows = rows.set_column(index, field, value.cast(field.type))
        return rows, None
