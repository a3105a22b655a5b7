"""The registry's model: subjects, and the JSON Schema subset a registered schema may use.

A **subject** is ``<signal>.<service>`` with signal ``spans``, ``logs`` or ``metrics`` (the lake
tables ``spans``, ``logs``, ``metric_points``), one set per tenant. A **schema** is a JSON Schema
document (schemaType ``JSON``) of one row of that table::

    {"type": "object",                                 # optional; "object" when given
     "properties": {                                   # the table's columns
        "name": {"type": "string", "pattern": "^GET "},
        "kind": {"enum": ["SERVER", "CLIENT"]},
        "attributes": {                                # attribute keys, with their OTLP type
            "type": "object",
            "properties": {"http.route": {"type": "string"},
                           "http.response.status_code": {"type": "integer"}},
            "required": ["http.route"],
            "additionalProperties": true}},
     "required": ["name"],
     "additionalProperties": true}

The subset, keyword by keyword (anything else is refused with the path of the offending place):

========================  ==================================================================
where                     keywords
========================  ==================================================================
the document              ``type`` ("object"), ``properties``, ``required``,
                          ``additionalProperties`` (true/false), ``$schema``, ``$id``,
                          ``title``, ``description``
a column                  ``type`` (the column's JSON type, and "null"), ``enum``,
                          ``pattern`` (string columns), ``title``, ``description``
``attributes``,           ``type`` ("object"), ``properties`` (attribute keys),
``resource_attributes``   ``required``, ``additionalProperties`` (true/false), ``title``,
                          ``description``
an attribute key          ``type``: one of, or a list of, string, integer, number, boolean,
                          array, object (the key's original OTLP type); ``enum``;
                          ``pattern`` (string keys); ``title``, ``description``
========================  ==================================================================

A column's JSON type follows its Arrow type in ``orasi_bridge.lake.schema``: strings "string",
integers "integer", floats "number", booleans "boolean", lists "array", structs "object",
``time`` "string" (RFC 3339). Without ``type`` a column or key takes any value of its type.

``parse`` turns a document into ``Schema`` (immutable, hashable pieces that
``compatibility`` compares) or raises ``InvalidSchema`` (the registry's error 42201).
``canonical`` is the text two registrations are compared by: the same document with its keys
sorted and no insignificant white space, so that registering it again returns the first id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from orasi_bridge.lake.schema import TABLES

SIGNAL_TABLES = {"spans": "spans", "logs": "logs", "metrics": "metric_points"}
"""A subject's signal → the lake table whose rows its schemas describe."""

ATTRIBUTE_SECTIONS = ("attributes", "resource_attributes")
ATTRIBUTE_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object"})
"""The original OTLP types of an attribute value (kvlist = object)."""

EXAMPLE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attributes": {
            "type": "object",
            "properties": {
                "http.route": {"type": "string"},
                "http.response.status_code": {"type": "integer"},
            },
            "required": ["http.route"],
        }
    },
}
"""A schema of ``spans.<service>``: every span has an ``http.route`` string, and a status code,
when it has one, is an integer."""

_SUBJECT = re.compile(r"(spans|logs|metrics)\.([^\s/]{1,255})")
_ANNOTATIONS = frozenset({"title", "description"})
_DOCUMENT_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "$schema", "$id"})
_SECTION_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})
_FIELD_KEYS = frozenset({"type", "enum", "pattern"})
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


