"""The bridge's own audit events as rows of the lake's ``audit`` table.

``AuditRows.record`` writes an event's audit line (``orasi_common.telemetry.audit``) and keeps it
as a row of its tenant; the writer commits the rows at each flush (``take``, then ``committed``
once published, or ``put_back`` when the commit failed), and queries see the rows not yet
committed (``hot``), like any buffered row. The rows live in memory only: an event is in the
log stream at once, and in the lake after the next successful flush (lost from the lake, not
from the log, if the bridge dies before).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

from orasi_bridge.lake.schema import AUDIT
from orasi_common.telemetry.audit import audit

TABLE = "audit"

MAX_ROWS = 100_000
"""Rows kept uncommitted at most (the lake down for long): the oldest are dropped (policy
``drop_oldest``); their lines stay in the log."""

_COLUMNS = frozenset(AUDIT.names)


class AuditRows:
    def __init__(self, region: str) -> None:
        self._region = region
        self._pending: list[dict[str, Any]] = []
        self._flushing: list[dict[str, Any]] = []

    def record(self, event: str, tenant: str, **fields: Any) -> None:
        """Audit ``event`` of ``tenant``: its line now, its row at the next flush. Fields named
        after a column fill it; the others go to ``details`` (JSON)."""
        entry = audit(event, tenant=tenant, **fields)
        now = time.time_ns()
        row: dict[str, Any] = {"tenant": tenant, "region": self._region, "lake_region": self._region}
        details = {}
        for key, value in entry.items():
            if key in _COLUMNS and key not in row:
                row[key] = value
            elif key != "tenant":
                details[key] = value
        row["details"] = json.dumps(details, default=str) if details else None
        row["time"] = now // 1000
        self._pending.append(row)
        if len(self._pending) > MAX_ROWS:
            del self._pending[: len(self._pending) - MAX_ROWS]

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def hot(self, tenant: str) -> list[pa.RecordBatch]:
        """The tenant's rows not yet committed (those of a flush in flight too)."""
        rows = [row for row in (*self._flushing, *self._pending) if row["tenant"] == tenant]
        return [pa.RecordBatch.from_pylist(rows, schema=AUDIT)] if rows else []

    def take(self) -> dict[str, list[pa.RecordBatch]]:
        """Every pending row, per tenant, for the flush about to commit them."""
        self._flushing, self._pending = self._pending, []
        tenants: dict[str, list[dict[str, Any]]] = {}
        for row in self._flushing:
            tenants.setdefault(row["tenant"], []).append(row)
        return {tenant: [pa.RecordBatch.from_pylist(rows, schema=AUDIT)] for tenant, rows in tenants.items()}

    def committed(self) -> None:
        self._flushing = []

    def put_back(self) -> None:
        """The commit failed: its rows wait for the next flush, before the newer ones."""
        self._pending, self._flushing = self._flushing + self._pending, []
