"""The ``sample`` processor: keeps a trace's rows or none of them, by its trace id alone, so every
bridge in every region decides alike.

The rule is OpenTelemetry's consistent probability sampling (``TraceState`` threshold sampling):
R, the trace id's low 56 bits (its last 14 hex digits), is kept when R ≥ T = (1 - p) · 2⁵⁶. Lake
trace ids are lowercase hex of fixed width, so the comparison is one of strings: the last 14
digits against T written the same way, one Arrow kernel per record batch.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import SampleConfig
from orasi_bridge.stream.runs import Runs

RANDOM_BITS = 56


def threshold(probability: float) -> str | None:
    """T in 14 lowercase hex digits (None: nothing with a trace id is kept)."""
    value = round((1 - probability) * (1 << RANDOM_BITS))
    return None if value >= 1 << RANDOM_BITS else format(value, f"0{RANDOM_BITS // 4}x")


class Sample:
    expressions: list[str] = []
    writes: frozenset[str] = frozenset()
    keeps_runs = True

    def __init__(self, config: SampleConfig) -> None:
        self._threshold = threshold(config.probability)
        self._without_trace = config.keep_without_trace

    def apply(
        self, table: str, tenant: str, rows: pa.RecordBatch, values: list[pa.Array], runs: Runs | None = None
    ) -> tuple[pa.RecordBatch, pa.Array | None]:
        trace_id = rows.column("trace_id")
        if self._threshold is None:
            keep = pc.is_null(trace_id)
        else:
            low = pc.utf8_slice_codeunits(trace_id, -RANDOM_BITS // 4)
            keep = pc.fill_null(pc.greater_equal(low, self._threshold), self._without_trace)
        if not self._without_trace:
            keep = pc.and_(keep, pc.is_valid(trace_id))
        return rows, keep
