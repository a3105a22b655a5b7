"""Traces: ``ExportTraceServiceRequest`` ⇄ OTAP tables.

Tables written (columns in order; * = optional, omitted when every row is empty)::

    SPANS             id* (u16, delta), resource*, scope*, schema_url*,
                      start_time_unix_nano (timestamp[ns]), duration_time_unix_nano (duration[ns]),
                      trace_id (fixed16), span_id (fixed8), trace_state*, parent_span_id* (fixed8),
                      name (utf8), kind* (i32), dropped_attributes_count* (u32),
                      dropped_events_count* (u32), dropped_links_count* (u32),
                      status* {code (i32), status_message* (utf8)}, flags* (u32)
    SPAN_EVENTS       id* (u32, delta), parent_id (u16, quasidelta on name),
                      time_unix_nano* (timestamp[ns]), name (utf8), dropped_attributes_count* (u32)
    SPAN_LINKS        id* (u32, delta), parent_id (u16, quasidelta on trace_id), trace_id (fixed16),
                      span_id (fixed8), trace_state*, dropped_attributes_count* (u32), flags* (u32)
    SPAN_ATTRS        attributes of spans (u16 parent ids)
    SPAN_EVENT_ATTRS  attributes of events (u32 parent ids)
    SPAN_LINK_ATTRS   attributes of links (u32 parent ids)
    RESOURCE_ATTRS, SCOPE_ATTRS (see :mod:`.envelope`)

Spans keep the request's order; events and links keep their order within each span. A span's
``status`` struct row is null when the status message is unset.

The encoder parses the request with upb (which validates it and yields resources and scopes),
then reads the fields of spans, events and links and the raw ``KeyValue`` bytes of their
attributes with the native field scanner (:mod:`orasi_common.pdata.protoscan`): no Python
call per span, event or link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.errors import MalformedData
from orasi_common.pdata import protoscan
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import encode_attributes
from orasi_common.pdata.otap.common import (
    DELTA,
    DURATION,
    QUASIDELTA,
    U16_MAX,
    Columns,
    Table,
    check_count,
    child_table,
    decode_ids,
    delta_ids,
    id_field,
    quasi_delta_decode,
    quasi_delta_encode,
    string_codes,
    timestamps,
    to_numpy,
    uints,
)
from orasi_common.pdata.otap.envelope import (
    EnvelopeDecoder,
    EnvelopeEncoder,
    attributes_for,
    children_by_key,
    count_request,
    root_table,
)
from orasi_common.pdata.otap.lazy import LazyTracesRequest
from orasi_common.pdata.otap.payload_types import TRACES_PAYLOAD_TYPES, ArrowPayloadType

P = ArrowPayloadType
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def encode_traces(request: ExportTraceServiceRequest) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a traces export request (empty dict for a request without spans)."""
    return encode_traces_bytes(request.SerializeToString())


def encode_traces_bytes(data: bytes) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """OTAP tables of a serialized traces export request (the receiver's bytes, unparsed)."""
    envelope, n = count_request(LazyTracesRequest, data, "resource_spans", "scope_spans", "spans")
    if n == 0:
        return {}
    check_count(n, U16_MAX, "spans")
    return _encode_scanned(envelope, n, _scan_spans(data, n))


def _scan_spans(data: bytes, n: int) -> tuple[protoscan.Buffer, protoscan.Fields]:
    """The fields of every span, scanned natively from the request bytes (after upb accepted
    them, so strings are valid UTF-8); MalformedData if the scan does not find upb's ``n`` spans."""
    buf = protoscan.Buffer(data)
    fields = protoscan.scan(buf, np.zeros(1, dtype=np.int64), np.full(1, len(data), dtype=np.int64))
    for number in (1, 2):  # ExportTraceServiceRequest.resource_spans, ResourceSpans.scope_spans
        fields = protoscan.items(buf, fields, number).fields
    spans = protoscan.items(buf, fields, 2)  # ScopeSpans.spans
    if len(spans) != n:
        raise MalformedData(f"the request's encoding is ambiguous: {len(spans)} spans scanned, {n} parsed")
    return buf, spans.fields


