"""OTAP record batches → the lake's rows, without assembling an OTLP request in between.

Every column is read from the Arrow columns: attribute values from the typed value columns
(strings, ints and bools with Arrow; doubles, bytes, maps and arrays, which are rare, one by
one), log bodies from their serialized ``AnyValue`` (the OTAP decoder's own step) through the
same rendering as OTLP ingest, so both paths give equal rows.
Tables that do not decode raise :class:`MalformedData`, as the OTAP decoder does.

Metric points are not built here: their tables are decoded to OTLP first (`rows`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from orasi_bridge.lake import schema
from orasi_bridge.lake.attributes import (
    VALUE_TYPE_NAMES,
    ScatteredStrings,
    any_value_strings,
    body_text,
    canonical,
    double_text,
    key_value_maps,
)
from orasi_bridge.lake.rows import SPAN_KIND, STATUS, enum_names, micros, service_names
from orasi_common.errors import MalformedData
from orasi_common.pdata import Signal
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import any_value_bytes, attribute_table
from orasi_common.pdata.otap.common import DELTA, Table, decode_ids, string_codes, to_numpy
from orasi_common.pdata.otap.envelope import check_payloads, root_or_empty
from orasi_common.pdata.otap.payload_types import LOGS_PAYLOAD_TYPES, TRACES_PAYLOAD_TYPES
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.traces import child_table, quasi_delta_parents
from orasi_common.pdata.protoscan import I64, Bools, Buffer, hex_strings

Tables = Mapping[Any, pa.RecordBatch]
U8 = np.ndarray[Any, np.dtype[np.uint8]]


class _Keys:
    """The rows of a parent table by id: attributes and children attach to every row whose id
    their ``parent_id`` names (a parent id naming no row is MalformedData)."""

    def __init__(self, ids: I64, valid: Bools) -> None:
        self.n = len(ids)
        self.unique, inverse = np.unique(ids[valid], return_inverse=True)
        self.index = np.full(self.n, len(self.unique), dtype=np.int64)  # the extra slot: nothing
        self.index[valid] = inverse.reshape(-1)

    def of(self, parents: I64, what: str) -> I64:
        """The position in ``unique`` of each parent id."""
        pos = np.searchsorted(self.unique, parents)
        clipped = np.minimum(pos, max(len(self.unique) - 1, 0))
        if len(parents) and (len(self.unique) == 0 or not bool(np.all(self.unique[clipped] == parents))):
            bad = parents if len(self.unique) == 0 else parents[self.unique[clipped] != parents]
            raise MalformedData(f"{what}: parent_id {int(bad[0])} points to no row of the parent table")
        return clipped

    def spread(self, per_key: pa.Array, empty: pa.Array) -> pa.Array:
        """Per-row values from one value per unique id (``empty`` for rows without one)."""
        return pa.concat_arrays([per_key, empty]).take(pa.array(self.index))


def _binary_buffer(arr: pa.Array) -> tuple[Buffer, I64, I64]:
    offsets, data = wire.binary_buffers(arr)
    return Buffer(data.tobytes()), offsets[:-1], offsets[1:]


def _attribute_maps(tables: Tables, payload: P, width_bits: int, keys: _Keys) -> pa.Array:
    """Each parent row's attributes from an OTAP attribute table, as canonical maps."""
    empty_map = pa.array([[]], schema.ATTRIBUTES)
    batch = tables.get(payload)
    if batch is None or batch.num_rows == 0:
        return pa.repeat(empty_map[0], keys.n) if keys.n else empty_map.slice(0, 0)
    table, parents, names, types = attribute_table(batch, payload, width_bits)
    owner = keys.of(parents, payload.name)
    order = pa.array(np.argsort(owner, kind="stable"))
    values = _canonical_values(table, types)
    per_key = key_value_maps(names.take(order), values.take(order), np.sort(owner), len(keys.unique))
    return keys.spread(per_key, empty_map)


def _canonical_values(table: Table, types: U8) -> pa.Array:
    """The canonical string of each row's value, from the typed value columns."""
    n = len(types)
    values = ScatteredStrings(n)
    place = values.place

    def rows_of(code: int, column: pa.Array | None) -> I64 | None:
        rows = np.flatnonzero((types == code) & (wire.is_valid(column) if column is not None else False))
        return rows if len(rows) else None

    if (column := table.get("str", "utf8")) is not None and (rows := rows_of(1, column)) is not None:
        place(rows, column.take(pa.array(rows)))
    if (column := table.get("int", "i64")) is not None and (rows := rows_of(2, column)) is not None:
        place(rows, pc.cast(column.take(pa.array(rows)), pa.string()))
    if (column := table.get("bool", "bool")) is not None and (rows := rows_of(4, column)) is not None:
        place(rows, pc.if_else(column.take(pa.array(rows)), "true", "false"))
    if (column := table.get("double", "f64")) is not None and (rows := rows_of(3, column)) is not None:
        place(rows, pa.array([double_text(v) for v in column.take(pa.array(rows)).to_pylist()], pa.string()))
    if (column := table.get("bytes", "binary")) is not None and (rows := rows_of(7, column)) is not None:
        encoded = [base64.b64encode(v).decode("ascii") for v in column.take(pa.array(rows)).to_pylist()]
        place(rows, pa.array(encoded, pa.string()))
    complex_rows = np.flatnonzero((types == 5) | (types == 6))
    if len(complex_rows):
        complex_bytes, _ = any_value_bytes(
            table, np.where((types == 5) | (types == 6), types, 0).astype(np.uint8)
        )
        texts = [
            canonical(AnyValue.FromString(v)) for v in complex_bytes.take(pa.array(complex_rows)).to_pylist()
        ]
        place(complex_rows, pa.array(texts, pa.string()))
    return values.finish()


