"""The whole pipeline in real processes: OpenTelemetry SDK → agent → gateway → bridge → lake → query.

Values are compared with what the SDK itself produced (in-memory exporters beside the OTLP
ones) or with the OTLP/JSON conformance files, never with constants the pipeline could echo.
Each test writes under its own tenant, so the tests share one pipeline and one lake.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from e2e.lake_fixtures import (
    RecordingMetricExporter,
    Stack,
    assert_attributes,
    emit_trace_scenario,
    json_value,
    running_stack,
)
from orasi_common.testing.shared import shared_path

CONFORMANCE = shared_path("conformance", "otlp-json")
HOUR = 3600 * 10**9

# Attribute values of every type the SDK sends.
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
    "array.bool": [True, False],
}


@pytest.fixture(scope="module")
def lake_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One pipeline for the module; each test writes under a tenant of its own."""
    with running_stack(tmp_path_factory.mktemp("lake-stack")) as stack:
        yield stack


def hex_id(value: int, width: int) -> str | None:
    return f"{value:0{width}x}" if value else None


# --- the SDK, with in-memory copies of what it exported ----------------------------------------


def produce_traces(stack: Stack, resource: Resource, tenant: str) -> Sequence[Any]:
    """Spans of every kind and status, with attributes of every type, events and a link."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otlp = OTLPSpanExporter(
        endpoint=stack.agent_grpc, insecure=True, headers={"x-orasi-tenant": tenant}, timeout=10
    )
    provider.add_span_processor(BatchSpanProcessor(otlp))
    tracer = provider.get_tracer("orasi.e2e.lake", "3.1.4")

    emit_trace_scenario(tracer, ATTRIBUTES)
    assert provider.force_flush(10_000)
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert {s.kind for s in spans} == set(SpanKind)
    assert {s.status.status_code for s in spans} == set(StatusCode)
    return spans


def produce_logs(stack: Stack, resource: Resource, tenant: str) -> Sequence[Any]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    otlp = OTLPLogExporter(
        endpoint=stack.agent_grpc, insecure=True, headers={"x-orasi-tenant": tenant}, timeout=10
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(otlp))
    logger = provider.get_logger("orasi.e2e.logs", "0.1.0")
    tracer_provider = TracerProvider(resource=resource)
    with tracer_provider.get_tracer("orasi.e2e.logs").start_as_current_span("handle"):
        # In a span: the record carries its trace context.
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            body="disk almost full",
            attributes={"disk": "/dev/sda1", "free.ratio": 0.05, "retries": 3, "ok": False},
        )
    logger.emit(
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body={"event": "payment.failed", "amount": 12, "tags": ["card", "declined"], "nested": {"ok": False}},
        event_name="payment.failed",
    )
    logger.emit(timestamp=time.time_ns(), severity_number=SeverityNumber.INFO2, body=["a", 1, 2.5, True])
    tracer_provider.shutdown()
    assert provider.force_flush(10_000)
    provider.shutdown()
    return [record.log_record for record in memory.get_finished_logs()]


def produce_metrics(stack: Stack, resource: Resource, tenant: str) -> list[MetricsData]:
    recorder = RecordingMetricExporter(
        OTLPMetricExporter(
            endpoint=stack.agent_grpc, insecure=True, headers={"x-orasi-tenant": tenant}, timeout=10
        )
    )
    reader = PeriodicExportingMetricReader(recorder, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("orasi.e2e.metrics", "2.0.0")
    requests = meter.create_counter("e2e.requests", unit="{request}", description="Requests served")
    requests.add(1, {"route": "/a"})
    requests.add(2, {"route": "/a"})
    requests.add(5, {"route": "/b", "ok": True})
    latency = meter.create_histogram(
        "e2e.latency",
        unit="ms",
        description="Latency",
        explicit_bucket_boundaries_advisory=[10.0, 100.0, 1000.0],
    )
    for value in (5.0, 50.0, 60.0, 500.0, 5000.0):
        latency.record(value, {"route": "/a"})
    temperature = meter.create_gauge("e2e.temperature", unit="Cel", description="Room temperature")
    temperature.set(19.0, {"room": "lab"})
    temperature.set(21.5, {"room": "lab"})
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert all(result is MetricExportResult.SUCCESS for result in recorder.results)
    return recorder.exports


# --- tests ----------------------------------------------------------------------------------------


def test_sdk_telemetry_lands_in_the_lake_with_its_values(lake_stack: Stack) -> None:
    tenant = f"sdk-{uuid.uuid4().hex[:12]}"
    service = f"e2e-lake-{uuid.uuid4().hex[:8]}"
    resource = Resource.create(
        {"service.name": service, "service.version": "1.2.3", "deployment.weight": 0.75}
    )
    spans = produce_traces(lake_stack, resource, tenant)
    log_records = produce_logs(lake_stack, resource, tenant)
    exports = produce_metrics(lake_stack, resource, tenant)
    sdk_points = [
        (metric, point)
        for export in exports
        for rm in export.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
    ]

    # --- spans
    answer = lake_stack.wait_rows(
        "SELECT * EXCLUDE (time) FROM spans ORDER BY start_time_unix_nano",
        tenant,
        lambda rows: len(rows) >= len(spans),
    )
    names = [c["name"] for c in answer["columns"]]
    rows = {row["span_id"]: row for row in (dict(zip(names, r, strict=True)) for r in answer["rows"])}
    assert len(rows) == len(answer["rows"]) == len(spans)
    for span in spans:
        row = rows[hex_id(span.context.span_id, 16)]
        where = f"span {span.name}"
        assert row["tenant"] == tenant
        assert row["region"] == "e2e-region-1"
        assert row["service_name"] == service
        assert row["trace_id"] == hex_id(span.context.trace_id, 32)
        assert row["parent_span_id"] == (hex_id(span.parent.span_id, 16) if span.parent else None)
        assert row["name"] == span.name
        assert row["kind"] == span.kind.name
        assert row["status_code"] == span.status.status_code.name
        assert row["status_message"] == span.status.description
        assert (row["start_time_unix_nano"], row["end_time_unix_nano"]) == (span.start_time, span.end_time)
        assert row["duration_ns"] == span.end_time - span.start_time
        assert (row["scope_name"], row["scope_version"]) == ("orasi.e2e.lake", "3.1.4")
        assert_attributes(row["attributes"], span.attributes, where)
        assert_attributes(row["resource_attributes"], resource.attributes, where + " resource", subset=True)
        assert row["resource_attributes"]["orasi.agent.id"] == "e2e-lake-agent"  # the agent's enrichment
        assert [(e["name"], e["time_unix_nano"]) for e in row["events"]] == [
            (e.name, e.timestamp) for e in span.events
        ]
        for stored, event in zip(row["events"], span.events, strict=True):
            assert_attributes(stored["attributes"], event.attributes, f"{where} event {event.name}")
        assert [(link["trace_id"], link["span_id"]) for link in row["links"]] == [
            (hex_id(link.context.trace_id, 32), hex_id(link.context.span_id, 16)) for link in span.links
        ]
        for stored, link in zip(row["links"], span.links, strict=True):
            assert_attributes(stored["attributes"], link.attributes, f"{where} link")
    child = next(row for row in rows.values() if row["name"] == "SELECT orders")
    assert [e["name"] for e in child["events"]] == ["exception"]
    assert child["events"][0]["attributes"]["exception.type"] == "ValueError"

    # --- logs
    answer = lake_stack.wait_rows(
        "SELECT * EXCLUDE (time), epoch_ns(time) AS time_ns FROM logs ORDER BY observed_time_unix_nano",
        tenant,
        lambda rows: len(rows) >= len(log_records),
    )
    names = [c["name"] for c in answer["columns"]]
    stored_logs = [dict(zip(names, r, strict=True)) for r in answer["rows"]]
    assert len(stored_logs) == len(log_records)
    for row, record in zip(stored_logs, sorted(log_records, key=lambda r: r.observed_timestamp), strict=True):
        where = f"log {record.body!r}"
        assert row["service_name"] == service
        assert row["time_unix_nano"] == record.timestamp, where
        assert row["observed_time_unix_nano"] == record.observed_timestamp, where
        assert row["time_ns"] == ((record.timestamp or record.observed_timestamp) // 1000) * 1000, where
        assert row["severity_number"] == record.severity_number.value, where
        assert row["severity_text"] == record.severity_text, where
        assert row["event_name"] == record.event_name, where
        assert row["trace_id"] == hex_id(record.trace_id or 0, 32), where
        assert row["span_id"] == hex_id(record.span_id or 0, 16), where
        if isinstance(record.body, str):
            assert row["body"] == record.body, where
        else:
            assert json.loads(row["body"]) == json_value(record.body), where
        assert_attributes(row["attributes"], record.attributes, where)
        assert (row["scope_name"], row["scope_version"]) == ("orasi.e2e.logs", "0.1.0")
    assert stored_logs[0]["trace_id"] is not None  # the record emitted inside a span

    # --- metrics
    answer = lake_stack.wait_rows(
        "SELECT * EXCLUDE (time) FROM metric_points ORDER BY metric_name, time_unix_nano",
        tenant,
        lambda rows: len(rows) >= len(sdk_points),
    )
    names = [c["name"] for c in answer["columns"]]
    stored_points = [dict(zip(names, r, strict=True)) for r in answer["rows"]]
    assert len(stored_points) == len(sdk_points)

    def key(name: str, attributes: dict[str, str], time_unix_nano: int) -> tuple[str, str, int]:
        return name, json.dumps(attributes, sort_keys=True), time_unix_nano

    # The SDK exports on force_flush and again on shutdown: points are keyed by their time too.
    by_key = {key(p["metric_name"], p["attributes"], p["time_unix_nano"]): p for p in stored_points}
    assert len(by_key) == len(stored_points)
    canonical = {True: "true", False: "false"}
    for metric, point in sdk_points:
        attrs = {
            k: canonical.get(v, str(v)) if not isinstance(v, float) else repr(v)
            for k, v in point.attributes.items()
        }
        row = by_key[key(metric.name, attrs, point.time_unix_nano)]
        where = f"{metric.name} {attrs}"
        assert (row["unit"], row["description"]) == (metric.unit, metric.description), where
        assert row["start_time_unix_nano"] == (point.start_time_unix_nano or None), where
        assert (row["scope_name"], row["scope_version"]) == ("orasi.e2e.metrics", "2.0.0")
        data = metric.data
        if isinstance(data, Sum):
            assert row["metric_type"] == "sum", where
            assert row["is_monotonic"] is data.is_monotonic is True, where
            assert row["aggregation_temporality"] == data.aggregation_temporality.name, where
            assert (row["value"], row["int_value"]) == (float(point.value), point.value), where
        elif isinstance(data, Histogram):
            assert row["metric_type"] == "histogram", where
            assert row["aggregation_temporality"] == data.aggregation_temporality.name, where
            assert (row["count"], row["sum"], row["min"], row["max"]) == (
                point.count,
                point.sum,
                point.min,
                point.max,
            )
            assert row["bucket_counts"] == list(point.bucket_counts), where
            assert row["explicit_bounds"] == list(point.explicit_bounds) == [10.0, 100.0, 1000.0], where
        else:
            assert isinstance(data, Gauge)
            assert row["metric_type"] == "gauge", where
            assert row["value"] == point.value == 21.5, where
            assert row["int_value"] is None, where
            assert (row["is_monotonic"], row["aggregation_temporality"]) == (None, None), where
    assert {p["metric_type"] for p in stored_points} == {"sum", "histogram", "gauge"}


# --- the OTLP/JSON conformance files -------------------------------------------------------------


def canonical_json(value: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as the JSON value the lake writes (ints as numbers)."""
    ((kind, inner),) = value.items()
    if kind == "stringValue":
        return inner
    if kind == "intValue":
        return int(inner)
    if kind == "doubleValue":
        return float(inner)
    if kind == "boolValue":
        return bool(inner)
    if kind == "bytesValue":
        return inner
    if kind == "arrayValue":
        return [canonical_json(v) for v in inner.get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: canonical_json(kv["value"]) for kv in inner.get("values", [])}
    raise AssertionError(kind)


