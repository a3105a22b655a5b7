"""Compatibility per level: a table of changes (old → new), each compatible or not, and why."""

from __future__ import annotations

from typing import Any

import pytest

from orasi_bridge.registry.compatibility import Level, can_read, check, parse_level
from orasi_bridge.registry.schema import Schema, Subject, parse

SUBJECT = Subject.parse("spans.checkout")


def attributes(properties: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> Any:
    section: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        section["required"] = required
    if closed:
        section["additionalProperties"] = False
    return {"type": "object", "properties": {"attributes": section}}


def schema(document: Any) -> Schema:
    return parse(document, SUBJECT)


ROUTE = {"http.route": {"type": "string"}}
STATUS_INT = {"code": {"type": "integer"}}
STATUS_NUM = {"code": {"type": "number"}}

# (name, old, new, {level: compatible}) — levels not listed follow from BACKWARD/FORWARD
CHANGES: list[tuple[str, Any, Any, bool, bool]] = [
    # name, old document, new document, BACKWARD (new reads old), FORWARD (old reads new)
    ("same schema", attributes(ROUTE), attributes(ROUTE), True, True),
    ("add a required key", attributes({}), attributes(ROUTE, ["http.route"]), False, True),
    ("make an optional key required", attributes(ROUTE), attributes(ROUTE, ["http.route"]), False, True),
    ("drop a required key", attributes(ROUTE, ["http.route"]), attributes({}), True, False),
    ("remove an optional key (open)", attributes(ROUTE), attributes({}), True, False),
    (
        "add an optional key to a closed section",
        attributes({}, closed=True),
        attributes(ROUTE, closed=True),
        True,
        False,
    ),
    ("add an optional key to an open section", attributes({}), attributes(ROUTE), False, True),
    (
        "remove a key from a closed section",
        attributes(ROUTE, closed=True),
        attributes({}, closed=True),
        False,
        True,
    ),
    ("close an open section", attributes(ROUTE), attributes(ROUTE, closed=True), False, True),
    ("widen integer to number", attributes(STATUS_INT), attributes(STATUS_NUM), True, False),
    ("narrow number to integer", attributes(STATUS_NUM), attributes(STATUS_INT), False, True),
    (
        "add a type to a union",
        attributes({"k": {"type": "string"}}),
        attributes({"k": {"type": ["string", "integer"]}}),
        True,
        False,
    ),
    (
        "change a type",
        attributes({"k": {"type": "string"}}),
        attributes({"k": {"type": "boolean"}}),
        False,
        False,
    ),
    (
        "widen an enum",
        attributes({"k": {"enum": ["a"]}}),
        attributes({"k": {"enum": ["a", "b"]}}),
        True,
        False,
    ),
    (
        "narrow an enum",
        attributes({"k": {"enum": ["a", "b"]}}),
        attributes({"k": {"enum": ["a"]}}),
        False,
        True,
    ),
    (
        "add a pattern",
        attributes(ROUTE),
        attributes({"http.route": {"type": "string", "pattern": "^/"}}),
        False,
        True,
    ),
    (
        "add a pattern every enum value matches",
        attributes({"k": {"type": "string", "enum": ["/a", "/b"]}}),
        attributes({"k": {"type": "string", "enum": ["/a", "/b"], "pattern": "^/"}}),
        True,
        True,
    ),
    (
        "change a pattern",
        attributes({"k": {"type": "string", "pattern": "^a"}}),
        attributes({"k": {"type": "string", "pattern": "^b"}}),
        False,
        False,
    ),
    (
        "declare a column with its own type or null",
        {},
        {"properties": {"name": {"type": ["string", "null"]}}},
        True,
        True,
    ),
    ("declare a column non-null", {}, {"properties": {"name": {"type": "string"}}}, False, True),
    (
        "require a column",
        {"properties": {"name": {}}},
        {"properties": {"name": {}}, "required": ["name"]},
        False,
        True,
    ),
    (
        "resource attributes: add a required key",
        {},
        {"properties": {"resource_attributes": {"properties": ROUTE, "required": ["http.route"]}}},
        False,
        True,
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "backward", "forward"), CHANGES, ids=[c[0] for c in CHANGES])
@pytest.mark.parametrize("level", list(Level))
def test_each_change_at_each_level(
    name: str, old: Any, new: Any, backward: bool, forward: bool, level: Level
) -> None:
    expected = {
        Level.NONE: True,
        Level.BACKWARD: backward,
        Level.BACKWARD_TRANSITIVE: backward,
        Level.FORWARD: forward,
        Level.FORWARD_TRANSITIVE: forward,
        Level.FULL: backward and forward,
        Level.FULL_TRANSITIVE: backward and forward,
    }[level]
    messages = check(level, schema(new), [(1, schema(old))])
    assert (messages == []) is expected, messages
    for message in messages:
        assert message.startswith("#"), message  # every message names the path


def test_transitive_levels_check_every_version_and_the_others_only_the_latest() -> None:
    v1 = schema(attributes({"k": {"type": "string"}}))
    v2 = schema(attributes({"k": {"type": ["string", "integer"]}}))
    candidate = schema(attributes({"k": {"type": "integer"}}))  # reads v2's integers, not v1's strings
    registered = [(1, v1), (2, v2)]
    assert check(Level.BACKWARD, candidate, registered) != []  # v2 allows strings too
    v2b = schema(attributes({"k": {"type": "integer"}}))
    assert check(Level.BACKWARD, candidate, [(1, v1), (2, v2b)]) == []
    messages = check(Level.BACKWARD_TRANSITIVE, candidate, [(1, v1), (2, v2b)])
    assert messages == [
        "#/properties/attributes/properties/k/type: narrowed from string to integer (data may be string)"
        " (the new schema cannot read data written with version 1)"
    ]


def test_messages_name_the_offending_path() -> None:
    old = schema(attributes(ROUTE))
    new = schema(attributes({"http.route": {"type": "integer"}, "peer": {"type": "string"}}, ["peer"]))
    assert can_read(new, old) == [
        "#/properties/attributes/required: 'peer' is required, and data may lack it",
        "#/properties/attributes/properties/http.route/type: narrowed from string to integer "
        "(data may be string)",
        "#/properties/attributes/properties/peer/type: narrowed from any type to string",
    ]


def test_levels_parse_case_insensitively_and_unknown_ones_are_named() -> None:
    assert parse_level("full_transitive") is Level.FULL_TRANSITIVE
    with pytest.raises(ValueError, match="'SIDEWAYS' is not a compatibility level"):
        parse_level("SIDEWAYS")
