"""Hypothesis strategies for OTLP export requests, shared by the wire-level tests.

``requests()`` draws requests of the three signals with every field type, odd values (integer
edges, NaN, empty strings and bytes) and message fields nested a few levels; ``mutations(data)``
draws bytes near ``data`` (truncated, a byte flipped, bytes inserted or cut out), most of which
protobuf refuses and some of which it still parses.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REQUESTS = [ExportTraceServiceRequest, ExportLogsServiceRequest, ExportMetricsServiceRequest]


_INTS = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}


def _scalars(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        lo, hi = _INTS[kind]
        edges = st.sampled_from(
            [v for v in (lo, hi, -1, 127, 128, 2**31 - 1, 2**32, 2**63 - 1) if lo <= v <= hi]
        )
        return st.one_of(st.integers(0, 300), edges, st.integers(lo, hi))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.one_of(st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]), st.floats())
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.just(""), st.text(max_size=12))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.just(b""), st.binary(max_size=20))
    raise AssertionError(field.full_name)


@cache
def messages(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
    """Messages of this type, with message fields at most ``depth`` levels below."""
    cls = GetMessageClass(descriptor)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth == 0:
                continue
            one: st.SearchStrategy[Any] = st.deferred(lambda f=field: messages(f.message_type, depth - 1))
        else:
            one = _scalars(field)
        repeated = field.is_repeated
        parts[field.name] = st.lists(one, max_size=3) if repeated else one

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                target = getattr(message, name)
                for item in value:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=parts).map(build)


def requests() -> st.SearchStrategy[Message]:
    return st.one_of(*(messages(r.DESCRIPTOR, 9) for r in REQUESTS))


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    at = st.integers(0, len(data))
    return st.one_of(
        at.map(lambda i: data[:i]),
        st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(1, 255)).map(
            lambda p: data[: p[0]] + bytes([data[p[0]] ^ p[1]]) + data[p[0] + 1 :] if data else bytes([p[1]])
        ),
        st.tuples(at, st.binary(min_size=1, max_size=12)).map(lambda p: data[: p[0]] + p[1] + data[p[0] :]),
        st.tuples(at, at).map(lambda p: data[: min(p)] + data[max(p) :]),
    )
