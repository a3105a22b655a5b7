"""Configuration of the `query_api` extension (REST query API of the bridge)."""

from __future__ import annotations

from pydantic import Field

from orasi_bridge.query.engine import QueryLimits
from orasi_bridge.registry.config import RegistryConfig
from orasi_common.config.model import ComponentConfig


class Config(ComponentConfig):
    endpoint: str = Field(default="0.0.0.0:8080", description="host:port of the REST API.")
    lake: str = Field(default="lake", description="Id of the `lake` exporter whose tables are queried.")
    limits: QueryLimits = Field(default_factory=QueryLimits, description="Per-query limits.")
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API key → tenant. When set, every query needs a key (Authorization: Bearer "
        "KEY or X-API-Key) and reads that key's tenant only.",
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig, description="The schema registry under /registry (README)."
    )
