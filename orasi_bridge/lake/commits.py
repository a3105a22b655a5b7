"""How a lake commit keeps a batch in one commit of one writer: the batch ids recorded in each
snapshot's summary (``BATCH_IDS_PROPERTY``), read back since a known snapshot
(``batch_ids_since``), and buffered rows without those of batches committed elsewhere
(``without``)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.table import Table

from orasi_bridge.lake.buffer import Owners

BATCH_IDS_PROPERTY = "orasi.batch-ids"


def without(
    tenants: dict[str, list[pa.RecordBatch]], owners: dict[str, list[Owners]], skipped: set[str]
) -> list[pa.RecordBatch]:
    """Every tenant's record batches, without the rows of the batches in ``skipped``."""
    kept: list[pa.RecordBatch] = []
    for tenant, batches in tenants.items():
        for rows, owned in zip(batches, owners[tenant], strict=True):
            if not skipped.intersection(batch_id for batch_id, _ in owned):
                kept.append(rows)
                continue
            offset = 0
            for batch_id, count in owned:
                if batch_id not in skipped and count:
                    kept.append(rows.slice(offset, count))
                offset += count
    return kept


def batch_ids_since(table: Table, seen: int | None) -> tuple[list[tuple[float, list[str]]], int | None]:
    """The commit time and batch ids of each snapshot of ``table`` after the snapshot ``seen``
    (the current one's ancestors back to it, or to the first when it is gone), oldest first; and
    the current snapshot's id."""
    found: list[tuple[float, list[str]]] = []
    current = snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != seen:
        ids = (snapshot.summary.additional_properties if snapshot.summary else {}).get(BATCH_IDS_PROPERTY)
        if ids:
            found.append((snapshot.timestamp_ms / 1000, ids.split(",")))
        parent = snapshot.parent_snapshot_id
        snapshot = None if parent is None else table.metadata.snapshot_by_id(parent)
    found.reverse()
    return found, None if current is None else current.snapshot_id


@dataclass(frozen=True)
class Commit:
    """What ``_commit`` did: the table's snapshot after it, the rows it added, the batch ids the
    snapshots of other writers it read hold (with their commit times), and the batches it left
    out because another writer had committed them."""

    snapshot_id: int | None
    rows: int
    by_others: list[tuple[float, list[str]]]
    skipped: set[str]
