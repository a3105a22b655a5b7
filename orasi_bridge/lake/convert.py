"""Waiting batches into the lake's Arrow rows, through the stream's processors
(``orasi_bridge.stream.Chain``), before the rows are buffered (``buffer.Buffer``): many batches
at a time (``chunks``, ``convert``), or one batch at once (``batch_rows``; before it is
acknowledged, ``convert_now``: OTAP, or what a subject may reject). A chunk that does not convert
is converted again batch by batch, isolating the items that do not (``convert_one_by_one``)."""

from __future__ import annotations

from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from orasi_bridge.lake.buffer import Bools, Entry
from orasi_bridge.lake.rows import TABLE_OF_SIGNAL, Resources, Types, otlp_rows, resource_of_row, rows_of
from orasi_common.errors import PartialSuccess
from orasi_common.pdata import Batch

if TYPE_CHECKING:  # the registry imports the lake's schema, whose package imports the writer
    from orasi_bridge.registry.ingest import Inspection
    from orasi_bridge.registry.validate import Outcome
    from orasi_bridge.stream import Chain

CONVERT_ITEMS = 8192
CONVERT_BACKLOG = 4 * CONVERT_ITEMS
"""Items not yet converted past which ``consume`` waits for the converter before accepting more
(backpressure): receiving holds the GIL most of the time, and a converter that must take turns
with it falls ever further behind (measured: 20-50 µs per span instead of 3.5), so every flush
would wait for it."""


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
    chunks: list[Chunk],
    region: str,
    inspect: Inspection | None = None,
    stream: Chain | None = None,
    pool: Executor | None = None,
) -> list[Converted]:
    """The rows of each chunk, its batches converted together (and, with ``inspect``, checked
    against the schema registry's policies, which may flag rows or drop attributes), through
    ``stream``'s processors: with ``pool`` (one thread, the writer's), there, each chunk's while
    the next one converts (the stream costs about half the conversion: on a second core, the
    chunks come out that much sooner).

    A batch gives one row per item (span, log record, metric data point), in order, so the rows of
    the i-th batch follow those of the batches before it; a chunk whose row count says otherwise
    is converted batch by batch instead, which counts each batch's rows exactly.

    The stream is handed each row's resource beside the rows (``otlp.Resources``), while the rows'
    ``resource_attributes`` are still the converter's."""
    converted: list[Converted | Future[Converted]] = []
    pool = pool if stream is not None and len(chunks) > 1 else None
    try:
        for chunk in chunks:
            converted.append(_convert_chunk(chunk, region, inspect, stream, pool))
    except BaseException:  # a chunk that did not convert: what the stream has of the others ends first
        wait([item for item in converted if isinstance(item, Future)])
        raise
    return [item.result() if isinstance(item, Future) else item for item in converted]


def _convert_chunk(
    chunk: Chunk, region: str, inspect: Inspection | None, stream: Chain | None, pool: Executor | None
) -> Converted | Future[Converted]:
    """One chunk's rows (``convert``), through the stream in ``pool`` when given."""
    table, tenant, entries = chunk
    batches = [batch for batch, _ in entries]
    types: Types | None = {} if inspect is not None else None
    resources: Resources = []
    rows = otlp_rows(batches, region, types, resources if stream else None)
    counts = [batch.items for batch in batches]
    if rows.num_rows != sum(counts):
        parts = [otlp_rows([batch], region) for batch in batches]
        rows = pa.concat_batches(parts)
        counts = [part.num_rows for part in parts]
        resources = []
    elif inspect is not None and types:
        inspected = inspect(table, tenant, rows, types)
        if not _same_resources(rows, inspected):
            resources = []
        rows = inspected
    if stream is None:
        return rows, counts
    resource_of = resource_of_row(resources, rows)
    if pool is not None:
        return pool.submit(stream.process, table, tenant, rows, counts, resource_of)
    return stream.process(table, tenant, rows, counts, resource_of)


def _same_resources(before: pa.RecordBatch, after: pa.RecordBatch) -> bool:
    """Whether ``after`` holds ``before``'s rows and its very ``resource_attributes`` (the
    schema registry's inspection may change rows)."""
    if before.num_rows != after.num_rows or "resource_attributes" not in before.schema.names:
        return False
    old, new = before.column("resource_attributes"), after.column("resource_attributes")
    return old.offset == new.offset and [b and b.address for b in old.buffers()] == [
        b and b.address for b in new.buffers()
    ]


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
    resources: Resources = []
    rows = rows_of(batch, region, types, resources if stream else None)
    outcome = None
    if inspect is not None and types:
        outcome = inspect.check(table, batch.tenant, rows, types, refuse=True)
        if not _same_resources(rows, outcome.rows):
            resources = []
        rows = outcome.rows
    elif kept is not None:
        rows = rows.filter(pa.array(kept))
        resources = [of_rows[kept] for of_rows in resources if len(of_rows) == len(kept)]
    return (
        stream.process(table, batch.tenant, rows, [rows.num_rows], resource_of_row(resources, rows))
        if stream
        else (rows, [rows.num_rows])
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


ISOLATION_CONVERSIONS = 256
"""The most conversions spent on the parts of one batch that does not convert as a whole."""


@dataclass(frozen=True)
class Lost:
    """Items of a batch that did not convert (and were left out), with the first error."""

    table: str
    tenant: str
    batch: Batch
    items: int
    error: Exception | None


def convert_one_by_one(
    chunks: list[Chunk], region: str, stream: Chain | None
) -> tuple[list[Converted | None], list[tuple[str, Batch, int | None]], list[Lost]]:
    """The rows of each chunk, each batch converted on its own, isolating the items that do not
    convert (``rows_of_parts``). Receivers validated every batch, so an item that does not convert
    is a converter bug: it alone is left out and returned as lost. Batches none of whose items
    convert leave their chunk's entries and are returned as dropped; the others count as written
    (their ids are committed)."""
    converted: list[Converted | None] = []
    dropped: list[tuple[str, Batch, int | None]] = []
    losses: list[Lost] = []
    for table, tenant, entries in chunks:
        kept: list[Entry] = []
        counts: list[int] = []
        parts: list[pa.RecordBatch] = []
        for batch, lsn in entries:
            rows, lost, error = rows_of_parts(batch, region, [ISOLATION_CONVERSIONS])
            if lost:
                losses.append(Lost(table, tenant, batch, lost, error))
            if rows:
                parts += rows
                kept.append((batch, lsn))
                counts.append(sum(part.num_rows for part in rows))
            else:
                dropped.append((table, batch, lsn))
        entries[:] = kept
        if parts:
            rows = pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
            converted.append(stream.process(table, tenant, rows, counts) if stream else (rows, counts))
        else:
            converted.append(None)
    return converted, dropped, losses


def rows_of_parts(
    batch: Batch, region: str, budget: list[int]
) -> tuple[list[pa.RecordBatch], int, Exception | None]:
    """The rows of ``batch``, or when it does not convert, of its halves (recursively, at most
    ``budget[0]`` conversions), and how many items were dropped, with the first error."""
    budget[0] -= 1
    try:
        return [otlp_rows([batch], region)], 0, None
    except Exception as error:
        try:
            halves = batch.split((batch.items + 1) // 2) if batch.items > 1 and budget[0] >= 2 else []
        except Exception:
            halves = []
        if len(halves) < 2:
            return [], batch.items, error
        rows: list[pa.RecordBatch] = []
        lost = 0
        for half in halves:
            half_rows, half_lost, half_error = rows_of_parts(half, region, budget)
            rows += half_rows
            lost += half_lost
            error = half_error or error
        return rows, lost, error
