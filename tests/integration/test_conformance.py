"""The OTLP/JSON examples published with the OTLP specification, through a real agent.

Every example (shared/conformance/otlp-json/) is sent to the agent as OTLP/JSON (plain, gzip,
zstd), as OTLP/protobuf over HTTP (plain, gzip, zstd) and over gRPC; it must be answered with
success in the request's content type and reach the sink with every value of the JSON file.
The comparison walks the JSON document against the sink's protobuf field by field (ids as hex,
64-bit integers as strings, enums as integers) and also checks the sink has no field the
document lacks, except the resource attributes the agent's enrichment adds.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
import zstandard
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from orasi_common.pdata import SPECS, Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.shared import shared_path
from orasi_common.testing.sink import OtlpSink

CONFORMANCE = shared_path("conformance", "otlp-json")
EXAMPLES = {
    "trace.json": Signal.TRACES,
    "metrics.json": Signal.METRICS,
    "logs.json": Signal.LOGS,
    "events.json": Signal.LOGS,
}
AGENT_ID = "conformance-agent"
ENRICHMENT_KEYS = {"orasi.agent.id", "k8s.node.name", "host.name", "cloud.region"}
ID_FIELDS = {"traceId", "spanId", "parentSpanId"}
INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def test_every_conformance_example_is_present() -> None:
    """The examples must be there: a build is judged by them (shared/ lies beside the clone in CI)."""
    missing = [name for name in EXAMPLES if not (CONFORMANCE / name).is_file()]
    assert not missing, f"conformance examples missing from {CONFORMANCE}: {missing} (set ORASI_SHARED)"


# --- the JSON document against the protobuf ------------------------------------------------


def _expect_scalar(field: FieldDescriptor, key: str, expected: Any, actual: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_BYTES:
        want = bytes.fromhex(expected) if key in ID_FIELDS else base64.b64decode(expected)
        assert actual == want, f"{path}: {actual.hex()} != {expected}"
    elif field.type in INT64_TYPES:
        assert actual == int(expected), f"{path}: {actual} != {expected!r}"
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        assert actual == float(expected), f"{path}: {actual} != {expected!r}"
    else:  # strings, bools, 32-bit ints and enums (OTLP/JSON writes enums as integers)
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_matches(document: dict[str, Any], message: Message, path: str = "") -> None:
    """Every key of ``document`` has its value in ``message``, and ``message`` has nothing more."""
    fields = {field.json_name: field for field in message.DESCRIPTOR.fields}
    for key, expected in document.items():
        field = fields.get(key)
        where = f"{path}.{key}".lstrip(".")
        assert field is not None, f"{where}: {message.DESCRIPTOR.full_name} has no such field"
        actual = getattr(message, field.name)
        if field.is_repeated:
            assert isinstance(expected, list), where
            if where.endswith("resource.attributes"):
                # The agent appends its enrichment after the sender's attributes.
                extra = [kv.key for kv in actual[len(expected) :]]
                assert set(extra) <= ENRICHMENT_KEYS and "orasi.agent.id" in extra, f"{where}: {extra}"
                assert {kv.key: kv.value.string_value for kv in actual}["orasi.agent.id"] == AGENT_ID
                actual = actual[: len(expected)]
            assert len(actual) == len(expected), f"{where}: {len(actual)} entries, expected {len(expected)}"
            for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
                if field.message_type is not None:
                    assert_matches(want, got, f"{where}[{index}]")
                else:
                    _expect_scalar(field, key, want, got, f"{where}[{index}]")
        elif field.message_type is not None:
            assert message.HasField(field.name), f"{where}: missing"
            assert_matches(expected, actual, where)
        else:
            _expect_scalar(field, key, expected, actual, where)
    for field, _ in message.ListFields():
        assert field.json_name in document, f"{path}.{field.json_name}: set, but not in the document"


def items_in(signal: Signal, document: dict[str, Any]) -> int:
    """Spans, log records or data points in an OTLP/JSON document."""
    resource_key = {"traces": "resourceSpans", "metrics": "resourceMetrics", "logs": "resourceLogs"}[signal]
    scope_key = {"traces": "scopeSpans", "metrics": "scopeMetrics", "logs": "scopeLogs"}[signal]
    total = 0
    for resource in document[resource_key]:
        for scope in resource[scope_key]:
            if signal is Signal.TRACES:
                total += len(scope["spans"])
            elif signal is Signal.LOGS:
                total += len(scope["logRecords"])
            else:
                for metric in scope["metrics"]:
                    kind = next(k for k in metric if k not in ("name", "unit", "description", "metadata"))
                    total += len(metric[kind]["dataPoints"])
    return total


def to_protobuf(signal: Signal, document: dict[str, Any]) -> bytes:
    """The example as binary OTLP (hex ids become bytes), built on the test's side."""

    def hex_to_base64(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode() if k in ID_FIELDS else hex_to_base64(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [hex_to_base64(v) for v in node]
        return node

    message = SPECS[signal].request_type()
    json_format.ParseDict(hex_to_base64(document), message)
    return message.SerializeToString()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(module_sink: OtlpSink, module_start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    return module_start_agent(module_sink, env={"ORASI_AGENT_ID": AGENT_ID})


def forwarded(sink: OtlpSink, signal: Signal, send: Callable[[], None], count: int) -> Message:
    """Run ``send`` and return everything of ``signal`` the sink got from it, as one request."""
    mark = len(sink.received)
    before = sink.items(signal)
    send()
    sink.wait_for_items(signal, before + count)
    assert sink.items(signal) == before + count
    merged = SPECS[signal].request_type()
    for received in sink.received[mark:]:
        if received.signal is signal:
            merged.MergeFrom(received.request)
    return merged


# Every HTTP content type with every encoding; gRPC with the two it accepts.
VARIANTS = [
    *(
        ("http", content_type, encoding)
        for content_type in ("application/json", "application/x-protobuf")
        for encoding in ("identity", "gzip", "zstd")
    ),
    *(("grpc", "application/grpc", encoding) for encoding in ("identity", "gzip")),
]


def _encode(encoding: str, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(body)
    return body


@pytest.mark.parametrize("example", list(EXAMPLES))
@pytest.mark.parametrize(("transport", "content_type", "encoding"), VARIANTS)
def test_example_is_accepted_and_forwarded(
    agent: AgentProcess,
    module_sink: OtlpSink,
    example: str,
    transport: str,
    content_type: str,
    encoding: str,
) -> None:
    signal = EXAMPLES[example]
    spec = SPECS[signal]
    raw_json = (CONFORMANCE / example).read_bytes()
    document = json.loads(raw_json)
    count = items_in(signal, document)
    assert count > 0

    def send_http() -> None:
        body = raw_json if content_type == "application/json" else to_protobuf(signal, document)
        headers = {"content-type": content_type}
        if encoding != "identity":
            headers["content-encoding"] = encoding
        response = httpx.post(
            agent.http_url + spec.http_path, content=_encode(encoding, body), headers=headers
        )
        assert response.status_code == 200, response.content
        assert response.headers["content-type"] == content_type
        answer = spec.response_type()
        if content_type == "application/json":
            assert isinstance(response.json(), dict)
            json_format.Parse(response.text, answer)
        else:
            answer.ParseFromString(response.content)
        assert not answer.HasField("partial_success")

    def send_grpc() -> None:
        compression = grpc.Compression.Gzip if encoding == "gzip" else grpc.Compression.NoCompression
        with grpc.insecure_channel(agent.grpc_endpoint) as channel:
            export = channel.unary_unary(
                spec.grpc_method, response_deserializer=spec.response_type.FromString
            )
            answer = export(to_protobuf(signal, document), timeout=10, compression=compression)
        assert not answer.HasField("partial_success")

    labels = {"signal": signal.value, "receiver": "otlp", "transport": transport}
    accepted_before = agent.metric("orasi_receiver_accepted_items_total", **labels)
    request = forwarded(module_sink, signal, send_http if transport == "http" else send_grpc, count)
    assert_matches(document, request)
    assert agent.metric("orasi_receiver_accepted_items_total", **labels) == accepted_before + count
    assert agent.metric("orasi_receiver_refused_items_total") == 0


def test_unknown_json_fields_are_ignored(agent: AgentProcess, module_sink: OtlpSink) -> None:
    """OTLP/JSON receivers must ignore fields they do not know (a newer sender's)."""
    document = json.loads((CONFORMANCE / "trace.json").read_bytes())
    with_unknown = json.loads(json.dumps(document))
    with_unknown["futureTopLevel"] = {"x": 1}
    with_unknown["resourceSpans"][0]["futureResourceField"] = [1, 2, 3]
    span = with_unknown["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["futureSpanField"] = "value"
    span["attributes"][0]["value"]["futureValueField"] = True

    def send() -> None:
        response = httpx.post(
            agent.http_url + "/v1/traces",
            content=json.dumps(with_unknown).encode(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.content

    request = forwarded(module_sink, Signal.TRACES, send, items_in(Signal.TRACES, document))
    assert_matches(document, request)