def _hex(arr: pa.Array | None, n: int) -> pa.Array:
    """Lowercase hex of an id column (null where null or absent)."""
    if arr is None:
        return pa.nulls(n, pa.string())
    buf, starts, ends = _binary_buffer(pc.fill_null(arr.cast(pa.binary()), b""))
    return hex_strings(buf, starts, ends)


def _text(arr: pa.Array | None, n: int, empty_is_null: bool) -> pa.Array:
    if arr is None:
        return pa.nulls(n, pa.string()) if empty_is_null else pa.array([""] * n, pa.string())
    if empty_is_null:
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return pc.fill_null(arr, "")


def _envelope(root: Table, tables: Tables) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """(service_name, resource_attributes, scope_name, scope_version) of each row."""
    n = root.n
    resource = root.struct("resource")
    if resource is None:
        res_ids, res_valid = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    else:
        res_ids, res_valid = decode_ids(resource, "id", "u16", DELTA)
        assert resource.validity is not None
        res_valid &= resource.validity
    maps = _attribute_maps(tables, P.RESOURCE_ATTRS, 16, _Keys(res_ids, res_valid))
    scope = root.struct("scope")
    name = version = None
    if scope is not None:
        assert scope.validity is not None
        present = pa.array(scope.validity)
        name, version = (
            None if (column := scope.get(field, "utf8")) is None else pc.if_else(present, column, None)
            for field in ("name", "version")
        )
    return service_names(maps), maps, _text(name, n, True), _text(version, n, True)


def _children(table: Table, parents: I64, keys: _Keys, struct: pa.Array, what: str) -> pa.Array:
    """Lists of child structs per parent row, children in table order."""
    owner = keys.of(parents, what)
    order = np.argsort(owner, kind="stable")
    offsets = np.zeros(len(keys.unique) + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=len(keys.unique)), out=offsets[1:])
    per_key = pa.ListArray.from_arrays(pa.array(offsets), struct.take(pa.array(order)))
    return keys.spread(per_key, pa.array([[]], per_key.type))


def _events(tables: Tables, keys: _Keys, n: int) -> pa.Array:
    table = child_table(tables, P.SPAN_EVENTS, P.SPAN_EVENT_ATTRS)
    if table is None:
        return pa.array([[]] * n, pa.list_(schema.EVENT))
    m = table.n
    name = table.need("name", "utf8")
    ids, valid = decode_ids(table, "id", "u32", DELTA)
    struct = pa.StructArray.from_arrays(
        [
            pa.array(table.np("time_unix_nano", "timestamp", np.int64)),
            _text(name, m, False),
            _attribute_maps(tables, P.SPAN_EVENT_ATTRS, 32, _Keys(ids, valid)),
            pa.array(table.np("dropped_attributes_count", "u32", np.int64)),
        ],
        fields=list(schema.EVENT),
    )
    parents = quasi_delta_parents(table, "u16", 16, string_codes(name, m))
    return _children(table, parents, keys, struct, "SPAN_EVENTS")


def _links(tables: Tables, keys: _Keys, n: int) -> pa.Array:
    table = child_table(tables, P.SPAN_LINKS, P.SPAN_LINK_ATTRS)
    if table is None:
        return pa.array([[]] * n, pa.list_(schema.LINK))
    m = table.n
    trace_id = table.need("trace_id", "id16")
    ids, valid = decode_ids(table, "id", "u32", DELTA)
    struct = pa.StructArray.from_arrays(
        [
            _hex(trace_id, m),
            _hex(table.need("span_id", "id8"), m),
            _text(table.get("trace_state", "utf8"), m, True),
            _attribute_maps(tables, P.SPAN_LINK_ATTRS, 32, _Keys(ids, valid)),
            pa.array(table.np("flags", "u32", np.int64)),
        ],
        fields=list(schema.LINK),
    )
    parents = quasi_delta_parents(table, "u16", 16, string_codes(trace_id, m))
    return _children(table, parents, keys, struct, "SPAN_LINKS")


