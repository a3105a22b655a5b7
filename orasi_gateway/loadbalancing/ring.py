"""Consistent hashing: keys map to endpoints so that few keys move when endpoints change.

Each endpoint owns ``replicas`` points on a 64-bit ring; a key belongs to the first point at or
after its hash. Looking up with a health predicate walks on to the next healthy endpoint, so an
unhealthy endpoint's keys spread over the others while everyone else's stay put. Hashes are
blake2b, the same in every process (Python's ``hash`` is salted per process).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence


def key_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, endpoints: Sequence[str], replicas: int = 128) -> None:
        points = sorted(
            (key_hash(f"{endpoint}#{index}".encode()), endpoint)
            for endpoint in set(endpoints)
            for index in range(replicas)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [e for _, e in points]
        self.endpoints = sorted(set(endpoints))

    def lookup(self, key: int, usable: Callable[[str], bool] = lambda _: True) -> str | None:
        """The endpoint owning ``key``, skipping endpoints ``usable`` rejects; None if none is."""
        if not self._hashes:
            return None
        start = bisect.bisect_left(self._hashes, key) % len(self._hashes)
        seen: set[str] = set()
        for offset in range(len(self._owners)):
            owner = self._owners[(start + offset) % len(self._owners)]
            if owner in seen:
                continue
            if usable(owner):
                return owner
            seen.add(owner)
            if len(seen) == len(self.endpoints):
                return None
        return None
