"""Configuration of federated queries (``query_api.federation``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.transport.endpoint import validate_endpoint


class Peer(ComponentConfig):
    region: str = Field(pattern=r"^[^/]+$", description="The region the peer bridge serves.")
    endpoint: str = Field(description="host:port of the peer's REST query API (its query_http).")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return validate_endpoint(value)


class FederationConfig(ComponentConfig):
    peers: list[Peer] = Field(
        default_factory=list,
        description="The bridges a global query reads, one or more per region (this bridge too, "
        "if its region is to be read). Empty: every bridge registered in the control plane "
        "(/orasi/<region>/services/bridge/), read through the `registry` extension.",
    )
    registry: str = Field(
        default="etcd",
        description="Id of the `etcd` extension whose registry lists the bridges (when no peers).",
    )
    timeout: float = Field(
        default=10.0, gt=0, description="Seconds a region may take to answer; then it is reported failed."
    )
