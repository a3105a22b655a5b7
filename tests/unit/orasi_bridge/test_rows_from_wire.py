"""Lake rows straight from serialized OTLP equal the per-object conversion they replaced.

`reference_spans`/`reference_logs` are the previous implementation (f89474c^:
orasi_bridge/lake/rows.py), shortened: they walk the upb-parsed request. Generated requests must
give exactly equal record batches, and so must re-encodings of them that upb reads the same way
(fields out of order, a singular message split into several occurrences, a scalar written
twice, unknown fields and groups).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from orasi_bridge.lake import schema
from orasi_bridge.lake.rows import otlp as rows
from orasi_common.errors import MalformedData
from orasi_common.pdata.canonical import body_text, canonical

# --- the reference: the per-object conversion ------------------------------------------------

_KIND = {v: k.removeprefix("SPAN_KIND_") for k, v in Span.SpanKind.items()}
_STATUS = {v: k.removeprefix("STATUS_CODE_") for k, v in Status.StatusCode.items()}


def _hex(value: bytes) -> str | None:
    return value.hex() if value else None


def as_pairs(attributes: Sequence[KeyValue]) -> list[tuple[str, str | None]]:
    """KeyValues as (key, canonical value) pairs; a repeated key keeps its last value."""
    return list({kv.key: canonical(kv.value) for kv in attributes}.items())


def value_type(value: AnyValue) -> str:
    """The OTLP type name of a value (`string`, `int`, `double`, `bool`, `bytes`, `array`, `map`)."""
    kind = value.WhichOneof("value")
    return {
        "string_value": "string",
        "int_value": "int",
        "double_value": "double",
        "bool_value": "bool",
        "bytes_value": "bytes",
        "array_value": "array",
        "kvlist_value": "map",
    }.get(kind or "", "empty")


def _service(resource: Resource) -> tuple[list[tuple[str, str | None]], str]:
    pairs = as_pairs(resource.attributes)
    return pairs, next((v for k, v in pairs if k == "service.name" and v), None) or "unknown_service"


def _time(nanos: Sequence[int]) -> pa.Array:
    return pc.divide(pa.array(nanos, pa.int64()), 1000).cast(pa.int64()).cast(schema.TIME)


def _batch(
    table: pa.Schema, c: dict[str, list[Any]], times: list[int], tenant: str, region: str
) -> pa.RecordBatch:
    c["tenant"] = [tenant] * len(times)
    # produced in: the resource's last cloud.region, else the lake's region
    c["region"] = [
        next((v for k, v in reversed(p) if k == "cloud.region"), region) for p in c["resource_attributes"]
    ]
    c["lake_region"] = [region] * len(times)
    c["schema_violations"] = [None] * len(times)  # only validation fills it
    arrays = [_time(times) if f.name == "time" else pa.array(c[f.name], f.type) for f in table]
    return pa.RecordBatch.from_arrays(arrays, schema=table)


def _items(c: dict[str, list[Any]], resources: Iterable[Any], scopes: str, items: str) -> Iterator[Any]:
    """Each item (span or log record) of a request, after appending its resource and scope columns."""
    for resource in resources:
        pairs, service = _service(resource.resource)
        for scope in getattr(resource, scopes):
            for item in getattr(scope, items):
                c["service_name"].append(service)
                c["scope_name"].append(scope.scope.name or None)
                c["scope_version"].append(scope.scope.version or None)
                c["resource_attributes"].append(pairs)
                yield item


def reference_spans(request: ExportTraceServiceRequest, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.SPANS.names}
    for s in _items(c, request.resource_spans, "scope_spans", "spans"):
        c["name"].append(s.name)
        c["kind"].append(_KIND.get(s.kind) or str(s.kind))
        c["trace_id"].append(_hex(s.trace_id))
        c["span_id"].append(_hex(s.span_id))
        c["parent_span_id"].append(_hex(s.parent_span_id))
        c["trace_state"].append(s.trace_state or None)
        c["flags"].append(s.flags)
        c["start_time_unix_nano"].append(s.start_time_unix_nano)
        c["end_time_unix_nano"].append(s.end_time_unix_nano)
        c["duration_ns"].append(s.end_time_unix_nano - s.start_time_unix_nano)
        c["status_code"].append(_STATUS.get(s.status.code) or str(s.status.code))
        c["status_message"].append(s.status.message or None)
        c["dropped_attributes_count"].append(s.dropped_attributes_count)
        c["attributes"].append(as_pairs(s.attributes))
        c["events"].append(
            [
                {
                    "time_unix_nano": e.time_unix_nano,
                    "name": e.name,
                    "attributes": as_pairs(e.attributes),
                    "dropped_attributes_count": e.dropped_attributes_count,
                }
                for e in s.events
            ]
        )
        c["links"].append(
            [
                {
                    "trace_id": _hex(link.trace_id),
                    "span_id": _hex(link.span_id),
                    "trace_state": link.trace_state or None,
                    "attributes": as_pairs(link.attributes),
                    "flags": link.flags,
                }
                for link in s.links
            ]
        )
    return _batch(schema.SPANS, c, c["start_time_unix_nano"], tenant, region)


def reference_logs(request: ExportLogsServiceRequest, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.LOGS.names}
    times: list[int] = []
    for r in _items(c, request.resource_logs, "scope_logs", "log_records"):
        c["time_unix_nano"].append(r.time_unix_nano or None)
        c["observed_time_unix_nano"].append(r.observed_time_unix_nano or None)
        times.append(r.time_unix_nano or r.observed_time_unix_nano)
        c["severity_number"].append(r.severity_number)
        c["severity_text"].append(r.severity_text or None)
        c["event_name"].append(r.event_name or None)
        c["body"].append(body_text(r.body))
        c["body_type"].append(value_type(r.body))
        c["trace_id"].append(_hex(r.trace_id))
        c["span_id"].append(_hex(r.span_id))
        c["flags"].append(r.flags)
        c["attributes"].append(as_pairs(r.attributes))
    return _batch(schema.LOGS, c, times, tenant, region)


def assert_same(actual: pa.RecordBatch, expected: pa.RecordBatch) -> None:
    assert actual.schema == expected.schema
    for name in expected.schema.names:
        assert actual.column(name).equals(expected.column(name)), (
            name,
            actual.column(name).to_pylist(),
            expected.column(name).to_pylist(),
        )
    assert actual.equals(expected)


def check_spans(data: bytes) -> None:
    expected = reference_spans(ExportTraceServiceRequest.FromString(data), "acme", "eu-1")
    assert_same(rows.spans_batch(data, "acme", "eu-1"), expected)


def check_logs(data: bytes) -> None:
    expected = reference_logs(ExportLogsServiceRequest.FromString(data), "acme", "eu-1")
    assert_same(rows.logs_batch(data, "acme", "eu-1"), expected)


# --- generated requests -----------------------------------------------------------------------

KEYS = st.one_of(st.sampled_from(["service.name", "k", "k2", "", "ключ", "a.b"]), st.text(max_size=6))
INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1]), st.integers(-(2**63), 2**63 - 1)
)
DOUBLE = st.one_of(st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e300, 5e-324]), st.floats())
TIME = st.one_of(
    st.sampled_from([0, 1, 999, 1000, 1_700_000_000_123_456_789, 2**63 - 1]), st.integers(0, 2**63 - 1)
)
UINT32 = st.one_of(st.sampled_from([0, 1, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
ENUM = st.one_of(st.integers(-2, 8), st.sampled_from([-(2**31), 2**31 - 1]))
IDS = st.one_of(
    st.just(b""),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=8, max_size=8),
    st.binary(max_size=33),
)
TEXT = st.one_of(st.just(""), st.text(max_size=8))


def _any_value(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.builds(lambda v: AnyValue(array_value=ArrayValue(values=v)), st.lists(children, max_size=3)),
        st.builds(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)),
            st.lists(st.builds(_key_value, KEYS, st.none() | children), max_size=3),
        ),
    )


def _key_value(key: str, value: AnyValue | None) -> KeyValue:
    return KeyValue(key=key) if value is None else KeyValue(key=key, value=value)


SCALARS = st.one_of(
    st.just(AnyValue()),
    TEXT.map(lambda v: AnyValue(string_value=v)),
    INT64.map(lambda v: AnyValue(int_value=v)),
    DOUBLE.map(lambda v: AnyValue(double_value=v)),
    st.booleans().map(lambda v: AnyValue(bool_value=v)),
    st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
)
ANY_VALUES = st.recursive(SCALARS, _any_value, max_leaves=8)
KEY_VALUES = st.builds(_key_value, KEYS, st.none() | ANY_VALUES)
ATTRIBUTES = st.lists(KEY_VALUES, max_size=5)


def _with(message: Message, /, **fields: Any) -> Message:
    """``message`` with these fields set (None: left unset)."""
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list) or message.DESCRIPTOR.fields_by_name[name].is_repeated:
            getattr(message, name).extend(value)
        elif isinstance(value, Message):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _messages(message: type[Message], /, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Messages of this type with each field drawn from its strategy (None: left unset)."""
    return st.fixed_dictionaries(fields).map(lambda drawn: _with(message(), **drawn))


