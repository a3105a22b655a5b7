"""The shape of a service's YAML configuration (the Collector's), and the component config base."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orasi_common.ports import SERVICES, admin_port


class ComponentConfig(BaseModel):
    """Base of every component's ``Config``: unknown keys are errors; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineConfig(ComponentConfig):
    receivers: list[str] = Field(description="Receiver ids feeding this pipeline.", min_length=1)
    processors: list[str] = Field(default_factory=list, description="Processor ids, applied in order.")
    exporters: list[str] = Field(description="Exporter ids the pipeline ends in.", min_length=1)


class LogsTelemetry(ComponentConfig):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Minimum level of the service's own JSON logs."
    )


class TlsServerConfig(ComponentConfig):
    """Every listener's `tls` section (served by ``orasi_common.transport.tls.ServerTls``)."""

    cert_file: str = Field(description="PEM certificate chain of the server (leaf first).")
    key_file: str = Field(description="PEM private key of `cert_file`.")
    client_ca_file: str | None = Field(
        default=None,
        description="PEM CAs that sign client certificates; set: mutual TLS (a client without a "
        "certificate it signs is refused during the handshake).",
    )
    min_version: Literal["1.2", "1.3"] = Field(
        default="1.2", description="Lowest TLS version accepted (HTTP listeners; gRPC negotiates 1.2+)."
    )
    reload_interval: float = Field(
        default=30.0,
        ge=0,
        description="Seconds between checks of the files for new certificates (0: load once).",
    )


class AdminConfig(ComponentConfig):
    endpoint: str | None = Field(
        default=None,
        description="host:port of /healthz, /readyz, /metrics and /debug/pipelines (default "
        + ", ".join(f"0.0.0.0:{admin_port(name)} {name}" for name in SERVICES)
        + ").",
    )
    tls: TlsServerConfig | None = Field(
        default=None, description="Serve HTTPS only (mutual with `client_ca_file`); unset: plaintext."
    )


class TelemetryConfig(ComponentConfig):
    logs: LogsTelemetry = Field(default_factory=LogsTelemetry, description="Own logs.")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="The admin HTTP port.")


class ServicePart(ComponentConfig):
    pipelines: dict[str, PipelineConfig] = Field(
        description="Pipelines by id: `traces`, `metrics`, `logs`, optionally `/name`d."
    )
    extensions: list[str] = Field(default_factory=list, description="Extension ids to start.")
    telemetry: TelemetryConfig = Field(
        default_factory=TelemetryConfig, description="The service's own telemetry."
    )


class ServiceConfig(ComponentConfig):
    """A whole configuration file. Component sections stay raw until their factory validates them."""

    receivers: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    processors: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    exporters: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    extensions: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    service: ServicePart
