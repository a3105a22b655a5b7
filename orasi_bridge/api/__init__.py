"""The bridge's query APIs."""

from orasi_bridge.api.config import Config
from orasi_bridge.api.extension import QueryApi
from orasi_common.pipeline.component import ExtensionFactory

FACTORY = ExtensionFactory("query_api", Config, QueryApi)

__all__ = ["FACTORY", "Config", "QueryApi"]
