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
from orasi_bridge.lake.rows.otlp import Resources, Types
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otlp import merge_serialized
from orasi_common.pdata.protoscan import I64

TABLE_OF_SIGNAL = {Signal.TRACES: "spans", Signal.LOGS: "logs", Signal.METRICS: "metric_points"}


def otlp_rows(
    batches: Sequence[Batch], region: str, types: Types | None = None, resources: Resources | None = None
) -> pa.RecordBatch:
    """The rows of OTLP batches of one signal and tenant, converted together (``types``: filled
    with the original types beside the attribute maps, see ``otlp.Types``; ``resources``: with
    each row's resource, see ``otlp.Resources``)."""
    first = batches[0]
    data = merge_serialized(batch.raw for batch in batches) if len(batches) > 1 else first.raw
    if first.signal is Signal.TRACES:
        return otlp.spans_batch(data, first.tenant, region, types, resources)
    if first.signal is Signal.LOGS:
        received = np.repeat([batch.received_ns for batch in batches], [batch.items for batch in batches])
        return otlp.logs_batch(data, first.tenant, region, received, types, resources)
    return metrics.otlp_batch(data, first.tenant, region, types)


def rows_of(
    batch: Batch, region: str, types: Types | None = None, resources: Resources | None = None
) -> pa.RecordBatch:
    """The rows of one batch, in whatever form (or forms, merged) it holds (``types``: as
    ``otlp_rows``'s; a section is given when every part gives it; ``resources``: likewise, one
    array, the parts' resources numbered apart)."""
    if len(batch.parts) == 1:
        return _rows_of_part(batch.parts[0], region, types, resources)
    typed: list[Types | None] = [None if types is None else {} for _ in batch.parts]
    found: list[Resources] = [[] for _ in batch.parts]
    parts = [
        _rows_of_part(part, region, kinds, of_part)
        for part, kinds, of_part in zip(batch.parts, typed, found, strict=True)
    ]
    if types is not None:
        for name in typed[0] or {}:
            if all(kinds is not None and name in kinds for kinds in typed):
                types[name] = pa.concat_arrays([kinds[name] for kinds in typed if kinds is not None])
    if resources is not None and all(
        len(of_part) == 1 and len(of_part[0]) == part.num_rows
        for of_part, part in zip(found, parts, strict=True)
    ):
        numbered, base = [], 0
        for (of_part,) in found:
            numbered.append(of_part + base)
            base += int(of_part.max(initial=-1)) + 1
        resources.append(np.concatenate(numbered))
    return pa.concat_batches(parts)


def _rows_of_part(
    part: Batch, region: str, types: Types | None, resources: Resources | None
) -> pa.RecordBatch:
    tables = part.otap
    if tables is None:
        return otlp_rows([part], region, types, resources)
    if part.signal is Signal.TRACES:
        return otap.spans_batch(tables, part.tenant, region, types, resources)
    if part.signal is Signal.LOGS:
        return otap.logs_batch(tables, part.tenant, region, part.received_ns, types, resources)
    return metrics.otap_batch(tables, part.tenant, region, types)


def resource_of_row(resources: Resources, rows: pa.RecordBatch) -> I64 | None:
    """Each row's resource, from ``resources`` filled by one conversion of ``rows`` (None when it
    gave none: metric points, or no rows)."""
    if len(resources) == 1 and len(resources[0]) == rows.num_rows:
        return resources[0]
    return None


__all__ = ["TABLE_OF_SIGNAL", "Resources", "Types", "otlp_rows", "resource_of_row", "rows_of"]
