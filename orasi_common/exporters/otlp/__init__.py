"""The `otlp` (gRPC) exporter."""

from orasi_common.exporters.otlp.config import Config
from orasi_common.exporters.otlp.exporter import OtlpGrpcExporter
from orasi_common.pipeline.component import ExporterFactory

FACTORY = ExporterFactory("otlp", Config, OtlpGrpcExporter)

__all__ = ["FACTORY", "Config", "OtlpGrpcExporter"]
