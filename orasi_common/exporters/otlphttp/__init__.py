"""The `otlphttp` exporter."""

from orasi_common.exporters.otlphttp.config import Config
from orasi_common.exporters.otlphttp.exporter import OtlpHttpExporter
from orasi_common.pipeline.component import ExporterFactory

FACTORY = ExporterFactory("otlphttp", Config, OtlpHttpExporter)

__all__ = ["FACTORY", "Config", "OtlpHttpExporter"]
