"""Configuration of the `ratelimit` extension, and how a receiver or the query API names it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator

from orasi_common.config.model import ComponentConfig

KINDS = ("items", "bytes", "queries")
"""What is limited: ingested items/s, ingested bytes/s, queries running at once."""


class Limits(ComponentConfig):
    """One tenant's limits (``default:`` or ``tenants.<name>:``); an unset limit is no limit."""

    items_per_second: float | None = Field(
        default=None, gt=0, description="Items (spans, data points, log records) ingested per second."
    )
    bytes_per_second: float | None = Field(
        default=None, gt=0, description="Bytes of ingested requests per second (as received, decompressed)."
    )
    burst_seconds: float = Field(
        default=1.0,
        gt=0,
        description="A bucket holds this many seconds of its rate: how much an idle tenant may send at once.",
    )
    concurrent_queries: int | None = Field(
        default=None, ge=1, description="Queries of the tenant running at once over all replicas; more: 429."
    )


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's limits once its entry is merged over ``default`` (None: unlimited)."""

    items_per_second: float | None
    bytes_per_second: float | None
    burst_seconds: float
    concurrent_queries: int | None
    label: str
    """The tenant's value of the metrics' ``tenant`` label: its name when it has an entry under
    ``tenants``, else ``_default`` (so the label's values are bounded by the configuration)."""


DEFAULT_LABEL = "_default"


class RedisConfig(ComponentConfig):
    url: str = Field(description="redis://host:port/db (or rediss://, unix://) shared by every replica.")
    key_prefix: str = Field(
        default="orasi:ratelimit", min_length=1, description="Prefix of every key the limiter writes."
    )
    timeout: float = Field(
        default=0.1,
        gt=0,
        description="Seconds a Redis call may take; slower or failed: this replica limits alone (in "
        "process) until Redis answers again.",
    )
    retry_interval: float = Field(
        default=5.0, gt=0, description="Seconds between attempts to reach Redis again during an outage."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://host:port/db URL")
        return value


class Config(ComponentConfig):
    redis: RedisConfig | None = Field(
        default=None,
        description="Buckets and query leases shared by every replica in Redis; unset: in this "
        "process only (`orasi up`, or one replica).",
    )
    default: Limits = Field(default_factory=Limits, description="Limits of every tenant not under `tenants`.")
    tenants: dict[str, Limits] = Field(
        default_factory=dict,
        description="Limits by tenant; a field a tenant's entry sets replaces the default's (`null`: "
        "no limit), the others are the default's.",
    )
    query_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a running query's slot is held in Redis at most: a crashed replica's "
        "slots free themselves after it. Keep it above the query API's limits.timeout.",
    )

    def limits(self, tenant: str) -> TenantLimits:
        """``tenant``'s limits (its entry over ``default``)."""
        own = self.tenants.get(tenant)
        merged = self.default.model_dump()
        if own is not None:
            merged.update({name: getattr(own, name) for name in own.model_fields_set})
        return TenantLimits(**merged, label=tenant if own is not None else DEFAULT_LABEL)


class RateLimitSettings(ComponentConfig):
    """``rate_limit:`` on a receiver or the query API: which `ratelimit` extension limits it."""

    limiter: str = Field(description="Id of the `ratelimit` extension (listed in service.extensions).")


def extension_config(settings_extensions: object, rate_limit: RateLimitSettings, where: str) -> Config:
    """The `ratelimit` extension's config that ``rate_limit`` names, from a component's
    ``Settings.extensions``; ValueError naming ``where`` when it is not a `ratelimit` extension."""
    found = getattr(settings_extensions, "get", lambda _key: None)(rate_limit.limiter)
    if not isinstance(found, Config):
        raise ValueError(
            f"{where}.rate_limit.limiter: {rate_limit.limiter!r} is not a `ratelimit` extension listed "
            "in service.extensions"
        )
    return found
