"""Where each item of a batch sits: its resource and its scope, read from either form.

OTLP nests the items of every signal the same way, with the same field numbers::

    request { ResourceX (1) { resource (1) { attributes (1) }, ScopeX (2) {
        scope (1) { name (1), version (2) }, items (2) } } }

OTAP flattens that into the ``resource`` and ``scope`` struct columns of the root table, a group
being a run of rows that share an id (:class:`orasi_common.pdata.otap.envelope.Groups`), with
the attributes in RESOURCE_ATTRS. An :class:`Envelope` reads either into one shape: the
resource and the scope of each item, each resource's canonical attributes and service name
(:mod:`.canonical`: the one rule), each scope's name and version. The lake takes the envelope
columns of its rows from it, and load balancing routes logs and metrics by its service names,
so an item is routed and stored under the same name.

Only the envelope is read: OTLP items are located, not scanned, until ``OtlpEnvelope.items`` is
asked for (by the lake's converters); attributes and names are read when first asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_common.pdata.batch import Batch
from orasi_common.pdata.canonical import (
    ATTRIBUTES,
    CLOUD_REGION,
    attribute_values,
    service_names,
    typed_wire_attribute_maps,
)
from orasi_common.pdata.canonical_otap import typed_table_attribute_maps
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.common import Keys, Table
from orasi_common.pdata.otap.envelope import Groups
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.protoscan import I64, LEN, Buffer, Fields, Items, items, nested, scan, strings

_NO_ROWS = np.zeros(0, dtype=np.int64)
PRODUCED_IN = "produced_in"
"""The item column of its resource's ``cloud.region`` (not a lake column: the rows derive theirs)."""


class Envelope:
    """The resources and scopes of ``n`` items (see the module docstring)."""

    n: int
    n_resources: int
    resource_of_item: I64
    scope_of_item: I64

    @cached_property
    def resource_attributes(self) -> pa.Array:
        """The canonical attribute map of each resource."""
        raise NotImplementedError

    @cached_property
    def scope_names(self) -> tuple[pa.Array, pa.Array]:
        """The name and version of each scope (null when empty or unset)."""
        raise NotImplementedError

    @cached_property
    def resource_attribute_types(self) -> pa.Array | None:
        """The original type of each resource attribute value (``canonical.TYPES``), None when
        this form does not give it."""
        return None

    @cached_property
    def service_names(self) -> pa.Array:
        """The service name of each resource."""
        return service_names(self.resource_attributes)

    @cached_property
    def produced_regions(self) -> pa.Array:
        """The ``cloud.region`` of each resource (null where it has none)."""
        return attribute_values(self.resource_attributes, CLOUD_REGION)

    def item_columns(self) -> dict[str, pa.Array]:
        """``service_name``, ``resource_attributes``, ``scope_name`` and ``scope_version`` of each
        item, and ``PRODUCED_IN``: its resource's ``cloud.region`` (null where none)."""
        by_resource, by_scope = pa.array(self.resource_of_item), pa.array(self.scope_of_item)
        name, version = self.scope_names
        return {
            PRODUCED_IN: self.produced_regions.take(by_resource),
            "service_name": self.service_names.take(by_resource),
            "resource_attributes": self.resource_attributes.take(by_resource),
            "scope_name": name.take(by_scope),
            "scope_version": version.take(by_scope),
        }

    def item_resource_types(self) -> pa.Array | None:
        """``resource_attribute_types`` of each item's resource."""
        types = self.resource_attribute_types
        return None if types is None else types.take(pa.array(self.resource_of_item))


