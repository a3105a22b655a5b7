"""The `otlp` exporter: a queue and retries in front of one OTLP/gRPC peer."""

from __future__ import annotations

from orasi_common.exporters.grpc_exporter import GrpcExporter
from orasi_common.exporters.otlp.client import OtlpGrpcClient


class OtlpGrpcExporter(GrpcExporter):
    client_type = OtlpGrpcClient
