"""The ``redact`` processor held against a reference written entry by entry with Python's ``re``:
many rows whose values repeat (so the cache across batches is used), under allowed, denied and
other keys, resource maps in runs and row by row, masked and hashed."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

from orasi_bridge.stream.config import BUILTIN_PATTERNS
from orasi_bridge.stream.redact import luhn
from orasi_common.telemetry.metrics import Metrics

from .rows import chain, column, sample_value, spans

VALUES = [
    "alice@example.com",
    "from 10.1.2.3 to 10.1.2.4",
    "card 4111 1111 1111 1111",
    "4111111111111112",  # fails the Luhn check
    "Bearer abc.def-ghi",
    "AKIAABCDEFGHIJKLMNOP",
    "2001:db8::1",
    "ORD-123456 and ORD-654321",
    "plain",
    "",
    None,
]
KEYS = ["note", "secret", "secret.token", "user", "peer", "other"]
CONFIG: dict[str, Any] = {
    "type": "redact",
    "signals": ["traces"],
    "patterns": [{"name": "order", "regex": r"ORD-\d{6}"}],
    "allow_keys": ["note"],
    "deny_keys": ["secret*"],
}
SALT = "pepper"


def replacement(action: str, rule: str, text: str) -> str:
    if action == "mask":
        return f"[REDACTED:{rule}]"
    salt = hashlib.sha256(SALT.encode() + b"\0acme").digest()
    return "sha256:" + hashlib.sha256(salt + text.encode()).hexdigest()[:32]


def reference(action: str, key: str, value: str | None, counted: Counter[str]) -> str | None:
    """One entry redacted as the contract says: allowed keys as they are, denied keys wholly, any
    other value through every rule in order (``card``'s matches only when they pass Luhn)."""
    if value is None or key == "note":
        return value
    if key.startswith("secret"):
        counted["deny_keys"] += 1
        return replacement(action, "deny_keys", value)
    rules = [(name, regex) for name, regex in BUILTIN_PATTERNS.items()] + [("order", r"ORD-\d{6}")]
    for name, regex in rules:

        def substitute(match: re.Match[str], name: str = name) -> str:
            if name == "card" and not luhn(match.group(0)):
                return match.group(0)
            counted[name] += 1
            return replacement(action, name, match.group(0))

        value = re.sub(regex, substitute, value)
    return value


def entries(seed: int, count: int) -> list[tuple[str, str | None]]:
    pairs = list(itertools.product(KEYS, VALUES))
    picked = np.random.default_rng(seed).integers(0, len(pairs), count)
    return [pairs[i] for i in picked]


@pytest.mark.parametrize("action", ["mask", "hash"])
@pytest.mark.parametrize("per_resource", [True, False], ids=["runs", "rows"])
def test_redact_equals_the_reference_entry_by_entry(
    action: str, per_resource: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORASI_TEST_SALT", SALT)
    config = {**CONFIG, "action": action, **({"salt_env": "ORASI_TEST_SALT"} if action == "hash" else {})}
    metrics = Metrics("bridge")
    stream = chain(config, metrics=metrics)
    expected: Counter[str] = Counter()
    for batch in range(2):  # the second batch's values are mostly in the cache
        resources = [entries(100 + 10 * batch + r, 6) for r in range(4)]
        resource_of_row = np.repeat(np.arange(4), [30, 50, 20, 60])
        maps = [entries(batch * 1000 + row, 1 + row % 7) for row in range(len(resource_of_row))]
        rows = spans(
            *(
                {"attributes": attributes, "resource_attributes": resources[r]}
                for attributes, r in zip(maps, resource_of_row, strict=True)
            )
        )
        out, _ = stream.process("spans", "acme", rows, [len(maps)], resource_of_row if per_resource else None)
        for name, source in (
            ("attributes", maps),
            ("resource_attributes", [resources[r] for r in resource_of_row]),
        ):
            wanted = [[(k, reference(action, k, v, expected)) for k, v in entry] for entry in source]
            assert column(out, name) == wanted, name
    labels = {"exporter": "lake", "processor": "redact_0"}
    rules = [*BUILTIN_PATTERNS, "order", "deny_keys"]
    counted = {
        rule: sample_value(metrics, "orasi_stream_redactions_total", {**labels, "rule": rule})
        for rule in rules
    }
    assert counted == {rule: expected[rule] for rule in rules}
    assert all(expected[rule] for rule in rules)  # every rule had matches to count