RESOURCES = _optional(_messages(Resource, attributes=ATTRIBUTES))
SCOPES = _optional(_messages(InstrumentationScope, name=TEXT, version=TEXT, attributes=ATTRIBUTES))
EVENTS = _messages(
    Span.Event, time_unix_nano=TIME, name=TEXT, attributes=ATTRIBUTES, dropped_attributes_count=UINT32
)
LINKS = _messages(Span.Link, trace_id=IDS, span_id=IDS, trace_state=TEXT, attributes=ATTRIBUTES, flags=UINT32)
STATUSES = _optional(_messages(Status, message=TEXT, code=ENUM))
ANY_SPANS = _messages(
    Span,
    trace_id=IDS,
    span_id=IDS,
    parent_span_id=IDS,
    trace_state=TEXT,
    flags=UINT32,
    name=TEXT,
    kind=ENUM,
    start_time_unix_nano=TIME,
    end_time_unix_nano=TIME,
    attributes=ATTRIBUTES,
    dropped_attributes_count=UINT32,
    events=st.lists(EVENTS, max_size=2),
    links=st.lists(LINKS, max_size=2),
    status=STATUSES,
)
ANY_LOG_RECORDS = _messages(
    LogRecord,
    time_unix_nano=TIME,
    observed_time_unix_nano=TIME,
    severity_number=ENUM,
    severity_text=TEXT,
    body=_optional(ANY_VALUES),
    attributes=ATTRIBUTES,
    dropped_attributes_count=UINT32,
    flags=UINT32,
    trace_id=IDS,
    span_id=IDS,
    event_name=TEXT,
)


