"""Resources and scopes: the ``resource`` / ``scope`` struct columns of a root table and their
attribute tables (RESOURCE_ATTRS, SCOPE_ATTRS), both ways, shared by the three signals.

OTLP nests items in ``ResourceX { resource, ScopeX { scope, items, schema_url }, schema_url }``
with the same field numbers for every signal; OTAP flattens that into the root table:

- ``resource`` struct: ``id`` (u16, delta), ``schema_url`` (the ResourceX's), ``dropped_attributes_count``
- ``scope`` struct: ``id`` (u16, delta), ``name``, ``version``, ``dropped_attributes_count``
- ``schema_url`` column of the root: the ScopeX's schema URL.

Every ResourceX and every ScopeX gets its own id, so the decoder rebuilds the request's exact
grouping and order from runs of equal ids. A ResourceX or ScopeX without any item has no row to
carry it and is not represented.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from google.protobuf.message import DecodeError

from orasi_common.errors import MalformedData
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import decode_attributes, encode_attributes
from orasi_common.pdata.otap.common import (
    DELTA,
    U16_MAX,
    Columns,
    Table,
    check_count,
    decode_ids,
    delta_encode,
    first_rows,
    fld,
    runs,
    string_codes,
    to_numpy,
)
from orasi_common.pdata.otap.payload_types import ArrowPayloadType

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
P = ArrowPayloadType


class EnvelopeEncoder:
    """Collects the ResourceX / ScopeX of a request while a signal encoder walks it."""

    def __init__(self) -> None:
        self.res_present: list[bool] = []
        self.res_url: list[str] = []
        self.res_dropped: list[int] = []
        self.res_attrs: list[Any] = []
        self.scope_present: list[bool] = []
        self.scope_name: list[str] = []
        self.scope_version: list[str] = []
        self.scope_dropped: list[int] = []
        self.scope_attrs: list[Any] = []
        self.scope_url: list[str] = []
        self.scope_resource: list[int] = []
        self.scope_rows: list[int] = []

    def add_resource(self, rx: Any) -> int:
        """Register a (lazy) ResourceX; returns its index."""
        self.res_present.append(rx.HasField("resource"))
        resource = rx.resource
        self.res_url.append(rx.schema_url)
        self.res_dropped.append(resource.dropped_attributes_count)
        self.res_attrs.append(resource.attributes)
        return len(self.res_present) - 1

    def add_scope(self, sx: Any, resource_index: int, n_items: int) -> None:
        """Register a (lazy) ScopeX of ``n_items`` root rows."""
        self.scope_present.append(sx.HasField("scope"))
        scope = sx.scope
        self.scope_name.append(scope.name)
        self.scope_version.append(scope.version)
        self.scope_dropped.append(scope.dropped_attributes_count)
        self.scope_attrs.append(scope.attributes)
        self.scope_url.append(sx.schema_url)
        self.scope_resource.append(resource_index)
        self.scope_rows.append(n_items)

    def gather(self, resources: Any, scope_field: str, item_field: str) -> list[Any]:
        """Every item of a request, registering the resources and scopes that hold items."""
        gathered: list[Any] = []
        for rx in resources:
            resource_index = -1
            for sx in getattr(rx, scope_field):
                items = getattr(sx, item_field)
                if not items:
                    continue
                if resource_index < 0:
                    resource_index = self.add_resource(rx)
                self.add_scope(sx, resource_index, len(items))
                gathered.extend(items)
        return gathered

    def add_to(self, columns: Columns, tables: dict[ArrowPayloadType, pa.RecordBatch]) -> None:
        """Add ``resource``, ``scope`` and ``schema_url`` to a root table, and the attribute tables."""
        n_res, n_scopes = len(self.res_present), len(self.scope_present)
        check_count(n_res, U16_MAX, "resources")
        check_count(n_scopes, U16_MAX, "scopes")
        n_rows = sum(self.scope_rows)
        rows = np.asarray(self.scope_rows, dtype=np.int64)
        scope_of_row = np.repeat(np.arange(n_scopes, dtype=np.int64), rows) if n_scopes > 1 else None
        res_of_row = np.repeat(np.asarray(self.scope_resource, dtype=np.int64), rows) if n_res > 1 else None

        if n_res > 1 or (n_res == 1 and (self.res_present[0] or self.res_url[0])):
            res = Columns()
            res.required("id", _ids(res_of_row, n_rows), encoding=DELTA)
            res.optional("schema_url", _per_row(self.res_url, res_of_row, n_rows, pa.string()))
            res.optional(
                "dropped_attributes_count", _per_row(self.res_dropped, res_of_row, n_rows, pa.uint32())
            )
            _add_struct(
                columns, "resource", res.struct("resource", _absent(self.res_present, res_of_row, n_rows))
            )
        if n_scopes > 1 or (n_scopes == 1 and self.scope_present[0]):
            scope = Columns()
            scope.required("id", _ids(scope_of_row, n_rows), encoding=DELTA)
            scope.optional("name", _per_row(self.scope_name, scope_of_row, n_rows, pa.string()))
            scope.optional("version", _per_row(self.scope_version, scope_of_row, n_rows, pa.string()))
            scope.optional(
                "dropped_attributes_count", _per_row(self.scope_dropped, scope_of_row, n_rows, pa.uint32())
            )
            _add_struct(
                columns, "scope", scope.struct("scope", _absent(self.scope_present, scope_of_row, n_rows))
            )
        columns.optional("schema_url", _per_row(self.scope_url, scope_of_row, n_rows, pa.string()))

        for payload, lists in ((P.RESOURCE_ATTRS, self.res_attrs), (P.SCOPE_ATTRS, self.scope_attrs)):
            counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
            if counts.any():
                raws = list(itertools.chain.from_iterable(lists))
                parents = np.repeat(np.arange(len(lists), dtype=np.int64), counts)
                batch = encode_attributes(raws, parents, pa.uint16())
                if batch is not None:
                    tables[payload] = batch


def _ids(group_of_row: I64 | None, n_rows: int) -> pa.Array:
    """The delta-encoded group id of each row (all zeros for a single group)."""
    if group_of_row is None:
        return pa.array(np.zeros(n_rows, dtype=np.uint16), pa.uint16())
    return delta_encode(group_of_row, pa.uint16())


def _per_row(values: list[Any], group_of_row: I64 | None, n_rows: int, typ: pa.DataType) -> pa.Array | None:
    """Each row's group value (null where empty), or None when every group's value is empty."""
    if not any(values):
        return None
    if group_of_row is None:
        return pa.repeat(pa.scalar(values[0], typ), n_rows)
    return pa.array([v or None for v in values], typ).take(pa.array(group_of_row))


def _absent(present: list[bool], group_of_row: I64 | None, n_rows: int) -> Bools | None:
    if all(present):
        return None
    if group_of_row is None:
        return np.ones(n_rows, dtype=np.bool_)
    absent: Bools = ~np.asarray(present, dtype=np.bool_)[group_of_row]
    return absent


def _add_struct(columns: Columns, name: str, array: pa.Array | None) -> None:
    """Add a struct column even when all its rows are null: the ids inside still group rows."""
    if array is not None:
        columns.add(fld(name, array.type), array)


# ---------------------------------------------------------------------------------------------
# Decoding


def children_by_key(
    parents: I64, segments: pa.Array | wire.Segment, keys: I64, valid: Bools, what: str
) -> pa.Array:
    """Concatenate child segments per entity; entities sharing a key all get the children.

    ``keys``/``valid`` are the entities' ids; a parent id matching no valid entity is an error.
    """
    n = len(keys)
    uniq, inverse = np.unique(keys[valid], return_inverse=True)
    if len(parents) == 0:
        return wire.empties(n)
    pos = np.searchsorted(uniq, parents)
    clipped = np.minimum(pos, max(len(uniq) - 1, 0))
    if len(uniq) == 0 or not bool(np.all(uniq[clipped] == parents)):
        bad = parents if len(uniq) == 0 else parents[uniq[clipped] != parents]
        raise MalformedData(f"{what}: parent_id {int(bad[0])} points to no row of the parent table")
    grouped = wire.group_concat(segments, clipped.astype(np.int64), len(uniq))
    if valid.all() and len(uniq) == n and bool(np.all(inverse == np.arange(n))):
        return grouped
    index = np.full(n, len(uniq), dtype=np.int64)
    index[valid] = inverse
    extended = pa.concat_arrays([grouped, pa.array([b""], pa.binary())])
    return extended.take(pa.array(index))


def attributes_for(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch],
    payload: ArrowPayloadType,
    field_number: int,
    width_bits: int,
    keys: I64,
    valid: Bools,
) -> pa.Array | None:
    """The attributes of each entity as its message's ``field_number`` segments, or None."""
    batch = tables.get(payload)
    if batch is None or batch.num_rows == 0:
        return None
    parents, segments = decode_attributes(batch, payload, field_number, width_bits)
    return children_by_key(parents, segments, keys, valid, payload.name)


