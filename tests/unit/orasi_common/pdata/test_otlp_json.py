"""OTLP/JSON: hex ids, errors that name the path, unknown fields, and the conformance files."""

from __future__ import annotations

import json

import pytest

from orasi_common.errors import MalformedData
from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp import count_items
from orasi_common.pdata.otlp_json import MAX_DEPTH, parse_json, to_json
from orasi_common.testing.shared import shared_path

from ...builders import request_with

CONFORMANCE = shared_path("conformance", "otlp-json")
TRACES = SPECS[Signal.TRACES].request_type
LOGS = SPECS[Signal.LOGS].request_type
METRICS = SPECS[Signal.METRICS].request_type

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def _span_doc(**span: object) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def test_hex_ids_become_bytes() -> None:
    body = _span_doc(traceId=TRACE_ID.upper(), spanId="eee19b7ec3c1b174", parentSpanId="eee19b7ec3c1b173")
    span = parse_json(TRACES, body).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")


def test_snake_case_names_are_accepted() -> None:
    body = _span_doc(trace_id=TRACE_ID, span_id="0102030405060708")
    span = parse_json(TRACES, body).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE_ID
    assert span.span_id.hex() == "0102030405060708"


def test_empty_ids_stay_empty() -> None:
    span = (
        parse_json(TRACES, _span_doc(traceId=TRACE_ID, spanId="0102030405060708", parentSpanId=""))
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]
    )
    assert span.parent_span_id == b""


def test_link_and_log_ids_are_hex_too() -> None:
    body = _span_doc(
        traceId=TRACE_ID, spanId="0102030405060708", links=[{"traceId": "ff" * 16, "spanId": "ee" * 8}]
    )
    link = parse_json(TRACES, body).resource_spans[0].scope_spans[0].spans[0].links[0]
    assert (link.trace_id, link.span_id) == (b"\xff" * 16, b"\xee" * 8)
    log_body = json.dumps(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": TRACE_ID, "spanId": "ee" * 8}]}]}]}
    ).encode()
    record = parse_json(LOGS, log_body).resource_logs[0].scope_logs[0].log_records[0]
    assert record.trace_id.hex() == TRACE_ID


@pytest.mark.parametrize(
    ("span", "path"),
    [
        ({"traceId": "zz" * 16}, "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ({"traceId": TRACE_ID[:-2]}, "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ({"traceId": TRACE_ID + "00"}, "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ({"traceId": TRACE_ID, "spanId": "abc"}, "resourceSpans[0].scopeSpans[0].spans[0].spanId"),
        ({"traceId": "W47/95gDgQPSabYzgT/GDA=="}, "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        (
            {"traceId": TRACE_ID, "links": [{"traceId": TRACE_ID, "spanId": "01"}]},
            "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId",
        ),
    ],
)
def test_invalid_id_names_the_path(span: dict[str, object], path: str) -> None:
    with pytest.raises(MalformedData) as caught:
        parse_json(TRACES, _span_doc(**span))
    assert caught.value.message.startswith(f"{path} is ")
    assert "hex" in caught.value.message


def test_unknown_fields_are_ignored() -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "futureField": {"x": 1},
                    "scopeSpans": [{"spans": [{"name": "s", "traceId": TRACE_ID, "newThing": [1, 2]}]}],
                }
            ],
            "extra": True,
        }
    ).encode()
    request = parse_json(TRACES, body)
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "s"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b'{"resourceSpans": 5}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
    ],
)
def test_invalid_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedData):
        parse_json(TRACES, body)


def test_int64_as_strings_and_enums_as_ints() -> None:
    body = _span_doc(traceId=TRACE_ID, startTimeUnixNano="1544712660000000000", kind=2)
    span = parse_json(TRACES, body).resource_spans[0].scope_spans[0].spans[0]
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.kind == 2


@pytest.mark.parametrize("signal", list(Signal))
def test_to_json_round_trip(signal: Signal) -> None:
    request = request_with(signal, 4, resources=2)
    encoded = to_json(request)
    assert parse_json(SPECS[signal].request_type, encoded) == request
    camel = {Signal.TRACES: "resourceSpans", Signal.METRICS: "resourceMetrics", Signal.LOGS: "resourceLogs"}
    assert list(json.loads(encoded)) == [camel[signal]]