def trace_requests() -> st.SearchStrategy[ExportTraceServiceRequest]:
    scope_spans = _messages(ScopeSpans, scope=SCOPES, spans=st.lists(ANY_SPANS, max_size=3))
    resource_spans = _messages(
        ResourceSpans, resource=RESOURCES, scope_spans=st.lists(scope_spans, max_size=3)
    )
    return _messages(ExportTraceServiceRequest, resource_spans=st.lists(resource_spans, max_size=3))


def logs_requests() -> st.SearchStrategy[ExportLogsServiceRequest]:
    scope_logs = _messages(ScopeLogs, scope=SCOPES, log_records=st.lists(ANY_LOG_RECORDS, max_size=3))
    resource_logs = _messages(ResourceLogs, resource=RESOURCES, scope_logs=st.lists(scope_logs, max_size=3))
    return _messages(ExportLogsServiceRequest, resource_logs=st.lists(resource_logs, max_size=3))


SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(trace_requests())
def test_spans_equal_the_per_object_conversion(request: ExportTraceServiceRequest) -> None:
    check_spans(request.SerializeToString())


@SETTINGS
@given(logs_requests())
def test_logs_equal_the_per_object_conversion(request: ExportLogsServiceRequest) -> None:
    check_logs(request.SerializeToString())


