"""What the lake writer asks of the schema registry for the rows it converts: validation by each
subject's policy (``validate``) and the attribute keys and original types seen (``observed``).

It runs in the conversion's thread and reads the registry's memory only (``Registry.policies``);
the writer hands what was seen to ``Registry.observe`` after each flush.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
from prometheus_client import Counter

from orasi_bridge.lake.rows import TABLE_OF_SIGNAL, Types
from orasi_bridge.registry.registry import Registry
from orasi_bridge.registry.schema import SIGNAL_TABLES
from orasi_bridge.registry.validate import Observed, Policy, flatten, observed, validate

SIGNAL_OF_TABLE = {table: signal for signal, table in TABLE_OF_SIGNAL.items()}

SUBJECT_SIGNAL = {table: signal for signal, table in SIGNAL_TABLES.items()}
"""Lake table → the signal part of its subjects' names (``spans``, ``logs``, ``metrics``)."""


class Inspection:
    """What the schema registry asks of converted rows (in the conversion's thread): the keys and
    original types seen, and the validation of subjects whose mode is not off (``validate``). A
    batch accepted already is never refused here: ``reject`` flags instead."""

    def __init__(self, registry: Registry, violations: Counter) -> None:
        self._registry = registry
        self._violations = violations
        self.seen: dict[str, Observed] = defaultdict(set)

    def __call__(self, table: str, tenant: str, rows: pa.RecordBatch, types: Types) -> pa.RecordBatch:
        prefix = SUBJECT_SIGNAL[table]
        sections = flatten(rows, types)
        self.seen[tenant] |= {
            (f"{prefix}.{service}", section, key, kind)
            for service, section, key, kind in observed(rows, types, sections)
        }
        policies = (self._registry.policies(tenant) or {}).get(table)
        if not policies:
            return rows
        accepted = {
            service: policy if policy.mode != "reject" else Policy("flag", policy.schema)
            for service, policy in policies.items()
        }
        outcome = validate(rows, types, accepted, sections)
        signal = SIGNAL_OF_TABLE[table].value
        for (service, action), count in outcome.counts.items():
            self._violations.labels(signal, service, action).inc(count)
        return outcome.rows


__all__ = ["SUBJECT_SIGNAL", "Inspection", "Observed"]
