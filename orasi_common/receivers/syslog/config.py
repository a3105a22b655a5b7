"""Configuration of the `syslog` receiver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from orasi_common.config.model import ComponentConfig, TlsServerConfig
from orasi_common.pdata import DEFAULT_TENANT
from orasi_common.receivers.otlp.config import Endpoint
from orasi_common.receivers.syslog.parse import zone_of


class TcpConfig(ComponentConfig):
    endpoint: Endpoint = Field(default="0.0.0.0:5514", description="host:port to accept TCP syslog on.")
    max_connections: int = Field(
        default=1024, ge=1, description="Open connections at most; more are closed at once, logged."
    )
    tls: TlsServerConfig | None = Field(
        default=None,
        description="Serve syslog over TLS (RFC 5425; port 6514 by convention), mutual with "
        "client_ca_file; the certificate is reloaded from disk without a restart.",
    )


class UdpConfig(ComponentConfig):
    endpoint: Endpoint = Field(
        default="0.0.0.0:5514", description="host:port to read UDP syslog datagrams on."
    )


class Config(ComponentConfig):
    tcp: TcpConfig | None = Field(default=None, description="Serve TCP (octet counting or newline framing).")
    udp: UdpConfig | None = Field(default=None, description="Serve UDP (one message per datagram).")
    protocol: Literal["auto", "rfc5424", "rfc3164"] = Field(
        default="auto",
        description="The messages' format; `auto` reads RFC 5424 when VERSION 1 follows <PRI>, "
        "RFC 3164 otherwise.",
    )
    location: str = Field(
        default="UTC",
        description="The time zone of RFC 3164 timestamps (which carry none), e.g. Europe/Paris.",
    )
    max_message_bytes: int = Field(
        default=64 * 1024,
        ge=480,
        le=16 * 1024 * 1024,
        description="Longest message (line or frame); a longer TCP frame or line closes the connection, a "
        "longer datagram is refused; both are logged and counted.",
    )
    send_batch_size: int = Field(
        default=1000, ge=1, description="Messages gathered into one batch before it is handed on."
    )
    flush_interval: float = Field(
        default=0.2, gt=0, description="Seconds a batch waits for more messages before it is handed on."
    )
    tenant: str = Field(default=DEFAULT_TENANT, description="The tenant of every message received here.")

    @field_validator("location")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone_of(value)
        except (KeyError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> Config:
        if self.tcp is None and self.udp is None:
            raise ValueError("set tcp, udp, or both")
        return self