def check_json_attributes(stored: dict[str, str | None], sent: list[dict[str, Any]], where: str) -> None:
    assert set(stored) == {kv["key"] for kv in sent}, where
    for kv in sent:
        value, text = kv["value"], stored[kv["key"]]
        expected = canonical_json(value)
        if "stringValue" in value:
            assert text == expected, (where, kv["key"])
        elif "boolValue" in value:
            assert text == ("true" if expected else "false"), (where, kv["key"])
        elif "intValue" in value:
            assert text == str(expected), (where, kv["key"])
        elif "doubleValue" in value:
            assert text is not None and float(text) == expected, (where, kv["key"])
        else:
            assert text is not None and json.loads(text) == expected, (where, kv["key"])


def nanos(value: str | None) -> int | None:
    return int(value) if value else None


def test_conformance_files_land_in_the_lake(lake_stack: Stack) -> None:
    tenant = f"conformance-{uuid.uuid4().hex[:12]}"
    files = sorted(CONFORMANCE.glob("*.json"))
    assert {f.name for f in files} >= {"trace.json", "metrics.json", "logs.json", "events.json"}
    documents = {}
    for path in files:
        document = json.loads(path.read_text())
        signal = (
            "traces"
            if "resourceSpans" in document
            else "metrics"
            if "resourceMetrics" in document
            else "logs"
        )
        response = httpx.post(
            f"{lake_stack.agent_http}/v1/{signal}",
            content=path.read_bytes(),
            headers={"Content-Type": "application/json", "X-Orasi-Tenant": tenant},
            timeout=10,
        )
        assert response.status_code == 200, (path.name, response.text)
        documents[path.name] = document
    bounds = {"start": "2018-12-13T00:00:00Z", "end": "2018-12-14T00:00:00Z"}

    def records(sql: str, count: int) -> list[dict[str, Any]]:
        answer = lake_stack.wait_rows(sql, tenant, lambda rows: len(rows) >= count, **bounds)
        names = [c["name"] for c in answer["columns"]]
        assert len(answer["rows"]) == count, answer["rows"]
        return [dict(zip(names, r, strict=True)) for r in answer["rows"]]

    def flat(
        document: dict[str, Any], resource_key: str, scope_key: str, item_key: str
    ) -> list[tuple[Any, Any, Any]]:
        return [
            (resource, scope, item)
            for resource in document.get(resource_key, [])
            for scope in resource[scope_key]
            for item in scope[item_key]
        ]

    # spans
    sent_spans = [s for d in documents.values() for s in flat(d, "resourceSpans", "scopeSpans", "spans")]
    stored = {row["span_id"]: row for row in records("SELECT * FROM spans", len(sent_spans))}
    for resource, scope, span in sent_spans:
        row = stored[span["spanId"].lower()]
        assert row["trace_id"] == span["traceId"].lower()
        assert row["parent_span_id"] == ((span.get("parentSpanId") or "").lower() or None)
        assert row["name"] == span["name"]
        assert (
            row["kind"]
            == {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}[span["kind"]]
        )
        assert (row["start_time_unix_nano"], row["end_time_unix_nano"]) == (
            int(span["startTimeUnixNano"]),
            int(span["endTimeUnixNano"]),
        )
        assert row["duration_ns"] == int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])
        assert row["status_code"] == "UNSET"
        assert (row["scope_name"], row["scope_version"]) == (
            scope["scope"]["name"],
            scope["scope"]["version"],
        )
        assert row["service_name"] == "my.service"
        check_json_attributes(row["attributes"], span.get("attributes", []), "span")
        for kv in resource["resource"]["attributes"]:
            assert row["resource_attributes"][kv["key"]] == canonical_json(kv["value"])

    # logs and events
    sent_logs = [r for d in documents.values() for r in flat(d, "resourceLogs", "scopeLogs", "logRecords")]
    stored_logs = records("SELECT * FROM logs ORDER BY severity_number", len(sent_logs))
    for (_, scope, record), row in zip(
        sorted(sent_logs, key=lambda item: item[2].get("severityNumber", 0)), stored_logs, strict=True
    ):
        where = f"log {record.get('eventName') or record['body']}"
        assert row["time_unix_nano"] == nanos(record.get("timeUnixNano")), where
        assert row["observed_time_unix_nano"] == nanos(record.get("observedTimeUnixNano")), where
        assert row["severity_number"] == record.get("severityNumber", 0), where
        assert row["severity_text"] == record.get("severityText"), where
        assert row["event_name"] == record.get("eventName"), where
        assert row["trace_id"] == ((record.get("traceId") or "").lower() or None), where
        assert row["span_id"] == ((record.get("spanId") or "").lower() or None), where
        body = record["body"]
        if "stringValue" in body:
            assert row["body"] == body["stringValue"], where
        else:
            assert json.loads(row["body"]) == canonical_json(body), where
        check_json_attributes(row["attributes"], record.get("attributes", []), where)
        assert (row["scope_name"], row["service_name"]) == (scope["scope"]["name"], "my.service")

    # metric points
    sent_metrics = [
        m for d in documents.values() for m in flat(d, "resourceMetrics", "scopeMetrics", "metrics")
    ]
    stored_points = {
        row["metric_name"]: row for row in records("SELECT * FROM metric_points", len(sent_metrics))
    }
    temporalities = {1: "DELTA", 2: "CUMULATIVE"}
    types = {
        "gauge": "gauge",
        "sum": "sum",
        "histogram": "histogram",
        "exponentialHistogram": "exponential_histogram",
        "summary": "summary",
    }
    for _, _, metric in sent_metrics:
        row = stored_points[metric["name"]]
        (json_type,) = set(metric) & set(types)
        body = metric[json_type]
        (point,) = body["dataPoints"]
        where = metric["name"]
        assert row["metric_type"] == types[json_type], where
        assert (row["unit"], row["description"]) == (metric["unit"], metric["description"]), where
        assert row["time_unix_nano"] == int(point["timeUnixNano"]), where
        assert row["start_time_unix_nano"] == nanos(point.get("startTimeUnixNano")), where
        assert row["aggregation_temporality"] == temporalities.get(body.get("aggregationTemporality")), where
        assert row["is_monotonic"] == (body.get("isMonotonic", False) if json_type == "sum" else None), where
        check_json_attributes(row["attributes"], point["attributes"], where)
        if json_type in ("gauge", "sum"):
            assert row["value"] == float(point["asDouble"]), where
        if json_type in ("histogram", "exponentialHistogram"):
            assert (row["count"], row["sum"], row["min"], row["max"]) == (
                int(point["count"]),
                float(point["sum"]),
                float(point["min"]),
                float(point["max"]),
            ), where
        if json_type == "histogram":
            assert row["bucket_counts"] == [int(c) for c in point["bucketCounts"]], where
            assert row["explicit_bounds"] == [float(b) for b in point["explicitBounds"]], where
        if json_type == "exponentialHistogram":
            assert (row["scale"], row["zero_count"]) == (point["scale"], int(point["zeroCount"])), where
            assert row["positive_offset"] == point["positive"]["offset"], where
            assert row["positive_bucket_counts"] == [int(c) for c in point["positive"]["bucketCounts"]], where
            negative = point.get("negative", {})
            assert row["negative_offset"] == negative.get("offset", 0), where
            assert row["negative_bucket_counts"] == [int(c) for c in negative.get("bucketCounts", [])], where


