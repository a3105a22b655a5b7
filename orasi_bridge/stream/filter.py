"""The ``filter`` processor: drops the rows for which its expression is true."""

from __future__ import annotations

import pyarrow as pa

from orasi_bridge.stream.config import FilterConfig
from orasi_bridge.stream.runs import Runs


class Filter:
    writes: frozenset[str] = frozenset()
    keeps_runs = True

    def __init__(self, config: FilterConfig) -> None:
        self.expressions = [f"NOT coalesce(({config.drop_where}), false)"]

    def apply(
        self, table: str, tenant: str, rows: pa.RecordBatch, values: list[pa.Array], runs: Runs | None = None
    ) -> tuple[pa.RecordBatch, pa.Array | None]:
        (keep,) = values
        return rows, keep
