"""Configuration of the schema registry (``extensions.query_api.registry`` of the bridge)."""

from __future__ import annotations

from pydantic import Field, field_validator

from orasi_bridge.registry.compatibility import DEFAULT_LEVEL, parse_level
from orasi_common.config.model import ComponentConfig

MAX_REQUEST_BYTES = 1 << 20
VALIDATION_MODES = ("off", "flag", "drop_attribute", "reject")
"""What ingest does with a subject's violations (``validate``)."""


class RegistryConfig(ComponentConfig):
    enabled: bool = Field(default=True, description="Serve the registry under /registry on the REST port.")
    store: str | None = Field(
        default=None,
        description="Database of the registry: postgresql://… or sqlite:///path (unset: the lake "
        "catalog's database, with tables of its own).",
    )
    redis: str | None = Field(
        default=None,
        description="redis://host:port/db of the cache shared by the bridges, whose pub/sub tells every "
        "bridge of a change within a second (unset: a cache in this process only, right for one bridge).",
    )
    compatibility: str = Field(
        default=DEFAULT_LEVEL.value,
        description="Compatibility level of tenants and subjects that set none (BACKWARD, "
        "BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE).",
    )
    validation: str = Field(
        default="off",
        description="What ingest does with items that violate their subject's latest schema, for "
        'subjects that set none (PUT /registry/config/{subject} {"validation": ...}): off, flag '
        "(stored with a schema_violations column), drop_attribute (offending attributes removed), "
        "reject (refused with an OTLP partial success, the rest stored).",
    )
    max_request_bytes: int = Field(
        default=MAX_REQUEST_BYTES, gt=0, description="Largest request body the registry reads (413 past it)."
    )

    @field_validator("compatibility")
    @classmethod
    def _level(cls, value: str) -> str:
        return parse_level(value).value

    @field_validator("validation")
    @classmethod
    def _validation(cls, value: str) -> str:
        if value not in VALIDATION_MODES:
            raise ValueError(f"validation must be one of {', '.join(VALIDATION_MODES)}")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///")
        ):
            raise ValueError("the registry's store must be a postgresql:// or sqlite:/// URL")
        return value

    @field_validator("redis")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis must be a redis://host:port/db URL")
        return value


__all__ = ["RegistryConfig"]
