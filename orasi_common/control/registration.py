"""The one registration record format: what a service writes to etcd and every reader parses.

Key and value::

    /orasi/<region>/services/<kind>/<instance>
        → {"endpoints": {"otlp_grpc": "10.0.0.7:4317", "otlp_http": "10.0.0.7:4318",
                         "otap": "10.0.0.7:4417", "query_http": null, "query_grpc": null,
                         "admin": "10.0.0.7:13133"},
           "protocols": ["otap", "otlp_grpc", "otlp_http"],
           "region": "us-east-1", "zone": "us-east-1a", "version": "0.1.0",
           "started_at": "2026-12-07T00:00:00Z"}

- ``kind`` is ``agent``, ``gateway`` or ``bridge``; ``instance`` is unique within the kind and
  region (the extension uses ``<hostname>-<pid>`` unless configured); neither holds a ``/``.
- Every endpoint is ``host:port`` (no scheme), or null when the service does not serve it; an
  address any client can dial, never ``0.0.0.0``. ``protocols`` names the data protocols the
  service accepts (the non-null ones of ``otlp_grpc``, ``otlp_http``, ``otap``), sorted.
- The value is UTF-8 JSON held under a lease: it disappears when its service stops or dies.

Writers write exactly these keys (``encode``). Readers (``decode``) ignore keys they do not know,
so an older resolver keeps reading a newer service's record; anything else that is wrong
(not JSON, a missing key, a wrong type) raises ``MalformedRecord``, which a resolver counts
and skips, never letting it end a watch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orasi_common.errors import MalformedData

ROOT = "/orasi"
KINDS = ("agent", "gateway", "bridge")
DATA_PROTOCOLS = ("otap", "otlp_grpc", "otlp_http")


class MalformedRecord(MalformedData):
    """A key or value under ``/orasi/<region>/services/`` that is not a registration record."""


def _segment(value: str, what: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"{what} must be a non-empty name without '/', got {value!r}")
    return value


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in value:
        raise ValueError(f"an endpoint is host:port, got {value!r}")
    return value


class Endpoints(BaseModel):
    """Where the service answers, per protocol: ``host:port`` or None."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    otlp_grpc: str | None = Field(default=None, description="OTLP/gRPC receiver.")
    otlp_http: str | None = Field(default=None, description="OTLP/HTTP receiver.")
    otap: str | None = Field(default=None, description="OTAP (Arrow) receiver.")
    query_http: str | None = Field(default=None, description="The bridge's HTTP query API.")
    query_grpc: str | None = Field(default=None, description="The bridge's Flight SQL (gRPC) API.")
    admin: str | None = Field(default=None, description="/healthz, /readyz and /metrics.")

    @field_validator("*")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return _address(value)


class Record(BaseModel):
    """The value of one registration key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoints: Endpoints = Field(description="Where the service answers.")
    protocols: tuple[str, ...] = Field(description="Data protocols it accepts, sorted.")
    region: str = Field(description="Region of the service (the key's region).")
    zone: str = Field(description="Availability zone, or empty when unknown.")
    version: str = Field(description="Orasi version the service runs.")
    started_at: datetime = Field(description="When the service started (UTC).")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _segment(value, "region")

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("started_at must carry a time zone")
        return value.astimezone(UTC)


def protocols_of(endpoints: Endpoints) -> tuple[str, ...]:
    """The data protocols an endpoint set serves (the ``protocols`` of its record)."""
    return tuple(name for name in DATA_PROTOCOLS if getattr(endpoints, name) is not None)


class Key(NamedTuple):
    region: str
    kind: str
    instance: str


def prefix(region: str, kind: str | None = None) -> str:
    """The key prefix of every registration in ``region`` (of one ``kind`` when given), ending in ``/``."""
    base = f"{ROOT}/{_segment(region, 'region')}/services/"
    return base if kind is None else f"{base}{_segment(kind, 'kind')}/"


def key_of(region: str, kind: str, instance: str) -> str:
    """``/orasi/<region>/services/<kind>/<instance>``."""
    return prefix(region, kind) + _segment(instance, "instance")


def parse_key(key: str | bytes) -> Key:
    """The region, kind and instance of a registration key; ``MalformedRecord`` otherwise."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    parts = text.split("/")
    if (
        len(parts) != 6
        or parts[0] != ""
        or f"/{parts[1]}" != ROOT
        or parts[3] != "services"
        or not all(parts[2:])
    ):
        raise MalformedRecord(
            f"{text!r} is not a registration key {ROOT}/<region>/services/<kind>/<instance>"
        )
    return Key(parts[2], parts[4], parts[5])


def make_record(
    endpoints: Endpoints, *, region: str, zone: str, version: str, started_at: datetime
) -> Record:
    """A record whose ``protocols`` follow from its endpoints."""
    return Record(
        endpoints=endpoints,
        protocols=protocols_of(endpoints),
        region=region,
        zone=zone,
        version=version,
        started_at=started_at,
    )


def encode(record: Record) -> bytes:
    """The record as written to etcd: compact UTF-8 JSON, every key present, times in UTC ``Z``."""
    data = record.model_dump(mode="json")
    data["started_at"] = record.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def decode(value: bytes | str) -> Record:
    """Parse a record's value; ``MalformedRecord`` (saying what is wrong) when it is not one."""
    try:
        return Record.model_validate_json(value)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise MalformedRecord(f"malformed registration record ({problems})") from None
