"""The consistent-hash ring when membership changes (a registration joins or leaves): only the
changed share of the keys moves."""

from __future__ import annotations

import collections
import random

from orasi_gateway.loadbalancing.ring import HashRing, key_hash

KEYS = [key_hash(random.Random(i).randbytes(16)) for i in range(5000)]
FOUR = ["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317", "10.0.0.4:4317"]


def test_an_endpoint_leaving_moves_only_its_own_keys() -> None:
    before = HashRing(FOUR)
    after = HashRing(FOUR[:2] + FOUR[3:])  # 10.0.0.3 deregistered
    owners = [(before.lookup(k), after.lookup(k)) for k in KEYS]
    moved = [(b, a) for b, a in owners if b != a]
    assert {b for b, _ in moved} == {"10.0.0.3:4317"}  # nobody else's keys move
    assert len(moved) == sum(1 for b, _ in owners if b == "10.0.0.3:4317")
    # its keys spread over all three that remain
    assert set(collections.Counter(a for _, a in moved)) == {
        "10.0.0.1:4317",
        "10.0.0.2:4317",
        "10.0.0.4:4317",
    }


def test_one_endpoint_replaced_by_another_moves_about_its_share() -> None:
    before = HashRing(FOUR)
    after = HashRing([*FOUR[:3], "10.0.0.5:4317"])  # 10.0.0.4 died, 10.0.0.5 joined
    moved = [(before.lookup(k), after.lookup(k)) for k in KEYS]
    moved = [(b, a) for b, a in moved if b != a]
    # only keys of the one that left, or keys the newcomer takes, move
    assert all(b == "10.0.0.4:4317" or a == "10.0.0.5:4317" for b, a in moved)
    assert len(moved) / len(KEYS) < 0.45, len(moved)