# --- re-encodings upb reads as the same request -----------------------------------------------


def _varint(value: int) -> bytes:
    value %= 2**64
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _only(message: Message, field: FieldDescriptor, value: Any) -> bytes:
    """upb's bytes for one field of ``message`` set to ``value``."""
    return _with(type(message)(), **{field.name: value}).SerializeToString()


_FIXED64 = {FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_DOUBLE}
_FIXED32 = {FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_FLOAT}
_LENGTHY = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE}


def _wire_type(field: FieldDescriptor) -> int:
    return (
        1 if field.type in _FIXED64 else 5 if field.type in _FIXED32 else 2 if field.type in _LENGTHY else 0
    )


@st.composite
def unknown_fields(draw: st.DrawFn, known: dict[int, set[int]], depth: int = 0) -> bytes:
    """An unknown field: a number the message does not define, or a known number with another
    wire type than its own (which upb keeps as unknown too), possibly a group."""
    number = draw(st.one_of(st.integers(1, 20), st.integers(1000, 2**29 - 1)))
    wire_types = [w for w in [0, 1, 2, 5] + ([3] if depth < 3 else []) if w not in known.get(number, ())]
    wire_type = draw(st.sampled_from(wire_types))
    if wire_type == 0:
        return _tag(number, 0) + _varint(draw(st.integers(0, 2**64 - 1)))
    if wire_type == 1:
        return _tag(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return _tag(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire_type == 2:
        return _len_field(number, draw(st.binary(max_size=6)))
    inner = draw(st.lists(unknown_fields({}, depth + 1), max_size=3))
    return _tag(number, 3) + b"".join(inner) + _tag(number, 4)


def _bogus(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_STRING,):
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return DOUBLE
    if kind in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_UINT64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_UINT32):
        return UINT32
    if kind == FieldDescriptor.TYPE_INT64:
        return INT64
    return ENUM


@st.composite
def reencoded(draw: st.DrawFn, message: Message) -> bytes:
    """``message`` serialized otherwise than upb would, but parsing to the same message."""
    descriptor = message.DESCRIPTOR
    # a repeated number may also come packed (LEN), which is not unknown either
    known = {f.number: {_wire_type(f), 2} if f.is_repeated else {_wire_type(f)} for f in descriptor.fields}
    chunks: list[bytes] = []
    listed = message.ListFields()
    for field, value in draw(st.permutations(listed)):
        out = b""
        oneof = field.containing_oneof
        if draw(st.booleans()):
            # an earlier value that the true one replaces: the same scalar field, or another
            # member of the field's oneof
            others = [f for f in oneof.fields if f is not field] if oneof is not None else []
            if field.type != FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
                choices = [field, *others]
            else:
                choices = others
            if choices:
                earlier = draw(st.sampled_from(choices))
                if earlier.type == FieldDescriptor.TYPE_MESSAGE:
                    out += _len_field(earlier.number, draw(st.sampled_from([b"", b"\x0a\x00"])))
                else:
                    out += _only(message, earlier, draw(_bogus(earlier)))
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                if field.is_repeated or not draw(st.booleans()):
                    out += _len_field(field.number, draw(reencoded(item)))
                    continue
                # a singular message split into occurrences that protobuf merges
                parts = item.ListFields()
                cut = draw(st.integers(0, len(parts)))
                for side in (parts[:cut], parts[cut:]):
                    piece = type(item)()
                    for f, v in side:
                        if f.type == FieldDescriptor.TYPE_MESSAGE and not f.is_repeated:
                            getattr(piece, f.name).CopyFrom(v)
                        elif f.is_repeated:
                            getattr(piece, f.name).extend(v)
                        else:
                            setattr(piece, f.name, v)
                    out += _len_field(field.number, draw(reencoded(piece)))
        else:
            out += _only(message, field, value)
        chunks.append(out)
    for _ in range(draw(st.integers(0, 2))):
        chunks.insert(draw(st.integers(0, len(chunks))), draw(unknown_fields(known)))
    return b"".join(chunks)


def check_reencoded(request: Message, data: st.DataObject, check: Callable[[bytes], None]) -> None:
    """A re-encoding of ``request`` parses to it, and ``check`` holds for its bytes."""
    wire = data.draw(reencoded(request))
    parsed = type(request).FromString(wire)
    parsed.DiscardUnknownFields()
    assert parsed == request, "the re-encoding must parse to the generated request"
    check(wire)


REENCODED = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@REENCODED
@given(trace_requests(), st.data())
def test_spans_of_reencoded_requests(request: ExportTraceServiceRequest, data: st.DataObject) -> None:
    check_reencoded(request, data, check_spans)


@REENCODED
@given(logs_requests(), st.data())
def test_logs_of_reencoded_requests(request: ExportLogsServiceRequest, data: st.DataObject) -> None:
    check_reencoded(request, data, check_logs)


# --- explicit cases -------------------------------------------------------------------------


def _trace(*spans_: Span, resource: Resource | None = None) -> bytes:
    return _with(
        ExportTraceServiceRequest(),
        resource_spans=[
            _with(ResourceSpans(), resource=resource, scope_spans=[ScopeSpans(spans=list(spans_))])
        ],
    ).SerializeToString()


def _span_request(span_bytes: bytes, resource_bytes: bytes = b"") -> bytes:
    """A request of one resource (these bytes, if any) and one scope holding this span."""
    resource = _len_field(1, resource_bytes) if resource_bytes else b""
    return _len_field(1, resource + _len_field(2, _len_field(2, span_bytes)))


def _log_request(record_bytes: bytes) -> bytes:
    return _len_field(1, _len_field(2, _len_field(2, record_bytes)))


def _kv(key: str, value: AnyValue | None = None) -> KeyValue:
    return _key_value(key, value)


def test_requests_without_spans_or_attributes() -> None:
    check_spans(b"")
    check_spans(ExportTraceServiceRequest(resource_spans=[ResourceSpans()]).SerializeToString())
    check_spans(_trace(Span(name="a")))  # no resource at all
    check_spans(_trace(Span(name="a"), resource=Resource()))  # a resource without attributes
    check_logs(_log_request(b""))


@pytest.mark.parametrize(
    "attributes",
    [
        [],
        [_kv("service.name")],
        [_kv("service.name", AnyValue(string_value=""))],
        [_kv("service.name", AnyValue(int_value=7))],
        [_kv("service.name", AnyValue(string_value="a")), _kv("service.name", AnyValue(string_value="b"))],
        [_kv("service.name", AnyValue(string_value="a")), _kv("service.name", AnyValue(string_value=""))],
        [
            _kv("service.name", AnyValue(string_value="a")),
            _kv("x"),
            _kv("service.name", AnyValue(bool_value=False)),
        ],
        [_kv("service.name", AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="s")])))],
    ],
)
def test_service_names(attributes: list[KeyValue]) -> None:
    check_spans(_trace(Span(name="a"), Span(name="b"), resource=Resource(attributes=attributes)))


