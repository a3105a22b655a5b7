"""The three OTLP signals and the protobuf facts each one needs."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class Signal(enum.StrEnum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """Where a signal's request, response, items and endpoints are."""

    signal: Signal
    request_type: type[Message]
    response_type: type[Message]
    grpc_service: str
    resource_field: str  # ExportRequest → ResourceX
    scope_field: str  # ResourceX → ScopeX
    item_field: str  # ScopeX → items (for metrics: the Metric list, items are data points)
    rejected_field: str  # the partial_success counter
    http_path: str

    @property
    def grpc_method(self) -> str:
        return f"/{self.grpc_service}/Export"


SPECS: dict[Signal, SignalSpec] = {
    Signal.TRACES: SignalSpec(
        Signal.TRACES,
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "resource_spans",
        "scope_spans",
        "spans",
        "rejected_spans",
        "/v1/traces",
    ),
    Signal.METRICS: SignalSpec(
        Signal.METRICS,
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "resource_metrics",
        "scope_metrics",
        "metrics",
        "rejected_data_points",
        "/v1/metrics",
    ),
    Signal.LOGS: SignalSpec(
        Signal.LOGS,
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "resource_logs",
        "scope_logs",
        "log_records",
        "rejected_log_records",
        "/v1/logs",
    ),
}

SPEC_BY_HTTP_PATH: dict[str, SignalSpec] = {spec.http_path: spec for spec in SPECS.values()}
