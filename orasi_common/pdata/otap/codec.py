"""Batches to OTAP tables and back: the one entry point the transports use.

Conversions go straight between serialized OTLP and Arrow (no protobuf object per item)::

    Batch.raw (OTLP bytes) ──encode──▶ {ArrowPayloadType: RecordBatch} ──decode──▶ OTLP bytes
    Batch.otap (tables it arrived as) ──encode: the same tables, dictionaries undone──▶ OTAP
    {ArrowPayloadType: RecordBatch} ◀──to_ipc / from_ipc──▶ bytes (write-ahead-log records)

A received batch keeps its tables and is decoded only when something reads it as OTLP
(``Batch.raw`` calls ``decode_tables``); an OTAP exporter sends the tables it already has.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from orasi_common.errors import MalformedData
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap.common import undict
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
PAYLOAD_TYPES: dict[Signal, frozenset[P]] = {
    Signal.TRACES: TRACES_PAYLOAD_TYPES,
    Signal.LOGS: LOGS_PAYLOAD_TYPES,
    Signal.METRICS: METRICS_PAYLOAD_TYPES,
}
ROOTS: dict[Signal, P] = {Signal.TRACES: P.SPANS, Signal.LOGS: P.LOGS, Signal.METRICS: P.UNIVARIATE_METRICS}
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
    """The OTAP tables of a batch: the tables it arrived as (without their dictionaries, which
    belong to the stream they came on), else encoded from its OTLP bytes."""
    if batch.otap is not None:
        return {P(int(key)): plain(table) for key, table in batch.otap.items()}
    return _ENCODERS[batch.signal](batch.raw)


def plain(table: pa.RecordBatch) -> pa.RecordBatch:
    """The table with every dictionary-encoded column (nested ones too) decoded."""
    columns = [undict(column) for column in table.columns]
    if all(new is old for new, old in zip(columns, table.columns, strict=True)):
        return table
    fields = [field.with_type(column.type) for field, column in zip(table.schema, columns, strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, table.schema.metadata))


def checked(signal: Signal, tables: Mapping[Any, pa.RecordBatch]) -> dict[P, pa.RecordBatch]:
    """The tables keyed by ArrowPayloadType; MalformedData for a type the signal does not have."""
    return check_payloads(tables, PAYLOAD_TYPES[signal], signal.value)


def decode(signal: Signal, tables: Tables, *, tenant: str, batch_id: str) -> Batch:
    """A received batch of OTAP tables, decoded to OTLP when first read as OTLP (see `Batch`):
    the cheap checks and ``validate.check_tables`` run now; reading it as OTLP raises
    MalformedData when the tables do not make a valid request."""
    tables_checked = checked(signal, tables)  # the cheap checks, now
    root_or_empty(tables_checked, ROOTS[signal])
    items = sum(tables_checked[t].num_rows for t in _ITEM_TABLES[signal] if t in tables_checked)
    check_tables(tables_checked)
    return Batch.from_otap(signal, items, tables, tenant=tenant, batch_id=batch_id)


def decode_tables(signal: Signal, tables: Tables) -> bytes:
    """The serialized OTLP export request of a batch's tables (MalformedData if not valid)."""
    return _DECODERS[signal](tables)


_IPC_HEAD = struct.Struct("<BI")  # payload type, length of its IPC stream


def to_ipc(tables: Tables) -> bytes:
    """The tables as one Arrow IPC stream each (uncompressed, dictionaries undone), framed."""
    out = io.BytesIO()
    for key, table in tables.items():
        stream = io.BytesIO()
        batch = plain(table)
        with pa.ipc.new_stream(stream, batch.schema) as writer:
            writer.write_batch(batch)
        out.write(_IPC_HEAD.pack(int(key), stream.tell()))
        out.write(stream.getbuffer())
    return out.getvalue()


def from_ipc(data: bytes | memoryview) -> dict[P, pa.RecordBatch]:
    """The tables ``to_ipc`` wrote."""
    tables: dict[P, pa.RecordBatch] = {}
    view, offset = memoryview(data), 0
    try:
        while offset < len(view):
            key, length = _IPC_HEAD.unpack_from(view, offset)
            offset += _IPC_HEAD.size
            tables[P(key)] = pa.ipc.open_stream(
                pa.py_buffer(view[offset : offset + length])
            ).read_next_batch()
            offset += length
    except (struct.error, ValueError, pa.ArrowInvalid) as exc:
        raise MalformedData(f"the OTAP tables of a record do not read back: {exc}") from None
    return tables
