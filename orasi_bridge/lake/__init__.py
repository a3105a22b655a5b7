"""The lake: Iceberg tables of spans, logs and metric points, and the `lake` exporter."""

from orasi_bridge.lake.config import Config
from orasi_bridge.lake.writer import LakeWriter
from orasi_common.pipeline.component import ExporterFactory

FACTORY = ExporterFactory("lake", Config, LakeWriter)

__all__ = ["FACTORY", "Config", "LakeWriter"]
