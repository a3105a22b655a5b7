"""Compatibility levels, with the Confluent Schema Registry's meaning, on the subset of ``schema``.

Everything reduces to one question, ``can_read(reader, writer)``: does every row valid under
``writer`` also pass ``reader``? The levels ask it of the candidate (new) and the registered
versions (old):

===================  =====================================================================
level                the candidate is accepted when
===================  =====================================================================
BACKWARD (default)   it can read data written with the latest version: can_read(new, latest)
BACKWARD_TRANSITIVE  ... with every registered version
FORWARD              the latest version can read data written with it: can_read(latest, new)
FORWARD_TRANSITIVE   ... every registered version can
FULL                 both BACKWARD and FORWARD against the latest
FULL_TRANSITIVE      both, against every registered version
NONE                 always
===================  =====================================================================

The rules of ``can_read``, per object (the columns, ``attributes``, ``resource_attributes``)
and per key of it (column or attribute key); each broken rule is one message naming the path:

===========================================  ==============================================
change from the writer's to the reader's     verdict
===========================================  ==============================================
reader requires a key the writer does not    incompatible (old rows may lack it)
reader drops a key, or stops requiring it    compatible
reader adds a key, writer open (additional   as a narrowing from what the writer allowed
Properties true, the default)                there: any value for an attribute key (so a
                                             type, enum or pattern is incompatible), the
                                             column's type or null for a column
reader adds a key, writer closed             compatible
reader closed, writer open or writer lists   incompatible (rows may hold keys the reader
a key the reader does not                    refuses)
reader opens what the writer closed          compatible
type: reader accepts every writer type       compatible (integer is read as number)
type: reader narrows (drops a type, number   incompatible
→ integer, any → one type)
enum: reader's ⊇ writer's, or reader none    compatible
enum: reader's misses a writer value, or     incompatible
reader adds an enum the writer did not have
pattern: reader none, or the same as writer  compatible
pattern: reader adds or changes one          incompatible (unless every writer enum value
                                             matches it)
===========================================  ==============================================

So under BACKWARD, adding an optional attribute key is compatible only where the previous
version closed the section (``additionalProperties: false``); adding a required key, narrowing
a type or an enum are incompatible; removing a key is compatible. FORWARD is the mirror image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import StrEnum

from orasi_bridge.registry.schema import COLUMN_TYPES, Field, ObjectShape, Schema, pointer


class Level(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        return self.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.startswith(("FORWARD", "FULL"))


DEFAULT_LEVEL = Level.BACKWARD


def parse_level(value: object) -> Level:
    """A level from its name (case-insensitive); ValueError naming the levels otherwise."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Level(value.upper())
    except ValueError:
        raise ValueError(f"{value!r} is not a compatibility level (one of {', '.join(Level)})") from None


def check(level: Level, candidate: Schema, registered: Sequence[tuple[int, Schema]]) -> list[str]:
    """Why ``candidate`` may not follow ``registered`` ((version, schema), oldest first) under
    ``level``; [] when it may."""
    if level is Level.NONE or not registered:
        return []
    against = registered if level.transitive else registered[-1:]
    messages: list[str] = []
    for version, old in against:
        which = "the latest version" if version == registered[-1][0] else f"version {version}"
        if level.backward:
            messages += [
                f"{m} (the new schema cannot read data written with {which})"
                for m in can_read(candidate, old)
            ]
        if level.forward:
            messages += [
                f"{m} ({which} cannot read data written with the new schema)"
                for m in can_read(old, candidate)
            ]
    return messages


def can_read(reader: Schema, writer: Schema) -> list[str]:
    """The reasons some row valid under ``writer`` fails ``reader``; [] when there are none."""
    shapes = writer.shapes()
    columns = COLUMN_TYPES[writer.table]
    messages: list[str] = []
    for path, shape in reader.shapes().items():
        # a column the writer does not list holds a value of the column's type, or null; an
        # attribute key it does not list, any value
        if path == "#":
            implicit = {name: Field(frozenset({kind, "null"})) for name, kind in columns.items()}
        else:
            implicit = {}
        messages += _object(shape, shapes[path], path, implicit)
    return messages


def _object(reader: ObjectShape, writer: ObjectShape, path: str, implicit: dict[str, Field]) -> list[str]:
    messages = []
    for key in sorted(reader.required - writer.required):
        messages.append(f"{pointer(path, 'required')}: {key!r} is required, and data may lack it")
    if not reader.additional:
        if writer.additional:
            messages.append(
                f"{pointer(path, 'additionalProperties')}: false refuses the keys that data "
                "may hold beyond the listed ones"
            )
        for key in sorted(set(writer.properties) - set(reader.properties)):
            messages.append(
                f"{pointer(path, 'properties', key)}: removed from a closed object, and data may hold it"
            )
    for key, field in sorted(reader.properties.items()):
        where = pointer(path, "properties", key)
        if key in writer.properties:
            messages += _field(field, writer.properties[key], where)
        elif writer.additional:
            messages += _field(field, implicit.get(key, Field()), where)
    return messages


def _field(reader: Field, writer: Field, path: str) -> list[str]:
    messages = []
    if reader.types is not None:
        if writer.types is None:
            messages.append(f"{pointer(path, 'type')}: narrowed from any type to {_names(reader.types)}")
        else:
            lost = [t for t in writer.types if not _accepts(reader.types, t)]
            if lost:
                messages.append(
                    f"{pointer(path, 'type')}: narrowed from {_names(writer.types)} to "
                    f"{_names(reader.types)} (data may be {_names(lost)})"
                )
    if reader.enum is not None:
        if writer.enum is None:
            messages.append(f"{pointer(path, 'enum')}: added, and data may hold other values")
        elif missing := writer.enum - reader.enum:
            held = ", ".join(sorted(missing))
            messages.append(f"{pointer(path, 'enum')}: narrowed, and data may hold {held}")
    pattern = reader.pattern
    if pattern is not None and pattern != writer.pattern and not _all_match(pattern, writer):
        what = "added" if writer.pattern is None else f"changed from {writer.pattern!r}"
        messages.append(f"{pointer(path, 'pattern')}: {what}, and data may not match {reader.pattern!r}")
    return messages


def _accepts(types: frozenset[str], kind: str) -> bool:
    return kind in types or (kind == "integer" and "number" in types)


def _all_match(pattern: str, writer: Field) -> bool:
    """Whether every value ``writer`` allows matches ``pattern`` (known only for string enums)."""
    if writer.enum is None:
        return False
    values = [json.loads(v) for v in writer.enum]
    return all(isinstance(v, str) and re.search(pattern, v) for v in values)


def _names(types: frozenset[str] | Sequence[str]) -> str:
    return "/".join(sorted(types))


__all__ = ["DEFAULT_LEVEL", "Level", "can_read", "check", "parse_level"]
