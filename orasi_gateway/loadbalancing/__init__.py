"""The `loadbalancing` exporter."""

from orasi_common.pipeline.component import ExporterFactory
from orasi_gateway.loadbalancing.config import Config
from orasi_gateway.loadbalancing.exporter import LoadBalancingExporter

FACTORY = ExporterFactory("loadbalancing", Config, LoadBalancingExporter)

__all__ = ["FACTORY", "Config", "LoadBalancingExporter"]
