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
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2


def _double_text(value: float) -> str:
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
        return number if math.isfinite(number) else _double_text(number)
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
        return _double_text(value.double_value)
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