class InvalidSchema(ValueError):
    """A document outside the subset; ``path`` is a JSON pointer to the place (``#`` = root)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class InvalidSubject(ValueError):
    """A subject that is not ``spans.<service>``, ``logs.<service>`` or ``metrics.<service>``."""


@dataclass(frozen=True)
class Subject:
    signal: str
    service: str

    @classmethod
    def parse(cls, subject: str) -> Subject:
        match = _SUBJECT.fullmatch(subject)
        if match is None:
            raise InvalidSubject(
                f"subject {subject!r} is not <signal>.<service> with signal spans, logs or metrics "
                "(e.g. spans.checkout)"
            )
        return cls(match[1], match[2])

    @property
    def table(self) -> str:
        return SIGNAL_TABLES[self.signal]

    def __str__(self) -> str:
        return f"{self.signal}.{self.service}"


@dataclass(frozen=True)
class Field:
    """What one column or attribute key may hold. ``types`` None = any value of its type."""

    types: frozenset[str] | None = None
    enum: frozenset[str] | None = None  # canonical JSON of each allowed value
    pattern: str | None = None


@dataclass(frozen=True)
class ObjectShape:
    """An object's keys: the document's columns, or an attributes section's keys."""

    properties: Mapping[str, Field] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    additional: bool = True


@dataclass(frozen=True)
class Schema:
    """A parsed schema: its columns (without the attribute sections) and its two attribute
    sections (an absent section is open and empty: any key, any type)."""

    table: str
    columns: ObjectShape
    attributes: ObjectShape
    resource_attributes: ObjectShape

    def shapes(self) -> dict[str, ObjectShape]:
        """Each object the registry compares, by its JSON pointer."""
        return {
            "#": self.columns,
            "#/properties/attributes": self.attributes,
            "#/properties/resource_attributes": self.resource_attributes,
        }


def pointer(path: str, *keys: str) -> str:
    """``path`` extended by ``keys`` as a JSON pointer (``~`` → ``~0``, ``/`` → ``~1``)."""
    return "/".join([path, *(k.replace("~", "~0").replace("/", "~1") for k in keys)])


def canonical(document: Any) -> str:
    """The text a document is stored and compared as: keys sorted, no white space."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_type(kind: pa.DataType) -> str:
    """The JSON type of a lake column's Arrow type."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_timestamp(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "number"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "array"
    return "object"  # structs and maps


COLUMN_TYPES: dict[str, dict[str, str]] = {
    table: {f.name: json_type(f.type) for f in schema if f.name not in ATTRIBUTE_SECTIONS}
    for table, schema in TABLES.items()
}
"""Lake table → column → its JSON type (the attribute sections are not columns here)."""


def parse(document: Any, subject: Subject) -> Schema:
    """``document`` (decoded JSON) as a ``Schema`` of ``subject``'s table, or ``InvalidSchema``."""
    if not isinstance(document, dict):
        raise InvalidSchema("#", "a schema is a JSON object (a JSON Schema with type object)")
    _check_keys(document, _DOCUMENT_KEYS, "#", "the document")
    _check_object_type(document, "#")
    properties = _properties(document, "#")
    columns = COLUMN_TYPES[subject.table]
    parsed: dict[str, Field] = {}
    sections = {name: ObjectShape() for name in ATTRIBUTE_SECTIONS}
    for name, spec in properties.items():
        path = pointer("#/properties", name)
        if name in ATTRIBUTE_SECTIONS:
            sections[name] = _section(spec, path)
        elif name in columns:
            parsed[name] = _field(spec, path, frozenset({columns[name], "null"}), "column")
        else:
            raise InvalidSchema(
                path,
                f"{name!r} is not a column of the lake table {subject.table!r} "
                f"(columns: {', '.join(sorted([*columns, *ATTRIBUTE_SECTIONS]))})",
            )
    return Schema(
        subject.table,
        ObjectShape(parsed, _required(document, "#", properties), _additional(document, "#")),
        sections["attributes"],
        sections["resource_attributes"],
    )


def _check_keys(spec: Mapping[str, Any], allowed: frozenset[str], path: str, what: str) -> None:
    for key in spec:
        if key not in allowed and key not in _ANNOTATIONS:
            raise InvalidSchema(
                pointer(path, key),
                f"keyword {key!r} is not in the subset the registry understands for {what} "
                f"(allowed: {', '.join(sorted(allowed | _ANNOTATIONS))})",
            )