class EnvelopeDecoder:
    """Groups of a root table's rows into ScopeX and ResourceX, and their messages."""

    def __init__(self, root: Table, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> None:
        n = root.n
        self.n = n
        res = root.struct("resource")
        scope = root.struct("scope")
        url = root.get("schema_url", "utf8")
        if res is not None:
            res_id, res_id_valid = decode_ids(res, "id", "u16", DELTA)
            res_valid = res.validity if res.validity is not None else np.ones(n, dtype=np.bool_)
            res_url = res.get("schema_url", "utf8")
            res_dropped = res.np("dropped_attributes_count", "u32", np.int64)
            res_group = runs(res_id, res_valid, string_codes(res_url, n), res_dropped)
        else:
            res_id, res_valid, res_url = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_), None
            res_id_valid = res_valid
            res_dropped = np.zeros(n, dtype=np.int64)
            res_group = np.zeros(n, dtype=np.int64)
        if scope is not None:
            scope_id, scope_id_valid = decode_ids(scope, "id", "u16", DELTA)
            scope_valid = scope.validity if scope.validity is not None else np.ones(n, dtype=np.bool_)
            name, version = scope.get("name", "utf8"), scope.get("version", "utf8")
            scope_dropped = scope.np("dropped_attributes_count", "u32", np.int64)
            scope_group = runs(
                res_group,
                scope_id,
                scope_valid,
                string_codes(name, n),
                string_codes(version, n),
                scope_dropped,
                string_codes(url, n),
            )
        else:
            scope_id, scope_valid = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
            scope_id_valid = scope_valid
            name = version = None
            scope_dropped = np.zeros(n, dtype=np.int64)
            scope_group = runs(res_group, string_codes(url, n))
        self.scope_of_row = scope_group
        first_of_scope = first_rows(scope_group)
        self.n_scopes = len(first_of_scope)
        self.resource_of_scope = res_group[first_of_scope]
        first_of_res = first_rows(res_group)
        self.n_resources = len(first_of_res)

        # ScopeX: scope message, schema_url
        take_s = pa.array(first_of_scope)
        s_valid = scope_valid[first_of_scope]
        s_keys_valid = s_valid & scope_id_valid[first_of_scope]
        s_attrs = attributes_for(tables, P.SCOPE_ATTRS, 3, 16, scope_id[first_of_scope], s_keys_valid)
        if scope is None and s_attrs is not None:
            raise MalformedData("SCOPE_ATTRS: the root table has no scope ids to point to")
        scope_parts: list[wire.Segment | pa.Array] = []
        if name is not None:
            scope_parts.append(wire.f_bytes(1, name.take(take_s)))
        if version is not None:
            scope_parts.append(wire.f_bytes(2, version.take(take_s)))
        if s_attrs is not None:
            scope_parts.append(s_attrs)
        scope_parts.append(wire.f_varint(4, scope_dropped[first_of_scope]))
        scope_msg = wire.join(*scope_parts)
        self.scope_head = wire.f_bytes(1, scope_msg, s_valid)
        self.scope_url = wire.f_bytes(3, url.take(take_s)) if url is not None else None

        # ResourceX: resource message, schema_url
        take_r = pa.array(first_of_res)
        r_valid = res_valid[first_of_res]
        r_keys_valid = r_valid & res_id_valid[first_of_res]
        r_attrs = attributes_for(tables, P.RESOURCE_ATTRS, 1, 16, res_id[first_of_res], r_keys_valid)
        if res is None and r_attrs is not None:
            raise MalformedData("RESOURCE_ATTRS: the root table has no resource ids to point to")
        res_parts: list[wire.Segment | pa.Array] = [r_attrs] if r_attrs is not None else []
        res_parts.append(wire.f_varint(2, res_dropped[first_of_res]))
        res_msg = wire.join(*res_parts)
        self.res_head = wire.f_bytes(1, res_msg, r_valid)
        self.res_url = wire.f_bytes(3, res_url.take(take_r)) if res_url is not None else None

    def assemble(self, items: pa.Array | wire.Segment) -> bytes:
        """The serialized export request whose items (one per root row) are ``items``.

        ``items`` holds each row's item message already framed as field 2 of its ScopeX.
        """
        scope_items = wire.group_concat(items, self.scope_of_row, self.n_scopes)
        parts: list[wire.Segment | pa.Array] = [self.scope_head, scope_items]
        if self.scope_url is not None:
            parts.append(self.scope_url)
        scope_x = wire.f_bytes(2, wire.join(*parts), np.ones(self.n_scopes, dtype=np.bool_))
        res_scopes = wire.group_concat(scope_x, self.resource_of_scope, self.n_resources)
        res_parts: list[wire.Segment | pa.Array] = [self.res_head, res_scopes]
        if self.res_url is not None:
            res_parts.append(self.res_url)
        res_x = wire.f_bytes(1, wire.join(*res_parts), np.ones(self.n_resources, dtype=np.bool_))
        whole = wire.group_concat(res_x, np.zeros(self.n_resources, dtype=np.int64), 1)
        out: bytes = whole[0].as_py()
        return out


