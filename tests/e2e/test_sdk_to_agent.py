"""The OpenTelemetry Python SDK's own OTLP exporters (gRPC and HTTP) → a real agent → the sink.

Each exporter is wrapped by a recorder that keeps exactly what the SDK handed it, so every
check compares the sink's protobuf with what the SDK produced (ids, times, values), never with
constants the pipeline could echo. The SDK's own OTLP encoder turns those records into the
protobuf the agent must have forwarded unchanged; only the resource gains the agent's
enrichment (orasi.agent.id and the node, region attributes detected from its environment).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from e2e.lake_fixtures import RecordingMetricExporter, emit_trace_scenario
from orasi_common.pdata import Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.otlp_view import any_value, attributes, data_points, items
from orasi_common.testing.sink import OtlpSink

AGENT_ENV = {
    "ORASI_AGENT_ID": f"e2e-agent-{uuid.uuid4().hex[:8]}",
    "K8S_NODE_NAME": "e2e-node-1",
    "ORASI_REGION": "e2e-region-1",
}
# What the agent's resource processor adds (detect: true, kubernetes_mode: node).
ENRICHMENT = {
    "orasi.agent.id": AGENT_ENV["ORASI_AGENT_ID"],
    "k8s.node.name": AGENT_ENV["K8S_NODE_NAME"],
    "host.name": AGENT_ENV["K8S_NODE_NAME"],
    "cloud.region": AGENT_ENV["ORASI_REGION"],
}

# Attribute values of every type OTLP carries from the SDK, edge cases included.
ATTRIBUTES: dict[str, Any] = {
    "str": "välue ✓",
    "str.empty": "",
    "int": 42,
    "int.negative": -7,
    "int.big": 2**62 + 1,
    "float": 3.25,
    "float.negative": -0.5,
    "bool.true": True,
    "bool.false": False,
    "array.str": ["a", "b", ""],
    "array.int": [1, -2, 2**40],
    "array.float": [1.5, -2.25],
    "array.bool": [True, False, True],
}


def plain(value: Any) -> Any:
    """SDK attribute values as the sink's view gives them (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def plain_attributes(attrs: Any) -> dict[str, Any]:
    return {key: plain(value) for key, value in (attrs or {}).items()}


def strip_enrichment(request: Message, resource_field: str) -> Message:
    """A copy of a request whose resources lose the agent's enrichment attributes."""
    clean = type(request)()
    clean.CopyFrom(request)
    for resource_x in getattr(clean, resource_field):
        kept = [kv for kv in resource_x.resource.attributes if kv.key not in ENRICHMENT]
        del resource_x.resource.attributes[:]
        resource_x.resource.attributes.extend(kept)
    return clean


