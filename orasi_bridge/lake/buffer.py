"""What one flush of the lake writer will commit: batches waiting for conversion, then Arrow rows
per table and tenant with the batches they came from (``Buffer``); ``convert.py`` turns the
waiting batches into those rows."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_common.pdata import Batch

Bools = npt.NDArray[np.bool_]

Entry = tuple[Batch, int | None]  # a batch and its write-ahead log position


Owners = list[tuple[str, int]]
"""The batches whose rows one buffered record batch holds, in row order: (batch id, rows)."""


@dataclass
class Buffer:
    """What one flush will commit, per table and tenant: batches waiting to be converted
    (``pending``), then rows. A batch's id is listed for its table once its rows are; each record
    batch of ``rows`` has its ``owners`` beside it, so a batch's rows can be left out of a commit."""

    pending: dict[tuple[str, str], list[Entry]] = field(default_factory=lambda: defaultdict(list))
    pending_items: int = 0
    rows: dict[str, dict[str, list[pa.RecordBatch]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    owners: dict[str, dict[str, list[Owners]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    batch_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lsns: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    known: set[str] = field(default_factory=set)
    size_bytes: int = 0
    table_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started: float | None = None

    def _grow(self, table: str, size: int) -> None:
        self.size_bytes += size
        self.table_bytes[table] += size

    def add_pending(self, table: str, batch: Batch, lsn: int | None) -> None:
        batch.release_message()
        self.pending[(table, batch.tenant)].append((batch, lsn))
        self.pending_items += batch.items
        self.known.add(batch.batch_id)
        self._grow(table, batch.size_bytes)
        if self.started is None:
            self.started = time.monotonic()

    def forget(self, table: str, batch: Batch) -> None:
        """Stop counting a waiting batch that was dropped."""
        self.known.discard(batch.batch_id)
        self._grow(table, -batch.size_bytes)

    def take_pending(self) -> dict[tuple[str, str], list[Entry]]:
        work, self.pending = self.pending, defaultdict(list)
        self.pending_items = 0
        return work

    def restore_pending(self, work: dict[tuple[str, str], list[Entry]]) -> None:
        """Put taken batches back in front of those that arrived since."""
        for key, entries in work.items():
            self.pending[key][:0] = entries
            self.pending_items += sum(batch.items for batch, _ in entries)

    def add_rows(
        self,
        table: str,
        tenant: str,
        rows: pa.RecordBatch,
        entries: list[Entry],
        counts: list[int],
        counted_bytes: int,
    ) -> None:
        """Converted rows of ``entries`` (``counts[i]`` rows of the i-th, in order), which were
        counted as ``counted_bytes`` until now. Batches whose rows were all left out (by the
        stream's processors) have no rows, but are committed like the others."""
        tenants = self.rows[table]  # listed even without rows, so that a flush commits its ids
        if rows.num_rows:
            tenants[tenant].append(rows)
            self.owners[table][tenant].append(
                [(batch.batch_id, count) for (batch, _), count in zip(entries, counts, strict=True)]
            )
        for batch, lsn in entries:
            self.known.add(batch.batch_id)
            self.batch_ids[table].append(batch.batch_id)
            if lsn is not None:
                self.lsns[table].append(lsn)
        # Measured once (the buffers' total size is far cheaper than ``nbytes``) and kept per
        # table, so a flush retires its table's bytes without measuring again.
        self._grow(table, rows.get_total_buffer_size() - counted_bytes)
        if self.started is None:
            self.started = time.monotonic()

    def move_pending(self, since: float) -> Buffer:
        """A new buffer holding the batches still waiting here (taken out of this one), which
        arrived at ``since`` (monotonic time) or later: their age counts from then."""
        moved = Buffer()
        for (table, _), entries in self.take_pending().items():
            for batch, lsn in entries:
                self.known.discard(batch.batch_id)
                self._grow(table, -batch.size_bytes)
                moved.add_pending(table, batch, lsn)
        if moved.started is not None:
            moved.started = since
        return moved

    def absorb(self, other: Buffer) -> None:
        """Take over everything ``other`` holds, after what this buffer holds."""
        for key, entries in other.pending.items():
            self.pending[key].extend(entries)
        self.pending_items += other.pending_items
        for name, tenants in other.rows.items():
            for tenant, batches in tenants.items():
                self.rows[name][tenant].extend(batches)
                self.owners[name][tenant].extend(other.owners[name][tenant])
        for name, ids in other.batch_ids.items():
            self.batch_ids[name].extend(ids)
        for name, lsns in other.lsns.items():
            self.lsns[name].extend(lsns)
        for name, size in other.table_bytes.items():
            self.table_bytes[name] += size
        self.known |= other.known
        self.size_bytes += other.size_bytes
        if self.started is None:
            self.started = other.started
