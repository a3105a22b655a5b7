"""Serialized OTLP export requests → the lake's spans and logs rows.

Spans and logs are read straight from the serialized request with
:mod:`orasi_common.pdata.protoscan`: one native scan per nesting level lists every field, and
each column is then picked out with numpy, for all items at once (no Python step per item; the
cost is mostly per call, so the writer converts many requests merged into one). The envelope
(resource, scope, service name) comes from :class:`orasi_common.pdata.envelope.OtlpEnvelope`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from orasi_bridge.lake import schema
from orasi_bridge.lake.rows.columns import lists, log_rows, span_rows
from orasi_common.pdata.canonical import scanned_values, typed_wire_attribute_maps, wire_attribute_maps
from orasi_common.pdata.envelope import Envelope, OtlpEnvelope, optional_strings
from orasi_common.pdata.protoscan import (
    I32_WIRE,
    I64,
    I64_WIRE,
    LEN,
    VARINT,
    Buffer,
    Fields,
    hex_strings,
    items,
    nested,
    strings,
)

# Span and LogRecord fields read as numbers (int64 bits) and as hex ids, by field number.
_SPAN_NUMBERS = {"start": (7, I64_WIRE), "end": (8, I64_WIRE), "kind": (6, VARINT), "flags": (16, I32_WIRE)}
_SPAN_IDS = {"trace_id": 1, "span_id": 2, "parent_span_id": 4}
_LOG_NUMBERS = {
    "time": (1, I64_WIRE),
    "observed": (11, I64_WIRE),
    "severity_number": (2, VARINT),
    "flags": (8, I32_WIRE),
}
_LOG_IDS = {"trace_id": 9, "span_id": 10}


def field_text(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """A string field of each message ("" when absent)."""
    start, end = fields.last_range(number, n)
    return strings(buf, start, end)


def ids(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """A bytes field of each message as lowercase hex (null when empty)."""
    start, end = fields.last_range(number, n)
    return hex_strings(buf, start, end)


def uint32s(fields: Fields, number: int, n: int) -> I64:
    """A uint32 varint field of each message (0 when absent; wider varints keep their low 32 bits,
    as protobuf parsers do)."""
    return numbers(fields, number, VARINT, n) & 0xFFFFFFFF


def numbers(fields: Fields, number: int, wire_type: int, n: int) -> I64:
    """A numeric field of each message as int64 bits (0 when absent)."""
    return fields.last_value(number, wire_type, n).view(np.int64)


def attribute_maps(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """The canonical map of each message's KeyValues (repeated field ``number``)."""
    return wire_attribute_maps(buf, items(buf, fields, number), n)


def _events(buf: Buffer, spans: Fields, n: int) -> pa.Array:
    events = items(buf, spans, 11)
    m, f = len(events), events.fields
    struct = pa.StructArray.from_arrays(
        [
            pa.array(numbers(f, 1, I64_WIRE, m)),
            field_text(buf, f, 2, m),
            attribute_maps(buf, f, 3, m),
            pa.array(uint32s(f, 4, m)),
        ],
        fields=list(schema.EVENT),
    )
    return lists(events.parent, n, struct)


def _links(buf: Buffer, spans: Fields, n: int) -> pa.Array:
    links = items(buf, spans, 13)
    m, f = len(links), links.fields
    struct = pa.StructArray.from_arrays(
        [
            ids(buf, f, 1, m),
            ids(buf, f, 2, m),
            optional_strings(buf, f, 3, m),
            attribute_maps(buf, f, 4, m),
            pa.array(numbers(f, 6, I32_WIRE, m)),
        ],
        fields=list(schema.LINK),
    )
    return lists(links.parent, n, struct)


Types = dict[str, pa.Array]
"""Filled, when given, with the original types beside the ``attributes`` and
``resource_attributes`` maps of the rows (``canonical.TYPES``): what the schema registry checks."""

Resources = list[I64]
"""Filled, when given, with the index of each row's resource in the converted request (rows of
one resource hold equal ``resource_attributes``, copies of its map): what lets the stream work
once per resource (``stream.runs``). Spans and logs only."""


def item_attributes(
    buf: Buffer, fields: Fields, number: int, n: int, envelope: Envelope, types: Types | None
) -> pa.Array:
    """The items' attribute maps; with ``types``, their types and the resources' too."""
    maps, typed = typed_wire_attribute_maps(buf, items(buf, fields, number), n, types is not None)
    if types is not None and typed is not None:
        types["attributes"] = typed
        resource = envelope.item_resource_types()
        if resource is not None:
            types["resource_attributes"] = resource
    return maps


def walk(data: bytes) -> tuple[Buffer, OtlpEnvelope, int, Fields]:
    """The request's buffer, its envelope, and the number and scanned fields of its items."""
    buf = Buffer(data)
    envelope = OtlpEnvelope(buf)
    return buf, envelope, envelope.n, envelope.items.fields


def spans_batch(
    data: bytes, tenant: str, region: str, types: Types | None = None, resources: Resources | None = None
) -> pa.RecordBatch:
    """The ``spans`` rows of a serialized ExportTraceServiceRequest."""
    buf, envelope, n, spans = walk(data)
    if resources is not None:
        resources.append(envelope.resource_of_item)
    status = nested(buf, spans, 15)
    return span_rows(
        tenant,
        region,
        envelope.item_columns(),
        **{name: numbers(spans, number, wire_type, n) for name, (number, wire_type) in _SPAN_NUMBERS.items()},
        **{name: ids(buf, spans, number, n) for name, number in _SPAN_IDS.items()},
        name=field_text(buf, spans, 5, n),
        trace_state=optional_strings(buf, spans, 3, n),
        status_code=numbers(status, 3, VARINT, n),
        status_message=optional_strings(buf, status, 2, n),
        attributes=item_attributes(buf, spans, 9, n, envelope, types),
        events=_events(buf, spans, n),
        links=_links(buf, spans, n),
        dropped_attributes_count=uint32s(spans, 10, n),
    )


def logs_batch(
    data: bytes,
    tenant: str,
    region: str,
    received: I64 | int = 0,
    types: Types | None = None,
    resources: Resources | None = None,
) -> pa.RecordBatch:
    """The ``logs`` rows of a serialized ExportLogsServiceRequest (``received``: when each record
    was received, see ``columns.log_rows``)."""
    buf, envelope, n, logs = walk(data)
    if resources is not None:
        resources.append(envelope.resource_of_item)
    body_rows = logs.rows(5, LEN)
    body = scanned_values(buf, logs.start[body_rows], logs.end[body_rows], logs.msg[body_rows], n)
    return log_rows(
        tenant,
        region,
        envelope.item_columns(),
        **{name: numbers(logs, number, wire_type, n) for name, (number, wire_type) in _LOG_NUMBERS.items()},
        **{name: ids(buf, logs, number, n) for name, number in _LOG_IDS.items()},
        received=received,
        severity_text=optional_strings(buf, logs, 3, n),
        event_name=optional_strings(buf, logs, 12, n),
        body=body.render(body=True),
        body_type=body.types,
        attributes=item_attributes(buf, logs, 6, n, envelope, types),
    )
