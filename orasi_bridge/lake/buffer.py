"""What one flush of the lake writer will commit: batches waiting for conversion, then Arrow rows
per table and tenant with the batches they came from (``Buffer``), and the conversion of waiting
batches into rows, many at a time (``chunks``, ``convert``), or of one batch at once
(``batch_rows``; before it is acknowledged, ``convert_now``: OTAP, or what a subject may reject);
both run the lake's stream processors (``orasi_bridge.stream.Chain``) on the rows they made,
before the rows are buffered."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orasi_bridge.lake.rows import TABLE_OF_SIGNAL, Types, otlp_rows, rows_of
from orasi_common.errors import PartialSuccess
from orasi_common.pdata import Batch

if TYPE_CHECKING:  # the registry imports the lake's schema, whose package imports the writer
    from orasi_bridge.registry.ingest import Inspection
    from orasi_bridge.registry.validate import Outcome
    from orasi_bridge.stream import Chain

Bools = npt.NDArray[np.bool_]

CONVERT_ITEMS = 8192
CONVERT_BACKLOG = 4 * CONVERT_ITEMS
"""Items not yet converted past which ``consume`` waits for the converter before accepting more
(backpressure): receiving holds the GIL most of the time, and a converter that must take turns
with it falls ever further behind (measured: 20-50 µs per span instead of 3.5), so every flush
would wait for it."""

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


Chunk = tuple[str, str, list[Entry]]  # table, tenant, and batches converted together


def chunks(work: dict[tuple[str, str], list[Entry]]) -> list[Chunk]:
    """Each table and tenant's waiting batches in runs of about ``CONVERT_ITEMS`` items (far
    larger runs convert more slowly per item: their arrays no longer fit the caches)."""
    runs: list[Chunk] = []
    for (table, tenant), entries in work.items():
        run: list[Entry] = []
        items = 0
        for entry in entries:
            run.append(entry)
            items += entry[0].items
            if items >= CONVERT_ITEMS:
                runs.append((table, tenant, run))
                run, items = [], 0
        if run:
            runs.append((table, tenant, run))
    return runs


Converted = tuple[pa.RecordBatch, list[int]]  # rows, and how many of them each batch gave, in order


def convert(
    chunks: list[Chunk], region: str, inspect: Inspection | None = None, stream: Chain | None = None
) -> list[Converted]:
    """The rows of each chunk, its batches converted together (and, with ``inspect``, checked
    against the schema registry's policies, which may flag rows or drop attributes), through
    ``stream``'s processors.

    A batch gives one row per item (span, log record, metric data point), in order, so the rows of
    the i-th batch follow those of the batches before it; a chunk whose row count says otherwise
    is converted batch by batch instead, which counts each batch's rows exactly."""
    converted: list[Converted] = []
    for table, tenant, entries in chunks:
        batches = [batch for batch, _ in entries]
        types: Types | None = {} if inspect is not None else None
        rows = otlp_rows(batches, region, types)
        counts = [batch.items for batch in batches]
        if rows.num_rows != sum(counts):
            parts = [otlp_rows([batch], region) for batch in batches]
            rows = pa.concat_batches(parts)
            counts = [part.num_rows for part in parts]
        elif inspect is not None and types:
            rows = inspect(table, tenant, rows, types)
        converted.append(stream.process(table, tenant, rows, counts) if stream else (rows, counts))
    return converted


def batch_rows(
    batch: Batch,
    table: str,
    region: str,
    stream: Chain | None = None,
    inspect: Inspection | None = None,
    kept: Bools | None = None,
) -> tuple[Converted, Outcome | None]:
    """The rows of one batch converted at once (``rows_of``: a batch that arrived as OTAP, or one
    a subject may reject), through ``stream``'s processors. With ``inspect``, checked first with
    ``reject`` applied (the outcome says which rows were kept, and why not the others); with
    ``kept`` (the replay of a batch accepted in part, ``kept.py``), only those rows."""
    types: Types | None = {} if inspect is not None else None
    rows = rows_of(batch, region, types)
    outcome = None
    if inspect is not None and types:
        outcome = inspect.check(table, batch.tenant, rows, types, refuse=True)
        rows = outcome.rows
    elif kept is not None:
        rows = rows.filter(pa.array(kept))
    return (
        stream.process(table, batch.tenant, rows, [rows.num_rows]) if stream else (rows, [rows.num_rows])
    ), outcome


def converts_now(batch: Batch, inspect: Inspection | None) -> bool:
    """Whether ``batch`` becomes rows before it is acknowledged (``convert_now``) rather than
    waiting to be converted many at a time (``convert``)."""
    return holds_otap(batch) or (
        inspect is not None and inspect.rejects(TABLE_OF_SIGNAL[batch.signal], batch.tenant)
    )


def convert_now(
    batch: Batch, region: str, stream: Chain | None, inspect: Inspection | None
) -> tuple[Converted, Bools | None, PartialSuccess | None]:
    """The rows of a batch converted before it is acknowledged (``converts_now``), which rows of it
    are kept, and the refusal of the others: a batch that arrived as OTAP (rows straight from its
    tables, a big batch already; invalid tables raise MalformedData to the sender now), or one of
    a tenant with a subject in reject mode (checked with reject applied, ``Inspection.check``;
    what it saw is in ``inspect.seen``)."""
    table = TABLE_OF_SIGNAL[batch.signal]
    converted, outcome = batch_rows(batch, table, region, stream, inspect)
    if inspect is None or outcome is None:
        return converted, None, None
    return converted, outcome.kept, inspect.refusal(table, outcome)


def holds_otap(batch: Batch) -> bool:
    return any(part.otap is not None for part in batch.parts)