def test_to_json_writes_hex_ids_and_integer_enums() -> None:
    request = request_with(Signal.TRACES, 1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.kind = 2
    document = json.loads(to_json(request))
    out = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert out["traceId"] == span.trace_id.hex()
    assert out["spanId"] == span.span_id.hex()
    assert out["kind"] == 2
    assert out["startTimeUnixNano"] == str(span.start_time_unix_nano)


# --- the conformance files ------------------------------------------------------------------------


def _load(name: str, request_type: type) -> object:
    return parse_json(request_type, (CONFORMANCE / name).read_bytes())


def test_conformance_directory_is_covered() -> None:
    assert sorted(p.name for p in CONFORMANCE.glob("*.json")) == [
        "events.json",
        "logs.json",
        "metrics.json",
        "trace.json",
    ]


def test_conformance_trace() -> None:
    request = _load("trace.json", TRACES)
    assert count_items(Signal.TRACES, request) == 1  # type: ignore[arg-type]
    resource_spans = request.resource_spans[0]  # type: ignore[attr-defined]
    assert resource_spans.resource.attributes[0].value.string_value == "my.service"
    scope = resource_spans.scope_spans[0]
    assert (scope.scope.name, scope.scope.version) == ("my.library", "1.0.0")
    span = scope.spans[0]
    assert span.trace_id == bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
    assert span.span_id == bytes.fromhex("EEE19B7EC3C1B174")
    assert span.parent_span_id == bytes.fromhex("EEE19B7EC3C1B173")
    assert span.name == "I'm a server span"
    assert span.kind == 2
    assert span.end_time_unix_nano - span.start_time_unix_nano == 1_000_000_000
    assert span.attributes[0].key == "my.span.attr"


def test_conformance_logs() -> None:
    request = _load("logs.json", LOGS)
    assert count_items(Signal.LOGS, request) == 1  # type: ignore[arg-type]
    record = request.resource_logs[0].scope_logs[0].log_records[0]  # type: ignore[attr-defined]
    assert record.trace_id == bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
    assert record.span_id == bytes.fromhex("EEE19B7EC3C1B174")
    assert record.body.string_value == "Example log record"
    assert (record.severity_number, record.severity_text) == (10, "Information")
    assert record.time_unix_nano == 1544712660300000000
    attributes = {kv.key: kv.value for kv in record.attributes}
    assert attributes["boolean.attribute"].bool_value is True
    assert attributes["int.attribute"].int_value == 10
    assert attributes["double.attribute"].double_value == 637.704
    assert [v.string_value for v in attributes["array.attribute"].array_value.values] == ["many", "values"]
    assert attributes["map.attribute"].kvlist_value.values[0].key == "some.map.key"


def test_conformance_events() -> None:
    request = _load("events.json", LOGS)
    assert count_items(Signal.LOGS, request) == 1  # type: ignore[arg-type]
    record = request.resource_logs[0].scope_logs[0].log_records[0]  # type: ignore[attr-defined]
    assert record.event_name == "browser.page_view"
    assert record.trace_id == b""
    body = {kv.key: kv.value for kv in record.body.kvlist_value.values}
    assert body["type"].int_value == 0
    assert body["title"].string_value == "Free Online GUID Generator"


def test_conformance_metrics() -> None:
    request = _load("metrics.json", METRICS)
    assert count_items(Signal.METRICS, request) == 4  # type: ignore[arg-type]
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}  # type: ignore[attr-defined]
    assert {name: m.WhichOneof("data") for name, m in metrics.items()} == {
        "my.counter": "sum",
        "my.gauge": "gauge",
        "my.histogram": "histogram",
        "my.exponential.histogram": "exponential_histogram",
    }
    counter = metrics["my.counter"].sum
    assert (counter.is_monotonic, counter.aggregation_temporality) == (True, 1)
    assert counter.data_points[0].as_double == 5
    assert metrics["my.gauge"].gauge.data_points[0].as_double == 10
    histogram = metrics["my.histogram"].histogram.data_points[0]
    assert (histogram.count, list(histogram.bucket_counts), list(histogram.explicit_bounds)) == (
        2,
        [1, 1],
        [1.0],
    )
    assert (histogram.min, histogram.max) == (0, 2)
    exponential = metrics["my.exponential.histogram"].exponential_histogram.data_points[0]
    assert (exponential.count, exponential.zero_count, exponential.positive.offset) == (3, 1, 1)
    assert list(exponential.positive.bucket_counts) == [0, 2]


@pytest.mark.parametrize(
    ("name", "signal"),
    [
        ("trace.json", Signal.TRACES),
        ("logs.json", Signal.LOGS),
        ("events.json", Signal.LOGS),
        ("metrics.json", Signal.METRICS),
    ],
)
def test_conformance_files_round_trip(name: str, signal: Signal) -> None:
    request_type = SPECS[signal].request_type
    request = _load(name, request_type)
    assert parse_json(request_type, to_json(request)) == request  # type: ignore[arg-type]


def _nested_body(levels: int) -> bytes:
    """A log record whose body is ``levels`` kvlistValues inside each other, written as text
    (``json.dumps`` itself cannot nest thousands deep)."""
    opening = '{"kvlistValue":{"values":[{"key":"k","value":' * levels
    closing = "}]}}" * levels
    inner = opening + '{"stringValue":"leaf"}' + closing
    return ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":' + inner + "}]}]}]}").encode()


def test_nesting_within_the_depth_limit_is_parsed() -> None:
    record = parse_json(LOGS, _nested_body(20)).resource_logs[0].scope_logs[0].log_records[0]
    value = record.body
    for _ in range(20):
        value = value.kvlist_value.values[0].value
    assert value.string_value == "leaf"


@pytest.mark.parametrize("levels", [MAX_DEPTH // 4 + 1, 5_000, 200_000])
def test_nesting_past_the_depth_limit_is_malformed_and_names_it(levels: int) -> None:
    with pytest.raises(MalformedData, match=f"deeper than {MAX_DEPTH} levels"):
        parse_json(LOGS, _nested_body(levels))


def test_a_key_that_is_not_utf8_is_malformed() -> None:
    """Found by atheris: a key spelling a lone surrogate (``"\\udc3e"``) made upb's field lookup
    raise SystemError inside ParseDict."""
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"d874\\udc3e":""}]}]}]}'
    with pytest.raises(MalformedData, match="a key that is not UTF-8"):
        parse_json(TRACES, body)
