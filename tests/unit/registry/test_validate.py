"""Validation of lake rows against a schema, and observed types: rows converted from OTLP by the
lake's converter (with the original types beside the maps), expectations written by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orasi_bridge.lake.rows import Types, otlp_rows
from orasi_bridge.registry.schema import Subject, parse
from orasi_bridge.registry.validate import Policy, kept_rows, observed, validate
from orasi_common.pdata import Batch, Signal


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if v is None:
        return AnyValue()
    return AnyValue(string_value=v)


def request_of(spans: list[tuple[str, dict[str, Any]]], resource: dict[str, Any]) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in resource.items())
    scope = resource_spans.scope_spans.add()
    for index, (name, attributes) in enumerate(spans):
        span = scope.spans.add(
            trace_id=b"\x01" * 16, span_id=(index + 1).to_bytes(8, "big"), name=name, start_time_unix_nano=1
        )
        span.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in attributes.items())
    return request.SerializeToString()


def rows_of(spans: list[tuple[str, dict[str, Any]]], resource: dict[str, Any]) -> tuple[Any, Types]:
    types: Types = {}
    rows = otlp_rows([Batch.from_serialized(Signal.TRACES, request_of(spans, resource))], "r", types)
    return rows, types


SPANS: list[tuple[str, dict[str, Any]]] = [
    ("a", {"code": 200, "ratio": 1, "kind": "x", "blob": b"\x00"}),
    ("b", {"code": 200.5, "ratio": 0.5, "kind": "y", "other": True}),
    ("c", {"code": None, "kind": "xz"}),
]
RESOURCE = {"service.name": "svc", "zone": 3}
SCHEMA = {
    "properties": {
        "kind": {"enum": ["UNSPECIFIED"]},
        "attributes": {
            "properties": {
                "code": {"type": "integer", "enum": [200, 404]},
                "ratio": {"type": "number"},
                "kind": {"type": "string", "pattern": "^x$"},
                "blob": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "resource_attributes": {
            "properties": {"zone": {"type": "string"}, "region": {}},
            "required": ["region"],
        },
    }
}


def violations(mode: str) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[tuple[str, str], int]]:
    rows, types = rows_of(SPANS, RESOURCE)
    outcome = validate(rows, types, {"svc": Policy(mode, parse(SCHEMA, Subject.parse("spans.svc")))})
    names = outcome.rows.column("name").to_pylist()
    flagged = outcome.rows.column("schema_violations").to_pylist()
    keys = [sorted(k for k, _ in m) for m in outcome.rows.column("attributes").to_pylist()]
    return (
        {n: sorted(f or []) for n, f in zip(names, flagged, strict=True)},
        dict(zip(names, keys, strict=True)),
        outcome.counts,
    )


RESOURCE_VIOLATIONS = [
    "resource_attributes.region: required key missing",
    "resource_attributes.zone: integer, not string",
]


def test_flag_lists_every_violation_of_each_row() -> None:
    flagged, keys, counts = violations("flag")
    assert flagged == {
        "a": sorted(RESOURCE_VIOLATIONS),
        "b": sorted(
            [
                *RESOURCE_VIOLATIONS,
                "attributes.code: number, not integer",
                "attributes.kind: does not match '^x$'",
                "attributes.other: key not allowed",
            ]
        ),
        "c": sorted(
            [
                *RESOURCE_VIOLATIONS,
                "attributes.code: empty, not integer",
                "attributes.kind: does not match '^x$'",
            ]
        ),
    }
    assert keys["b"] == ["code", "kind", "other", "ratio"], "flag drops nothing"
    assert counts == {("svc", "flag"): 11}


def test_drop_attribute_removes_what_it_can_and_flags_the_rest() -> None:
    flagged, keys, counts = violations("drop_attribute")
    assert keys == {"a": ["blob", "code", "kind", "ratio"], "b": ["ratio"], "c": []}
    # a resource attribute is dropped from the rows too; a missing key can only be flagged
    assert flagged == {name: ["resource_attributes.region: required key missing"] for name in "abc"}
    assert counts == {("svc", "drop_attribute"): 8, ("svc", "flag"): 3}


def test_reject_leaves_out_every_violating_row() -> None:
    rows, types = rows_of([("ok", {"code": 404}), ("bad", {"code": "404"})], {"service.name": "svc"})
    schema = parse(
        {"properties": {"attributes": {"properties": {"code": {"type": "integer"}}}}},
        Subject.parse("spans.svc"),
    )
    outcome = validate(rows, types, {"svc": Policy("reject", schema)})
    assert outcome.rows.column("name").to_pylist() == ["ok"]
    assert outcome.kept is not None and outcome.kept.tolist() == [True, False]
    assert outcome.first == [("svc", "attributes.code: string, not integer")]
    assert outcome.counts == {("svc", "reject"): 1}


def test_rows_of_other_services_are_untouched() -> None:
    rows, types = rows_of(SPANS, {"service.name": "elsewhere"})
    outcome = validate(rows, types, {"svc": Policy("flag", parse(SCHEMA, Subject.parse("spans.svc")))})
    assert outcome.rows is rows and outcome.counts == {}


def test_observed_types_are_the_original_ones() -> None:
    rows, types = rows_of(SPANS, RESOURCE)
    assert observed(rows, types) == {
        ("svc", "attributes", "code", "integer"),
        ("svc", "attributes", "code", "number"),
        ("svc", "attributes", "code", "empty"),
        ("svc", "attributes", "ratio", "integer"),
        ("svc", "attributes", "ratio", "number"),
        ("svc", "attributes", "kind", "string"),
        ("svc", "attributes", "blob", "bytes"),
        ("svc", "attributes", "other", "boolean"),
        ("svc", "resource_attributes", "service.name", "string"),
        ("svc", "resource_attributes", "zone", "integer"),
    }


def rows_of_resources(resources: list[tuple[str, list[tuple[str, dict[str, Any]]]]]) -> tuple[Any, Types]:
    """Rows of one request of several resources (each a service name and its spans), in order."""
    request = ExportTraceServiceRequest()
    for service, spans in resources:
        parsed = ExportTraceServiceRequest.FromString(request_of(spans, {"service.name": service}))
        request.resource_spans.extend(parsed.resource_spans)
    types: Types = {}
    rows = otlp_rows([Batch.from_serialized(Signal.TRACES, request.SerializeToString())], "r", types)
    return rows, types


def test_a_subject_is_checked_on_its_own_rows_only() -> None:
    # the same keys in three resources of two services: b's wrong types and missing keys are b's
    rows, types = rows_of_resources(
        [
            ("a", [("a1", {"code": 1, "route": "/"}), ("a2", {"code": 2})]),
            ("b", [("b1", {"code": "x"}), ("b2", {"other": True})]),
            ("a", [("a3", {"code": "3", "route": "/"}), ("a4", {"route": "/", "extra": 1.5})]),
        ]
    )
    schema = parse(
        {
            "properties": {
                "attributes": {
                    "properties": {"code": {"type": "integer"}, "route": {"type": "string"}},
                    "required": ["route"],
                    "additionalProperties": False,
                }
            }
        },
        Subject.parse("spans.a"),
    )
    flagged = validate(rows, types, {"a": Policy("flag", schema)})
    assert dict(
        zip(
            flagged.rows.column("name").to_pylist(),
            flagged.rows.column("schema_violations").to_pylist(),
            strict=True,
        )
    ) == {
        "a1": None,
        "a2": ["attributes.route: required key missing"],
        "b1": None,
        "b2": None,
        "a3": ["attributes.code: string, not integer"],
        "a4": ["attributes.extra: key not allowed"],
    }
    assert flagged.counts == {("a", "flag"): 3}
    rejected = validate(rows, types, {"a": Policy("reject", schema)})
    assert rejected.rows.column("name").to_pylist() == ["a1", "b1", "b2"]
    assert rejected.first == [
        ("a", "attributes.route: required key missing"),
        ("a", "attributes.code: string, not integer"),
        ("a", "attributes.extra: key not allowed"),
    ]
    assert rejected.counts == {("a", "reject"): 3}
    assert ("b", "attributes", "code", "string") in observed(rows, types)
    assert ("a", "attributes", "other", "boolean") not in observed(rows, types)


def test_kept_rows_are_the_filtered_rows_however_they_run() -> None:
    # 12 resources of 40 spans: kept by whole resources (few long runs: the maps copied by
    # slices), span by span (many short runs: filtered), in one run, or none
    rows, _ = rows_of_resources(
        [(f"s{r}", [(f"{r}.{i}", {"i": i, "r": str(r)}) for i in range(40)]) for r in range(12)]
    )
    n = rows.num_rows
    by_resource = np.repeat(np.arange(12) % 3 != 1, 40)
    masks = {
        "by resource": by_resource,
        "alternate": np.arange(n) % 2 == 0,
        "one long run": np.arange(n) >= 5,
        "one short run": (np.arange(n) >= 5) & (np.arange(n) < 50),
        "last row": np.arange(n) == n - 1,
        "none": np.zeros(n, dtype=np.bool_),
    }
    for name, kept in masks.items():
        result = kept_rows(rows, kept)
        assert result.schema == rows.schema, name
        assert result.to_pylist() == rows.filter(pa.array(kept)).to_pylist(), name
