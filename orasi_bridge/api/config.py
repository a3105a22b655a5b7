"""Configuration of the `query_api` extension (the bridge's REST and Flight SQL query APIs)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from orasi_bridge.federation.config import FederationConfig
from orasi_bridge.query.engine import QueryLimits
from orasi_bridge.registry.config import RegistryConfig
from orasi_common.config.model import ComponentConfig
from orasi_common.extensions.auth import AuthSettings
from orasi_common.extensions.ratelimit import RateLimitSettings
from orasi_common.transport.endpoint import validate_endpoint
from orasi_common.transport.tls import TlsServerConfig


class Config(ComponentConfig):
    endpoint: str = Field(default="0.0.0.0:8080", description="host:port of the REST API.")
    flight_sql: str | None = Field(
        default=None,
        description="host:port of the Arrow Flight SQL server (the gRPC query API; 9090 by "
        "convention, as `orasi up` serves it); none: not served.",
    )
    lake: str = Field(default="lake", description="Id of the `lake` exporter whose tables are queried.")
    limits: QueryLimits = Field(default_factory=QueryLimits, description="Per-query limits.")
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API key → tenant. When set, every query needs a key (Authorization: Bearer "
        "KEY or X-API-Key) and reads that key's tenant only.",
    )
    federation: FederationConfig = Field(
        default_factory=FederationConfig,
        description="Global queries (scope: global): the regions' bridges and their timeout (README).",
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig, description="The schema registry under /registry (README)."
    )
    auth: AuthSettings | None = Field(
        default=None,
        description="Require a bearer token checked by this `auth` extension (scope `query`; "
        "`admin` for registry changes); the caller reads its token's tenant only (README, Security).",
    )
    rate_limit: RateLimitSettings | None = Field(
        default=None,
        description="Limit each tenant's queries running at once (REST, Jaeger, Flight SQL) with this "
        "`ratelimit` extension; over the limit: 429 with Retry-After (README, Security).",
    )
    tls: TlsServerConfig | None = Field(
        default=None,
        description="Serve the REST API (HTTPS) and Flight SQL (grpc+tls) over TLS only, mutual with "
        "`client_ca_file`; the REST certificate is reloaded from disk, Flight SQL's at restart.",
    )

    @model_validator(mode="after")
    def _one_credential_kind(self) -> Config:
        if self.auth is not None and self.api_keys:
            raise ValueError("set auth (tokens) or api_keys (static keys), not both")
        return self

    @field_validator("flight_sql")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else validate_endpoint(value)
