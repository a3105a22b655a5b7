"""Configuration of the `otlp` (gRPC) exporter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.discovery.resolvers import ResolverConfig
from orasi_common.exporters.bearer import BearerAuthConfig, check_one_authorization
from orasi_common.pipeline.exporter_helper import ExporterConfig


class TlsConfig(ComponentConfig):
    """How a client verifies its peer (shared by the otlp, otap and loadbalancing exporters).
    Without ``insecure: true`` every connection is TLS and the server's certificate is checked:
    signed by ``ca_file`` (or the system's roots), valid now, naming the host dialled (or
    ``server_name_override``). Failures say which check failed (``transport.tls.explain_failure``)."""

    insecure: bool = Field(default=False, description="Plaintext (no TLS) to the peer.")
    ca_file: str | None = Field(default=None, description="PEM roots to trust (default: system).")
    server_name_override: str | None = Field(
        default=None,
        description="The name the server's certificate must hold, instead of the dialled host "
        "(e.g. when dialling an IP address); also sent as SNI.",
    )
    cert_file: str | None = Field(
        default=None, description="PEM client certificate chain, for servers that require mutual TLS."
    )
    key_file: str | None = Field(default=None, description="PEM private key of `cert_file`.")

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together: set both or neither")
        if self.insecure and (self.ca_file or self.cert_file or self.server_name_override):
            raise ValueError(
                "tls.insecure: true sends plaintext; remove ca_file, cert_file and server_name_override"
            )
        return self


class GrpcClientConfig(ComponentConfig):
    """How to reach one gRPC peer (shared by the otlp, otap and loadbalancing exporters)."""

    endpoint: str = Field(description="host:port of the peer.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="Transport security.")
    compression: Literal["gzip", "none"] = Field(
        default="gzip", description="gRPC message compression (grpcio offers gzip, not zstd)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Metadata sent with each call.")
    auth: BearerAuthConfig | None = Field(
        default=None,
        description="Send `authorization: Bearer <token>` read from a file, re-read as it rotates "
        "(exporters/bearer.py); unset: no token, unless `headers` holds one.",
    )
    max_send_msg_size_mib: float = Field(default=64, gt=0, description="Largest message sent, MiB.")

    @model_validator(mode="after")
    def _one_authorization(self) -> GrpcClientConfig:
        check_one_authorization(self.auth, self.headers)
        return self


class PeerConfig(GrpcClientConfig):
    """One peer, named (``endpoint``) or found (``resolver``), for the otlp and otap exporters."""

    resolver: ResolverConfig | None = Field(
        default=None,
        description="Where to find the peer instead of `endpoint` (static, dns or etcd): the exporter "
        "sends to one listed endpoint, keeps it while it is listed, and chooses another (rendezvous "
        "hashing, so senders spread) when it leaves. An etcd resolver dials each registered "
        "instance's `otap` endpoint for the otap exporter, its `otlp_grpc` endpoint for otlp.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_endpoint_with_a_resolver(cls, data: Any) -> Any:
        # `endpoint` stays required (and reported missing) unless a resolver stands in for it.
        if isinstance(data, dict) and data.get("resolver") is not None and "endpoint" not in data:
            return {**data, "endpoint": ""}
        return data

    @model_validator(mode="after")
    def _endpoint_or_resolver(self) -> PeerConfig:
        if self.endpoint and self.resolver is not None:
            raise ValueError("set endpoint or resolver, not both")
        return self


class Config(ExporterConfig, PeerConfig):
    pass
