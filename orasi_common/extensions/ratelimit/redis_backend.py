"""Token buckets and query slots in Redis, shared by every replica (one Lua script per call).

    take:     KEYS = one hash per bucket {tokens, ts}       → {admitted, wait in µs, refusing index}
    acquire:  KEYS = the tenant's sorted set of leases      → 1 / 0
              (members: lease ids, scores: when each expires; expired ones are removed first)
    release:  ZREM of the lease

The scripts run atomically on Redis's clock (``TIME``), so replicas' clocks do not matter; the
bucket arithmetic is ``buckets.take``'s. Every key expires once idle: a bucket once it would be
full again, a lease set once its last lease would have expired — so a crashed replica's leases
age out. Scripts are called with EVALSHA, loaded on first use (``register_script``). Keys are
``<key_prefix>:{<tenant>}:<kind>``: the braces put a tenant's keys in one slot of a Redis Cluster,
which a script taking several of them needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from orasi_common.extensions.ratelimit.buckets import Take

_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local ttl = tonumber(ARGV[1])
local tokens, wait, refusing = {}, 0, 0
for i = 1, #KEYS do
  local rate, capacity, cost = tonumber(ARGV[i * 3 - 1]), tonumber(ARGV[i * 3]), tonumber(ARGV[i * 3 + 1])
  local held = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local level, ts = tonumber(held[1]), tonumber(held[2])
  if level == nil or ts == nil then level, ts = capacity, now end
  level = math.min(capacity, level + math.max(0, now - ts) * rate / 1000000)
  tokens[i] = level
  local needed = (math.min(cost, capacity) - level) / rate
  if needed > wait then wait, refusing = needed, i end
end
if refusing > 0 then return {0, math.ceil(wait * 1000000), refusing - 1} end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - tonumber(ARGV[i * 3 + 1])), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return {1, 0, -1}
"""

_ACQUIRE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""


class RedisBackend:
    """The shared buckets and leases; every call raises ``RedisError`` or ``TimeoutError`` when
    Redis does not answer within the client's timeout (the limiter then limits locally)."""

    def __init__(self, url: str, key_prefix: str, timeout: float) -> None:
        self.prefix = key_prefix
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._take = self._client.register_script(_TAKE)
        self._acquire = self._client.register_script(_ACQUIRE)

    async def close(self) -> None:
        await self._client.aclose()

    async def take(self, takes: Sequence[Take]) -> tuple[float, int]:
        """As ``buckets.take``, on the shared buckets (keys prefixed here)."""
        idle = max(capacity / rate for _key, rate, capacity, _cost in takes)
        args: list[float | int] = [max(1, math.ceil(idle * 1000))]
        for _key, rate, capacity, cost in takes:
            args.extend((rate, capacity, cost))
        keys = [f"{self.prefix}:{key}" for key, _rate, _capacity, _cost in takes]
        admitted, wait_us, refusing = await self._take(keys=keys, args=args)
        return (0.0, -1) if admitted else (int(wait_us) / 1e6, int(refusing))

    async def acquire(self, key: str, limit: int, lease_id: str, lease_seconds: float) -> bool:
        found = await self._acquire(
            keys=[f"{self.prefix}:{key}"], args=[lease_id, limit, math.ceil(lease_seconds * 1000)]
        )
        return bool(found)

    async def release(self, key: str, lease_id: str) -> None:
        await self._client.zrem(f"{self.prefix}:{key}", lease_id)
