"""Batches to OTAP tables and back: the one entry point the transports use.

Conversions go straight between serialized OTLP and Arrow (no protobuf object per item)::

    Batch.raw (OTLP bytes) ──encode──▶ {ArrowPayloadType: RecordBatch} ──decode──▶ OTLP bytes
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap.logs import decode_logs_bytes, encode_logs_bytes
from orasi_common.pdata.otap.metrics import decode_metrics_bytes, encode_metrics_bytes
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.traces import decode_traces_bytes, encode_traces_bytes

Tables = Mapping[P, pa.RecordBatch]

_ENCODERS: dict[Signal, Callable[[bytes], dict[P, pa.RecordBatch]]] = {
    Signal.TRACES: encode_traces_bytes,
    Signal.LOGS: encode_logs_bytes,
    Signal.METRICS: encode_metrics_bytes,
}
_DECODERS: dict[Signal, Callable[[Tables], bytes]] = {
    Signal.TRACES: decode_traces_bytes,
    Signal.LOGS: decode_logs_bytes,
    Signal.METRICS: decode_metrics_bytes,
}
_ITEM_TABLES: dict[Signal, tuple[P, ...]] = {
    Signal.TRACES: (P.SPANS,),
    Signal.LOGS: (P.LOGS,),
    Signal.METRICS: (
        P.NUMBER_DATA_POINTS,
        P.SUMMARY_DATA_POINTS,
        P.HISTOGRAM_DATA_POINTS,
        P.EXP_HISTOGRAM_DATA_POINTS,
    ),
}


def encode(batch: Batch) -> dict[P, pa.RecordBatch]:
    """The OTAP tables of a batch."""
    return _ENCODERS[batch.signal](batch.raw)


def decode(signal: Signal, tables: Tables, *, tenant: str, batch_id: str) -> Batch:
    """A batch from OTAP tables (raises MalformedData when they do not make a valid request)."""
    items = sum(tables[t].num_rows for t in _ITEM_TABLES[signal] if t in tables)
    return Batch(signal, items, tenant, batch_id, _raw=_DECODERS[signal](tables))
