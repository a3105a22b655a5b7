"""The Zipkin mapping (expected spans written by hand from the module's table), both encodings,
and the endpoint's status codes with a real HTTP client."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_common.errors import MalformedData
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import zipkin
from orasi_common.receivers.zipkin.proto.zipkin_v2_pb2 import ListOfSpans
from orasi_common.receivers.zipkin.translate import spans_from_json, spans_from_proto, translate
from orasi_common.telemetry.metrics import Metrics

from ...doubles import RecordingConsumer, make_settings

CLIENT = {
    "traceId": "463ac35c9f6413ad",
    "id": "a2fb4a1d1a96d312",
    "parentId": "0020000000000001",
    "kind": "CLIENT",
    "name": "get /users",
    "timestamp": 1_700_000_000_000_001,
    "duration": 1500,
    "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
    "remoteEndpoint": {"serviceName": "users", "ipv6": "::1", "port": 9000},
    "annotations": [
        {"timestamp": 1_700_000_000_000_100, "value": "ws"},
        {"timestamp": 1_700_000_000_000_200, "value": 'retry: {"attempt": 2, "why": "timeout"}'},
    ],
    "tags": {
        "http.method": "GET",
        "error": "connection refused",
        "otel.scope.name": "my.lib",
        "otel.scope.version": "1.2",
    },
}
SERVER = {
    "traceId": "463ac35c9f6413ad48485a3953bb6124",
    "id": "a2fb4a1d1a96d312",
    "kind": "SERVER",
    "name": "get /users",
    "timestamp": 1_700_000_000_000_050,
    "duration": 1000,
    "localEndpoint": {"serviceName": "users"},
    "tags": {"otel.status_code": "OK", "peer.service": "explicit"},
    "shared": True,
}


def attributes(items: Any) -> dict[str, Any]:
    out = {}
    for kv in items:
        field = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, field)
    return out


def by_service(request: Any) -> dict[str, tuple[Any, Any]]:
    out = {}
    for rs in request.resource_spans:
        service = attributes(rs.resource.attributes)["service.name"]
        for ss in rs.scope_spans:
            for span in ss.spans:
                out[service] = (ss.scope, span)
    return out


def check(request: Any) -> None:
    found = by_service(request)
    scope, client = found["frontend"]
    assert (scope.name, scope.version) == ("my.lib", "1.2")
    assert client.trace_id.hex() == "0000000000000000463ac35c9f6413ad"
    assert (client.span_id.hex(), client.parent_span_id.hex()) == ("a2fb4a1d1a96d312", "0020000000000001")
    assert client.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert client.start_time_unix_nano == 1_700_000_000_000_001_000
    assert client.end_time_unix_nano == client.start_time_unix_nano + 1_500_000
    assert attributes(client.attributes) == {
        "http.method": "GET",
        "peer.service": "users",
        "network.local.address": "10.0.0.1",
        "network.local.port": 8080,
        "network.peer.address": "::1",
        "network.peer.port": 9000,
    }
    assert (client.status.code, client.status.message) == (
        trace_pb2.Status.STATUS_CODE_ERROR,
        "connection refused",
    )
    plain, retry = client.events
    assert (plain.name, plain.time_unix_nano) == ("ws", 1_700_000_000_000_100_000)
    assert (retry.name, attributes(retry.attributes)) == ("retry", {"attempt": 2, "why": "timeout"})
    _, server = found["users"]
    assert server.trace_id.hex() == "463ac35c9f6413ad48485a3953bb6124"
    assert server.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert server.status.code == trace_pb2.Status.STATUS_CODE_OK
    assert attributes(server.attributes) == {"peer.service": "explicit", "zipkin.shared": True}


def to_proto(spans: list[dict[str, Any]]) -> bytes:
    message = ListOfSpans()
    for item in spans:
        span = message.spans.add(
            trace_id=bytes.fromhex(item["traceId"]),
            id=bytes.fromhex(item["id"]),
            parent_id=bytes.fromhex(item.get("parentId", "")),
            kind=item["kind"],
            name=item["name"],
            timestamp=item["timestamp"],
            duration=item["duration"],
            shared=item.get("shared", False),
        )
        local, remote = item.get("localEndpoint", {}), item.get("remoteEndpoint")
        span.local_endpoint.service_name = local.get("serviceName", "")
        if "ipv4" in local:
            span.local_endpoint.ipv4 = bytes(map(int, local["ipv4"].split(".")))
            span.local_endpoint.port = local["port"]
        if remote:
            span.remote_endpoint.service_name = remote["serviceName"]
            span.remote_endpoint.ipv6 = b"\x00" * 15 + b"\x01"
            span.remote_endpoint.port = remote["port"]
        for a in item.get("annotations", []):
            span.annotations.add(timestamp=a["timestamp"], value=a["value"])
        span.tags.update(item["tags"])
    return message.SerializeToString()


def test_json_mapping() -> None:
    check(translate(spans_from_json(json.dumps([CLIENT, SERVER]).encode())).request)


def test_protobuf_mapping() -> None:
    check(translate(spans_from_proto(to_proto([CLIENT, SERVER]))).request)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"traceId": "1"}',
        json.dumps([{**SERVER, "traceId": "abc"}]).encode(),
        json.dumps([{**SERVER, "id": "zz" * 8}]).encode(),
        json.dumps([{**SERVER, "timestamp": -5}]).encode(),
    ],
)
def test_bad_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedData):
        spans_from_json(body)


def test_bad_protobuf_is_malformed() -> None:
    with pytest.raises(MalformedData):
        spans_from_proto(b"\x0a\x05\x0a\x01")
    with pytest.raises(MalformedData, match="8 or 16 bytes"):
        spans_from_proto(ListOfSpans(spans=[{"trace_id": b"123", "id": b"12345678"}]).SerializeToString())


async def test_endpoint_status_codes(metrics: Metrics) -> None:
    consumer = RecordingConsumer()
    config = zipkin.Config.model_validate({"endpoint": "127.0.0.1:0", "max_decompressed_body_size_mib": 0.01})
    receiver = zipkin.FACTORY.create(
        make_settings("zipkin", Kind.RECEIVER, metrics), config, {Signal.TRACES: consumer}
    )
    await receiver.start()
    url = f"http://127.0.0.1:{receiver.port}/api/v2/spans"
    body = json.dumps([CLIENT, SERVER]).encode()
    try:
        async with httpx.AsyncClient() as client:
            ok = await client.post(url, content=body, headers={"content-type": "application/json"})
            assert ok.status_code == 202
            zipped = gzip.compress(to_proto([CLIENT]))
            headers = {"content-type": "application/x-protobuf", "content-encoding": "gzip"}
            assert (await client.post(url, content=zipped, headers=headers)).status_code == 202
            assert [b.items for b in consumer.batches] == [2, 1]
            bad = await client.post(url, content=b"[1]", headers={"content-type": "application/json"})
            assert bad.status_code == 400
            assert "span 0" in bad.text
            thrift = await client.post(url, content=body, headers={"content-type": "application/x-thrift"})
            assert thrift.status_code == 415
            bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
            assert (await client.post(url, content=bomb, headers=headers)).status_code == 413
            assert (await client.post(f"http://127.0.0.1:{receiver.port}/api/v1/spans")).status_code == 404
            assert (await client.post(url, content=body)).status_code == 202  # still serving
    finally:
        await receiver.shutdown()
