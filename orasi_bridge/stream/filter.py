"""The ``filter`` processor: drops the rows for which its expression is true."""

from __future__ import annotations

import pyarrow as pa

from orasi_bridge.stream.config import FilterConfig
from orasi_bridge.stream.expressions import evaluate


class Filter:
    def __init__(self, config: FilterConfig) -> None:
        self._keep = f"NOT coalesce(({config.drop_where}), false)"

    def apply(self, table: str, tenant: str, rows: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array | None]:
        (keep,) = evaluate(rows, [self._keep])
        return rows, keep
