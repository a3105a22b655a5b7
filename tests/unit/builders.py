"""Builders of OTLP export requests and batches for the unit tests, and helpers to compare them.

A request's *shape* says how many items sit where::

    traces / logs:  [[3, 1], [2]]           resources → scopes → items per scope
    metrics:        [[[("sum", 3)], [("gauge", 1), ("summary", 0)]]]
                                            resources → scopes → (metric type, data points)

Every resource, scope and item gets a distinct name, so ``item_keys`` can list the items of a
request in order together with the identity of the resource, scope and metric that hold them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from orasi_common.pdata import SPECS, Batch, Signal

METRIC_TYPES = ("gauge", "sum", "histogram", "exponential_histogram", "summary")

ItemShape = Sequence[Sequence[int]]
MetricShape = Sequence[Sequence[Sequence[tuple[str, int]]]]
T = TypeVar("T")


def _attr(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def _resource(r: int) -> resource_pb2.Resource:
    return resource_pb2.Resource(attributes=[_attr("service.name", f"svc-{r}")])


def _scope(r: int, s: int) -> common_pb2.InstrumentationScope:
    return common_pb2.InstrumentationScope(name=f"scope-{r}-{s}", version="1.0")


def _scopes(
    resources: Any, scope_field: str, shape: Sequence[Sequence[T]]
) -> Iterator[tuple[int, int, Any, T]]:
    """Adds to ``resources`` resource ``r`` with scopes ``s`` for each entry of ``shape[r][s]``;
    yields ``(r, s, scope message, entry)`` for each scope."""
    for r, scopes in enumerate(shape):
        resource = resources.add(resource=_resource(r), schema_url=f"https://schema/{r}")
        for s, entry in enumerate(scopes):
            scope = getattr(resource, scope_field).add(
                scope=_scope(r, s), schema_url=f"https://scope-schema/{r}/{s}"
            )
            yield r, s, scope, entry


def traces_request(
    shape: ItemShape = ((2,),), prefix: str = ""
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    for r, s, ss, count in _scopes(request.resource_spans, "scope_spans", shape):
        for i in range(count):
            ss.spans.add(
                name=f"{prefix}span-{r}-{s}-{i}",
                trace_id=bytes([r + 1] * 8 + [s + 1] * 4 + list((i + 1).to_bytes(4, "big"))),
                span_id=(i + 1).to_bytes(8, "big"),
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_000_000_100 + i,
            )
    return request


def logs_request(shape: ItemShape = ((2,),), prefix: str = "") -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    for r, s, sl, count in _scopes(request.resource_logs, "scope_logs", shape):
        for i in range(count):
            sl.log_records.add(
                body=common_pb2.AnyValue(string_value=f"{prefix}log-{r}-{s}-{i}"),
                time_unix_nano=1_700_000_000_000_000_000 + i,
                severity_number=9,
            )
    return request


_point_clock = itertools.count(1)


def add_metric(scope_metrics: Any, name: str, kind: str, points: int) -> metrics_pb2.Metric:
    """Append a metric of ``kind`` with ``points`` data points (distinct times) to a ScopeMetrics."""
    metric = scope_metrics.metrics.add(name=name, unit="1", description=f"{kind} metric {name}")
    if kind == "gauge":
        for _ in range(points):
            metric.gauge.data_points.add(time_unix_nano=next(_point_clock), as_double=1.5)
        metric.gauge.SetInParent()
    elif kind == "sum":
        metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        metric.sum.is_monotonic = True
        for _ in range(points):
            metric.sum.data_points.add(time_unix_nano=next(_point_clock), as_int=3)
    elif kind == "histogram":
        metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        for _ in range(points):
            metric.histogram.data_points.add(
                time_unix_nano=next(_point_clock), count=2, bucket_counts=[1, 1], explicit_bounds=[1.0]
            )
    elif kind == "exponential_histogram":
        metric.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        for _ in range(points):
            metric.exponential_histogram.data_points.add(time_unix_nano=next(_point_clock), count=1, scale=0)
    elif kind == "summary":
        for _ in range(points):
            metric.summary.data_points.add(time_unix_nano=next(_point_clock), count=1, sum=2.0)
        metric.summary.SetInParent()
    else:
        raise ValueError(kind)
    return metric


def metrics_request(
    shape: MetricShape = (((("sum", 2),),),), prefix: str = ""
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for r, s, sm, metrics in _scopes(request.resource_metrics, "scope_metrics", shape):
        for m, (kind, points) in enumerate(metrics):
            add_metric(sm, f"{prefix}metric-{r}-{s}-{m}", kind, points)
    return request


def request_with(signal: Signal, items: int, resources: int = 1, prefix: str = "") -> Message:
    """A request of ``signal`` with ``items`` items spread evenly over ``resources`` resources."""
    per = [items // resources + (1 if r < items % resources else 0) for r in range(resources)]
    if signal is Signal.TRACES:
        return traces_request([[n] for n in per], prefix)
    if signal is Signal.LOGS:
        return logs_request([[n] for n in per], prefix)
    return metrics_request([[[("gauge", n)]] for n in per], prefix)


_batch_numbers = itertools.count(1)


def batch_with(signal: Signal, items: int, *, prefix: str | None = None, **kwargs: Any) -> Batch:
    """A batch holding serialized bytes (as receivers make them); its items are unlike any other
    batch's (their names start with ``prefix``, by default a new ``b<n>-``)."""
    if prefix is None:
        prefix = f"b{next(_batch_numbers)}-"
    return Batch.from_serialized(
        signal, request_with(signal, items, prefix=prefix).SerializeToString(), **kwargs
    )


