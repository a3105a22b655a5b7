"""Zipkin v2 spans (JSON or protobuf) → one OTLP ``ExportTraceServiceRequest``.

The OpenTelemetry specification's Zipkin mapping (``trace/sdk_exporters/zipkin.md``), inverted::

    Zipkin                          OTLP
    traceId (16 or 32 hex / 8 or 16 bytes)  trace_id, a 64-bit id padded with zeros in front
    id, parentId                    span_id, parent_span_id
    name                            name
    kind CLIENT/SERVER/PRODUCER/CONSUMER    the same kind; absent → INTERNAL
    timestamp, duration (µs)        start_time_unix_nano, end = start + duration (ns)
    localEndpoint.serviceName       resource service.name (one resource per service)
    localEndpoint ipv4|ipv6, port   network.local.address, network.local.port
    remoteEndpoint.serviceName      peer.service (unless a peer.service tag is sent)
    remoteEndpoint ipv4|ipv6, port  network.peer.address, network.peer.port
    tags                            string attributes, except:
      otel.status_code OK|ERROR     status code
      error                         status ERROR, its value the message ("false": no error)
      otel.status_description       status message
      otel.scope.name / .version    the instrumentation scope (otel.library.* too)
    annotations                     events: time, and a name; a value `name: {json}` (or
                                    `"name": {json}`) as the exporter writes an event with
                                    attributes gives the name and those attributes
    shared                          attribute zipkin.shared = true (the server half of a span
                                    whose id the client made; both halves keep the id)
    debug                           not kept

A span that names no trace id or id, or whose ids are not hex of the right length, makes the
request MalformedData (400), naming the span's index.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_common.errors import MalformedData
from orasi_common.receivers.zipkin.proto.zipkin_v2_pb2 import Endpoint, ListOfSpans

_KINDS = {
    "CLIENT": trace_pb2.Span.SPAN_KIND_CLIENT,
    "SERVER": trace_pb2.Span.SPAN_KIND_SERVER,
    "PRODUCER": trace_pb2.Span.SPAN_KIND_PRODUCER,
    "CONSUMER": trace_pb2.Span.SPAN_KIND_CONSUMER,
}
_PROTO_KINDS = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}
_STATUS = {"OK": trace_pb2.Status.STATUS_CODE_OK, "ERROR": trace_pb2.Status.STATUS_CODE_ERROR}
_SCOPE_NAME = ("otel.scope.name", "otel.library.name")
_SCOPE_VERSION = ("otel.scope.version", "otel.library.version")
_CONSUMED = frozenset(("otel.status_code", "otel.status_description", "error", *_SCOPE_NAME, *_SCOPE_VERSION))
_EVENT = re.compile(r'^"?(?P<name>[^"]*?)"?: (?P<attributes>\{.*\})$', re.DOTALL)


@dataclass(slots=True)
class _Endpoint:
    service: str = ""
    address: str = ""
    port: int = 0


@dataclass(slots=True)
class _Span:
    """One Zipkin span, whichever encoding it came in."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    kind: str
    name: str
    timestamp_us: int
    duration_us: int
    local: _Endpoint
    remote: _Endpoint
    annotations: list[tuple[int, str]]
    tags: dict[str, str]
    shared: bool


@dataclass(slots=True)
class Translation:
    request: ExportTraceServiceRequest
    spans: int


def _hex_id(value: Any, lengths: tuple[int, ...], what: str, index: int) -> bytes:
    if not isinstance(value, str) or len(value) not in lengths:
        raise MalformedData(
            f"span {index}: {what} {value!r} is not {' or '.join(map(str, lengths))} hex digits"
        )
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedData(f"span {index}: {what} {value!r} is not hex") from None
    return raw


def _pad_trace_id(raw: bytes) -> bytes:
    return raw.rjust(16, b"\x00")


def _json_endpoint(value: Any) -> _Endpoint:
    if not isinstance(value, Mapping):
        return _Endpoint()
    port = value.get("port")
    return _Endpoint(
        str(value.get("serviceName") or ""),
        str(value.get("ipv6") or value.get("ipv4") or ""),
        port if isinstance(port, int) and not isinstance(port, bool) else 0,
    )


def _proto_endpoint(endpoint: Endpoint) -> _Endpoint:
    address = ""
    if len(endpoint.ipv6) == 16:
        address = str(ipaddress.IPv6Address(endpoint.ipv6))
    elif len(endpoint.ipv4) == 4:
        address = str(ipaddress.IPv4Address(endpoint.ipv4))
    return _Endpoint(endpoint.service_name, address, endpoint.port)


