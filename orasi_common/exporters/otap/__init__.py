"""The `otap` exporter."""

from orasi_common.exporters.otap.config import Config
from orasi_common.exporters.otap.exporter import OtapExporter
from orasi_common.pipeline.component import ExporterFactory

FACTORY = ExporterFactory("otap", Config, OtapExporter)

__all__ = ["FACTORY", "Config", "OtapExporter"]