def test_a_status_written_twice_merges() -> None:
    span = _len_field(5, b"s") + _len_field(15, b"\x12\x02m1\x18\x02") + _len_field(15, b"\x18\x01")
    check_spans(_span_request(span))
    check_spans(_span_request(_len_field(15, b"\x18\x09") + _len_field(15, b"\x12\x00")))


def test_a_body_written_twice_merges() -> None:
    kv = _with(KeyValueList(), values=[_kv("a", AnyValue(int_value=1))]).SerializeToString()
    kv2 = _with(KeyValueList(), values=[_kv("b", AnyValue(double_value=-0.0))]).SerializeToString()
    check_logs(_log_request(_len_field(5, _len_field(6, kv)) + _len_field(5, _len_field(6, kv2))))
    check_logs(_log_request(_len_field(5, _len_field(6, kv)) + _len_field(5, _len_field(1, b"x"))))
    check_logs(_log_request(_len_field(5, _len_field(1, b"x")) + _len_field(5, b"\x18\x05")))
    check_logs(_log_request(_len_field(5, b"") + _len_field(2, b"warn")))


def test_a_resource_written_twice_merges() -> None:
    first = Resource(attributes=[_kv("service.name", AnyValue(string_value="a"))]).SerializeToString()
    second = Resource(attributes=[_kv("k", AnyValue(string_value="b"))]).SerializeToString()
    resource_spans = _len_field(1, first) + _len_field(2, _len_field(2, b"")) + _len_field(1, second)
    check_spans(_len_field(1, resource_spans))


