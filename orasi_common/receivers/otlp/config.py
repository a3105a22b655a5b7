"""Configuration of the `otlp` receiver (the Collector's shape, plus Orasi's limits)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.receivers.access import IngestAccess
from orasi_common.transport import headers
from orasi_common.transport.endpoint import validate_endpoint
from orasi_common.transport.tls import TlsServerConfig

MIB = 1024 * 1024
Endpoint = Annotated[str, AfterValidator(validate_endpoint)]


class GrpcConfig(ComponentConfig):
    endpoint: Endpoint = Field(default="0.0.0.0:4317", description="host:port to listen on.")
    max_recv_msg_size_mib: float = Field(
        default=4,
        gt=0,
        description="Largest request message (after decompression); larger → RESOURCE_EXHAUSTED.",
    )
    processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Worker processes that serve this port together (SO_REUSEPORT) and hand each "
        "validated request to the pipelines' process, so that receiving runs on other cores; "
        "0 = serve in the pipelines' process. A client connection stays with one worker.",
    )
    tls: TlsServerConfig | None = Field(
        default=None, description="Serve TLS only (mutual with `client_ca_file`); unset: plaintext."
    )


class HttpConfig(ComponentConfig):
    endpoint: Endpoint = Field(default="0.0.0.0:4318", description="host:port to listen on.")
    max_request_body_size_mib: float = Field(
        default=4, gt=0, description="Largest request body as sent (compressed); larger → 413."
    )
    max_decompressed_body_size_mib: float = Field(
        default=16, gt=0, description="Largest body after gzip/zstd decompression; larger → 413."
    )
    tls: TlsServerConfig | None = Field(
        default=None, description="Serve HTTPS only (mutual with `client_ca_file`); unset: plaintext."
    )


class Protocols(ComponentConfig):
    grpc: GrpcConfig | None = Field(default=None, description="Serve OTLP/gRPC when set.")
    http: HttpConfig | None = Field(default=None, description="Serve OTLP/HTTP when set.")


class Config(IngestAccess):
    protocols: Protocols = Field(description="Which transports to serve (at least one).")
    tenant_header: str = Field(
        default=headers.TENANT,
        description="Request header / gRPC metadata key naming the tenant; absent = `default`.",
    )

    @model_validator(mode="after")
    def _one_protocol(self) -> Config:
        if self.protocols.grpc is None and self.protocols.http is None:
            raise ValueError("set protocols.grpc, protocols.http, or both")
        if self.auth is not None and self.protocols.grpc is not None and self.protocols.grpc.processes:
            raise ValueError(
                "auth: tokens are checked in the pipelines' process; set protocols.grpc.processes: 0"
            )
        return self
