"""Configuration of the `etcd` extension (registration of the service in the control plane)."""

from __future__ import annotations

from pydantic import Field, field_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.control.registry import parse_endpoint

DEFAULT_ENDPOINTS = ("http://127.0.0.1:2379",)


class Config(ComponentConfig):
    endpoints: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENDPOINTS),
        description="etcd client URLs (http://host:port). Empty: an in-process registry, for a "
        "single process (orasi up without etcd).",
    )
    region: str = Field(default="us-east-1", pattern=r"^[^/]+$", description="Region registered in.")
    zone: str = Field(default="", pattern=r"^[^/]*$", description="Availability zone, or empty.")
    lease_ttl: int = Field(
        default=10, ge=2, le=3600, description="Seconds a killed service stays registered."
    )
    instance: str = Field(
        default="", pattern=r"^[^/]*$", description="Instance name (default: <hostname>-<pid>)."
    )
    live_settings: bool = Field(
        default=True,
        description="Apply the live settings of /orasi/<region>/config/<kind>/ (etcd endpoints only).",
    )
    advertise_host: str = Field(
        default="",
        description="Host registered for endpoints bound to every address (0.0.0.0, ::); default: "
        "this host's address.",
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for url in value:
            parse_endpoint(url)  # ValueError: not http://host:port
        return value
