"""The registry's read-through cache: in this process, and (optionally) in Redis for every bridge.

    read(tenant, key) ──▶ memory ──miss──▶ Redis hash t:<tenant>:<generation> ──miss──▶ store
                            ▲                        ▲                                   │
                            └──────── filled ────────┴───────────── filled ──────────────┘

    write (in the store) ──▶ INCR gen:<tenant> ──▶ PUBLISH invalidate <tenant>
                              every bridge's listener ──▶ drops the tenant from its memory

Keys are per tenant (``subjects``, ``versions:<subject>``, ``id:<n>``, ``config:<subject>``, …),
and a write of a tenant's drops all of that tenant's (writes are rare). A write moves the tenant
to a new *generation*: readers fill the hash of the generation they read before going to the
store, so a reader that raced a write fills a generation nobody reads any more (the old hashes
expire after ``REDIS_TTL``), and nothing stale is served. In memory the same holds with a
counter per tenant, bumped on each invalidation: a fill that started before it is dropped.

Memory is trusted only while the pub/sub listener is subscribed (or when there is no Redis: one
bridge, its own writes invalidate it); while it is not, reads go to Redis or the store and
memory answers only when both fail. When the store is down, reads keep being answered from
memory and Redis; a read neither holds fails ``Unavailable``.

``peek(tenant, key)`` reads memory only, without I/O: what a validator at ingest calls per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orasi_bridge.registry.errors import Unavailable
from orasi_common.pipeline.tasks import TaskScope

CHANNEL = "orasi:registry:invalidate"
REDIS_TTL = 24 * 3600
"""Seconds a generation's hash lives in Redis after its last fill."""
REDIS_TIMEOUT = 0.5
"""Seconds a Redis command may take before the cache goes around Redis."""
RECONNECT_DELAY = 0.5
HEALTH_CHECK = 2.0
"""Seconds of silence on the subscription after which it is checked with a PING."""

_READ = """
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('HGET', KEYS[2] .. g, ARGV[1])}
"""


class Cache:
    def __init__(self, redis_url: str | None, logger: logging.Logger) -> None:
        self._memory: dict[str, dict[str, Any]] = {}
        self._generation: dict[str, int] = {}  # per tenant, bumped on each invalidation
        self._logger = logger
        self._redis: aioredis.Redis | None = None
        self._redis_url = redis_url
        self._subscribed = asyncio.Event()
        self._redis_down = False
        self.on_invalidate: Callable[[str, set[str]], None] = lambda tenant, keys: None
        """Called with a tenant and the keys it had in memory when they were dropped."""

    @property
    def shared(self) -> bool:
        return self._redis_url is not None

    async def start(self, tasks: TaskScope) -> None:
        """Connect to Redis and listen for invalidations in a task of ``tasks`` (the owner's)."""
        if self._redis_url is None:
            return
        self._redis = aioredis.Redis.from_url(
            self._redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        tasks.spawn(self._listen(), name="registry-invalidations")
        # the first subscription within a few seconds: otherwise memory is not trusted until it is
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def close(self) -> None:
        """After the owner's tasks are closed (the listener with them)."""
        self._subscribed.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- reads

    def peek(self, tenant: str, key: str) -> Any:
        """The value in memory, or None; no I/O (the validator's path)."""
        if not self._trusted():
            return None
        return self._memory.get(tenant, {}).get(key)

    async def read(self, tenant: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The value of ``key``: from memory, Redis, or ``load()`` (the store), filling the tiers."""
        memory = self._memory.get(tenant, {})
        if key in memory and self._trusted():
            return memory[key]
        started_at = self._generation.get(tenant, 0)
        generation, cached = await self._redis_read(tenant, key)
        if cached is not None:
            value = json.loads(cached)
        else:
            try:
                value = await load()
            except Unavailable:
                if key in memory:  # the store is down: what memory has is better than nothing
                    return memory[key]
                raise
            if generation is not None:
                await self._redis_fill(tenant, generation, key, value)
        if self._generation.get(tenant, 0) == started_at:
            self._memory.setdefault(tenant, {})[key] = value
        return value

    def generation(self, tenant: str) -> int:
        """Bumped at each invalidation of the tenant's: a reader compares it before and after."""
        return self._generation.get(tenant, 0)

    def _trusted(self) -> bool:
        return self._redis_url is None or self._subscribed.is_set()

    async def _redis_read(self, tenant: str, key: str) -> tuple[str | None, bytes | None]:
        if self._redis is None:
            return None, None
        try:
            generation, value = await self._redis.eval(
                _READ, 2, f"orasi:registry:gen:{tenant}", f"orasi:registry:t:{tenant}:", key
            )
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return None, None
        self._redis_down = False
        return generation.decode(), value

    async def _redis_fill(self, tenant: str, generation: str, key: str, value: Any) -> None:
        assert self._redis is not None
        name = f"orasi:registry:t:{tenant}:{generation}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(name, key, json.dumps(value, separators=(",", ":")))
                pipe.expire(name, REDIS_TTL)
                await pipe.execute()
        except (RedisError, OSError) as error:
            self._redis_failed(error)

    def _redis_failed(self, error: BaseException) -> None:
        if not self._redis_down:
            self._logger.warning(
                "Registry cache: Redis does not answer; reading the store.", extra={"error": str(error)}
            )
            self._redis_down = True

    # -- invalidation

    async def invalidate(self, tenant: str) -> None:
        """After a write of ``tenant``'s: drop it here, and in every bridge through Redis."""
        self._drop(tenant)
        if self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(f"orasi:registry:gen:{tenant}")
                pipe.publish(CHANNEL, json.dumps({"tenant": tenant}))
                await pipe.execute()
        except (RedisError, OSError) as error:
            # the other bridges would not hear of it: their memory is dropped when their listener
            # reconnects, and Redis's hash may hold the old value until it expires
            self._logger.error(
                "Registry cache: a change could not be announced through Redis.",
                extra={"tenant": tenant, "error": str(error)},
            )

    def _drop(self, tenant: str) -> None:
        self._generation[tenant] = self._generation.get(tenant, 0) + 1
        dropped = self._memory.pop(tenant, {})
        self.on_invalidate(tenant, set(dropped))

    def _drop_all(self) -> None:
        for tenant in list(self._memory):
            self._drop(tenant)

    async def _listen(self) -> None:
        assert self._redis_url is not None
        # a client of its own: no read timeout on the subscription (it waits for messages), and a
        # PING every few seconds of silence, so that a dead connection is found out
        client = aioredis.Redis.from_url(
            self._redis_url, socket_connect_timeout=REDIS_TIMEOUT, health_check_interval=HEALTH_CHECK
        )
        try:
            while True:
                await self._subscription(client)
        finally:
            await client.aclose()

    async def _subscription(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            # whatever changed while we were not listening is unknown: start afresh
            self._drop_all()
            self._subscribed.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=HEALTH_CHECK)
                if message is not None and message.get("type") == "message":
                    self._drop(str(json.loads(message["data"])["tenant"]))
        except (RedisError, OSError, ValueError, KeyError, TypeError) as error:
            self._subscribed.clear()
            self._redis_failed(error)
            await asyncio.sleep(RECONNECT_DELAY)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


__all__ = ["CHANNEL", "Cache"]