def _scanned_ids(
    buf: protoscan.Buffer, fields: protoscan.Fields, number: int, n: int, width: int, what: str
) -> pa.Array | None:
    """A fixed_size_binary id column (null where empty; None when all are empty)."""
    start, end = fields.last_range(number, n)
    size = end - start
    present = size > 0
    if not present.any():
        return None
    if bool(np.any(present & (size != width))):
        bad = int(size[present & (size != width)][0])
        raise MalformedData(f"{what} must be {width} bytes or empty, got {bad} bytes")
    _, raw = protoscan.gather(buf, np.where(present, start, 0), np.where(present, start + width, 0))
    if present.all():
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(raw)])
    values = np.zeros((n, width), dtype=np.uint8)
    values[present] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
    validity = pa.array(present).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [validity, pa.py_buffer(values.tobytes())], int(n - np.count_nonzero(present))
    )


def _scanned_strings(
    buf: protoscan.Buffer, fields: protoscan.Fields, number: int, n: int, optional: bool
) -> pa.Array | None:
    """A utf8 column; an optional one has nulls for empty strings and is None when all are."""
    start, end = fields.last_range(number, n)
    present = end > start
    if optional and not present.any():
        return None
    return protoscan.strings(buf, start, end, present if optional else None)


def _nonzero(values: npt.NDArray[Any], typ: pa.DataType) -> pa.Array | None:
    """A u32/i32 column of the low 32 bits of ``values``, or None when every value is zero."""
    low = (values & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    if not low.any():
        return None
    return pa.array(low if typ == pa.uint32() else low.view(np.int32), typ)


def _encode_scanned(
    envelope: EnvelopeEncoder, n: int, scanned: tuple[protoscan.Buffer, protoscan.Fields]
) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """The tables of ``n`` spans from their natively scanned fields."""
    buf, f = scanned
    tables: dict[ArrowPayloadType, pa.RecordBatch] = {}
    attr_rows = f.rows(9, protoscan.LEN)
    event_rows = f.rows(11, protoscan.LEN)
    link_rows = f.rows(13, protoscan.LEN)

    columns = Columns()
    if len(attr_rows) or len(event_rows) or len(link_rows):
        columns.add(id_field(pa.uint16()), delta_ids(n, pa.uint16()))
    envelope.add_to(columns, tables)
    start_ns = f.last_value(7, protoscan.I64_WIRE, n)
    end_ns = f.last_value(8, protoscan.I64_WIRE, n)
    columns.required("start_time_unix_nano", timestamps(start_ns))
    columns.required("duration_time_unix_nano", pa.array((end_ns - start_ns).view(np.int64), DURATION))
    trace_id = _scanned_ids(buf, f, 1, n, 16, "a span's trace_id")
    columns.required("trace_id", pa.nulls(n, pa.binary(16)) if trace_id is None else trace_id)
    span_id = _scanned_ids(buf, f, 2, n, 8, "a span's span_id")
    columns.required("span_id", pa.nulls(n, pa.binary(8)) if span_id is None else span_id)
    columns.optional("trace_state", _scanned_strings(buf, f, 3, n, optional=True))
    columns.optional("parent_span_id", _scanned_ids(buf, f, 4, n, 8, "a span's parent_span_id"))
    columns.required("name", _scanned_strings(buf, f, 5, n, optional=False))
    columns.optional("kind", _nonzero(f.last_value(6, protoscan.VARINT, n), pa.int32()))
    for name, number in (
        ("dropped_attributes_count", 10),
        ("dropped_events_count", 12),
        ("dropped_links_count", 14),
    ):
        columns.optional(name, _nonzero(f.last_value(number, protoscan.VARINT, n), pa.uint32()))
    columns.optional("status", _scanned_status(buf, f, n))
    columns.optional("flags", _nonzero(f.last_value(16, protoscan.I32_WIRE, n), pa.uint32()))
    tables[P.SPANS] = columns.batch()

    _scanned_attributes(buf, f, attr_rows, tables, P.SPAN_ATTRS, pa.uint16())
    if len(event_rows):
        _encode_children(buf, f, 11, 2, 3, tables, P.SPAN_EVENTS, P.SPAN_EVENT_ATTRS, _event_columns)
    if len(link_rows):
        _encode_children(buf, f, 13, 1, 4, tables, P.SPAN_LINKS, P.SPAN_LINK_ATTRS, _link_columns)
    return tables


def _scanned_status(buf: protoscan.Buffer, f: protoscan.Fields, n: int) -> pa.Array | None:
    """The ``status`` struct column (null where the message is unset), or None if never set."""
    present = np.zeros(n, dtype=np.bool_)
    present[f.msg[f.rows(15, protoscan.LEN)]] = True
    if not present.any():
        return None
    status = protoscan.nested(buf, f, 15)
    status_columns = Columns()
    code = (status.last_value(3, protoscan.VARINT, n) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    status_columns.required("code", pa.array(code.view(np.int32), pa.int32()))
    status_columns.optional("status_message", _scanned_strings(buf, status, 2, n, optional=True))
    return status_columns.struct("status", None if present.all() else ~present)


def _binary(buf: protoscan.Buffer, start: I64, end: I64) -> pa.Array:
    """The slices ``buf[start[i]:end[i]]`` as a binary array (empty where absent)."""
    offsets, raw = protoscan.gather(buf, start, end)
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(start), [None, pa.py_buffer(offsets), pa.py_buffer(raw)]
    )


def _scanned_attributes(
    buf: protoscan.Buffer,
    f: protoscan.Fields,
    rows: I64,
    tables: dict[ArrowPayloadType, pa.RecordBatch],
    payload: ArrowPayloadType,
    parent_type: pa.DataType,
) -> None:
    """The attribute table of the ``KeyValue`` fields at ``rows`` (parents: their messages)."""
    if not len(rows):
        return
    batch = encode_attributes(_binary(buf, f.start[rows], f.end[rows]), f.msg[rows], parent_type, payload)
    if batch is not None:
        tables[payload] = batch


def _encode_children(
    buf: protoscan.Buffer,
    spans: protoscan.Fields,
    number: int,
    key: int,
    attrs_number: int,
    tables: dict[ArrowPayloadType, pa.RecordBatch],
    payload: ArrowPayloadType,
    attrs_payload: ArrowPayloadType,
    add_columns: Callable[[protoscan.Buffer, protoscan.Fields, int, Columns], None],
) -> None:
    """The table of the spans' events or links (span field ``number``) as ``tables[payload]``,
    and their attributes (their field ``attrs_number``) as ``tables[attrs_payload]``, scanned
    natively like the spans.

    The ``id`` column is written when any child has attributes; ``parent_id`` (the span's row)
    is quasi-delta encoded on the bytes of field ``key`` (the name, the trace id); ``add_columns``
    adds the other columns.
    """
    children = protoscan.items(buf, spans, number)
    f, n = children.fields, len(children)
    attr_rows = f.rows(attrs_number, protoscan.LEN)
    keys = _binary(buf, *f.last_range(key, n))
    same_key = np.zeros(n, dtype=np.bool_)
    if n > 1:
        same_key[1:] = np.asarray(pc.equal(keys.slice(1), keys.slice(0, n - 1)), dtype=np.bool_)
    columns = Columns()
    if len(attr_rows):
        columns.add(id_field(pa.uint32()), delta_ids(n, pa.uint32()))
    parents = quasi_delta_encode(children.parent, same_key)
    columns.required("parent_id", uints(parents, pa.uint16()), QUASIDELTA)
    add_columns(buf, f, n, columns)
    tables[payload] = columns.batch()
    _scanned_attributes(buf, f, attr_rows, tables, attrs_payload, pa.uint32())


def _event_columns(buf: protoscan.Buffer, f: protoscan.Fields, n: int, columns: Columns) -> None:
    time = f.last_value(1, protoscan.I64_WIRE, n)
    columns.optional("time_unix_nano", timestamps(time) if time.any() else None)
    columns.required("name", _scanned_strings(buf, f, 2, n, optional=False))
    columns.optional("dropped_attributes_count", _nonzero(f.last_value(4, protoscan.VARINT, n), pa.uint32()))


def _link_columns(buf: protoscan.Buffer, f: protoscan.Fields, n: int, columns: Columns) -> None:
    trace_id = _scanned_ids(buf, f, 1, n, 16, "a link's trace_id")
    columns.required("trace_id", pa.nulls(n, pa.binary(16)) if trace_id is None else trace_id)
    span_id = _scanned_ids(buf, f, 2, n, 8, "a link's span_id")
    columns.required("span_id", pa.nulls(n, pa.binary(8)) if span_id is None else span_id)
    columns.optional("trace_state", _scanned_strings(buf, f, 3, n, optional=True))
    columns.optional("dropped_attributes_count", _nonzero(f.last_value(5, protoscan.VARINT, n), pa.uint32()))
    columns.optional("flags", _nonzero(f.last_value(6, protoscan.I32_WIRE, n), pa.uint32()))


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_traces(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> ExportTraceServiceRequest:
    """The traces export request of a set of OTAP tables; MalformedData if they are not valid."""
    return ExportTraceServiceRequest.FromString(decode_traces_bytes(tables))


def decode_traces_bytes(tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> bytes:
    """Like :func:`decode_traces`, but the serialized request."""
    checked, root = root_table(tables, TRACES_PAYLOAD_TYPES, P.SPANS, "traces")
    if root is None:
        return b""
    n = root.n
    envelope = EnvelopeDecoder(root, checked)
    ids, ids_valid = decode_ids(root, "id", "u16", DELTA)

    start = root.np("start_time_unix_nano", "timestamp", np.int64)
    if root.get("start_time_unix_nano", "timestamp") is None:
        raise root.fail("required column 'start_time_unix_nano' is missing")
    duration = to_numpy(root.need("duration_time_unix_nano", "duration"), np.int64)
    end = (start.view(np.uint64) + duration.view(np.uint64)).view(np.int64)
    parts: list[wire.Segment | pa.Array] = [
        wire.f_bytes(1, root.need("trace_id", "id16")),
        wire.f_bytes(2, root.need("span_id", "id8")),
    ]
    trace_state = root.get("trace_state", "utf8")
    if trace_state is not None:
        parts.append(wire.f_bytes(3, trace_state))
    parent = root.get("parent_span_id", "id8")
    if parent is not None:
        parts.append(wire.f_bytes(4, parent))
    parts += [
        wire.f_bytes(5, root.need("name", "utf8")),
        wire.f_varint(6, root.np("kind", "i32", np.int64)),
        wire.f_fixed64(7, start),
        wire.f_fixed64(8, end),
    ]
    span_attrs = attributes_for(checked, P.SPAN_ATTRS, 9, 16, ids, ids_valid)
    if span_attrs is not None:
        parts.append(span_attrs)
    parts.append(wire.f_varint(10, root.np("dropped_attributes_count", "u32", np.int64)))
    events = _decode_events(checked, ids, ids_valid)
    if events is not None:
        parts.append(events)
    parts.append(wire.f_varint(12, root.np("dropped_events_count", "u32", np.int64)))
    links = _decode_links(checked, ids, ids_valid)
    if links is not None:
        parts.append(links)
    parts.append(wire.f_varint(14, root.np("dropped_links_count", "u32", np.int64)))
    status = root.struct("status")
    if status is not None:
        message = status.get("status_message", "utf8")
        status_parts = [wire.f_bytes(2, message)] if message is not None else []
        status_parts.append(wire.f_varint(3, status.np("code", "i32", np.int64)))
        assert status.validity is not None
        parts.append(wire.f_bytes(15, wire.join(*status_parts), status.validity))
    parts.append(wire.f_fixed32(16, root.np("flags", "u32", np.uint32)))
    spans = wire.join(*parts)
    return envelope.assemble(wire.f_bytes(2, spans, np.ones(n, dtype=np.bool_)))


Parts = list[wire.Segment | pa.Array]


def _decode_events(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch], span_ids: I64, span_valid: Bools
) -> pa.Array | None:
    def fields(table: Table, name: pa.Array, attrs: Parts) -> Parts:
        return [
            wire.f_fixed64(1, table.np("time_unix_nano", "timestamp", np.int64)),
            wire.f_bytes(2, name),
            *attrs,
            wire.f_varint(4, table.np("dropped_attributes_count", "u32", np.int64)),
        ]

    spans = (span_ids, span_valid)
    return _decode_children(tables, spans, P.SPAN_EVENTS, P.SPAN_EVENT_ATTRS, ("name", "utf8"), 11, 3, fields)


def _decode_links(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch], span_ids: I64, span_valid: Bools
) -> pa.Array | None:
    def fields(table: Table, trace_id: pa.Array, attrs: Parts) -> Parts:
        trace_state = table.get("trace_state", "utf8")
        return [
            wire.f_bytes(1, trace_id),
            wire.f_bytes(2, table.need("span_id", "id8")),
            *([] if trace_state is None else [wire.f_bytes(3, trace_state)]),
            *attrs,
            wire.f_varint(5, table.np("dropped_attributes_count", "u32", np.int64)),
            wire.f_fixed32(6, table.np("flags", "u32", np.uint32)),
        ]

    spans = (span_ids, span_valid)
    return _decode_children(
        tables, spans, P.SPAN_LINKS, P.SPAN_LINK_ATTRS, ("trace_id", "id16"), 13, 4, fields
    )


def _decode_children(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch],
    spans: tuple[I64, Bools],
    payload: ArrowPayloadType,
    attrs_payload: ArrowPayloadType,
    key: tuple[str, str],
    field: int,
    attrs_field: int,
    fields: Callable[[Table, pa.Array, Parts], Parts],
) -> pa.Array | None:
    """The events or links (``payload``) of each span (``spans``: ids, valid) as the span's
    field ``field`` segments, or None without such a table.

    Parent ids are quasi-delta encoded on the ``key`` column (name and kind); ``fields`` gives a
    child message's fields in order from the table, its key column and its attributes (field
    ``attrs_field`` segments from ``attrs_payload``, as a list of none or one).
    """
    table = child_table(tables, payload, attrs_payload)
    if table is None:
        return None
    ids, ids_valid = decode_ids(table, "id", "u32", DELTA)
    key_column = table.need(*key)
    parents = quasi_delta_parents(table, "u16", 16, string_codes(key_column, table.n))
    attrs = attributes_for(tables, attrs_payload, attrs_field, 32, ids, ids_valid)
    children = wire.join(*fields(table, key_column, [] if attrs is None else [attrs]))
    framed = wire.f_bytes(field, children, np.ones(table.n, dtype=np.bool_))
    return children_by_key(parents, framed, *spans, payload.name)


def quasi_delta_parents(table: Table, kind: str, bits: int, codes: np.ndarray[Any, Any]) -> Any:
    """Decode a parent_id column quasi-delta encoded on columns whose equality codes are given."""
    encoded = to_numpy(table.full("parent_id", kind), np.int64)
    encoding = table.encoding("parent_id", QUASIDELTA)
    if encoding == QUASIDELTA:
        eq = np.zeros(len(encoded), dtype=np.bool_)
        if len(encoded) > 1:
            eq[1:] = codes[1:] == codes[:-1]
        return quasi_delta_decode(encoded, eq, bits)
    if encoding == DELTA:
        return np.cumsum(encoded) & ((1 << bits) - 1)
    return encoded


__all__ = [
    "decode_traces",
    "decode_traces_bytes",
    "encode_traces",
    "encode_traces_bytes",
    "quasi_delta_parents",
]