def _identity(message: Message, *without: str) -> bytes:
    """A message's serialized form without the fields named (its identity apart from children)."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in without:
        copy.ClearField(name)
    return copy.SerializeToString(deterministic=True)


def item_keys(signal: Signal, request: Message) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """Every item in order, as (resource identity, scope identity, metric identity, item bytes).

    Resource and scope identities include their schema_url and attributes, so two requests have
    equal keys only when every item sits under an equal resource, scope (and metric).
    """
    spec = SPECS[signal]
    keys = []
    for resource in getattr(request, spec.resource_field):
        resource_id = _identity(resource, spec.scope_field)
        for scope in getattr(resource, spec.scope_field):
            scope_id = _identity(scope, spec.item_field)
            for item in getattr(scope, spec.item_field):
                if signal is not Signal.METRICS:
                    keys.append((resource_id, scope_id, b"", item.SerializeToString(deterministic=True)))
                    continue
                kind = item.WhichOneof("data")
                if kind is None:
                    continue
                points = getattr(item, kind)
                metric_id = _identity(item, kind) + kind.encode() + _identity(points, "data_points")
                for point in points.data_points:
                    keys.append(
                        (resource_id, scope_id, metric_id, point.SerializeToString(deterministic=True))
                    )
    return keys


def orphaned_attribute_tables() -> dict[Any, Any]:
    """OTAP tables of one span whose attribute row points to no span: the cheap checks pass,
    a full decode (or conversion) refuses them."""
    import pyarrow as pa  # here: most unit tests need no Arrow

    from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
    from orasi_common.pdata.otap.traces import encode_traces_bytes

    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="work")
    span.trace_id, span.span_id = b"\x01" * 16, b"\x02" * 8
    span.attributes.add(key="k").value.string_value = "v"
    tables = encode_traces_bytes(request.SerializeToString())
    attrs = tables[P.SPAN_ATTRS]
    index = attrs.schema.get_field_index("parent_id")
    orphaned = attrs.set_column(index, "parent_id", pa.array([999], attrs.schema.field("parent_id").type))
    return {**tables, P.SPAN_ATTRS: orphaned}


def otap_batch_that_does_not_decode() -> Batch:
    """An OTAP batch of ``orphaned_attribute_tables``."""
    from orasi_common.pdata.otap import codec

    return codec.decode(Signal.TRACES, orphaned_attribute_tables(), tenant="t", batch_id="b")