class OtlpEnvelope(Envelope):
    """The envelope of a serialized export request."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        request = scan(buf, np.zeros(1, dtype=np.int64), np.array([buf.u8.size], dtype=np.int64))
        self.resources = items(buf, request, 1)
        self.scopes = items(buf, self.resources.fields, 2)
        located = self.scopes.fields.rows(2, LEN)
        self.n, self.n_resources = len(located), len(self.resources)
        self.scope_of_item = self.scopes.fields.msg[located]
        self.resource_of_item = self.scopes.parent[self.scope_of_item]

    @cached_property
    def items(self) -> Items:
        """The scanned fields of every item, in request order."""
        return items(self.buf, self.scopes.fields, 2)

    @cached_property
    def resource_attributes(self) -> pa.Array:
        return self._resource_maps[0]

    @cached_property
    def resource_attribute_types(self) -> pa.Array | None:
        return self._resource_maps[1]

    @cached_property
    def _resource_maps(self) -> tuple[pa.Array, pa.Array | None]:
        resource = nested(self.buf, self.resources.fields, 1)
        return typed_wire_attribute_maps(self.buf, items(self.buf, resource, 1), self.n_resources)

    @cached_property
    def scope_names(self) -> tuple[pa.Array, pa.Array]:
        scope = nested(self.buf, self.scopes.fields, 1)
        return optional_strings(self.buf, scope, 1, len(self.scopes)), optional_strings(
            self.buf, scope, 2, len(self.scopes)
        )


def optional_strings(buf: Buffer, fields: Fields, number: int, n: int) -> pa.Array:
    """A string field of each of ``n`` messages, null when empty or absent."""
    start, end = fields.last_range(number, n)
    return strings(buf, start, end, end > start)


class OtapEnvelope(Envelope):
    """The envelope of a root table (SPANS, LOGS, UNIVARIATE_METRICS) and its attribute tables."""

    def __init__(self, root: Table, tables: Mapping[P, pa.RecordBatch]) -> None:
        self.groups = groups = Groups(root)
        self.tables = tables
        self.n, self.n_resources = root.n, len(groups.first_of_resource)
        self.resource_of_item = groups.resource_of_row
        self.scope_of_item = groups.scope_of_row

    @cached_property
    def resource_attributes(self) -> pa.Array:
        return self._resource_maps[0]

    @cached_property
    def resource_attribute_types(self) -> pa.Array | None:
        return self._resource_maps[1]

    @cached_property
    def _resource_maps(self) -> tuple[pa.Array, pa.Array | None]:
        keys = Keys(*self.groups.resource_keys(self.tables))
        return typed_table_attribute_maps(self.tables, P.RESOURCE_ATTRS, 16, keys, typed=True)

    @cached_property
    def scope_names(self) -> tuple[pa.Array, pa.Array]:
        groups = self.groups
        first = pa.array(groups.first_of_scope)
        present = pa.array(groups.scope_valid[groups.first_of_scope])
        return tuple(
            pa.nulls(len(first), pa.string())
            if column is None
            else pc.if_else(pc.and_(present, pc.not_equal(column.take(first), "")), column.take(first), None)
            for column in (groups.name, groups.version)
        )


class EmptyEnvelope(Envelope):
    """The envelope of a batch without items."""

    n = n_resources = 0
    resource_of_item = scope_of_item = _NO_ROWS
    resource_attributes = pa.array([], ATTRIBUTES)
    scope_names = (pa.array([], pa.string()), pa.array([], pa.string()))


def of_tables(root: P, tables: Mapping[P, pa.RecordBatch]) -> Envelope:
    """The envelope of OTAP tables (checked: ``envelope.check_payloads``) whose root is ``root``."""
    batch = tables.get(root)
    if batch is None or batch.num_rows == 0:
        return EmptyEnvelope()
    return OtapEnvelope(Table.of(root, batch), tables)


def of_batch(batch: Batch) -> Envelope:
    """The envelope of a batch, from its OTAP tables when it has them, else from its OTLP bytes."""
    if batch.otap is None:
        return OtlpEnvelope(Buffer(batch.raw))
    return of_tables(codec.ROOTS[batch.signal], codec.checked(batch.signal, batch.otap))
