"""`orasi lake restore`: tables rolled back to an earlier snapshot of their history (Iceberg
rollback), after a bad write or a corruption.

The target is a snapshot id (one table) or a time: each table's newest snapshot committed at or
before it, among the current snapshot's ancestors. A rollback makes that snapshot current again
in one catalog commit; the snapshots after it stay in the metadata (until expiry) and their rows
are no longer read.

Run it with the table's bridges stopped, then start them: a running bridge remembers the batch
ids of the rolled-back snapshots as committed (``committed.py``) and would acknowledge a resent
batch without writing it, while a started one reads the ids from the restored history. At start
each bridge replays its write-ahead log (what it acknowledged and had not committed) onto the
restored table; rows of the rolled-back snapshots come back only if their senders resend them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.table import Table

from orasi_bridge.lake.catalog import open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.schema import NAMESPACE
from orasi_bridge.lake.verify import history_of, snapshot_counts


class RestoreRefused(Exception):
    """Why the restore cannot be done (nothing was changed)."""


@dataclass(frozen=True)
class Rollback:
    table: str
    current_id: int
    current_rows: int
    target_id: int
    target_rows: int
    snapshots_undone: int


def restore(
    config: Config,
    tables: list[str],
    to_snapshot: int | None = None,
    to_time_ms: int | None = None,
    dry_run: bool = False,
) -> list[Rollback]:
    """Roll ``tables`` (every table of the lake when empty) back (blocking). Every table's target
    is found before any is changed; a table already at its target is left as it is."""
    if (to_snapshot is None) == (to_time_ms is None):
        raise RestoreRefused("give a snapshot id or a time, not both")
    catalog = open_catalog(config)
    try:
        names = tables or sorted(identifier[-1] for identifier in catalog.list_tables(NAMESPACE))
        if to_snapshot is not None and len(names) != 1:
            raise RestoreRefused("a snapshot id belongs to one table: name it with --table")
        loaded = {name: catalog.load_table(f"{NAMESPACE}.{name}") for name in names}
        plans = [_plan(table, to_snapshot, to_time_ms) for table in loaded.values()]
        for plan in plans:
            if not dry_run and plan.snapshots_undone:
                loaded[plan.table].manage_snapshots().rollback_to_snapshot(plan.target_id).commit()
        return plans
    finally:
        catalog.close()


def _plan(table: Table, to_snapshot: int | None, to_time_ms: int | None) -> Rollback:
    history = history_of(table)
    name = table.name()[-1]
    if not history:
        raise RestoreRefused(f"{name} has no snapshot")
    if to_snapshot is not None:
        matches = [index for index, snapshot in enumerate(history) if snapshot.snapshot_id == to_snapshot]
        if not matches:
            raise RestoreRefused(
                f"{name} has no snapshot {to_snapshot} in its current history (expired, or rolled back)"
            )
    else:
        matches = [
            index for index, snapshot in enumerate(history) if snapshot.timestamp_ms <= (to_time_ms or 0)
        ]
        if not matches:
            raise RestoreRefused(
                f"{name} has no snapshot that old in its current history (the oldest is expired?)"
            )
    index = matches[-1]
    target, current = history[index], history[-1]
    return Rollback(
        table=name,
        current_id=current.snapshot_id,
        current_rows=snapshot_counts(current).total_rows,
        target_id=target.snapshot_id,
        target_rows=snapshot_counts(target).total_rows,
        snapshots_undone=len(history) - 1 - index,
    )
