"""OTLP AnyValue → the lake's canonical strings.

Attribute columns are ``MAP(VARCHAR, VARCHAR)``: strings as they are, ints in decimal, doubles
as Python's shortest round-trip repr, bools ``true``/``false``, bytes as base64, arrays and
maps as JSON (their elements as JSON values, bytes as base64 strings). A log ``body`` is the
string itself for a string body and this JSON otherwise.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1 import common_pb2

from orasi_common.errors import MalformedData
from orasi_common.pdata.protoscan import I64, LEN, Buffer, Items, pick, scan, strings


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
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False)


def body_text(value: common_pb2.AnyValue) -> str | None:
    """A log body: the string itself for a string body, JSON for anything else, None if unset."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False)


def value_type(value: common_pb2.AnyValue) -> str:
    """The OTLP type name of a value (`string`, `int`, `double`, `bool`, `bytes`, `array`, `map`)."""
    kind = value.WhichOneof("value")
    return {
        "string_value": "string",
        "int_value": "int",
        "double_value": "double",
        "bool_value": "bool",
        "bytes_value": "bytes",
        "array_value": "array",
        "kvlist_value": "map",
    }.get(kind or "", "empty")


def as_pairs(attributes: Iterable[common_pb2.KeyValue]) -> list[tuple[str, str | None]]:
    """KeyValues as (key, canonical value) pairs; a repeated key keeps its last value."""
    return list({kv.key: canonical(kv.value) for kv in attributes}.items())


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


# AnyValue field numbers (the oneof) and their wire types; 0 stands for an empty value.
_STRING, _BOOL, _INT, _DOUBLE, _ARRAY, _KVLIST, _BYTES = 1, 2, 3, 4, 5, 6, 7
_WIRE_TYPE_OF = np.array([-1, 2, 0, 0, 1, 2, 2, 2], dtype=np.int64)
VALUE_TYPE_NAMES = np.array(
    ["empty", "string", "bool", "int", "double", "array", "map", "bytes"], dtype=object
)
Render = Callable[[common_pb2.AnyValue], "str | None"]


def any_value_strings(
    buf: Buffer, starts: I64, ends: I64, owner: I64, n: int, render: Render
) -> tuple[pa.Array, I64]:
    """The text of ``n`` AnyValues and the field number of each one's value (0: empty).

    Value ``i`` is the merge of the serialized AnyValues ``buf[starts[j]:ends[j]]`` with
    ``owner[j] == i`` (several occurrences merge, as in protobuf). Strings, ints and bools are
    rendered with Arrow (canonical and body text agree on them); every other value through
    ``render`` on the parsed AnyValue.
    """
    fields = scan(buf, starts, ends)
    number = fields.number
    known = (number >= 1) & (number <= 7)
    known[known] &= fields.wire_type[known] == _WIRE_TYPE_OF[number[known]]
    rows = np.flatnonzero(known)
    winner = np.full(n, -1, dtype=np.int64)
    winner[owner[fields.msg[rows]]] = rows  # the oneof keeps the last value on the wire
    kind = pick(number, winner)
    values = ScatteredStrings(n)
    place = values.place

    at = np.flatnonzero(kind == _STRING)
    if len(at):
        w = winner[at]
        place(at, strings(buf, fields.start[w], fields.end[w]))
    at = np.flatnonzero(kind == _INT)
    if len(at):
        place(at, pc.cast(pa.array(fields.value[winner[at]].view(np.int64)), pa.string()))
    at = np.flatnonzero(kind == _BOOL)
    if len(at):
        place(at, pa.array(np.where(fields.value[winner[at]] != 0, "true", "false"), pa.string()))
    at = np.flatnonzero(kind >= _DOUBLE)
    if len(at):
        raw = buf.raw
        pieces: dict[int, list[bytes]] = {int(i): [] for i in at}
        for o, s, e in zip(owner.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if o in pieces:
                pieces[o].append(raw[s:e])
        try:
            texts = [render(common_pb2.AnyValue.FromString(b"".join(pieces[int(i)]))) for i in at]
        except DecodeError as exc:
            raise MalformedData(f"an attribute or body value is not a valid AnyValue: {exc}") from None
        place(at, pa.array(texts, pa.string()))
    return values.finish(), kind


def attribute_maps(buf: Buffer, kvs: Items, n_parents: int) -> pa.Array:
    """``MAP(VARCHAR, VARCHAR)`` of each parent's KeyValues (items whose parents ascend), with
    canonical values; a repeated key keeps its last value, at its first position (as `as_pairs`)."""
    fields, m = kvs.fields, len(kvs)
    key_row = fields.last(1, LEN, m)
    keys = strings(buf, pick(fields.start, key_row), pick(fields.end, key_row))
    occurrences = fields.rows(2, LEN)
    values, _ = any_value_strings(
        buf, fields.start[occurrences], fields.end[occurrences], fields.msg[occurrences], m, canonical
    )
    return key_value_maps(keys, values, kvs.parent, n_parents)


def key_value_maps(keys: pa.Array, values: pa.Array, parents: I64, n_parents: int) -> pa.Array:
    """``MAP(VARCHAR, VARCHAR)`` of each parent's pairs (``parents`` ascending); a repeated key
    keeps its last value, at its first position."""
    m = len(keys)
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
            source = np.arange(m)
            source[first] = last
            mask = pa.array(keep)
            keys = keys.filter(mask)
            values = values.take(pa.array(source)).filter(mask)
            parents = parents[keep]
    offsets = np.zeros(n_parents + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=n_parents), out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, type=pa.map_(pa.string(), pa.string()))