def test_an_attribute_value_written_twice_merges() -> None:
    one = _len_field(5, _len_field(1, AnyValue(string_value="x").SerializeToString()))  # array_value [x]
    two = _len_field(5, _len_field(1, AnyValue(int_value=2).SerializeToString()))  # array_value [2]
    kv = _len_field(1, b"k") + _len_field(2, one) + _len_field(2, two)
    check_spans(_span_request(_len_field(9, kv)))
    kv = _len_field(2, b"\x08\x05") + _len_field(1, b"k") + _len_field(2, b"\x0a\x01y")  # int then string
    check_spans(_span_request(_len_field(9, kv)))


def test_scalars_written_twice_keep_the_last() -> None:
    span = _len_field(5, b"first") + b"\x30\x02" + _len_field(5, b"second") + b"\x30\x03"
    span += b"\x39" + (5).to_bytes(8, "little") + b"\x39" + (9000).to_bytes(8, "little")
    check_spans(_span_request(span))


def test_a_uint32_written_as_a_wider_varint_is_truncated_as_upb_does() -> None:
    """upb keeps the low 32 bits of an over-long uint32 varint (dropped_attributes_count)."""
    check_spans(_span_request(b"\x50" + _varint(2**32 + 7)))
    event = _len_field(2, b"e") + b"\x20" + _varint(2**40 + 3)
    check_spans(_span_request(_len_field(11, event)))
    check_logs(_log_request(b"\x10" + _varint(2**32 + 9)))  # severity_number: an int32 enum


def test_fields_out_of_order_with_unknown_fields_and_groups() -> None:
    group = _tag(20, 3) + b"\x08\x01" + _tag(21, 3) + _tag(21, 4) + _tag(20, 4)
    span = (
        _len_field(15, b"\x18\x02")
        + group
        + b"\x28\x01"  # field 5 (name) as a varint: unknown, the name stays empty
        + _len_field(2, b"\x01\x02")
        + _len_field(9, _len_field(1, b"k") + group + _len_field(2, b"\x0a\x01v"))
        + _len_field(1, bytes(16))
        + _tag(999, 1)
        + bytes(8)
    )
    check_spans(_span_request(span, group + Resource().SerializeToString()))
    record = b"\x10\x11" + group + _len_field(5, group + b"\x0a\x01b") + b"\x09" + bytes(8)
    check_logs(_log_request(record))


def test_log_time_falls_back_to_observed_time() -> None:
    batch = rows.logs_batch(
        ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    scope_logs=[
                        ScopeLogs(
                            log_records=[
                                LogRecord(observed_time_unix_nano=5_000),
                                LogRecord(time_unix_nano=7_000, observed_time_unix_nano=5_000),
                                LogRecord(),
                            ]
                        )
                    ]
                )
            ]
        ).SerializeToString(),
        "t",
        "r",
    )
    assert batch.column("time").cast(pa.int64()).to_pylist() == [5, 7, 0]
    assert batch.column("time_unix_nano").to_pylist() == [None, 7_000, None]


