"""How a lake writer commits, keeping a batch in one commit of one writer: the batch ids recorded
in each snapshot's summary (``BATCH_IDS_PROPERTY``), read back since a known snapshot
(``batch_ids_since``), buffered rows without those of batches committed elsewhere (``without``),
and the commit of one table's rows that does all of it (``Committer``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableUpdate

from orasi_bridge.lake.buffer import Owners
from orasi_bridge.lake.catalog import ensure_table, filesystem, open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.files import delete_data_files, sort_rows, write_data_files
from orasi_bridge.lake.localcache import LocalCache
from orasi_bridge.lake.schema import MONTHLY, TABLES

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
    """What ``Committer.commit`` did: the table's snapshot after it, the rows it added, the batch ids the
    snapshots of other writers it read hold (with their commit times), and the batches it left
    out because another writer had committed them."""

    snapshot_id: int | None
    rows: int
    by_others: list[tuple[float, list[str]]]
    skipped: set[str]


class _Transaction(Transaction):
    """pyiceberg's ``Transaction``, computing its ``table_metadata`` once per change.

    pyiceberg's works it out afresh, as a deep copy of the table's whole metadata, each of the
    ~14 times a fast append reads it, so an append's CPU grows with the snapshots the table keeps
    (measured: 66 ms with 3, 0.5 s with 600 and 1.1 s with 1,200). For a given base and list of
    updates it is the same metadata, which an append only reads (pyiceberg's models are frozen):
    it is kept until either changes."""

    _computed: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        computed = self._computed
        if computed is None or computed[0] is not base or computed[1] is not updates:
            computed = self._computed = (base, updates, super().table_metadata)
        return computed[2]


def _wait(ready: Callable[[], None], fs: pafs.FileSystem, prefix: str, data_files: list[DataFile]) -> None:
    """``ready()``; when it raises, ``data_files`` are removed (never appended) and its error raised."""
    try:
        ready()
    except BaseException:
        delete_data_files(fs, prefix, [data_file.file_path for data_file in data_files])
        raise


class Committer:
    """The lake's tables as one writer commits to them: opened (created when missing) by
    ``open``, rows added by ``commit``, other writers' commits read by ``commits_since``. ``seen``
    holds per table the newest snapshot whose batch ids the writer read."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._retries = config.commit_retries
        self.tables: dict[str, Table] = {}
        self.seen: dict[str, int | None] = {}
        self._fs: tuple[pafs.FileSystem, str] | None = None
        self._cache: LocalCache | None = None

    def open(self) -> Catalog:
        """Open the catalog and every table (blocking); the catalog is the caller's to close."""
        catalog = open_catalog(self._config)
        self._fs = filesystem(self._config)
        self._cache = LocalCache(self._config.local_cache) if self._config.local_cache else None
        for name in TABLES:
            table = self.tables[name] = ensure_table(catalog, name)
            snapshot = table.current_snapshot()
            self.seen[name] = snapshot.snapshot_id if snapshot else None
        return catalog

    def commit(
        self,
        name: str,
        tenants: dict[str, list[pa.RecordBatch]],
        owners: dict[str, list[Owners]],
        batch_ids: list[str],
        known: set[str] | None = None,
        derive: Callable[[list[pa.RecordBatch]], list[pa.RecordBatch]] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> Commit:
        """Write all tenants' rows of one table and add them in one Iceberg snapshot (blocking).

        Rows are sorted and written by us (``files``: zstd Parquet, one file per tenant x day or
        per ``FILE_ROWS`` of it; spans with a trace index), then appended in one fast-append
        transaction whose summary holds the batch ids. A conflicting commit is retried on the
        refreshed table; any failure raises, and the caller keeps the rows buffered.

        Exactly-once across the writers that share the table (bridges behind one load balancer):
        before each attempt, the batch ids of the snapshots committed since the one this writer
        last saw (``batch_ids_since``) are read, and the rows of batches among them are left
        out (their files written again without them), as are those of ``known`` (committed
        before that snapshot). The commit succeeds only if nobody committed after the metadata
        that was read, so a batch is never in two commits.

        With ``derive``, ``tenants`` are the rows of another table, and the rows written are
        ``derive``'s of those kept (span_metrics_1m's of the spans).

        With ``ready``, nothing is appended before it returned: it is called (blocking, once)
        when the files are written, so that they are written while what must be committed before
        them is (the spans' files while the span metrics tables commit); when it raises, the
        files are removed and its error raised.
        """
        table = self.tables[name]
        assert self._fs is not None, "open() first"
        fs, prefix = self._fs
        by_others: list[tuple[float, list[str]]] = []
        seen = self.seen.get(name)
        skipped = set(known or ())
        ours = set(batch_ids)
        data_files: list[DataFile] | None = None
        kept: list[pa.RecordBatch] = []
        try:
            for attempt in range(self._retries + 1):
                while True:
                    found, seen = batch_ids_since(table, seen)
                    by_others += found
                    newly = ours.intersection(i for _, ids in found for i in ids) - skipped
                    if not newly and data_files is not None:
                        break
                    skipped |= newly
                    if data_files:
                        delete_data_files(fs, prefix, [data_file.file_path for data_file in data_files])
                    kept = without(tenants, owners, skipped)
                    if derive is not None:
                        kept = derive(kept)
                    data_files = []
                    if not kept:
                        break
                    rows, partitions = sort_rows(kept, TABLES[name], name in MONTHLY)
                    data_files = write_data_files(table, name, rows, partitions, fs, prefix, self._cache)
                    del rows
                    if ready is not None:
                        _wait(ready, fs, prefix, data_files)
                        ready = None
                    # Writing takes a while: commit against the snapshot current after it (read
                    # again), not the one before, or a writer committing often wins every time.
                    table.refresh()
                if not data_files:
                    break  # every batch was committed by others: nothing to add
                ids = ",".join(i for i in batch_ids if i not in skipped)
                try:
                    with (
                        _Transaction(table) as transaction,
                        transaction.update_snapshot(
                            snapshot_properties={BATCH_IDS_PROPERTY: ids}
                        ).fast_append() as append,
                    ):
                        for data_file in data_files:
                            append.append_data_file(data_file)
                    break
                except CommitFailedException:
                    table.refresh()  # before giving up too: the next flush starts from it
                    if attempt == self._retries:
                        raise
        except CommitFailedException:
            # Certainly not committed (unlike, say, a lost connection), so its files go.
            delete_data_files(fs, prefix, [data_file.file_path for data_file in data_files or ()])
            raise
        snapshot = table.current_snapshot()
        snapshot_id = None if snapshot is None else int(snapshot.snapshot_id)
        self.seen[name] = snapshot_id  # only now: a failed flush reads the same snapshots again
        rows = sum(batch.num_rows for batch in kept) if data_files else 0
        return Commit(snapshot_id, rows, by_others, skipped)

    def commits_since(
        self, seen: dict[str, int | None]
    ) -> dict[str, tuple[int | None, list[tuple[float, list[str]]]]]:
        """Per table that moved past ``seen``: its current snapshot and the commits since (blocking)."""
        moved = {}
        for name, table in self.tables.items():
            table.refresh()
            found, current = batch_ids_since(table, seen.get(name))
            if current != seen.get(name):
                moved[name] = (current, found)
        return moved
