"""The `ratelimit` extension: per-tenant ingest rates and concurrent queries, shared by every
replica through Redis (README, Security: rate limits)."""

from orasi_common.extensions.ratelimit.config import (
    KINDS,
    Config,
    Limits,
    RateLimitSettings,
    RedisConfig,
    TenantLimits,
    extension_config,
)
from orasi_common.extensions.ratelimit.extension import RateLimitExtension
from orasi_common.extensions.ratelimit.limiter import RateLimiter, rate_limiter
from orasi_common.pipeline.component import ExtensionFactory

FACTORY = ExtensionFactory("ratelimit", Config, RateLimitExtension)

__all__ = [
    "FACTORY",
    "KINDS",
    "Config",
    "Limits",
    "RateLimitExtension",
    "RateLimitSettings",
    "RateLimiter",
    "RedisConfig",
    "TenantLimits",
    "extension_config",
    "rate_limiter",
]
