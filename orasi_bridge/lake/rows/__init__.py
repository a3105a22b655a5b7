"""The lake's rows of a batch, converted from the form it arrived in, live and on replay alike::

    OTLP bytes  ──otlp.spans_batch / otlp.logs_batch──▶  spans, logs rows
    OTAP tables ──otap.spans_batch / otap.logs_batch──▶  spans, logs rows
    OTLP bytes  ──metrics.otlp_batch──▶  metric_points rows  ◀──metrics.otap_batch──  OTAP tables

Both forms read their envelope (resource, scope, service name) with
:class:`orasi_common.pdata.envelope.Envelope`, canonicalise values with
:mod:`orasi_common.pdata.canonical` and build rows with :mod:`.columns`: they give equal rows
(tests hold them against each other and against rows written by hand). OTLP converts many
batches merged into one (the converters' cost is mostly per call, see ``writer``); a merged
batch of OTAP parts converts part by part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from orasi_bridge.lake.rows import metrics, otap, otlp
from orasi_bridge.lake.rows.otlp import Types
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otlp import merge_serialized

TABLE_OF_SIGNAL = {Signal.TRACES: "spans", Signal.LOGS: "logs", Signal.METRICS: "metric_points"}


def otlp_rows(batches: Sequence[Batch], region: str, types: Types | None = None) -> pa.RecordBatch:
    """The rows of OTLP batches of one signal and tenant, converted together (``types``: filled
    with the original types beside the attribute maps, see ``otlp.Types``)."""
    first = batches[0]
    data = merge_serialized(batch.raw for batch in batches) if len(batches) > 1 else first.raw
    if first.signal is Signal.TRACES:
        return otlp.spans_batch(data, first.tenant, region, types)
    if first.signal is Signal.LOGS:
        received = np.repeat([batch.received_ns for batch in batches], [batch.items for batch in batches])
        return otlp.logs_batch(data, first.tenant, region, received, types)
    return metrics.otlp_batch(data, first.tenant, region, types)


def rows_of(batch: Batch, region: str, types: Types | None = None) -> pa.RecordBatch:
    """The rows of one batch, in whatever form (or forms, merged) it holds (``types``: as
    ``otlp_rows``'s; a section is given when every part gives it)."""
    if len(batch.parts) == 1:
        return _rows_of_part(batch.parts[0], region, types)
    typed: list[Types | None] = [None if types is None else {} for _ in batch.parts]
    parts = [_rows_of_part(part, region, kinds) for part, kinds in zip(batch.parts, typed, strict=True)]
    if types is not None:
        for name in typed[0] or {}:
            if all(kinds is not None and name in kinds for kinds in typed):
                types[name] = pa.concat_arrays([kinds[name] for kinds in typed if kinds is not None])
    return pa.concat_batches(parts)


def _rows_of_part(part: Batch, region: str, types: Types | None) -> pa.RecordBatch:
    tables = part.otap
    if tables is None:
        return otlp_rows([part], region, types)
    if part.signal is Signal.TRACES:
        return otap.spans_batch(tables, part.tenant, region, types)
    if part.signal is Signal.LOGS:
        return otap.logs_batch(tables, part.tenant, region, part.received_ns, types)
    return metrics.otap_batch(tables, part.tenant, region, types)


__all__ = ["TABLE_OF_SIGNAL", "Types", "otlp_rows", "rows_of"]