# --- a bridge restart ---------------------------------------------------------------------------


def test_bridge_restart_loses_nothing_flushed(lake_stack: Stack) -> None:
    tenant = f"restart-{uuid.uuid4().hex[:12]}"
    resource = Resource.create({"service.name": "e2e-restart"})
    before = produce_traces(lake_stack, resource, tenant)
    sql = "SELECT span_id, name, duration_ns, attributes FROM spans ORDER BY span_id"
    first = lake_stack.wait_rows(sql, tenant, lambda rows: len(rows) >= len(before))
    assert len(first["rows"]) == len(before)

    exit_code = lake_stack.bridge.terminate()
    assert exit_code == 0, lake_stack.bridge.log_text()[-4000:]
    lake_stack.bridge.start()

    # The same rows, now all from committed Parquet files.
    again = lake_stack.query(sql, tenant)
    assert again["rows"] == first["rows"]
    assert again["stats"]["files"] > 0 and again["stats"]["hot_rows"] == 0
    # And the restarted bridge keeps ingesting (the gateway reconnects) and serving queries.
    after = produce_traces(lake_stack, resource, tenant)
    answer = lake_stack.wait_rows(sql, tenant, lambda rows: len(rows) >= len(before) + len(after))
    assert len(answer["rows"]) == len(before) + len(after)
    assert {row[0] for row in answer["rows"]} == {f"{s.context.span_id:016x}" for s in (*before, *after)}
    assert lake_stack.bridge.process is not None and lake_stack.bridge.process.poll() is None
