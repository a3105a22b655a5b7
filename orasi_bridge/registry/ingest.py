"""What the lake writer asks of the schema registry for the rows it converts: validation by each
subject's policy (``validate``) and the attribute keys and original types seen (``observed``).

``reject`` applies only where the writer converts a batch before acknowledging it (``check``
with ``refuse``: OTAP batches, and OTLP batches of a tenant with a subject in reject mode): the
violating rows are left out and ``Inspection.refusal`` is the ``PartialSuccess`` its sender gets. Rows of
batches acknowledged already (the lazy conversion of OTLP) are flagged instead.

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
from orasi_bridge.registry.validate import Observed, Outcome, Policy, flatten, observed, validate
from orasi_common.errors import PartialSuccess

SIGNAL_OF_TABLE = {table: signal for signal, table in TABLE_OF_SIGNAL.items()}

SUBJECT_SIGNAL = {table: signal for signal, table in SIGNAL_TABLES.items()}
"""Lake table → the signal part of its subjects' names (``spans``, ``logs``, ``metrics``)."""


class Inspection:
    """What the schema registry asks of converted rows (in the conversion's thread): the keys and
    original types seen, and the validation of subjects whose mode is not off (``validate``)."""

    def __init__(self, registry: Registry, violations: Counter) -> None:
        self._registry = registry
        self._violations = violations
        self.seen: dict[str, Observed] = defaultdict(set)

    def __call__(self, table: str, tenant: str, rows: pa.RecordBatch, types: Types) -> pa.RecordBatch:
        """The rows of a batch accepted already, checked (``reject`` flags)."""
        return self.check(table, tenant, rows, types).rows

    def rejects(self, table: str, tenant: str) -> bool:
        """Whether a subject of ``tenant``'s in ``table`` is in reject mode."""
        policies = (self._registry.policies(tenant) or {}).get(table) or {}
        return any(policy.mode == "reject" for policy in policies.values())

    def check(
        self, table: str, tenant: str, rows: pa.RecordBatch, types: Types, refuse: bool = False
    ) -> Outcome:
        """Record what ``rows`` hold and apply the policies; ``refuse``: ``reject`` leaves the
        violating rows out (``Outcome.kept``), else it flags them."""
        prefix = SUBJECT_SIGNAL[table]
        flat = flatten(rows, types)
        self.seen[tenant] |= {
            (f"{prefix}.{service}", section, key, kind)
            for service, section, key, kind in observed(rows, types, flat)
        }
        policies = (self._registry.policies(tenant) or {}).get(table)
        if not policies:
            return Outcome(rows)
        if not refuse:
            policies = {
                service: policy if policy.mode != "reject" else Policy("flag", policy.schema)
                for service, policy in policies.items()
            }
        outcome = validate(rows, types, policies, flat)
        signal = SIGNAL_OF_TABLE[table].value
        for (service, action), count in outcome.counts.items():
            self._violations.labels(signal, service, action).inc(count)
        return outcome

    @staticmethod
    def refusal(table: str, outcome: Outcome) -> PartialSuccess | None:
        """The partial success answering a batch (one row per item) whose rows ``outcome`` left
        out: how many, and the first violations, each naming its subject, key and rule; None when
        none were."""
        if outcome.kept is None:
            return None
        items = len(outcome.kept)
        rejected = items - int(outcome.kept.sum())
        prefix = SUBJECT_SIGNAL[table]
        first = "; ".join(f"{prefix}.{service}: {message}" for service, message in outcome.first)
        return PartialSuccess(
            f"{rejected} of {items} items violate their subject's schema (validation reject) and were "
            f"not stored; first: {first}",
            rejected,
        )


__all__ = ["SUBJECT_SIGNAL", "Inspection", "Observed"]