def check_payloads(
    tables: Mapping[Any, pa.RecordBatch], allowed: frozenset[ArrowPayloadType], signal: str
) -> dict[ArrowPayloadType, pa.RecordBatch]:
    """The tables keyed by ArrowPayloadType; MalformedData for a type the signal does not have."""
    out: dict[ArrowPayloadType, pa.RecordBatch] = {}
    for key, batch in tables.items():
        try:
            payload = ArrowPayloadType(int(key))
        except (ValueError, TypeError):
            raise MalformedData(f"unknown OTAP payload type {key!r} for {signal}") from None
        if payload not in allowed:
            raise MalformedData(f"payload type {payload.name} does not belong to {signal}")
        if not isinstance(batch, pa.RecordBatch):
            raise MalformedData(f"the {payload.name} payload is not an Arrow record batch")
        out[payload] = batch
    return out


def root_or_empty(
    tables: Mapping[ArrowPayloadType, pa.RecordBatch], root: ArrowPayloadType
) -> pa.RecordBatch | None:
    """The root table, None when the whole message is empty; MalformedData when only it is missing."""
    batch = tables.get(root)
    if batch is None or batch.num_rows == 0:
        orphans = [p.name for p, b in tables.items() if p != root and b.num_rows]
        if orphans:
            raise MalformedData(
                f"root table {root.name} is missing but {', '.join(sorted(orphans))} has rows"
            )
        return None
    return batch


def column_numpy(table: Table, name: str, kind: str, dtype: Any) -> npt.NDArray[Any]:
    """Shorthand for a numeric column with nulls/missing as zero."""
    return table.np(name, kind, dtype)


__all__ = [
    "EnvelopeDecoder",
    "EnvelopeEncoder",
    "attributes_for",
    "check_payloads",
    "children_by_key",
    "column_numpy",
    "root_or_empty",
    "to_numpy",
]


def gather_request(
    lazy_type: Any, data: bytes, resource_field: str, scope_field: str, item_field: str
) -> tuple[EnvelopeEncoder, list[Any]]:
    """Parse a serialized export request lazily and gather its items and their envelopes."""
    try:
        request = lazy_type.FromString(data)
    except DecodeError as exc:
        name = lazy_type.DESCRIPTOR.name.rsplit("_", 1)[-1]  # the lazy twin's name ends in the real one
        raise MalformedData(f"the body is not a valid {name}: {exc}") from None
    envelope = EnvelopeEncoder()
    return envelope, envelope.gather(getattr(request, resource_field), scope_field, item_field)
