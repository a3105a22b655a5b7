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

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from google.protobuf.message import DecodeError

from orasi_common.errors import MalformedData
from orasi_common.pdata.otap import wire
from orasi_common.pdata.otap.attributes import add_attribute_table, decode_attributes
from orasi_common.pdata.otap.common import (
    DELTA,
    U16_MAX,
    Columns,
    Keys,
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

    def gather(self, resources: Any, scope_field: str, item_field: str, into: list[Any] | None) -> int:
        """Register the resources and scopes of a request that hold items; the items are
        appended to ``into`` unless it is None (a caller that scans them natively need not
        have a Python object made for each). Returns how many items there are."""
        count = 0
        for rx in resources:
            resource_index = -1
            for sx in getattr(rx, scope_field):
                items = getattr(sx, item_field)
                if not items:
                    continue
                if resource_index < 0:
                    resource_index = self.add_resource(rx)
                self.add_scope(sx, resource_index, len(items))
                count += len(items)
                if into is not None:
                    into.extend(items)
        return count

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

        add_attribute_table(tables, P.RESOURCE_ATTRS, self.res_attrs, pa.uint16(), repeats=True)
        add_attribute_table(tables, P.SCOPE_ATTRS, self.scope_attrs, pa.uint16(), repeats=True)


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
    index = Keys(keys, valid)
    if len(parents) == 0:
        return wire.empties(index.n)
    grouped = wire.group_concat(segments, index.of(parents, what), len(index.unique))
    return index.spread(grouped, pa.array([b""], pa.binary()))


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


class Groups:
    """The ResourceX and ScopeX of a root table's rows: a group is a run of rows whose
    ``resource`` (or ``scope``) struct holds the same id, validity and fields (the encoder gives
    each its own id). Read once, for the decoder and for the envelope walker of the lake
    (:class:`orasi_common.pdata.envelope.Envelope`)."""

    def __init__(self, root: Table) -> None:
        n = self.n = root.n
        none, zeros = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.int64)
        self.resource, self.scope = res, scope = root.struct("resource"), root.struct("scope")
        self.url = url = root.get("schema_url", "utf8")
        self.res_url = self.name = self.version = None
        if res is not None:
            self.res_id, self.res_id_valid = decode_ids(res, "id", "u16", DELTA)
            self.res_valid = _present(res)
            self.res_url = res.get("schema_url", "utf8")
            self.res_dropped = res.np("dropped_attributes_count", "u32", np.int64)
            res_group = runs(self.res_id, self.res_valid, string_codes(self.res_url, n), self.res_dropped)
        else:
            self.res_id, self.res_id_valid = zeros, none
            self.res_valid, self.res_dropped = none, zeros
            res_group = zeros
        if scope is not None:
            self.scope_id, self.scope_id_valid = decode_ids(scope, "id", "u16", DELTA)
            self.scope_valid = _present(scope)
            self.name, self.version = scope.get("name", "utf8"), scope.get("version", "utf8")
            self.scope_dropped = scope.np("dropped_attributes_count", "u32", np.int64)
            scope_group = runs(
                res_group,
                self.scope_id,
                self.scope_valid,
                string_codes(self.name, n),
                string_codes(self.version, n),
                self.scope_dropped,
                string_codes(url, n),
            )
        else:
            self.scope_id, self.scope_id_valid = zeros, none
            self.scope_valid, self.scope_dropped = none, zeros
            scope_group = runs(res_group, string_codes(url, n))
        self.resource_of_row: I64 = res_group
        self.scope_of_row: I64 = scope_group
        self.first_of_resource = first_rows(res_group)
        self.first_of_scope = first_rows(scope_group)
        self.resource_of_scope = res_group[self.first_of_scope]

    def resource_keys(self, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> tuple[I64, Bools]:
        """The id of each resource group (valid: it has a resource message and an id) for its
        RESOURCE_ATTRS, which may have no rows when the root table has no resource ids."""
        attributes = tables.get(P.RESOURCE_ATTRS)
        if self.resource is None and attributes is not None and attributes.num_rows:
            raise MalformedData("RESOURCE_ATTRS: the root table has no resource ids to point to")
        first = self.first_of_resource
        return self.res_id[first], self.res_valid[first] & self.res_id_valid[first]

    def scope_keys(self) -> tuple[I64, Bools]:
        first = self.first_of_scope
        return self.scope_id[first], self.scope_valid[first] & self.scope_id_valid[first]


def _present(struct: Table) -> Bools:
    return struct.validity if struct.validity is not None else np.ones(struct.n, dtype=np.bool_)


class EnvelopeDecoder:
    """Groups of a root table's rows into ScopeX and ResourceX, and their messages."""

    def __init__(self, root: Table, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> None:
        groups = Groups(root)
        self.n = groups.n
        self.scope_of_row = groups.scope_of_row
        self.n_scopes = len(groups.first_of_scope)
        self.resource_of_scope = groups.resource_of_scope
        self.n_resources = len(groups.first_of_resource)

        # ScopeX: scope message, schema_url
        first, take = groups.first_of_scope, pa.array(groups.first_of_scope)
        s_attrs = attributes_for(tables, P.SCOPE_ATTRS, 3, 16, *groups.scope_keys())
        if groups.scope is None and s_attrs is not None:
            raise MalformedData("SCOPE_ATTRS: the root table has no scope ids to point to")
        scope_parts: list[wire.Segment | pa.Array] = []
        if groups.name is not None:
            scope_parts.append(wire.f_bytes(1, groups.name.take(take)))
        if groups.version is not None:
            scope_parts.append(wire.f_bytes(2, groups.version.take(take)))
        if s_attrs is not None:
            scope_parts.append(s_attrs)
        scope_parts.append(wire.f_varint(4, groups.scope_dropped[first]))
        self.scope_head = wire.f_bytes(1, wire.join(*scope_parts), groups.scope_valid[first])
        self.scope_url = wire.f_bytes(3, groups.url.take(take)) if groups.url is not None else None

        # ResourceX: resource message, schema_url
        first, take = groups.first_of_resource, pa.array(groups.first_of_resource)
        r_attrs = attributes_for(tables, P.RESOURCE_ATTRS, 1, 16, *groups.resource_keys(tables))
        res_parts: list[wire.Segment | pa.Array] = [r_attrs] if r_attrs is not None else []
        res_parts.append(wire.f_varint(2, groups.res_dropped[first]))
        self.res_head = wire.f_bytes(1, wire.join(*res_parts), groups.res_valid[first])
        self.res_url = wire.f_bytes(3, groups.res_url.take(take)) if groups.res_url is not None else None

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


def root_table(
    tables: Mapping[Any, pa.RecordBatch],
    allowed: frozenset[ArrowPayloadType],
    root: ArrowPayloadType,
    signal: str,
) -> tuple[dict[ArrowPayloadType, pa.RecordBatch], Table | None]:
    """The tables checked by :func:`check_payloads` and their root (None when the message is
    empty, see :func:`root_or_empty`)."""
    checked = check_payloads(tables, allowed, signal)
    batch = root_or_empty(checked, root)
    return checked, None if batch is None else Table.of(root, batch)


def column_numpy(table: Table, name: str, kind: str, dtype: Any) -> npt.NDArray[Any]:
    """Shorthand for a numeric column with nulls/missing as zero."""
    return table.np(name, kind, dtype)


__all__ = [
    "EnvelopeDecoder",
    "EnvelopeEncoder",
    "Groups",
    "attributes_for",
    "check_payloads",
    "children_by_key",
    "column_numpy",
    "root_or_empty",
    "root_table",
    "to_numpy",
]


def gather_request(
    lazy_type: Any, data: bytes, resource_field: str, scope_field: str, item_field: str
) -> tuple[EnvelopeEncoder, list[Any]]:
    """Parse a serialized export request lazily and gather its items and their envelopes."""
    items: list[Any] = []
    envelope = EnvelopeEncoder()
    envelope.gather(getattr(_parsed(lazy_type, data), resource_field), scope_field, item_field, items)
    return envelope, items


def count_request(
    lazy_type: Any, data: bytes, resource_field: str, scope_field: str, item_field: str
) -> tuple[EnvelopeEncoder, int]:
    """Like :func:`gather_request`, but only the number of items (for natively scanned items)."""
    envelope = EnvelopeEncoder()
    n = envelope.gather(getattr(_parsed(lazy_type, data), resource_field), scope_field, item_field, None)
    return envelope, n


def _parsed(lazy_type: Any, data: bytes) -> Any:
    try:
        return lazy_type.FromString(data)
    except DecodeError as exc:
        name = lazy_type.DESCRIPTOR.name.rsplit("_", 1)[-1]  # the lazy twin's name ends in the real one
        raise MalformedData(f"the body is not a valid {name}: {exc}") from None
