"""Bad requests get exact OTLP statuses, and the agent keeps serving after each one.

HTTP errors must answer in the request's content type with a google.rpc.Status body; gRPC errors
with the status code the OTLP specification names. After every bad request a valid one (HTTP
and gRPC) is accepted and forwarded, and nothing of the bad one reached the sink.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import zstandard
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp_json import to_json
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.sink import OtlpSink
from orasi_common.topology import deep_merge

MIB = 1024 * 1024
BODY_LIMIT_MIB = 0.1
DECOMPRESSED_LIMIT_MIB = 0.5
GRPC_LIMIT_MIB = 0.1
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

LIMITS = {
    "receivers": {
        "otlp": {
            "protocols": {
                "grpc": {"max_recv_msg_size_mib": GRPC_LIMIT_MIB},
                "http": {
                    "max_request_body_size_mib": BODY_LIMIT_MIB,
                    "max_decompressed_body_size_mib": DECOMPRESSED_LIMIT_MIB,
                },
            }
        }
    }
}


def trace_request(name: str, padding: int = 0) -> ExportTraceServiceRequest:
    """A valid request with one span (``padding`` bytes of attribute make it large)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "bad-input"
    span = resource_spans.scope_spans.add().spans.add(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
    )
    if padding:
        span.attributes.add(key="padding").value.string_value = "x" * padding
    return request


@pytest.fixture(scope="module")
def agent(module_sink: OtlpSink, module_start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    return module_start_agent(module_sink, overrides=LIMITS)


@dataclass
class Serving:
    """Checks the agent still accepts and forwards valid data, and counts what was sent."""

    agent: AgentProcess
    sink: OtlpSink
    sent: int = 0

    def mark(self) -> int:
        """Spans the sink holds now (call before the bad request)."""
        return self.sink.items(Signal.TRACES)

    def check(self, before: int, client: httpx.Client | None = None) -> None:
        """Valid requests succeed (on ``client``'s kept-alive connection when given)."""
        for index, content_type in enumerate((PROTOBUF, JSON)):
            request = trace_request(f"valid-{self.sent}-{index}")
            body = request.SerializeToString() if content_type == PROTOBUF else to_json(request)
            response = (client or httpx).post(
                self.agent.http_url + "/v1/traces", content=body, headers={"content-type": content_type}
            )
            assert response.status_code == 200, response.content
            assert response.headers["content-type"] == content_type
        with grpc.insecure_channel(self.agent.grpc_endpoint) as channel:
            export = channel.unary_unary(SPECS[Signal.TRACES].grpc_method)
            assert export(trace_request(f"valid-{self.sent}-grpc").SerializeToString(), timeout=10) == b""
        self.sent += 3
        self.sink.wait_for_items(Signal.TRACES, before + 3)
        # Only the valid requests' spans arrived: nothing of the bad request was forwarded.
        assert self.sink.items(Signal.TRACES) == before + 3


@pytest.fixture(scope="module")
def serving(agent: AgentProcess, module_sink: OtlpSink) -> Serving:
    return Serving(agent, module_sink)


def error_status(response: httpx.Response, request_type: str | None) -> status_pb2.Status:
    """The google.rpc.Status of an error response, in the content type the request used."""
    expected_type = PROTOBUF if request_type == PROTOBUF else JSON
    assert response.headers["content-type"] == expected_type
    status = status_pb2.Status()
    if expected_type == PROTOBUF:
        status.ParseFromString(response.content)
    else:
        json_format.Parse(response.text, status)
    assert status.message, "the error says what was wrong"
    return status


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    body: bytes | Callable[[], Iterator[bytes]]
    content_type: str | None = PROTOBUF
    encoding: str | None = None
    method: str = "POST"
    path: str = "/v1/traces"
    status: int = 400
    code: int = code_pb2.INVALID_ARGUMENT
    message: str = ""


# What a method or a path the receiver does not serve is answered with.
METHOD_NOT_ALLOWED: dict[str, Any] = {"status": 405, "code": code_pb2.UNIMPLEMENTED, "message": "POST"}
NOT_FOUND: dict[str, Any] = {"status": 404, "code": code_pb2.UNIMPLEMENTED, "message": "/v1/traces"}

VALID = trace_request("never-forwarded").SerializeToString()
VALID_JSON = to_json(trace_request("never-forwarded"))
BIG = trace_request("too-big", padding=int(BODY_LIMIT_MIB * MIB) + 1000).SerializeToString()
# Small compressed bodies that expand far past the decompressed limit (valid protobuf inside).
_BOMB_PAYLOAD = trace_request("bomb", padding=4 * MIB).SerializeToString()
GZIP_BOMB = gzip.compress(_BOMB_PAYLOAD)
ZSTD_BOMB = zstandard.ZstdCompressor().compress(_BOMB_PAYLOAD)


def _chunks() -> Iterator[bytes]:
    # A body without Content-Length (chunked) that streams past the limit.
    for _ in range(30):
        yield b"\x00" * 10_000


def _invalid_json_id(field_name: str, value: str) -> bytes:
    document = json.loads(VALID_JSON)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field_name] = value
    return json.dumps(document).encode()


