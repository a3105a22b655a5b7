"""Configuration of the `otlp` (gRPC) exporter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.pipeline.exporter_helper import ExporterConfig


class TlsConfig(ComponentConfig):
    insecure: bool = Field(default=False, description="Plaintext (no TLS) to the peer.")
    ca_file: str | None = Field(default=None, description="PEM roots to trust (default: system).")


class GrpcClientConfig(ComponentConfig):
    """How to reach one gRPC peer (shared by the otlp, otap and loadbalancing exporters)."""

    endpoint: str = Field(description="host:port of the peer.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="Transport security.")
    compression: Literal["gzip", "none"] = Field(
        default="gzip", description="gRPC message compression (grpcio offers gzip, not zstd)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Metadata sent with each call.")
    max_send_msg_size_mib: float = Field(default=64, gt=0, description="Largest message sent, MiB.")


class Config(ExporterConfig, GrpcClientConfig):
    pass