def spans_from_otap(tables: Tables, tenant: str, region: str) -> pa.RecordBatch:
    """The ``spans`` rows of one OTAP traces batch."""
    checked = check_payloads(tables, TRACES_PAYLOAD_TYPES, "traces")
    batch = root_or_empty(checked, P.SPANS)
    if batch is None:
        return pa.RecordBatch.from_pylist([], schema.SPANS)
    root = Table.of(P.SPANS, batch)
    n = root.n
    keys = _Keys(*decode_ids(root, "id", "u16", DELTA))
    if root.get("start_time_unix_nano", "timestamp") is None:
        raise root.fail("required column 'start_time_unix_nano' is missing")
    start = root.np("start_time_unix_nano", "timestamp", np.int64)
    duration = to_numpy(root.need("duration_time_unix_nano", "duration"), np.int64)
    end = (start.view(np.uint64) + duration.view(np.uint64)).view(np.int64)
    service_name, resource_attributes, scope_name, scope_version = _envelope(root, checked)
    status = root.struct("status")
    if status is None:
        code, message = np.zeros(n, dtype=np.int64), pa.nulls(n, pa.string())
    else:
        code = status.np("code", "i32", np.int64)
        message = _text(status.get("status_message", "utf8"), n, True)
    columns = {
        "tenant": pa.array([tenant] * n, pa.string()),
        "region": pa.array([region] * n, pa.string()),
        "service_name": service_name,
        "name": _text(root.need("name", "utf8"), n, False),
        "kind": enum_names(root.np("kind", "i32", np.int64), SPAN_KIND),
        "trace_id": _hex(root.need("trace_id", "id16"), n),
        "span_id": _hex(root.need("span_id", "id8"), n),
        "parent_span_id": _hex(root.get("parent_span_id", "id8"), n),
        "trace_state": _text(root.get("trace_state", "utf8"), n, True),
        "flags": pa.array(root.np("flags", "u32", np.int64)),
        "start_time_unix_nano": pa.array(start),
        "end_time_unix_nano": pa.array(end),
        "duration_ns": pa.array(end - start),
        "status_code": enum_names(code, STATUS),
        "status_message": message,
        "attributes": _attribute_maps(checked, P.SPAN_ATTRS, 16, keys),
        "resource_attributes": resource_attributes,
        "scope_name": scope_name,
        "scope_version": scope_version,
        "events": _events(checked, keys, n),
        "links": _links(checked, keys, n),
        "dropped_attributes_count": pa.array(root.np("dropped_attributes_count", "u32", np.int64)),
        "time": micros(start),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema.SPANS], schema=schema.SPANS)


def logs_from_otap(tables: Tables, tenant: str, region: str) -> pa.RecordBatch:
    """The ``logs`` rows of one OTAP logs batch."""
    checked = check_payloads(tables, LOGS_PAYLOAD_TYPES, "logs")
    batch = root_or_empty(checked, P.LOGS)
    if batch is None:
        return pa.RecordBatch.from_pylist([], schema.LOGS)
    root = Table.of(P.LOGS, batch)
    n = root.n
    keys = _Keys(*decode_ids(root, "id", "u16", DELTA))
    time_ns = root.np("time_unix_nano", "timestamp", np.int64)
    observed = root.np("observed_time_unix_nano", "timestamp", np.int64)
    service_name, resource_attributes, scope_name, scope_version = _envelope(root, checked)
    body_struct = root.struct("body")
    if body_struct is None:
        body, kind = pa.nulls(n, pa.string()), np.zeros(n, dtype=np.int64)
    else:
        types_arr = body_struct.need("type", "u8")
        values, _ = any_value_bytes(body_struct, to_numpy(types_arr, np.uint8))
        assert body_struct.validity is not None
        present = np.flatnonzero(body_struct.validity & wire.is_valid(types_arr))
        buf, starts, ends = _binary_buffer(values)
        body, kind = any_value_strings(buf, starts[present], ends[present], present, n, body_text)
    columns = {
        "tenant": pa.array([tenant] * n, pa.string()),
        "region": pa.array([region] * n, pa.string()),
        "service_name": service_name,
        "time_unix_nano": pa.array(time_ns, mask=time_ns == 0),
        "observed_time_unix_nano": pa.array(observed, mask=observed == 0),
        "severity_number": pa.array(root.np("severity_number", "i32", np.int32)),
        "severity_text": _text(root.get("severity_text", "utf8"), n, True),
        "event_name": _text(root.get("event_name", "utf8"), n, True),
        "body": body,
        "body_type": pa.array(VALUE_TYPE_NAMES[kind], pa.string()),
        "trace_id": _hex(root.get("trace_id", "id16"), n),
        "span_id": _hex(root.get("span_id", "id8"), n),
        "flags": pa.array(root.np("flags", "u32", np.int64)),
        "attributes": _attribute_maps(checked, P.LOG_ATTRS, 16, keys),
        "resource_attributes": resource_attributes,
        "scope_name": scope_name,
        "scope_version": scope_version,
        "time": micros(np.where(time_ns != 0, time_ns, observed)),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema.LOGS], schema=schema.LOGS)


OTAP_CONVERTERS = {Signal.TRACES: spans_from_otap, Signal.LOGS: logs_from_otap}
