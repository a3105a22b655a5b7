"""The JSON Schema subset: what ``parse`` accepts, and the path it names when it refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orasi_bridge.registry.schema import (
    EXAMPLE,
    Field,
    InvalidSchema,
    InvalidSubject,
    Subject,
    canonical,
    parse,
)

SPANS = Subject.parse("spans.checkout")


def test_the_issue_example_parses_into_columns_and_attribute_keys() -> None:
    document = copy.deepcopy(EXAMPLE)
    document["properties"] |= {
        "name": {"type": "string", "pattern": "^GET "},
        "kind": {"enum": ["SERVER", "CLIENT"]},
    }
    document["required"] = ["name"]
    schema = parse(document, SPANS)
    assert schema.table == "spans"
    assert schema.columns.properties["name"] == Field(frozenset({"string"}), None, "^GET ")
    assert schema.columns.properties["kind"].enum == frozenset({'"SERVER"', '"CLIENT"'})
    assert schema.columns.required == frozenset({"name"})
    assert schema.attributes.properties["http.response.status_code"].types == frozenset({"integer"})
    assert schema.attributes.required == frozenset({"http.route"})
    assert schema.attributes.additional is True
    assert schema.resource_attributes.properties == {}


@pytest.mark.parametrize(
    ("subject", "table"),
    [("spans.checkout", "spans"), ("logs.a.b", "logs"), ("metrics.cart-1", "metric_points")],
)
def test_subjects_name_a_signal_and_a_service(subject: str, table: str) -> None:
    assert Subject.parse(subject).table == table


@pytest.mark.parametrize("subject", ["traces.checkout", "spans", "spans.", "spans.a b", "checkout-value"])
def test_other_subjects_are_refused(subject: str) -> None:
    with pytest.raises(InvalidSubject, match="spans, logs or metrics"):
        Subject.parse(subject)


@pytest.mark.parametrize(
    ("subject", "document", "path", "words"),
    [
        ("spans.a", [], "#", "JSON object"),
        ("spans.a", {"type": "array"}, "#/type", '"object"'),
        ("spans.a", {"oneOf": []}, "#/oneOf", "not in the subset"),
        ("spans.a", {"properties": {"severity_number": {}}}, "#/properties/severity_number", "not a column"),
        (
            "logs.a",
            {"properties": {"severity_number": {"type": "string"}}},
            "#/properties/severity_number/type",
            "not a type this column",
        ),
        (
            "spans.a",
            {"properties": {"name": {"type": "string", "minLength": 1}}},
            "#/properties/name/minLength",
            "not in the subset",
        ),
        ("spans.a", {"required": ["name"]}, "#/required", "not among the properties"),
        ("spans.a", {"additionalProperties": {"type": "string"}}, "#/additionalProperties", "true or false"),
        (
            "spans.a",
            {"properties": {"attributes": {"type": "array"}}},
            "#/properties/attributes/type",
            '"object"',
        ),
        (
            "spans.a",
            {"properties": {"attributes": {"properties": {"k": {"type": "bytes"}}}}},
            "#/properties/attributes/properties/k/type",
            "not a type this attribute key",
        ),
        (
            "spans.a",
            {"properties": {"attributes": {"properties": {"a/b": {"type": "array", "items": {}}}}}},
            "#/properties/attributes/properties/a~1b/items",
            "not in the subset",
        ),
        (
            "spans.a",
            {"properties": {"attributes": {"properties": {"k": {"type": "integer", "pattern": "x"}}}}},
            "#/properties/attributes/properties/k/pattern",
            "applies to strings",
        ),
        (
            "spans.a",
            {"properties": {"attributes": {"properties": {"k": {"type": "string", "pattern": "("}}}}},
            "#/properties/attributes/properties/k/pattern",
            "not a valid regular expression",
        ),
        (
            "spans.a",
            {"properties": {"attributes": {"properties": {"k": {"type": "string", "enum": [1]}}}}},
            "#/properties/attributes/properties/k/enum/0",
            "not of the declared type",
        ),
        ("spans.a", {"properties": {"kind": {"enum": []}}}, "#/properties/kind/enum", "non-empty list"),
        ("metrics.a", {"properties": {"name": {}}}, "#/properties/name", "metric_points"),
    ],
)
def test_documents_outside_the_subset_are_refused_naming_the_path(
    subject: str, document: Any, path: str, words: str
) -> None:
    with pytest.raises(InvalidSchema) as caught:
        parse(document, Subject.parse(subject))
    assert caught.value.path == path
    assert words in str(caught.value)
    assert str(caught.value).startswith(path + ": ")


def test_column_types_follow_the_lake_table() -> None:
    schema = parse(
        {
            "properties": {
                "severity_number": {"type": ["integer", "null"]},
                "body": {"type": "string"},
                "time": {"type": "string"},
            }
        },
        Subject.parse("logs.api"),
    )
    assert schema.columns.properties["severity_number"].types == frozenset({"integer", "null"})
    metrics = parse(
        {"properties": {"value": {"type": "number"}, "bucket_counts": {"type": "array"}}},
        Subject.parse("metrics.api"),
    )
    assert metrics.columns.properties["bucket_counts"].types == frozenset({"array"})


def test_canonical_text_ignores_key_order_and_white_space() -> None:
    a = {"type": "object", "properties": {"name": {"type": "string"}}}
    b = {"properties": {"name": {"type": "string"}}, "type": "object"}
    assert canonical(a) == canonical(b) == '{"properties":{"name":{"type":"string"}},"type":"object"}'
