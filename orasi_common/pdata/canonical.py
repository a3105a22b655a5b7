"""OTLP values as canonical strings: the one rule for attribute maps, log bodies and service names.

Attribute maps are ``MAP(VARCHAR, VARCHAR)``: strings as they are, ints in decimal, doubles as
Python's shortest round-trip repr, bools ``true``/``false``, bytes as base64, arrays and maps as
JSON (their elements as JSON values, bytes as base64 strings); a repeated key keeps its last
value, at its first position. A log ``body`` is the string itself for a string body and JSON
otherwise. A resource's **service name** is the canonical value of its ``service.name``
attribute (the last one, as in its map), or ``unknown_service`` when it has none or an empty
one: the lake stores items under it and load-balancing routes them by it.

Values are rendered a column at a time from :class:`Values` (each value's OTAP type code and the
values of each type), which both forms fill: :func:`scanned_values` from serialized OTLP
``AnyValue``\\ s (:mod:`.protoscan`), and the OTAP decoder from its typed columns
(:func:`.canonical_otap.table_values`). Strings, ints and bools are rendered with Arrow; the rare
doubles, bytes, arrays and maps one by one, by the same functions that render a single parsed
``AnyValue`` (:func:`canonical`, :func:`body_text`).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1 import common_pb2

from orasi_common.errors import MalformedData
from orasi_common.pdata.protoscan import I64, LEN, Buffer, Items, pick, scan, strings

SERVICE_NAME = "service.name"
CLOUD_REGION = "cloud.region"
"""The resource attribute naming the region an item was produced in (the lake's ``region``)."""
UNKNOWN_SERVICE = "unknown_service"
ATTRIBUTES = pa.map_(pa.string(), pa.string())
TYPES = pa.map_(pa.string(), pa.uint8())
"""Beside an attribute map: each value's original type (OTAP code), see ``typed_wire_attribute_maps``."""

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

# OTAP attribute type codes (ARCHITECTURE §4), which every form is brought to.
EMPTY, STRING, INT, DOUBLE, BOOL, MAP, ARRAY, BYTES = range(8)
VALUE_TYPE_NAMES = np.array(
    ["empty", "string", "int", "double", "bool", "map", "array", "bytes"], dtype=object
)


def double_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def to_json_value(value: common_pb2.AnyValue) -> Any:
    """An AnyValue as a JSON-ready Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else double_text(number)
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [to_json_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_json_value(kv.value) for kv in value.kvlist_value.values}
    return None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical(value: common_pb2.AnyValue) -> str | None:
    """An AnyValue as the canonical string stored in attribute maps (None when empty)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return double_text(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return None
    return _json(to_json_value(value))


def body_text(value: common_pb2.AnyValue) -> str | None:
    """A log body: the string itself for a string body, JSON for anything else, None if unset."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    return _json(to_json_value(value))


class ScatteredStrings:
    """A string column of ``n`` rows assembled from arrays that each fill some of the rows
    (null where none does)."""

    def __init__(self, n: int) -> None:
        self.position = np.full(n, -1, dtype=np.int64)
        self.parts: list[pa.Array] = []
        self.filled = 0

    def place(self, rows: I64, array: pa.Array) -> None:
        """``array[i]`` is the value of row ``rows[i]``."""
        self.position[rows] = self.filled + np.arange(len(rows))
        self.parts.append(array)
        self.filled += len(rows)

    def finish(self) -> pa.Array:
        position = np.where(self.position >= 0, self.position, self.filled)
        return pa.concat_arrays([*self.parts, pa.nulls(1, pa.string())]).take(pa.array(position))


_NONE = np.zeros(0, dtype=np.int64)


@dataclass
class Values:
    """``n`` AnyValues as columns: each one's type code (``types``, OTAP codes: 0 empty, 1 string,
    2 int, 3 double, 4 bool, 5 map, 6 array, 7 bytes) and, per type, the rows holding one and
    their values in row order (maps and arrays parsed)."""

    types: U8
    string_rows: I64 = field(default_factory=lambda: _NONE)
    string: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    integer_rows: I64 = field(default_factory=lambda: _NONE)
    integer: I64 = field(default_factory=lambda: _NONE)
    boolean_rows: I64 = field(default_factory=lambda: _NONE)
    boolean: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    double_rows: I64 = field(default_factory=lambda: _NONE)
    double: F64 = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    binary_rows: I64 = field(default_factory=lambda: _NONE)
    binary: list[bytes] = field(default_factory=list)
    nested_rows: I64 = field(default_factory=lambda: _NONE)
    nested: list[common_pb2.AnyValue] = field(default_factory=list)

    def render(self, body: bool = False) -> pa.Array:
        """The canonical string of each value (``body``: as a log body), null where empty."""
        out = ScatteredStrings(len(self.types))
        if len(self.string_rows):
            out.place(self.string_rows, self.string)
        if len(self.integer_rows):
            out.place(self.integer_rows, pc.cast(pa.array(self.integer, pa.int64()), pa.string()))
        if len(self.boolean_rows):
            out.place(self.boolean_rows, pa.array(np.where(self.boolean, "true", "false"), pa.string()))
        if len(self.double_rows):
            doubles = self.double.tolist()
            texts = (
                [_json(d) if math.isfinite(d) else _json(double_text(d)) for d in doubles] if body else None
            )
            out.place(self.double_rows, pa.array(texts or list(map(double_text, doubles)), pa.string()))
        if len(self.binary_rows):
            encoded = [base64.b64encode(b).decode("ascii") for b in self.binary]
            out.place(
                self.binary_rows, pa.array([_json(e) for e in encoded] if body else encoded, pa.string())
            )
        if len(self.nested_rows):
            out.place(self.nested_rows, pa.array([_json(to_json_value(v)) for v in self.nested], pa.string()))
        return out.finish()


# AnyValue field numbers (the oneof) → wire type and OTAP type code; 0 stands for an empty value.
_WIRE_TYPE_OF = np.array([-1, 2, 0, 0, 1, 2, 2, 2], dtype=np.int64)
_CODE_OF_FIELD = np.array([EMPTY, STRING, BOOL, INT, DOUBLE, ARRAY, MAP, BYTES], dtype=np.uint8)


def scanned_values(buf: Buffer, starts: I64, ends: I64, owner: I64, n: int) -> Values:
    """The ``n`` AnyValues serialized at ``buf[starts[j]:ends[j]]``: value ``i`` merges the
    ranges with ``owner[j] == i`` (several occurrences merge, as in protobuf; the oneof keeps
    the last value on the wire)."""
    fields = scan(buf, starts, ends)
    number = fields.number
    known = (number >= 1) & (number <= 7)
    known[known] &= fields.wire_type[known] == _WIRE_TYPE_OF[number[known]]
    rows = np.flatnonzero(known)
    winner = np.full(n, -1, dtype=np.int64)
    winner[owner[fields.msg[rows]]] = rows
    types = _CODE_OF_FIELD[pick(number, winner)]
    values = Values(types)

    def where(code: int) -> tuple[I64, I64]:
        at = np.flatnonzero(types == code)
        return at, winner[at]

    values.string_rows, w = where(STRING)
    values.string = strings(buf, fields.start[w], fields.end[w])
    values.integer_rows, w = where(INT)
    values.integer = fields.value[w].view(np.int64)
    values.boolean_rows, w = where(BOOL)
    values.boolean = fields.value[w] != 0
    values.double_rows, w = where(DOUBLE)
    values.double = fields.value[w].view(np.float64)
    values.binary_rows, w = where(BYTES)
    raw = buf.raw
    values.binary = [raw[s:e] for s, e in zip(fields.start[w].tolist(), fields.end[w].tolist(), strict=True)]
    nested = np.flatnonzero((types == MAP) | (types == ARRAY))
    if len(nested):
        pieces: dict[int, list[bytes]] = {int(i): [] for i in nested}
        for o, s, e in zip(owner.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if o in pieces:
                pieces[o].append(raw[s:e])
        try:
            values.nested = [common_pb2.AnyValue.FromString(b"".join(pieces[int(i)])) for i in nested]
        except DecodeError as exc:
            raise MalformedData(f"an attribute or body value is not a valid AnyValue: {exc}") from None
        values.nested_rows = nested
    return values


def wire_attribute_maps(buf: Buffer, kvs: Items, n_parents: int) -> pa.Array:
    """The canonical map of each parent's serialized KeyValues (items whose parents ascend)."""
    return typed_wire_attribute_maps(buf, kvs, n_parents, False)[0]


def typed_wire_attribute_maps(
    buf: Buffer, kvs: Items, n_parents: int, typed: bool = True
) -> tuple[pa.Array, pa.Array | None]:
    """The canonical maps, and (``typed``) beside them the original type of each value: a
    ``MAP(VARCHAR, UINT8)`` of OTAP type codes with the same keys in the same places (what the
    schema registry checks and records; the lake's maps hold strings only)."""
    fields, m = kvs.fields, len(kvs)
    key_row = fields.last(1, LEN, m)
    keys = strings(buf, pick(fields.start, key_row), pick(fields.end, key_row))
    occurrences = fields.rows(2, LEN)
    values = scanned_values(
        buf, fields.start[occurrences], fields.end[occurrences], fields.msg[occurrences], m
    )
    if not typed:
        return key_value_maps(keys, values.render(), kvs.parent, n_parents), None
    return typed_key_value_maps(keys, values.render(), values.types, kvs.parent, n_parents)


def key_value_maps(keys: pa.Array, values: pa.Array, parents: I64, n_parents: int) -> pa.Array:
    """``MAP(VARCHAR, VARCHAR)`` of each parent's pairs (``parents`` ascending); a repeated key
    keeps its last value, at its first position."""
    return _key_value_maps(keys, values, parents, n_parents)[0]


def typed_key_value_maps(
    keys: pa.Array, values: pa.Array, codes: U8, parents: I64, n_parents: int
) -> tuple[pa.Array, pa.Array]:
    """``key_value_maps``, and beside them the maps of each value's original type (``codes``:
    one per pair, OTAP type codes) with the same keys in the same places (``TYPES``)."""
    maps, source = _key_value_maps(keys, values, parents, n_parents)
    chosen = codes if source is None else codes[source]
    return maps, pa.MapArray.from_arrays(maps.offsets, maps.keys, pa.array(chosen, pa.uint8()), type=TYPES)


def empty_types(n: int) -> pa.Array:
    """``TYPES`` maps of ``n`` rows without attributes."""
    no_pairs = pa.array([], pa.string())
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, no_pairs, pa.array([], pa.uint8()), type=TYPES)


