"""Token buckets and query slots in this process: the local backend (no Redis, or Redis down).

A bucket holds up to ``capacity`` tokens (``rate * burst_seconds``) and refills at ``rate`` per
second. A request costing ``cost`` is admitted when the bucket holds ``min(cost, capacity)``
tokens — so a request larger than the burst passes once the bucket is full — and takes ``cost``,
leaving the bucket in debt that the refill pays back. Refused, it takes nothing and is told the
seconds until it would be admitted. A request that takes several buckets (items and bytes) takes
from all of them or from none. ``redis_backend.py`` runs the same arithmetic in Lua.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_TENANTS = 100_000
"""Buckets kept in process at most (idle ones are dropped first once full ones are)."""


@dataclass
class Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float  # monotonic seconds

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` is admitted (0: now), once refilled."""
        return max(0.0, (min(cost, self.capacity) - self.tokens) / self.rate)


Take = tuple[str, float, float, float]
"""(bucket key, rate per second, capacity, cost) of one bucket a request takes from."""


def take(buckets: dict[str, Bucket], takes: Sequence[Take], now: float) -> tuple[float, int]:
    """Take every cost of ``takes`` from its bucket, or none: (0, -1) when admitted, else (the
    longest wait, the index in ``takes`` of the bucket that asks it)."""
    found = []
    wait, refusing = 0.0, -1
    for index, (key, rate, capacity, cost) in enumerate(takes):
        bucket = buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
            bucket = Bucket(rate, capacity, capacity, now)
        bucket.refill(now)
        found.append(bucket)
        needed = bucket.wait(cost)
        if needed > wait:
            wait, refusing = needed, index
    if refusing >= 0:
        return wait, refusing
    for (key, _rate, _capacity, cost), bucket in zip(takes, found, strict=True):
        bucket.tokens -= cost
        buckets[key] = bucket
    return 0.0, -1


class LocalBackend:
    """Buckets and query slots of this process only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._queries: dict[str, int] = {}

    def take(self, takes: Sequence[Take]) -> tuple[float, int]:
        """As ``take`` above, on this process's buckets."""
        if len(self._buckets) > MAX_TENANTS:
            self._forget_full()
        return take(self._buckets, takes, self._clock())

    def acquire(self, key: str, limit: int) -> bool:
        """One query slot of ``key`` when fewer than ``limit`` are held."""
        held = self._queries.get(key, 0)
        if held >= limit:
            return False
        self._queries[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._queries.get(key, 0) - 1
        if held > 0:
            self._queries[key] = held
        else:
            self._queries.pop(key, None)

    def _forget_full(self) -> None:
        """Drop the buckets that are full again (forgetting them changes nothing)."""
        now = self._clock()
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[key]
