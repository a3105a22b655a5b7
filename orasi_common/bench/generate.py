"""Generated OTLP requests of each signal: realistic shapes, deterministic for a seed.

``request(signal, items, seed)`` builds one export request of ``items`` spans, log records or
data points (``traces_request``, ``logs_request``, ``metrics_request``). What ``orasi bench
--source generated`` sends, and the data of the OTAP codec and wire benchmarks; a benchmark whose
figure is compared with another system's sends a corpus file instead.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE as CUMULATIVE
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from orasi_common.pdata import Signal

ROUTES = ["/api/v1/orders", "/api/v1/cart", "/api/v1/users/{id}", "/healthz", "/api/v1/search"]
SERVICES = ["checkout", "cart", "payments"]


def _resource(rx: Any, service: str, rng: random.Random) -> None:
    attrs = rx.resource.attributes
    attrs.add(key="service.name", value=AnyValue(string_value=service))
    attrs.add(key="service.version", value=AnyValue(string_value="1.4.2"))
    attrs.add(key="host.name", value=AnyValue(string_value=f"node-{rng.randrange(40)}"))
    attrs.add(key="k8s.pod.name", value=AnyValue(string_value=f"{service}-{rng.getrandbits(32):08x}"))
    rx.schema_url = "https://opentelemetry.io/schemas/1.21.0"


def traces_request(n: int, seed: int = 1) -> ExportTraceServiceRequest:
    """``n`` spans over 3 resources x 2 scopes, 10 attributes per span (some high-cardinality).

    Traces of 8 spans: random 16-byte trace ids and 8-byte span ids; each trace's first span is
    its root and every other span the child of an earlier span of the same trace.
    """
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    groups = [(s, scope) for s in SERVICES for scope in ("io.opentelemetry.http", "io.opentelemetry.db")]
    per_group = [n // len(groups) + (1 if i < n % len(groups) else 0) for i in range(len(groups))]
    made = 0
    for service in SERVICES:
        rs = request.resource_spans.add()
        _resource(rs, service, rng)
        for (svc, scope_name), count in zip(groups, per_group, strict=True):
            if svc != service or count == 0:
                continue
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = scope_name, "2.1.0"
            trace_id = rng.randbytes(16)
            trace_spans: list[bytes] = []
            for _ in range(count):
                if made % 8 == 0:
                    trace_id = rng.randbytes(16)
                    trace_spans = []
                made += 1
                span_id = rng.randbytes(8)
                # a child of a span of the same trace (the first span of a trace is its root)
                parent = rng.choice(trace_spans) if trace_spans else b""
                trace_spans.append(span_id)
                span = ss.spans.add(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=f"{rng.choice(['GET', 'POST'])} {rng.choice(ROUTES)}",
                    kind=rng.choice([2, 3]),
                    start_time_unix_nano=1_764_000_000_000_000_000 + made * 1_000_000,
                )
                span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(100_000, 90_000_000)
                a = span.attributes
                a.add(key="http.request.method", value=AnyValue(string_value=rng.choice(["GET", "POST"])))
                a.add(key="http.route", value=AnyValue(string_value=rng.choice(ROUTES)))
                a.add(
                    key="http.response.status_code",
                    value=AnyValue(int_value=rng.choice([200, 200, 201, 404])),
                )
                a.add(key="server.address", value=AnyValue(string_value="api.example.com"))
                a.add(key="server.port", value=AnyValue(int_value=443))
                a.add(
                    key="client.address",
                    value=AnyValue(string_value=f"10.0.{rng.randrange(4)}.{rng.randrange(256)}"),
                )
                a.add(key="network.peer.port", value=AnyValue(int_value=rng.randrange(1024, 65535)))
                a.add(
                    key="user_agent.original", value=AnyValue(string_value="Mozilla/5.0 (X11; Linux x86_64)")
                )
                a.add(key="app.cache_hit", value=AnyValue(bool_value=rng.random() < 0.7))
                a.add(key="app.request_id", value=AnyValue(string_value=rng.randbytes(8).hex()))
                span.status.code = (
                    Status.STATUS_CODE_ERROR if rng.random() < 0.02 else Status.STATUS_CODE_UNSET
                )
    return request


def logs_request(n: int, seed: int = 2) -> ExportLogsServiceRequest:
    """``n`` log records, one resource per service, string bodies of ~120 bytes, 6 attributes.

    Records come from requests in flight (4 at a time, interleaved); the records of one request
    share its trace and span ids, and a request ends after each record with probability 1/4.
    """
    rng = random.Random(seed)
    request = ExportLogsServiceRequest()
    for index, service in enumerate(SERVICES):
        rl = request.resource_logs.add()
        _resource(rl, service, rng)
        sl = rl.scope_logs.add()
        sl.scope.name = "app.logger"
        in_flight = [(rng.randbytes(16), rng.randbytes(8)) for _ in range(4)]
        for i in range(n // len(SERVICES) + (1 if index < n % len(SERVICES) else 0)):
            request_index = rng.randrange(len(in_flight))
            trace_id, span_id = in_flight[request_index]
            if rng.random() < 0.25:
                in_flight[request_index] = (rng.randbytes(16), rng.randbytes(8))
            record = sl.log_records.add(
                time_unix_nano=1_764_000_000_000_000_000 + i * 1_000_000,
                observed_time_unix_nano=1_764_000_000_000_000_000 + i * 1_000_000 + 5_000,
                severity_number=rng.choice([9, 9, 9, 13, 17]),
                severity_text=rng.choice(["INFO", "INFO", "WARN", "ERROR"]),
                trace_id=trace_id,
                span_id=span_id,
            )
            order = rng.randrange(10**6)
            record.body.string_value = (
                f"order {order} processed for customer {rng.randrange(10**5)} in {rng.random():.3f}s"
            )
            a = record.attributes
            a.add(
                key="code.function", value=AnyValue(string_value=rng.choice(["handle", "commit", "charge"]))
            )
            a.add(key="code.lineno", value=AnyValue(int_value=rng.randrange(20, 400)))
            a.add(key="thread.name", value=AnyValue(string_value=f"worker-{rng.randrange(8)}"))
            a.add(key="order.id", value=AnyValue(int_value=order))
            a.add(key="tenant", value=AnyValue(string_value=rng.choice(["acme", "globex"])))
            a.add(key="retry", value=AnyValue(bool_value=False))
    return request


def metrics_request(n: int, seed: int = 3) -> ExportMetricsServiceRequest:
    """About ``n`` data points: sums, gauges and histograms with 3 attributes per point.

    Histogram points are consistent as an SDK reports them: ``count`` is the sum of the bucket
    counts, ``sum`` lies between ``count * min`` and ``count * max``.
    """
    rng = random.Random(seed)
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    _resource(rm, "checkout", rng)
    sm = rm.scope_metrics.add()
    sm.scope.name = "app.metrics"
    made = 0
    metric_index = 0
    while made < n:
        kind = ("sum", "gauge", "histogram")[metric_index % 3]
        metric = sm.metrics.add(name=f"app.{kind}.{metric_index}", unit="ms" if kind == "histogram" else "1")
        metric_index += 1
        points = min(20, n - made)
        for i in range(points):
            attrs = [
                ("http.route", AnyValue(string_value=ROUTES[i % len(ROUTES)])),
                ("http.response.status_code", AnyValue(int_value=(200, 404, 500)[i % 3])),
                ("pod", AnyValue(string_value=f"pod-{i % 4}")),
            ]
            if kind == "histogram":
                metric.histogram.aggregation_temporality = CUMULATIVE
                counts = [rng.randrange(50) for _ in range(8)]
                low = rng.uniform(0.1, 5.0)
                high = rng.uniform(100.0, 400.0)
                point: Any = metric.histogram.data_points.add(
                    count=sum(counts),  # consistent with the buckets, as an SDK reports it
                    sum=round(sum(counts) * rng.uniform(low, high), 3),
                    bucket_counts=counts,
                    min=round(low, 3),
                    max=round(high, 3),
                )
                point.explicit_bounds.extend([5, 10, 25, 50, 75, 100, 250])
            else:
                data = metric.sum if kind == "sum" else metric.gauge
                if kind == "sum":
                    metric.sum.aggregation_temporality, metric.sum.is_monotonic = CUMULATIVE, True
                point = (
                    data.data_points.add(as_double=rng.random() * 100)
                    if i % 2
                    else data.data_points.add(as_int=i)
                )
            point.start_time_unix_nano = 1_764_000_000_000_000_000
            point.time_unix_nano = 1_764_000_060_000_000_000
            for key, value in attrs:
                point.attributes.add(key=key, value=value)
        made += points
    return request


def request(signal: Signal | str, items: int, seed: int = 1) -> Message:
    """One generated export request of ``signal`` with ``items`` items."""
    builders = {Signal.TRACES: traces_request, Signal.LOGS: logs_request, Signal.METRICS: metrics_request}
    built: Message = builders[Signal(signal)](items, seed)
    return built


__all__ = ["logs_request", "metrics_request", "request", "traces_request"]