def _key_value_maps(
    keys: pa.Array, values: pa.Array, parents: I64, n_parents: int
) -> tuple[pa.Array, I64 | None]:
    """The maps, and which input pair each of their values came from (None: all, in order)."""
    m = len(keys)
    source: I64 | None = None
    if m > 1:
        codes = np.asarray(pc.dictionary_encode(keys).indices, dtype=np.int64)
        combined = parents * (int(codes.max()) + 1) + codes
        order = np.lexsort((np.arange(m), combined))
        ordered = combined[order]
        repeat = ordered[1:] == ordered[:-1]
        if repeat.any():
            starts_group = np.flatnonzero(np.r_[True, ~repeat])
            ends_group = np.r_[starts_group[1:], m] - 1
            first, last = order[starts_group], order[ends_group]
            keep = np.zeros(m, dtype=np.bool_)
            keep[first] = True
            chosen = np.arange(m)
            chosen[first] = last
            mask = pa.array(keep)
            keys = keys.filter(mask)
            values = values.take(pa.array(chosen)).filter(mask)
            parents = parents[keep]
            source = chosen[keep]
    offsets = np.zeros(n_parents + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=n_parents), out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, type=ATTRIBUTES), source


def attribute_values(maps: pa.Array, key: str) -> pa.Array:
    """The value of ``key`` in each canonical attribute map, its last when repeated (null where
    the map has none; vectorised: meant for the few maps of a request's resources)."""
    n = len(maps)
    keys, values = maps.keys, maps.items
    offsets = np.asarray(maps.offsets, dtype=np.int64)
    owner = np.repeat(np.arange(n), np.diff(offsets))
    hits = np.flatnonzero(np.asarray(pc.equal(keys, key).fill_null(False), dtype=np.bool_))
    chosen = np.full(n, -1, dtype=np.int64)
    chosen[owner[hits]] = hits
    padded = pa.concat_arrays([values, pa.nulls(1, pa.string())])
    return padded.take(pa.array(np.where(chosen >= 0, chosen, len(values))))


def service_names(maps: pa.Array) -> pa.Array:
    """The service name of each canonical attribute map (see the module docstring)."""
    names = attribute_values(maps, SERVICE_NAME)
    return pc.if_else(pc.fill_null(pc.not_equal(names, ""), False), names, UNKNOWN_SERVICE)
