"""OTAP record batches → the lake's spans and logs rows, without assembling an OTLP request.

Every column is read from the Arrow columns: attribute values and log bodies from their typed
value columns (``canonical_otap.table_values``), rendered by the same canonicaliser as OTLP
ingest, and the envelope from :class:`orasi_common.pdata.envelope.OtapEnvelope`, so both forms
give equal rows. Tables that do not decode raise :class:`MalformedData`, as the OTAP decoder
does. With ``types``, the original type of each attribute value is read from the attribute
tables' ``type`` column, as ``otlp.Types`` says (what the schema registry checks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from orasi_bridge.lake import schema
from orasi_bridge.lake.rows.columns import children, hex_ids, log_rows, span_rows, text
from orasi_bridge.lake.rows.otlp import Resources, Types
from orasi_common.pdata.canonical_otap import table_attribute_maps, table_values, typed_table_attribute_maps
from orasi_common.pdata.envelope import OtapEnvelope
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.common import DELTA, Keys, Table, child_table, decode_ids, string_codes, to_numpy
from orasi_common.pdata.otap.envelope import root_table
from orasi_common.pdata.otap.payload_types import LOGS_PAYLOAD_TYPES, TRACES_PAYLOAD_TYPES
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.traces import quasi_delta_parents
from orasi_common.pdata.protoscan import I64

Tables = Mapping[Any, pa.RecordBatch]
Columns = Callable[[Table, int], list[pa.Array]]


def _span_children(
    tables: Tables,
    keys: Keys,
    kind: pa.DataType,
    payloads: tuple[P, P],
    run_key: tuple[str, str],
    columns: Columns,
) -> pa.Array:
    """Each span's events or links (``payloads``: the table and its attributes), their parent
    ids quasi-delta on ``run_key``; ``columns`` reads the struct's columns but the attributes."""
    table = child_table(tables, *payloads)
    if table is None:
        return pa.array([[]] * keys.n, pa.list_(kind))
    attributes = table_attribute_maps(tables, payloads[1], 32, Keys(*decode_ids(table, "id", "u32", DELTA)))
    values = columns(table, table.n)
    values.insert([f.name for f in kind].index("attributes"), attributes)
    struct = pa.StructArray.from_arrays(values, fields=list(kind))
    parents = quasi_delta_parents(table, "u16", 16, string_codes(table.need(*run_key), table.n))
    return children(parents, keys, struct, payloads[0].name)


def _event_columns(table: Table, m: int) -> list[pa.Array]:
    return [
        pa.array(table.np("time_unix_nano", "timestamp", np.int64)),
        text(table.need("name", "utf8"), m, False),
        pa.array(table.np("dropped_attributes_count", "u32", np.int64)),
    ]


def _link_columns(table: Table, m: int) -> list[pa.Array]:
    return [
        hex_ids(table.need("trace_id", "id16"), m),
        hex_ids(table.need("span_id", "id8"), m),
        text(table.get("trace_state", "utf8"), m, True),
        pa.array(table.np("flags", "u32", np.int64)),
    ]


def item_attributes(
    tables: Tables, payload: P, keys: Keys, envelope: OtapEnvelope, types: Types | None
) -> pa.Array:
    """The items' attribute maps; with ``types``, their types and the resources' too."""
    maps, typed = typed_table_attribute_maps(tables, payload, 16, keys, types is not None)
    if types is not None and typed is not None:
        types["attributes"] = typed
        resource = envelope.item_resource_types()
        if resource is not None:
            types["resource_attributes"] = resource
    return maps


