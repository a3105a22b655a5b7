"""The `otap` exporter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orasi_common.exporters.otap.config import Config
from orasi_common.pipeline.component import ExporterFactory, Settings

if TYPE_CHECKING:
    from orasi_common.exporters.otap.exporter import OtapExporter


def _create(settings: Settings, config: Config) -> OtapExporter:
    # Imported here: the codec brings in pyarrow and numpy (about 75 MiB resident), which an
    # agent whose pipelines only forward OTLP should not carry.
    from orasi_common.exporters.otap.exporter import OtapExporter

    return OtapExporter(settings, config)


FACTORY = ExporterFactory("otap", Config, _create)

__all__ = ["FACTORY", "Config"]