def test_attribute_strings() -> None:
    values = [
        AnyValue(),
        AnyValue(string_value=""),
        AnyValue(int_value=-(2**63)),
        AnyValue(double_value=-0.0),
        AnyValue(double_value=math.nan),
        AnyValue(double_value=-math.inf),
        AnyValue(bool_value=False),
        AnyValue(bytes_value=b""),
        AnyValue(array_value=ArrayValue()),
        AnyValue(kvlist_value=KeyValueList(values=[_kv("a"), _kv("b", AnyValue(bytes_value=b"\xff"))])),
    ]
    attributes = [_kv(f"k{i}", v) for i, v in enumerate(values)] + [
        _kv("none"),
        _kv("k1", AnyValue(int_value=3)),
    ]
    batch = rows.spans_batch(_trace(Span(attributes=attributes)), "t", "r")
    assert batch.column("attributes").to_pylist()[0] == [
        ("k0", None),
        ("k1", "3"),
        ("k2", "-9223372036854775808"),
        ("k3", "-0.0"),
        ("k4", "NaN"),
        ("k5", "-Infinity"),
        ("k6", "false"),
        ("k7", ""),
        ("k8", "[]"),
        ("k9", '{"a":null,"b":"/w=="}'),
        ("none", None),
    ]
    check_spans(_trace(Span(attributes=attributes)))


def test_every_body_type() -> None:
    bodies: list[AnyValue | None] = [
        None,
        AnyValue(),
        AnyValue(string_value="s"),
        AnyValue(int_value=-3),
        AnyValue(bool_value=True),
        AnyValue(double_value=1.5),
        AnyValue(bytes_value=b"\x00"),
        AnyValue(array_value=ArrayValue(values=[AnyValue(), AnyValue(double_value=math.inf)])),
        AnyValue(kvlist_value=KeyValueList(values=[_kv("k", AnyValue(string_value="v"))])),
    ]
    records = [_with(LogRecord(), body=b, time_unix_nano=1) for b in bodies]
    data = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    ).SerializeToString()
    batch = rows.logs_batch(data, "t", "r")
    assert batch.column("body_type").to_pylist() == [
        "empty", "empty", "string", "int", "bool", "double", "bytes", "array", "map",
    ]  # fmt: skip
    assert batch.column("body").to_pylist() == [
        None, None, "s", "-3", "true", "1.5", '"AA=="', '[null,"Infinity"]', '{"k":"v"}',
    ]  # fmt: skip
    check_logs(data)


SPANS = (ExportTraceServiceRequest, rows.spans_batch)
LOGS = (ExportLogsServiceRequest, rows.logs_batch)


@pytest.mark.parametrize(
    ("signal", "data"),
    [
        (SPANS, _span_request(b"\x2a\x05ab")),  # the span's name runs past the span
        (
            SPANS,
            _span_request(_len_field(9, _len_field(2, _len_field(6, b"\x0a\xff")))),
        ),  # a kvlist cut short
        (SPANS, _span_request(_len_field(9, _len_field(2, _len_field(5, b"\x0e"))))),  # an array, wire type 6
        (SPANS, _span_request(_len_field(15, b"\x18"))),  # a status code without its value
        (
            LOGS,
            _log_request(_len_field(5, _len_field(6, _len_field(1, b"\x12\x09")))),
        ),  # a body kvlist cut short
    ],
    ids=["span", "attribute kvlist", "attribute array", "status", "body kvlist"],
)
def test_malformed_requests_raise_malformed_data(signal: tuple[Any, Any], data: bytes) -> None:
    request_type, convert = signal
    with pytest.raises(DecodeError):
        request_type.FromString(data)
    with pytest.raises(MalformedData):
        convert(data, "t", "r")


@pytest.mark.parametrize(
    "data",
    [
        _span_request(_len_field(5, b"\xff")),  # the span's name
        _span_request(_len_field(9, _len_field(1, b"\xc3"))),  # an attribute's key
        _span_request(_len_field(9, _len_field(2, _len_field(1, b"\xed\xa0\x80")))),  # a surrogate
    ],
    ids=["name", "key", "string value"],
)
def test_strings_that_are_not_utf8_raise_malformed_data(data: bytes) -> None:
    """upb refuses them; rows must not hand Arrow invalid string arrays."""
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(data)
    with pytest.raises(MalformedData):
        rows.spans_batch(data, "t", "r").validate(full=True)