def _int(value: Any, what: str, index: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedData(f"span {index}: {what} {value!r} is not a non-negative whole number of µs")
    return value


def spans_from_json(body: bytes) -> list[_Span]:
    """The spans of a Zipkin v2 JSON body (a list of span objects)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedData(f"the body is not JSON: {error}") from None
    if not isinstance(document, list):
        raise MalformedData("a Zipkin v2 JSON body is a list of spans")
    spans = []
    for index, item in enumerate(document):
        if not isinstance(item, Mapping):
            raise MalformedData(f"span {index} is not a JSON object")
        parent = item.get("parentId")
        tags = item.get("tags") or {}
        annotations = item.get("annotations") or []
        if not isinstance(tags, Mapping) or not isinstance(annotations, list):
            raise MalformedData(f"span {index}: tags must be an object and annotations a list")
        spans.append(
            _Span(
                _pad_trace_id(_hex_id(item.get("traceId"), (16, 32), "traceId", index)),
                _hex_id(item.get("id"), (16,), "id", index),
                _hex_id(parent, (16,), "parentId", index) if parent else b"",
                str(item.get("kind") or "").upper(),
                str(item.get("name") or ""),
                _int(item.get("timestamp"), "timestamp", index),
                _int(item.get("duration"), "duration", index),
                _json_endpoint(item.get("localEndpoint")),
                _json_endpoint(item.get("remoteEndpoint")),
                [
                    (_int(a.get("timestamp"), "annotation timestamp", index), str(a.get("value", "")))
                    for a in annotations
                    if isinstance(a, Mapping)
                ],
                {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()},
                item.get("shared") is True,
            )
        )
    return spans


def spans_from_proto(body: bytes) -> list[_Span]:
    """The spans of a Zipkin v2 protobuf body (a ListOfSpans)."""
    try:
        message = ListOfSpans.FromString(body)
    except Exception as error:  # protobuf's DecodeError, or a bad UTF-8 string
        raise MalformedData(f"the body is not a Zipkin ListOfSpans: {error}") from None
    spans = []
    for index, span in enumerate(message.spans):
        if len(span.trace_id) not in (8, 16) or len(span.id) != 8 or len(span.parent_id) not in (0, 8):
            raise MalformedData(f"span {index}: trace_id is 8 or 16 bytes, id and parent_id 8")
        spans.append(
            _Span(
                _pad_trace_id(span.trace_id),
                span.id,
                span.parent_id,
                _PROTO_KINDS.get(span.kind, ""),
                span.name,
                span.timestamp,
                span.duration,
                _proto_endpoint(span.local_endpoint),
                _proto_endpoint(span.remote_endpoint),
                [(a.timestamp, a.value) for a in span.annotations],
                dict(span.tags),
                span.shared,
            )
        )
    return spans


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=json.dumps(value)))


def _event(timestamp_us: int, value: str) -> trace_pb2.Span.Event:
    event = trace_pb2.Span.Event(time_unix_nano=timestamp_us * 1000, name=value)
    match = _EVENT.match(value)
    if match:
        try:
            attributes = json.loads(match["attributes"])
        except ValueError:
            return event
        if isinstance(attributes, dict):
            event.name = match["name"]
            event.attributes.extend(_kv(str(k), v) for k, v in attributes.items())
    return event


def _endpoint_attributes(endpoint: _Endpoint, side: str) -> Iterable[KeyValue]:
    if endpoint.address:
        yield _kv(f"network.{side}.address", endpoint.address)
    if endpoint.port:
        yield _kv(f"network.{side}.port", endpoint.port)


def translate(spans: list[_Span]) -> Translation:
    """The OTLP request of ``spans``, one resource per local service, one scope per tagged scope."""
    groups: dict[tuple[str, str, str], list[trace_pb2.Span]] = {}
    for zipkin in spans:
        tags = zipkin.tags
        out = trace_pb2.Span(
            trace_id=zipkin.trace_id,
            span_id=zipkin.span_id,
            parent_span_id=zipkin.parent_id,
            name=zipkin.name,
            kind=_KINDS.get(zipkin.kind, trace_pb2.Span.SPAN_KIND_INTERNAL),
            start_time_unix_nano=zipkin.timestamp_us * 1000,
            end_time_unix_nano=(zipkin.timestamp_us + zipkin.duration_us) * 1000,
        )
        attributes = [_kv(k, v) for k, v in tags.items() if k not in _CONSUMED]
        if zipkin.remote.service and "peer.service" not in tags:
            attributes.append(_kv("peer.service", zipkin.remote.service))
        attributes.extend(_endpoint_attributes(zipkin.local, "local"))
        attributes.extend(_endpoint_attributes(zipkin.remote, "peer"))
        if zipkin.shared:
            attributes.append(_kv("zipkin.shared", True))
        out.attributes.extend(attributes)
        out.events.extend(_event(t, value) for t, value in zipkin.annotations)
        _status(out.status, tags)
        scope_name = next((tags[k] for k in _SCOPE_NAME if k in tags), "")
        scope_version = next((tags[k] for k in _SCOPE_VERSION if k in tags), "")
        groups.setdefault((zipkin.local.service, scope_name, scope_version), []).append(out)
    request = ExportTraceServiceRequest()
    resources: dict[str, trace_pb2.ResourceSpans] = {}
    for (service, scope_name, scope_version), grouped in groups.items():
        resource_spans = resources.get(service)
        if resource_spans is None:
            resource_spans = resources[service] = request.resource_spans.add()
            if service:
                resource_spans.resource.attributes.append(_kv("service.name", service))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = scope_name
        scope_spans.scope.version = scope_version
        scope_spans.spans.extend(grouped)
    return Translation(request, len(spans))


def _status(status: trace_pb2.Status, tags: Mapping[str, str]) -> None:
    code = _STATUS.get(tags.get("otel.status_code", "").upper())
    error = tags.get("error")
    if error is not None and error.lower() != "false":
        code = trace_pb2.Status.STATUS_CODE_ERROR
        if error.lower() != "true":
            status.message = error
    if code is not None:
        status.code = code
    if "otel.status_description" in tags and not status.message:
        status.message = tags["otel.status_description"]