def spans_batch(
    tables: Tables, tenant: str, region: str, types: Types | None = None, resources: Resources | None = None
) -> pa.RecordBatch:
    """The ``spans`` rows of one OTAP traces batch."""
    checked, root = root_table(tables, TRACES_PAYLOAD_TYPES, P.SPANS, "traces")
    if root is None:
        return pa.RecordBatch.from_pylist([], schema.SPANS)
    n = root.n
    keys = Keys(*decode_ids(root, "id", "u16", DELTA))
    if root.get("start_time_unix_nano", "timestamp") is None:
        raise root.fail("required column 'start_time_unix_nano' is missing")
    start = root.np("start_time_unix_nano", "timestamp", np.int64)
    duration = to_numpy(root.need("duration_time_unix_nano", "duration"), np.int64)
    status = root.struct("status")
    envelope = OtapEnvelope(root, checked)
    if resources is not None:
        resources.append(envelope.resource_of_item)
    return span_rows(
        tenant,
        region,
        envelope.item_columns(),
        start=start,
        end=(start.view(np.uint64) + duration.view(np.uint64)).view(np.int64),
        name=text(root.need("name", "utf8"), n, False),
        kind=root.np("kind", "i32", np.int64),
        trace_id=hex_ids(root.need("trace_id", "id16"), n),
        span_id=hex_ids(root.need("span_id", "id8"), n),
        parent_span_id=hex_ids(root.get("parent_span_id", "id8"), n),
        trace_state=text(root.get("trace_state", "utf8"), n, True),
        flags=root.np("flags", "u32", np.int64),
        status_code=np.zeros(n, dtype=np.int64) if status is None else status.np("code", "i32", np.int64),
        status_message=text(None if status is None else status.get("status_message", "utf8"), n, True),
        attributes=item_attributes(checked, P.SPAN_ATTRS, keys, envelope, types),
        events=_span_children(
            checked, keys, schema.EVENT, (P.SPAN_EVENTS, P.SPAN_EVENT_ATTRS), ("name", "utf8"), _event_columns
        ),
        links=_span_children(
            checked, keys, schema.LINK, (P.SPAN_LINKS, P.SPAN_LINK_ATTRS), ("trace_id", "id16"), _link_columns
        ),
        dropped_attributes_count=root.np("dropped_attributes_count", "u32", np.int64),
    )


def logs_batch(
    tables: Tables,
    tenant: str,
    region: str,
    received: I64 | int = 0,
    types: Types | None = None,
    resources: Resources | None = None,
) -> pa.RecordBatch:
    """The ``logs`` rows of one OTAP logs batch (``received``: see ``columns.log_rows``)."""
    checked, root = root_table(tables, LOGS_PAYLOAD_TYPES, P.LOGS, "logs")
    if root is None:
        return pa.RecordBatch.from_pylist([], schema.LOGS)
    n = root.n
    body_struct = root.struct("body")
    if body_struct is None:
        body, body_type = pa.nulls(n, pa.string()), np.zeros(n, dtype=np.uint8)
    else:
        types_arr = body_struct.need("type", "u8")
        assert body_struct.validity is not None
        present = body_struct.validity & wire.is_valid(types_arr)
        values = table_values(
            body_struct, np.where(present, to_numpy(types_arr, np.uint8), 0).astype(np.uint8)
        )
        body, body_type = values.render(body=True), values.types
    envelope = OtapEnvelope(root, checked)
    if resources is not None:
        resources.append(envelope.resource_of_item)
    return log_rows(
        tenant,
        region,
        envelope.item_columns(),
        time=root.np("time_unix_nano", "timestamp", np.int64),
        observed=root.np("observed_time_unix_nano", "timestamp", np.int64),
        received=received,
        severity_number=root.np("severity_number", "i32", np.int64),
        severity_text=text(root.get("severity_text", "utf8"), n, True),
        event_name=text(root.get("event_name", "utf8"), n, True),
        body=body,
        body_type=body_type,
        trace_id=hex_ids(root.get("trace_id", "id16"), n),
        span_id=hex_ids(root.get("span_id", "id8"), n),
        flags=root.np("flags", "u32", np.int64),
        attributes=item_attributes(
            checked, P.LOG_ATTRS, Keys(*decode_ids(root, "id", "u16", DELTA)), envelope, types
        ),
    )