@pytest.fixture(params=["grpc", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def shared_agent(module_sink: OtlpSink, module_start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    """One agent for every test here (each sends under a resource of its own)."""
    return module_start_agent(module_sink, env=AGENT_ENV)


@pytest.fixture
def sink(module_sink: OtlpSink, shared_agent: AgentProcess) -> OtlpSink:
    """The agent's sink, emptied: each test counts exactly the items it sent."""
    module_sink.reset()
    return module_sink


@pytest.fixture
def agent(shared_agent: AgentProcess, sink: OtlpSink) -> AgentProcess:
    assert shared_agent.running(), f"the shared agent exited ({shared_agent.returncode})"
    return shared_agent


@pytest.fixture
def resource(transport: str) -> Resource:
    return Resource.create(
        {
            "service.name": f"e2e-{transport}-{uuid.uuid4().hex[:8]}",
            "service.version": "1.2.3",
            "deployment.environment": "e2e",
            "service.instance.number": 7,
            "service.canary": False,
            "service.weight": 0.75,
        }
    )


def check_resource(received: dict[str, Any], resource: Resource) -> None:
    sent = plain_attributes(resource.attributes)
    # The sender's attributes arrive unchanged; the agent adds its own (override: false).
    assert received == {**ENRICHMENT, **sent}
    assert received["orasi.agent.id"] == AGENT_ENV["ORASI_AGENT_ID"]


# --- recorders: exactly what the SDK handed its OTLP exporter ------------------------------


class RecordingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.spans: list[ReadableSpan] = []
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RecordingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.records: list[ReadableLogRecord] = []
        self.results: list[LogRecordExportResult] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.records.extend(batch)
        result = self.inner.export(batch)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_exporters(transport: str, agent: AgentProcess) -> tuple[Any, Any, Any]:
    """(span, metric, log) exporters of the SDK for ``transport``; HTTP sends gzip protobuf."""
    if transport == "grpc":
        endpoint = agent.grpc_endpoint
        return (
            GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
            GrpcMetricExporter(
                endpoint=endpoint, insecure=True, timeout=10, compression=grpc.Compression.Gzip
            ),
            GrpcLogExporter(endpoint=endpoint, insecure=True, timeout=10),
        )
    base = agent.http_url
    return (
        HttpSpanExporter(endpoint=f"{base}/v1/traces", timeout=10, compression=HttpCompression.Gzip),
        HttpMetricExporter(endpoint=f"{base}/v1/metrics", timeout=10),
        HttpLogExporter(endpoint=f"{base}/v1/logs", timeout=10, compression=HttpCompression.Gzip),
    )


# --- traces --------------------------------------------------------------------------------


def test_traces_arrive_intact(
    transport: str, agent: AgentProcess, sink: OtlpSink, resource: Resource
) -> None:
    recorder = RecordingSpanExporter(otlp_exporters(transport, agent)[0])
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(recorder))
    tracer = provider.get_tracer(
        "orasi.e2e.traces", "1.0.0", schema_url="https://opentelemetry.io/schemas/1.26.0"
    )

    emit_trace_scenario(tracer, ATTRIBUTES)
    assert provider.force_flush(10_000)
    provider.shutdown()

    spans = recorder.spans
    assert all(result is SpanExportResult.SUCCESS for result in recorder.results)
    # The scenario covers every kind and status, a parent chain, an event and a link.
    assert {span.kind for span in spans} == set(SpanKind)
    assert {span.status.status_code for span in spans} == set(StatusCode)

    received = sink.wait_for_items(Signal.TRACES, len(spans))
    assert sink.items(Signal.TRACES) == len(spans)
    got = {it.item.span_id: it for it in items(Signal.TRACES, [r.request for r in received])}
    assert len(got) == len(spans)

    expected_request = encode_spans(spans)
    expected = {it.item.span_id: it for it in items(Signal.TRACES, [expected_request])}

    for span in spans:
        context = span.context
        assert context is not None
        span_id = context.span_id.to_bytes(8, "big")
        it = got[span_id]
        out = it.item
        assert out.trace_id == context.trace_id.to_bytes(16, "big")
        assert out.span_id == span_id
        assert out.parent_span_id == (span.parent.span_id.to_bytes(8, "big") if span.parent else b"")
        assert out.name == span.name
        assert out.kind == span.kind.value + 1  # the SDK's INTERNAL is 0, OTLP's SPAN_KIND_INTERNAL 1
        assert out.status.code == span.status.status_code.value
        assert out.status.message == (span.status.description or "")
        assert (out.start_time_unix_nano, out.end_time_unix_nano) == (span.start_time, span.end_time)
        assert attributes(out.attributes) == plain_attributes(span.attributes)
        assert [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in out.events] == [
            (e.name, e.timestamp, plain_attributes(e.attributes)) for e in span.events
        ]
        assert [(link.trace_id, link.span_id, attributes(link.attributes)) for link in out.links] == [
            (
                link.context.trace_id.to_bytes(16, "big"),
                link.context.span_id.to_bytes(8, "big"),
                plain_attributes(link.attributes),
            )
            for link in span.links
        ]
        scope = span.instrumentation_scope
        assert scope is not None
        assert (it.scope.scope.name, it.scope.scope.version, it.scope.schema_url) == (
            scope.name,
            scope.version,
            scope.schema_url,
        )
        check_resource(it.resource_attributes, span.resource)
        # Every field, exactly as the SDK's own encoder wrote it.
        assert out == expected[span_id].item
        assert it.scope.scope == expected[span_id].scope.scope

    # The typed attribute values were sent as OTLP's typed values, not as strings.
    root_out = next(it.item for it in got.values() if it.item.name == "GET /orders/{id}")
    kinds = {kv.key: kv.value.WhichOneof("value") for kv in root_out.attributes}
    assert kinds["int.big"] == "int_value" and kinds["float"] == "double_value"
    assert kinds["bool.false"] == "bool_value" and kinds["array.float"] == "array_value"


# --- metrics -------------------------------------------------------------------------------


def test_metrics_arrive_intact(
    transport: str, agent: AgentProcess, sink: OtlpSink, resource: Resource
) -> None:
    recorder = RecordingMetricExporter(otlp_exporters(transport, agent)[1])
    reader = PeriodicExportingMetricReader(recorder, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("orasi.e2e.metrics", "2.0.0")

    requests = meter.create_counter("e2e.requests", unit="{request}", description="Requests served")
    requests.add(1, {"route": "/a"})
    requests.add(2, {"route": "/a"})
    requests.add(5, {"route": "/b", "ok": True})
    transferred = meter.create_counter("e2e.transferred", unit="By")
    transferred.add(1.5)
    transferred.add(2.25)
    depth = meter.create_up_down_counter("e2e.queue.depth", unit="{item}", description="Items waiting")
    depth.add(5, {"queue": "q1"})
    depth.add(-8, {"queue": "q1"})
    temperature = meter.create_gauge("e2e.temperature", unit="Cel", description="Room temperature")
    temperature.set(19.0, {"room": "lab"})
    temperature.set(21.5, {"room": "lab"})

    def memory(options: CallbackOptions) -> list[Observation]:
        return [Observation(123456789, {"pool": "heap"}), Observation(4096, {"pool": "stack"})]

    meter.create_observable_gauge("e2e.memory.used", callbacks=[memory], unit="By", description="Memory")
    latency = meter.create_histogram(
        "e2e.latency",
        unit="ms",
        description="Latency",
        explicit_bucket_boundaries_advisory=[10.0, 100.0, 1000.0],
    )
    for value in (5.0, 50.0, 60.0, 500.0, 5000.0):
        latency.record(value, {"route": "/a"})

    assert provider.force_flush(10_000)
    provider.shutdown()
    assert recorder.exports and all(r is MetricExportResult.SUCCESS for r in recorder.results)

    # Every data point the SDK exported, keyed by (metric, attributes, time).
    def key(name: str, attrs: dict[str, Any], time_unix_nano: int) -> tuple[str, str, int]:
        return name, json.dumps(attrs, sort_keys=True), time_unix_nano

    sdk_points: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
    for export in recorder.exports:
        for resource_metrics in export.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        k = key(metric.name, plain_attributes(point.attributes), point.time_unix_nano)
                        sdk_points[k] = (resource_metrics, scope_metrics, metric), metric, point
    names = {k[0] for k in sdk_points}
    assert names == {
        "e2e.requests",
        "e2e.transferred",
        "e2e.queue.depth",
        "e2e.temperature",
        "e2e.memory.used",
        "e2e.latency",
    }

    received = sink.wait_for_items(Signal.METRICS, len(sdk_points))
    assert sink.items(Signal.METRICS) == len(sdk_points)

    encoded: dict[tuple[str, str, int], tuple[Message, Message]] = {}
    for it in items(Signal.METRICS, [encode_metrics(export) for export in recorder.exports]):
        for point in data_points(it.item):
            encoded[key(it.item.name, attributes(point.attributes), point.time_unix_nano)] = (it.item, point)

    seen = 0
    for it in items(Signal.METRICS, [r.request for r in received]):
        metric = it.item
        check_resource(it.resource_attributes, resource)
        assert (it.scope.scope.name, it.scope.scope.version) == ("orasi.e2e.metrics", "2.0.0")
        for point in data_points(metric):
            seen += 1
            k = key(metric.name, attributes(point.attributes), point.time_unix_nano)
            (_, _, sdk_metric), _, sdk_point = sdk_points[k]
            assert (metric.name, metric.unit, metric.description) == (
                sdk_metric.name,
                sdk_metric.unit,
                sdk_metric.description,
            )
            data = sdk_metric.data
            assert point.start_time_unix_nano == (sdk_point.start_time_unix_nano or 0)
            if isinstance(data, Histogram):
                assert metric.WhichOneof("data") == "histogram"
                assert metric.histogram.aggregation_temporality == data.aggregation_temporality.value
                assert point.count == sdk_point.count
                assert point.sum == sdk_point.sum
                assert list(point.bucket_counts) == list(sdk_point.bucket_counts)
                assert list(point.explicit_bounds) == list(sdk_point.explicit_bounds)
                assert (point.min, point.max) == (sdk_point.min, sdk_point.max)
            else:
                value_field = point.WhichOneof("value")
                assert value_field == ("as_int" if isinstance(sdk_point.value, int) else "as_double")
                assert getattr(point, value_field) == sdk_point.value
                if hasattr(data, "is_monotonic"):
                    assert metric.WhichOneof("data") == "sum"
                    assert metric.sum.is_monotonic == data.is_monotonic
                    assert metric.sum.aggregation_temporality == data.aggregation_temporality.value
                else:
                    assert metric.WhichOneof("data") == "gauge"
            # Every field, exactly as the SDK's encoder wrote it.
            expected_metric, expected_point = encoded[k]
            assert point == expected_point
            assert (metric.name, metric.unit, metric.description, metric.WhichOneof("data")) == (
                expected_metric.name,
                expected_metric.unit,
                expected_metric.description,
                expected_metric.WhichOneof("data"),
            )
    assert seen == len(sdk_points)

    # The data was not trivial: the SDK aggregated what this test recorded.
    last = max(recorder.exports, key=lambda e: len(e.resource_metrics))
    by_name = {m.name: m for rm in last.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    histogram_point = by_name["e2e.latency"].data.data_points[0]
    assert list(histogram_point.bucket_counts) == [1, 2, 1, 1]
    assert list(histogram_point.explicit_bounds) == [10.0, 100.0, 1000.0]
    assert {p.value for p in by_name["e2e.queue.depth"].data.data_points} == {-3}


# --- logs ----------------------------------------------------------------------------------


def test_logs_arrive_intact(transport: str, agent: AgentProcess, sink: OtlpSink, resource: Resource) -> None:
    recorder = RecordingLogExporter(otlp_exporters(transport, agent)[2])
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(recorder))
    with warnings.catch_warnings():
        # The SDK's LoggingHandler is deprecated in favour of a contrib package; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    python_logger = logging.getLogger(f"orasi.e2e.logs.{uuid.uuid4().hex[:8]}")
    python_logger.propagate = False
    python_logger.setLevel(logging.DEBUG)
    python_logger.addHandler(handler)
    tracer = TracerProvider(resource=resource).get_tracer("orasi.e2e.logs")
    try:
        python_logger.debug("debug: cache warmed")
        python_logger.info(
            "order %s placed",
            "o-1",
            extra={
                "order.id": "o-1",
                "order.items": 3,
                "order.total": 9.5,
                "order.gift": True,
                "order.tags": ["x", "y"],
            },
        )
        with tracer.start_as_current_span("handle request") as span:
            python_logger.warning("slow downstream inside a span")
            span_context = span.get_span_context()
        try:
            raise ValueError("the order is invalid")
        except ValueError:
            python_logger.exception("order validation failed")
        python_logger.critical("disk full")
        provider.get_logger("orasi.e2e.events", "3.0.0").emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.INFO2,
            severity_text="INFO2",
            body={"page": "/checkout", "count": 2, "tags": ["a", "b"], "ok": True},
            attributes={"event.attr": 1.5, "array.bool": [True, False]},
            event_name="browser.page_view",
        )
        assert provider.force_flush(10_000)
    finally:
        python_logger.removeHandler(handler)
        provider.shutdown()

    records = recorder.records
    assert len(records) == 6
    assert all(r is LogRecordExportResult.SUCCESS for r in recorder.results)

    received = sink.wait_for_items(Signal.LOGS, len(records))
    assert sink.items(Signal.LOGS) == len(records)

    def body_key(body: Any) -> str:
        return json.dumps(body, sort_keys=True)

    got = {body_key(any_value(it.item.body)): it for it in items(Signal.LOGS, [r.request for r in received])}
    expected = {body_key(any_value(it.item.body)): it for it in items(Signal.LOGS, [encode_logs(records)])}
    assert len(got) == len(records)

    for readable in records:
        record = readable.log_record
        it = got[body_key(plain(record.body))]
        out = it.item
        assert any_value(out.body) == plain(record.body)
        assert out.severity_number == record.severity_number.value
        assert out.severity_text == record.severity_text
        assert out.time_unix_nano == record.timestamp
        assert out.observed_time_unix_nano == record.observed_timestamp
        assert out.trace_id == (record.trace_id.to_bytes(16, "big") if record.trace_id else b"")
        assert out.span_id == (record.span_id.to_bytes(8, "big") if record.span_id else b"")
        assert out.flags == int(record.trace_flags or 0)
        assert attributes(out.attributes) == plain_attributes(record.attributes)
        assert out.event_name == (record.event_name or "")
        check_resource(it.resource_attributes, readable.resource)
        assert it.scope.scope.name == readable.instrumentation_scope.name
        assert out == expected[body_key(plain(record.body))].item

    # Trace context travelled with the log written inside the span.
    inside = got[body_key("slow downstream inside a span")].item
    assert inside.trace_id == span_context.trace_id.to_bytes(16, "big")
    assert inside.span_id == span_context.span_id.to_bytes(8, "big")
    failed = got[body_key("order validation failed")].item
    assert attributes(failed.attributes)["exception.type"] == "ValueError"
    event = got[body_key({"page": "/checkout", "count": 2, "tags": ["a", "b"], "ok": True})].item
    assert event.body.WhichOneof("value") == "kvlist_value"
    assert event.event_name == "browser.page_view"
