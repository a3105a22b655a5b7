"""Small OTLP requests for the tests that drive an agent: random ids, names numbered after a
prefix, so what a sink received can be told apart and matched to what was sent."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def spans(count: int, name: str = "op") -> ExportTraceServiceRequest:
    """One scope of ``count`` spans named ``<name>-<index>``, with random trace and span ids."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(count):
        scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"{name}-{index}")
    return request


def log_records(count: int, body: str = "line") -> ExportLogsServiceRequest:
    """One scope of ``count`` log records with bodies ``<body> <index>``."""
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for index in range(count):
        scope.log_records.add(time_unix_nano=1_700_000_000_000_000_000).body.string_value = f"{body} {index}"
    return request
