"""Configuration of the `otlphttp` exporter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.exporters.bearer import BearerAuthConfig, check_one_authorization
from orasi_common.pipeline.exporter_helper import ExporterConfig


class TlsConfig(ComponentConfig):
    ca_file: str | None = Field(default=None, description="PEM roots to trust for https (default: system).")
    insecure_skip_verify: bool = Field(default=False, description="Do not verify the peer's certificate.")


class Config(ExporterConfig):
    endpoint: str = Field(
        description="Base URL of the OTLP/HTTP peer, e.g. http://gateway:4318; /v1/<signal> is appended."
    )
    traces_endpoint: str | None = Field(default=None, description="Full URL for traces (overrides endpoint).")
    metrics_endpoint: str | None = Field(
        default=None, description="Full URL for metrics (overrides endpoint)."
    )
    logs_endpoint: str | None = Field(default=None, description="Full URL for logs (overrides endpoint).")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="Transport security for https.")
    compression: Literal["gzip", "zstd", "none"] = Field(default="gzip", description="Body encoding.")
    headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with each request.")
    auth: BearerAuthConfig | None = Field(
        default=None,
        description="Send `Authorization: Bearer <token>` read from a file, re-read as it rotates "
        "(exporters/bearer.py); unset: no token, unless `headers` holds one.",
    )

    @model_validator(mode="after")
    def _one_authorization(self) -> Config:
        check_one_authorization(self.auth, self.headers)
        return self
