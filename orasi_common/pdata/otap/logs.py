"""Logs: ``ExportLogsServiceRequest`` ⇄ OTAP tables.

Tables written (* = optional, omitted when every row is empty)::

    LOGS        id* (u16, delta), resource*, scope*, schema_url*,
                time_unix_nano* (timestamp[ns]), observed_time_unix_nano* (timestamp[ns]),
                trace_id* (fixed16), span_id* (fixed8), severity_number* (i32),
                severity_text* (utf8), event_name* (utf8),
                body* {type (u8), str*, int*, double*, bool*, bytes*, ser*},
                dropped_attributes_count* (u32), flags* (u32)
    LOG_ATTRS   attributes of log records (u16 parent ids)
    RESOURCE_ATTRS, SCOPE_ATTRS (see :mod:`.envelope`)

A null ``body`` row is an unset body; a type-0 body is a set but empty AnyValue.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import add_attribute_table, any_columns_to, any_value_bytes
from orasi_common.pdata.otap.common import (
    DELTA,
    U16_MAX,
    Columns,
    check_count,
    decode_ids,
    delta_ids,
    id_field,
    ids_binary,
    nonempty_str,
    nonzero_int32,
    nonzero_timestamps,
    nonzero_u32,
    to_numpy,
)
from orasi_common.pdata.otap.envelope import (
    EnvelopeDecoder,
    attributes_for,
    gather_request,
    root_table,
)
from orasi_common.pdata.otap.lazy import LazyLogsRequest
from orasi_common.pdata.otap.payload_types import LOGS_PAYLOAD_TYPES, ArrowPayloadType
from orasi_common.pdata.otap.value_scan import parse_any_values

P = ArrowPayloadType

_LOG_FIELDS = operator.attrgetter(
    "time_unix_nano",
    "observed_time_unix_nano",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "dropped_attributes_count",
    "flags",
    "trace_id",
    "span_id",
    "event_name",
)
_HAS_BODY = operator.methodcaller("HasField", "body")


def encode_logs(request: ExportLogsServiceRequest) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a logs export request (empty dict for a request without log records)."""
    return encode_logs_bytes(request.SerializeToString())


def encode_logs_bytes(data: bytes) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a serialized logs export request."""
    envelope, records = gather_request(LazyLogsRequest, data, "resource_logs", "scope_logs", "log_records")
    n = len(records)
    if n == 0:
        return {}
    check_count(n, U16_MAX, "log records")
    (
        time,
        observed,
        severity_number,
        severity_text,
        body,
        attrs,
        dropped,
        flags,
        trace_id,
        span_id,
        event_name,
    ) = zip(*map(_LOG_FIELDS, records), strict=True)
    tables: dict[ArrowPayloadType, pa.RecordBatch] = {}
    attr_counts = np.fromiter(map(len, attrs), dtype=np.int64, count=n)

    columns = Columns()
    if attr_counts.any():
        columns.add(id_field(pa.uint16()), delta_ids(n, pa.uint16()))
    envelope.add_to(columns, tables)
    columns.optional("time_unix_nano", nonzero_timestamps(time))
    columns.optional("observed_time_unix_nano", nonzero_timestamps(observed))
    columns.optional("trace_id", ids_binary(trace_id, 16, "a log record's trace_id"))
    columns.optional("span_id", ids_binary(span_id, 8, "a log record's span_id"))
    columns.optional("severity_number", nonzero_int32(severity_number))
    columns.optional("severity_text", nonempty_str(severity_text))
    columns.optional("event_name", nonempty_str(event_name))
    present = np.fromiter(map(_HAS_BODY, records), dtype=np.bool_, count=n)
    if present.any():
        values = parse_any_values(pa.array(body, pa.binary()), present)
        body_columns = Columns()
        body_columns.required("type", pa.array(values.type, pa.uint8()))
        any_columns_to(body_columns, values)
        columns.optional("body", body_columns.struct("body", ~present))
    columns.optional("dropped_attributes_count", nonzero_u32(dropped))
    columns.optional("flags", nonzero_u32(flags))
    tables[P.LOGS] = columns.batch()
    add_attribute_table(tables, P.LOG_ATTRS, attrs, pa.uint16(), attr_counts)
    return tables


def decode_logs(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> ExportLogsServiceRequest:
    """The logs export request of a set of OTAP tables; MalformedData if they are not valid."""
    return ExportLogsServiceRequest.FromString(decode_logs_bytes(tables))


def decode_logs_bytes(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> bytes:
    """Like :func:`decode_logs`, but the serialized request."""
    checked, root = root_table(tables, LOGS_PAYLOAD_TYPES, P.LOGS, "logs")
    if root is None:
        return b""
    n = root.n
    envelope = EnvelopeDecoder(root, checked)
    ids, ids_valid = decode_ids(root, "id", "u16", DELTA)
    parts: list[wire.Segment | pa.Array] = [
        wire.f_fixed64(1, root.np("time_unix_nano", "timestamp", np.int64)),
        wire.f_varint(2, root.np("severity_number", "i32", np.int64)),
    ]
    for field, name, kind in ((3, "severity_text", "utf8"), (9, "trace_id", "id16"), (10, "span_id", "id8")):
        arr = root.get(name, kind)
        if arr is not None:
            parts.append(wire.f_bytes(field, arr))
    body = root.struct("body")
    if body is not None:
        types_arr = body.need("type", "u8")
        types = to_numpy(types_arr, np.uint8)
        values, _ = any_value_bytes(body, types)
        assert body.validity is not None
        parts.append(wire.f_bytes(5, values, body.validity & wire.is_valid(types_arr)))
    attrs = attributes_for(checked, P.LOG_ATTRS, 6, 16, ids, ids_valid)
    if attrs is not None:
        parts.append(attrs)
    parts.append(wire.f_varint(7, root.np("dropped_attributes_count", "u32", np.int64)))
    parts.append(wire.f_fixed32(8, root.np("flags", "u32", np.uint32)))
    parts.append(wire.f_fixed64(11, root.np("observed_time_unix_nano", "timestamp", np.int64)))
    event_name = root.get("event_name", "utf8")
    if event_name is not None:
        parts.append(wire.f_bytes(12, event_name))
    records = wire.join(*parts)
    return envelope.assemble(wire.f_bytes(2, records, np.ones(n, dtype=np.bool_)))


__all__ = ["decode_logs", "decode_logs_bytes", "encode_logs", "encode_logs_bytes"]
