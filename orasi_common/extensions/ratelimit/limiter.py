"""What a receiver or the query API asks of the `ratelimit` extension: may this tenant go on?

    admit(tenant, items, bytes)  → returns, or raises Throttled(retry_after)   (before consume)
    async with query(tenant):    → a query slot held while the query runs, or Throttled

Backends, by what can be reached::

    redis configured and answering   RedisBackend: buckets and leases shared by every replica
    redis unset                      LocalBackend: this process's (``orasi up``)
    redis failing or slower than     LocalBackend with the same limits: during an outage each
    its timeout                      replica enforces the limits alone (so the cluster admits up
                                     to replicas * the limits); Redis is tried again every
                                     ``retry_interval``. Never a refusal because Redis is down.

A refused tenant's answer is kept in process until its retry time: its requests meanwhile are
refused without a Redis round trip (``_refused``). Outages are logged once each (when they start
and end) and exported as ``orasi_ratelimit_backend_up{component}``; refusals as
``orasi_ratelimit_refused_total{component, tenant, kind}``, whose ``tenant`` is the tenant's name
only when it has its own entry in ``tenants`` (else ``_default``), so the label stays bounded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from orasi_common.errors import Throttled
from orasi_common.extensions.ratelimit.buckets import MAX_TENANTS, LocalBackend, Take
from orasi_common.extensions.ratelimit.config import (
    DEFAULT_LABEL,
    Config,
    RateLimitSettings,
    TenantLimits,
    extension_config,
)
from orasi_common.extensions.ratelimit.redis_backend import RedisBackend

if TYPE_CHECKING:
    from orasi_common.pipeline.component import Settings
    from orasi_common.telemetry.metrics import Metrics


def rate_limiter(settings: Settings, rate_limit: RateLimitSettings | None) -> RateLimiter | None:
    """The RateLimiter of a component whose config says ``rate_limit: {limiter: <id>}`` (None
    without it); ValueError when the id is not a listed `ratelimit` extension."""
    if rate_limit is None:
        return None
    config = extension_config(settings.extensions, rate_limit, settings.id)
    return RateLimiter(config, settings.id, settings.metrics, settings.logger)


class RateLimiter:
    """The limits of one component (it owns its Redis connection and its local buckets)."""

    def __init__(
        self,
        config: Config,
        component: str,
        metrics: Metrics,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clock = clock  # monotonic seconds (a test's clock makes the waits exact)
        self._component = component
        self._logger = logger or logging.getLogger(__name__)
        self._limits = {tenant: config.limits(tenant) for tenant in config.tenants}
        self._default = config.limits(DEFAULT_LABEL)
        self._local = LocalBackend(clock)
        self._redis: RedisBackend | None = None
        self._redis_down_until = 0.0  # monotonic; > now: Redis is not tried before then
        self._refused: dict[str, tuple[float, str]] = {}  # tenant → (refused until, kind)
        self._metrics = metrics
        self._up = metrics.ratelimit_backend_up.labels(component)
        self._up.set(1)

    @property
    def shared(self) -> bool:
        """Whether the limits are currently shared through Redis."""
        return self._redis is not None and self._redis_down_until <= self._clock()

    async def start(self) -> None:
        if self._config.redis is not None and self._redis is None:
            redis = self._config.redis
            self._redis = RedisBackend(redis.url, redis.key_prefix, redis.timeout)

    async def shutdown(self) -> None:
        if self._redis is not None:
            backend, self._redis = self._redis, None
            await backend.close()

    def limits(self, tenant: str) -> TenantLimits:
        return self._limits.get(tenant, self._default)

    async def admit(self, tenant: str, items: int, size_bytes: int) -> None:
        """Take ``items`` and ``size_bytes`` from the tenant's buckets, or raise Throttled (with
        the seconds until they would be admitted) having taken nothing."""
        limits = self.limits(tenant)
        takes: list[Take] = []
        kinds: list[str] = []
        for kind, rate, cost in (
            ("items", limits.items_per_second, items),
            ("bytes", limits.bytes_per_second, size_bytes),
        ):
            if rate is not None:
                takes.append((f"{{{tenant}}}:{kind}", rate, rate * limits.burst_seconds, float(cost)))
                kinds.append(kind)
        if not takes:
            return
        now = self._clock()
        refused = self._refused.get(tenant)
        if refused is not None:
            if refused[0] > now:
                self._refuse(limits, refused[1], refused[0] - now)
            del self._refused[tenant]
        wait, refusing = -1.0, -1
        if self._redis is not None and self._redis_down_until <= now:
            try:
                wait, refusing = await self._redis.take(takes)
                self._backend_answered()
            except (RedisError, OSError, TimeoutError) as error:
                self._backend_failed(error)
        if refusing < 0 and wait < 0:
            wait, refusing = self._local.take(takes)
        if refusing >= 0:
            if len(self._refused) >= MAX_TENANTS:
                self._refused.clear()
            self._refused[tenant] = (now + wait, kinds[refusing])
            self._refuse(limits, kinds[refusing], wait)

    @asynccontextmanager
    async def query(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's query slots while the block runs; Throttled when all are held."""
        limits = self.limits(tenant)
        limit = limits.concurrent_queries
        if limit is None:
            yield
            return
        key = f"{{{tenant}}}:queries"
        lease = uuid.uuid4().hex
        shared: bool | None = None  # which backend holds the slot
        if self._redis is not None and self._redis_down_until <= self._clock():
            try:
                shared = await self._redis.acquire(key, limit, lease, self._config.query_lease_seconds)
                self._backend_answered()
                if not shared:
                    self._refuse(limits, "queries", 1.0)
            except (RedisError, OSError, TimeoutError) as error:
                self._backend_failed(error)
        if shared is None:
            if not self._local.acquire(key, limit):
                self._refuse(limits, "queries", 1.0)
            shared = False
        try:
            yield
        finally:
            if not shared:
                self._local.release(key)
            elif self._redis is not None:
                try:
                    await self._redis.release(key, lease)
                except (RedisError, OSError, TimeoutError) as error:
                    self._backend_failed(error)  # the lease ages out

    def _refuse(self, limits: TenantLimits, kind: str, wait: float) -> None:
        self._metrics.ratelimit_refused.labels(self._component, limits.label, kind).inc()
        if kind == "queries":
            what = f"{limits.concurrent_queries} queries at once"
        else:
            rate = limits.items_per_second if kind == "items" else limits.bytes_per_second
            what = f"{rate:g} {kind}/s"
        raise Throttled(
            f"the tenant's rate limit of {what} is reached; retry after {wait:.3g} s", retry_after=wait
        )

    def _backend_answered(self) -> None:
        if self._redis_down_until:
            self._redis_down_until = 0.0
            self._up.set(1)
            self._logger.info("Rate limits are shared through Redis again.")

    def _backend_failed(self, error: Exception) -> None:
        assert self._config.redis is not None
        if not self._redis_down_until:
            self._up.set(0)
            self._logger.warning(
                "Redis does not answer: this replica enforces the rate limits alone until it does.",
                extra={"error": repr(error), "retry_interval": self._config.redis.retry_interval},
            )
        self._redis_down_until = self._clock() + self._config.redis.retry_interval
