"""Wire-compatible twins of the OTLP export messages whose attributes stay serialized.

Touching an OTLP ``KeyValue`` from Python costs four or five upb attribute reads (key, value,
``WhichOneof``, the value), which at ten attributes per span is most of a 5 µs/span budget.
The twins below are built at import time from the real descriptors: every field whose type is
``KeyValue`` becomes ``bytes`` (still ``repeated``) and every ``AnyValue`` field (a log body)
becomes ``optional bytes``. Parsing serialized OTLP with a twin gives each attribute as the raw
bytes of its ``KeyValue`` message in one C call, and the codec parses those with numpy
(:mod:`orasi_common.pdata.otap.anyvalue`); the other way round, the decoder fills twins with
raw ``KeyValue`` bytes and the result re-parses as the real message. Messages without
attributes (``Status``, ``Buckets``, ``ValueAtQuantile``, ``EntityRef``) are the real ones.

Field numbers and wire types are unchanged, so bytes written by one parse with the other.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

_PACKAGE = "orasi.otap.lazy"
_KEY_VALUE = common_pb2.KeyValue.DESCRIPTOR.full_name
_ANY_VALUE = common_pb2.AnyValue.DESCRIPTOR.full_name
_ROOTS = (
    trace_service_pb2.ExportTraceServiceRequest.DESCRIPTOR,
    logs_service_pb2.ExportLogsServiceRequest.DESCRIPTOR,
    metrics_service_pb2.ExportMetricsServiceRequest.DESCRIPTOR,
)


def _needs_twin(desc: Descriptor, memo: dict[str, bool]) -> bool:
    """Whether a message (transitively) holds a KeyValue or AnyValue field."""
    name = desc.full_name
    if name in memo:
        return memo[name]
    memo[name] = False  # cycle guard
    result = False
    for field in desc.fields:
        sub = field.message_type
        if sub is None:
            continue
        if sub.full_name in (_KEY_VALUE, _ANY_VALUE) or _needs_twin(sub, memo):
            result = True
    memo[name] = result
    return result


def _top_level(desc: Descriptor) -> Descriptor:
    while desc.containing_type is not None:
        desc = desc.containing_type
    return desc


def _build() -> dict[str, type[Message]]:
    memo: dict[str, bool] = {}
    for root in _ROOTS:
        _needs_twin(root, memo)
    twinned = sorted(name for name, needed in memo.items() if needed)
    pool = descriptor_pool.Default()
    tops: dict[str, Descriptor] = {}
    for name in twinned:
        top = _top_level(pool.FindMessageTypeByName(name))
        tops[top.full_name] = top

    file_proto = descriptor_pb2.FileDescriptorProto(
        name="orasi_otap_lazy.proto", package=_PACKAGE, syntax="proto3"
    )
    renames: dict[str, str] = {}  # ".real.Name" -> ".orasi.otap.lazy.Real_Name"

    def collect(desc: Descriptor, new_name: str) -> None:
        renames["." + desc.full_name] = f".{_PACKAGE}.{new_name}"
        for nested in desc.nested_types:
            collect(nested, f"{new_name}.{nested.name}")

    dependencies: set[str] = set()
    copied: list[tuple[Descriptor, descriptor_pb2.DescriptorProto]] = []
    for full_name, top in sorted(tops.items()):
        new_name = full_name.replace(".", "_")
        collect(top, new_name)
        proto = file_proto.message_type.add()
        top.CopyToProto(proto)
        proto.name = new_name
        copied.append((top, proto))
        dependencies.add(top.file.name)

    def rewrite(proto: descriptor_pb2.DescriptorProto) -> None:
        synthetic: list[tuple[descriptor_pb2.FieldDescriptorProto, str]] = []
        for field in proto.field:
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                if field.type_name:  # enums: keep the real type
                    _add_dependency(field.type_name, dependencies)
                continue
            target = field.type_name.lstrip(".")
            if target == _KEY_VALUE:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                field.ClearField("type_name")
            elif target == _ANY_VALUE:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                field.ClearField("type_name")
                if field.label != FieldDescriptor.LABEL_REPEATED and not field.HasField("oneof_index"):
                    synthetic.append((field, f"_{field.name}"))
            elif field.type_name in renames:
                field.type_name = renames[field.type_name]
            else:
                _add_dependency(field.type_name, dependencies)
        for field, oneof_name in synthetic:
            field.proto3_optional = True
            field.oneof_index = len(proto.oneof_decl)
            proto.oneof_decl.add(name=oneof_name)
        for nested in proto.nested_type:
            rewrite(nested)

    for _, proto in copied:
        rewrite(proto)
    file_proto.dependency.extend(sorted(dependencies))
    pool.Add(file_proto)
    classes: dict[str, type[Message]] = {}
    for real_name, lazy_name in renames.items():
        desc = pool.FindMessageTypeByName(lazy_name.lstrip("."))
        classes[real_name.lstrip(".")] = message_factory.GetMessageClass(desc)
    return classes


def _add_dependency(type_name: str, dependencies: set[str]) -> None:
    pool = descriptor_pool.Default()
    name = type_name.lstrip(".")
    try:
        dependencies.add(pool.FindMessageTypeByName(name).file.name)
    except KeyError:
        dependencies.add(pool.FindEnumTypeByName(name).file.name)


_CLASSES = _build()


def lazy_class(real: type[Message]) -> Any:
    """The twin class of a real OTLP message class (typed ``Any``: its fields are dynamic)."""
    return _CLASSES[real.DESCRIPTOR.full_name]


LazyTracesRequest: Any = lazy_class(trace_service_pb2.ExportTraceServiceRequest)
LazyLogsRequest: Any = lazy_class(logs_service_pb2.ExportLogsServiceRequest)
LazyMetricsRequest: Any = lazy_class(metrics_service_pb2.ExportMetricsServiceRequest)
