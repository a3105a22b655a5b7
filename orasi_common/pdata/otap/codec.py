"""Batches to OTAP tables and back: the one entry point the transports use.

Conversions go straight between serialized OTLP and Arrow (no protobuf object per item)::

    Batch.raw (OTLP bytes) ──encode──▶ {ArrowPayloadType: RecordBatch} ──decode──▶ OTLP bytes

A received batch keeps its tables and is decoded only when something reads it as OTLP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap.envelope import check_payloads, root_or_empty
from orasi_common.pdata.otap.logs import decode_logs_bytes, encode_logs_bytes
from orasi_common.pdata.otap.metrics import decode_metrics_bytes, encode_metrics_bytes
from orasi_common.pdata.otap.payload_types import (
    LOGS_PAYLOAD_TYPES,
    METRICS_PAYLOAD_TYPES,
    TRACES_PAYLOAD_TYPES,
)
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.traces import decode_traces_bytes, encode_traces_bytes
from orasi_common.pdata.validate import check_tables

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
_SHAPES: dict[Signal, tuple[frozenset[P], P]] = {
    Signal.TRACES: (TRACES_PAYLOAD_TYPES, P.SPANS),
    Signal.LOGS: (LOGS_PAYLOAD_TYPES, P.LOGS),
    Signal.METRICS: (METRICS_PAYLOAD_TYPES, P.UNIVARIATE_METRICS),
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
    """A received batch of OTAP tables, decoded to OTLP when first read as OTLP (see `Batch`):
    the cheap checks and ``validate.check_tables`` run now; reading it as OTLP raises
    MalformedData when the tables do not make a valid request."""
    payload_types, root = _SHAPES[signal]
    checked = check_payloads(tables, payload_types, signal.value)  # the cheap checks, now
    root_or_empty(checked, root)
    items = sum(checked[t].num_rows for t in _ITEM_TABLES[signal] if t in checked)
    check_tables(checked)
    decoder = _DECODERS[signal]
    return Batch.from_otap(signal, items, tables, lambda: decoder(tables), tenant=tenant, batch_id=batch_id)