CASES = [
    Case("garbage-protobuf", b"garbage\xff\x00\x01", message="not a valid protobuf"),
    Case("garbage-protobuf-metrics", b"\x0a\xff\xff\xff\xff\x0f", path="/v1/metrics", message="protobuf"),
    Case("garbage-protobuf-logs", b"\xff\xff\xff", path="/v1/logs", message="protobuf"),
    Case("truncated-gzip", gzip.compress(VALID)[:-8], encoding="gzip", message="truncated"),
    Case("corrupt-gzip", b"\x1f\x8b\x08\x00garbage-not-deflate", encoding="gzip", message="gzip"),
    Case(
        "truncated-zstd",
        zstandard.ZstdCompressor().compress(VALID * 50)[:-20],
        encoding="zstd",
        message="zstd",
    ),
    Case("gzip-not-gzip", VALID, encoding="gzip", message="gzip"),
    Case(
        "oversize-body",
        BIG,
        status=413,
        code=code_pb2.RESOURCE_EXHAUSTED,
        message=f"limit of {int(BODY_LIMIT_MIB * MIB)} bytes",
    ),
    Case("oversize-chunked-body", _chunks, status=413, code=code_pb2.RESOURCE_EXHAUSTED, message="limit"),
    Case(
        "oversize-json-body",
        b" " * (int(BODY_LIMIT_MIB * MIB) + 1) + VALID_JSON,
        content_type=JSON,
        status=413,
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="limit",
    ),
    Case(
        "gzip-bomb",
        GZIP_BOMB,
        encoding="gzip",
        status=413,
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="decompressed",
    ),
    Case(
        "zstd-bomb",
        ZSTD_BOMB,
        encoding="zstd",
        status=413,
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="decompressed",
    ),
    Case(
        "gzip-bomb-json",
        gzip.compress(b" " * (10 * MIB) + VALID_JSON),
        content_type=JSON,
        encoding="gzip",
        status=413,
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="decompressed",
    ),
    Case("wrong-content-type", VALID, content_type="text/plain", status=415, message="Content-Type"),
    Case("no-content-type", VALID, content_type=None, status=415, message="Content-Type"),
    Case("grpc-content-type", VALID, content_type="application/grpc", status=415, message="Content-Type"),
    Case("unsupported-encoding", VALID, encoding="br", status=415, message="Content-Encoding"),
    Case("invalid-json", b'{"resourceSpans": [', content_type=JSON, message="not valid JSON"),
    Case("json-not-an-object", b"[1, 2]", content_type=JSON, message="JSON object"),
    Case("json-wrong-shape", b'{"resourceSpans": "nope"}', content_type=JSON, message="OTLP/JSON"),
    Case("json-not-utf8", b'{"resourceSpans": "\xff\xfe"}', content_type=JSON, message="JSON"),
    Case(
        "json-invalid-hex-trace-id",
        _invalid_json_id("traceId", "zz8efff798038103d269b633813fc60c"),
        content_type=JSON,
        message="resourceSpans[0].scopeSpans[0].spans[0].traceId",
    ),
    Case(
        "json-short-span-id",
        _invalid_json_id("spanId", "eee19b7e"),
        content_type=JSON,
        message="resourceSpans[0].scopeSpans[0].spans[0].spanId",
    ),
    Case(
        "json-base64-trace-id",
        _invalid_json_id("traceId", "W47/95gDgQPSabYzgT/GDA=="),
        content_type=JSON,
        message="resourceSpans[0].scopeSpans[0].spans[0].traceId",
    ),
    Case("empty-protobuf-body", b"", message="empty"),
    Case("empty-json-body", b"", content_type=JSON, message="empty"),
    Case("wrong-method-get", b"", method="GET", **METHOD_NOT_ALLOWED),
    Case("wrong-method-put", VALID, method="PUT", **METHOD_NOT_ALLOWED),
    Case(
        "wrong-method-json",
        VALID_JSON,
        content_type=JSON,
        method="PATCH",
        path="/v1/logs",
        **METHOD_NOT_ALLOWED,
    ),
    Case("unknown-path", VALID, path="/v1/profiles", **NOT_FOUND),
    Case("unknown-path-root", VALID, path="/", **NOT_FOUND),
    Case("unknown-path-json", VALID_JSON, content_type=JSON, path="/v1/traces/extra", **NOT_FOUND),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_bad_request(agent: AgentProcess, serving: Serving, case: Case) -> None:
    headers = {}
    if case.content_type is not None:
        headers["content-type"] = case.content_type
    if case.encoding is not None:
        headers["content-encoding"] = case.encoding
    body = case.body() if callable(case.body) else case.body
    before = serving.mark()
    # One client: after the error, the same kept-alive connection must still serve requests.
    with httpx.Client(timeout=30) as client:
        response = client.request(case.method, agent.http_url + case.path, content=body, headers=headers)

        assert response.status_code == case.status, response.content
        status = error_status(response, case.content_type)
        assert status.code == case.code
        assert case.message in status.message
        if case.status == 405:
            assert response.headers["allow"] == "POST"
        serving.check(before, client)


def test_content_type_parameters_are_accepted(agent: AgentProcess, module_sink: OtlpSink) -> None:
    before = module_sink.items(Signal.TRACES)
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=VALID_JSON,
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == JSON
    assert response.json() == {}
    module_sink.wait_for_items(Signal.TRACES, before + 1)


# --- gRPC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", list(Signal))
def test_grpc_garbage_is_invalid_argument(agent: AgentProcess, serving: Serving, signal: Signal) -> None:
    before = serving.mark()
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        export = channel.unary_unary(SPECS[signal].grpc_method)
        with pytest.raises(grpc.RpcError) as raised:
            export(b"garbage\xff\x00\x01", timeout=10)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf" in raised.value.details()
    serving.check(before)


@pytest.mark.parametrize(
    "compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip], ids=["plain", "gzip"]
)
def test_grpc_oversize_is_resource_exhausted(
    agent: AgentProcess, serving: Serving, compression: grpc.Compression
) -> None:
    # Gzip shrinks this to a few KiB: the limit applies to the decompressed message.
    message = trace_request("too-big", padding=int(GRPC_LIMIT_MIB * MIB) * 4).SerializeToString()
    before = serving.mark()
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        export = channel.unary_unary(SPECS[Signal.TRACES].grpc_method)
        with pytest.raises(grpc.RpcError) as raised:
            export(message, timeout=10, compression=compression)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    serving.check(before)


def test_grpc_unknown_method_is_unimplemented(agent: AgentProcess, serving: Serving) -> None:
    before = serving.mark()
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
        )
        with pytest.raises(grpc.RpcError) as raised:
            export(b"", timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
    serving.check(before)


def test_grpc_empty_request_is_accepted_and_not_forwarded(agent: AgentProcess, serving: Serving) -> None:
    before = serving.mark()
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        export = channel.unary_unary(SPECS[Signal.TRACES].grpc_method)
        assert export(b"", timeout=10) == b""
    serving.check(before)


# --- decompression must stay bounded in memory ----------------------------------------------


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compression_bomb_does_not_expand_in_memory(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess], encoding: str
) -> None:
    """A 128 MiB body compressed to a few hundred KiB is refused before it is held in memory.

    The agent's peak resident memory (VmHWM) may grow by a few MiB for the request, not by
    anything near the 128 MiB the body expands to.
    """
    limits = {"receivers": {"otlp": {"protocols": {"http": {"max_request_body_size_mib": 1}}}}}
    agent = start_agent(sink, overrides=deep_merge(LIMITS, limits))
    if encoding == "gzip":
        bomb = gzip.compress(b"\x00" * (16 * MIB)) * 8  # eight gzip members: 128 MiB
    else:
        bomb = zstandard.ZstdCompressor().compress(b"\x00" * (128 * MIB))  # one frame of 4 KiB
    assert len(bomb) < 1 * MIB
    peak_before = _peak_rss_kib(agent.pid)
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=bomb,
        headers={"content-type": PROTOBUF, "content-encoding": encoding},
        timeout=60,
    )
    assert response.status_code == 413
    growth_mib = (_peak_rss_kib(agent.pid) - peak_before) / 1024
    assert growth_mib < 64, (
        f"peak RSS grew by {growth_mib:.0f} MiB decoding a {len(bomb)}-byte {encoding} body"
    )


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
@pytest.mark.parametrize("order", ["small-then-large", "large-then-small"])
def test_concatenated_compressed_members_are_accepted(
    agent: AgentProcess, module_sink: OtlpSink, encoding: str, order: str
) -> None:
    """gzip members (RFC 1952) and zstd frames (RFC 8878) may be concatenated in one body.

    The decompressed parts concatenate into one request (serialized OTLP requests do). The
    large member (~6 KiB compressed, random hence incompressible padding) spans several of
    the decoder's input slices.
    """
    small = trace_request("member-small").SerializeToString()
    large_request = trace_request("member-large")
    large_request.resource_spans[0].scope_spans[0].spans[0].attributes.add(
        key="random"
    ).value.string_value = os.urandom(4000).hex()
    large = large_request.SerializeToString()
    parts = [small, large] if order == "small-then-large" else [large, small]

    def compress(part: bytes) -> bytes:
        return gzip.compress(part) if encoding == "gzip" else zstandard.ZstdCompressor().compress(part)

    body = b"".join(compress(part) for part in parts)
    assert len(body) < BODY_LIMIT_MIB * MIB
    before = module_sink.items(Signal.TRACES)
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=body,
        headers={"content-type": PROTOBUF, "content-encoding": encoding},
    )
    assert response.status_code == 200, status_pb2.Status.FromString(response.content).message
    received = module_sink.wait_for_items(Signal.TRACES, before + 2)
    names = {
        span.name
        for r in received
        for rs in r.request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }
    assert {"member-small", "member-large"} <= names


def test_deflate_zlib_stream_is_not_taken_for_gzip(agent: AgentProcess, serving: Serving) -> None:
    before = serving.mark()
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=zlib.compress(VALID),
        headers={"content-type": PROTOBUF, "content-encoding": "gzip"},
    )
    assert response.status_code == 400
    assert error_status(response, PROTOBUF).code == code_pb2.INVALID_ARGUMENT
    serving.check(before)