def _check_object_type(spec: Mapping[str, Any], path: str) -> None:
    if "type" in spec and spec["type"] != "object":
        raise InvalidSchema(pointer(path, "type"), f'must be "object", not {json.dumps(spec["type"])}')


def _properties(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    properties = spec.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidSchema(pointer(path, "properties"), "must be an object of property schemas")
    return properties


def _required(spec: Mapping[str, Any], path: str, properties: Mapping[str, Any]) -> frozenset[str]:
    required = spec.get("required", [])
    where = pointer(path, "required")
    if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
        raise InvalidSchema(where, "must be a list of property names")
    missing = [k for k in required if k not in properties]
    if missing:
        raise InvalidSchema(where, f"names {missing[0]!r}, which is not among the properties")
    return frozenset(required)


def _additional(spec: Mapping[str, Any], path: str) -> bool:
    value = spec.get("additionalProperties", True)
    if not isinstance(value, bool):
        raise InvalidSchema(
            pointer(path, "additionalProperties"), "must be true or false (schemas are not in the subset)"
        )
    return value


def _section(spec: Any, path: str) -> ObjectShape:
    if not isinstance(spec, dict):
        raise InvalidSchema(path, "must be an object schema whose properties are attribute keys")
    _check_keys(spec, _SECTION_KEYS, path, "an attributes section")
    _check_object_type(spec, path)
    properties = _properties(spec, path)
    keys = {
        key: _field(value, pointer(path, "properties", key), ATTRIBUTE_TYPES, "attribute key")
        for key, value in properties.items()
    }
    return ObjectShape(keys, _required(spec, path, properties), _additional(spec, path))


def _field(spec: Any, path: str, allowed_types: frozenset[str], what: str) -> Field:
    if not isinstance(spec, dict):
        raise InvalidSchema(path, f"must be an object (the {what}'s schema)")
    _check_keys(spec, _FIELD_KEYS, path, f"an {what}" if what[0] in "aeiou" else f"a {what}")
    types: frozenset[str] | None = None
    if "type" in spec:
        declared = spec["type"]
        names = declared if isinstance(declared, list) else [declared]
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidSchema(pointer(path, "type"), "must be a type name or a non-empty list of them")
        wrong = [n for n in names if n not in allowed_types]
        if wrong:
            raise InvalidSchema(
                pointer(path, "type"),
                f"{wrong[0]!r} is not a type this {what} can have "
                f"(one of: {', '.join(sorted(allowed_types))})",
            )
        types = frozenset(names)
    enum: frozenset[str] | None = None
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not values:
            raise InvalidSchema(pointer(path, "enum"), "must be a non-empty list of values")
        for index, value in enumerate(values):
            kind = "null" if value is None else _JSON_TYPES.get(type(value), "?")
            if types is not None and kind not in types and not (kind == "integer" and "number" in types):
                raise InvalidSchema(
                    pointer(path, "enum", str(index)), f"{value!r} is not of the declared type"
                )
        enum = frozenset(canonical(v) for v in values)
    pattern: str | None = None
    if "pattern" in spec:
        pattern = spec["pattern"]
        if not isinstance(pattern, str):
            raise InvalidSchema(pointer(path, "pattern"), "must be a regular expression (a string)")
        if types is not None and "string" not in types:
            raise InvalidSchema(pointer(path, "pattern"), "applies to strings, and the type has none")
        try:
            re.compile(pattern)
        except re.error as error:
            problem = f"is not a valid regular expression: {error}"
            raise InvalidSchema(pointer(path, "pattern"), problem) from None
    return Field(types, enum, pattern)


__all__ = [
    "ATTRIBUTE_TYPES",
    "COLUMN_TYPES",
    "EXAMPLE",
    "SIGNAL_TABLES",
    "Field",
    "InvalidSchema",
    "InvalidSubject",
    "ObjectShape",
    "Schema",
    "Subject",
    "canonical",
    "parse",
    "pointer",
]
