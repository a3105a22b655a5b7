"""Configuration of the `loadbalancing` exporter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.discovery.resolvers import ResolverConfig
from orasi_common.exporters.bearer import BearerAuthConfig, check_one_authorization
from orasi_common.exporters.otap.config import ArrowConfig
from orasi_common.exporters.otlp.config import TlsConfig
from orasi_common.pipeline.breaker import BreakerConfig
from orasi_common.pipeline.exporter_helper import ExporterConfig


class RoutingConfig(ComponentConfig):
    traces: Literal["trace_id", "round_robin"] = Field(
        default="trace_id", description="`trace_id`: every span of a trace goes to one upstream."
    )
    logs: Literal["service", "round_robin"] = Field(default="service", description="How logs spread.")
    metrics: Literal["service", "round_robin"] = Field(default="service", description="How metrics spread.")


class Config(ExporterConfig):
    protocol: Literal["otlp", "otap"] = Field(default="otlp", description="What to speak upstream.")
    resolver: ResolverConfig = Field(
        description="The primary upstream group. An etcd resolver dials each registered instance's "
        "`otap` endpoint when protocol is otap, its `otlp_grpc` endpoint otherwise."
    )
    failover: ResolverConfig | None = Field(
        default=None, description="A secondary group (e.g. another region) used while no primary is healthy."
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Routing keys per signal.")
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Per endpoint.")
    endpoint_timeout: float = Field(default=5.0, gt=0, description="Seconds one upstream call may take.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="Transport security to every upstream.")
    compression: Literal["gzip", "none"] = Field(default="none", description="gRPC compression (otlp).")
    headers: dict[str, str] = Field(default_factory=dict, description="Metadata sent with each call.")
    auth: BearerAuthConfig | None = Field(
        default=None,
        description="Send `authorization: Bearer <token>` read from a file, re-read as it rotates "
        "(exporters/bearer.py); unset: no token, unless `headers` holds one.",
    )
    max_send_msg_size_mib: float = Field(default=64, gt=0, description="Largest message sent, MiB.")
    arrow: ArrowConfig = Field(default_factory=ArrowConfig, description="OTAP streams (protocol otap).")

    @model_validator(mode="after")
    def _one_authorization(self) -> Config:
        check_one_authorization(self.auth, self.headers)
        return self
