"""The `lake` exporter: OTLP batches → Arrow buffers → Parquet files → Iceberg commits.

Rows are buffered per table and tenant and flushed when the buffers reach ``flush_size_mib`` or
the oldest row is ``flush_interval`` old. A flush makes one Iceberg append per table (rows sorted
by tenant, service_name, time; pyiceberg writes zstd Parquet split by partition) whose snapshot
summary records the ``batch_id``s it holds, atomically with the data. Those ids are read back at
start, so a replayed batch is acknowledged and skipped, never written twice.

With ``wal`` configured, a batch is acknowledged only once it is durable in the bridge's
write-ahead log; its record is dropped from the log when the commit holding it succeeds, and
after a crash the log is replayed into the buffers (batches already committed are skipped).

Queries see committed data at the snapshot the writer last published plus every buffered row,
captured together (``snapshot_view``) so a row is never seen twice or missed during a flush.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from orasi_bridge.lake.catalog import ensure_table, open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.rows import TABLE_OF_SIGNAL, to_record_batch
from orasi_bridge.lake.schema import TABLES
from orasi_common.errors import Throttled, Unavailable
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.pipeline.wal import Recovered, WriteAheadLog, read_payload

MIB = 1024 * 1024
BATCH_IDS_PROPERTY = "orasi.batch-ids"
_SORT = [("tenant", "ascending"), ("service_name", "ascending"), ("time", "ascending")]


@dataclass
class _Buffer:
    """Rows waiting for one flush: per table, per tenant."""

    rows: dict[str, dict[str, list[pa.RecordBatch]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    batch_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lsns: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    known: set[str] = field(default_factory=set)
    size_bytes: int = 0
    table_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started: float | None = None

    def add(self, table: str, tenant: str, rows: pa.RecordBatch, batch_id: str, lsn: int | None) -> None:
        self.rows[table][tenant].append(rows)
        self.batch_ids[table].append(batch_id)
        if lsn is not None:
            self.lsns[table].append(lsn)
        self.known.add(batch_id)
        # Measured once per batch (the buffers' total size is far cheaper than ``nbytes``) and
        # kept per table, so a flush retires its table's bytes without measuring again.
        size = rows.get_total_buffer_size()
        self.size_bytes += size
        self.table_bytes[table] += size
        if self.started is None:
            self.started = time.monotonic()


@dataclass(frozen=True)
class TableView:
    """What a query of one table and tenant sees: committed files at a snapshot, plus hot rows."""

    table: Table
    snapshot_id: int | None
    hot: list[pa.RecordBatch]


class LakeWriter:
    def __init__(self, settings: Settings, config: Config) -> None:
        self.config = config
        self._settings = settings
        self._logger = settings.logger
        self._commits = settings.metrics.lake_commits.labels(settings.id)
        self._catalog: Catalog | None = None
        self.tables: dict[str, Table] = {}
        self._visible: dict[str, int | None] = {}
        self._buffer = _Buffer()
        self._flushing: _Buffer | None = None
        self._committed: set[str] = set()
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._flush_now = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks = TaskScope()
        self._stopping = False
        self._wal = (
            WriteAheadLog.from_config(
                config.wal, settings.id, settings.metrics.wal_corrupt_segments.labels(settings.id).inc
            )
            if config.wal
            else None
        )

    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        if self._wal is not None:
            await self._replay(await self._wal.open())
        await self._tasks.open()
        self._tasks.spawn(self._flusher(), name="lake-flusher")

    async def _replay(self, recovered: Recovered) -> None:
        """Buffer what the log kept from before a crash, except batches already committed."""
        assert self._wal is not None
        replayed = skipped = 0
        for lsn, location in recovered.pending:
            batch = Batch.from_record(await asyncio.to_thread(read_payload, location))
            if self.is_known(batch.batch_id):
                self._wal.ack(lsn)
                skipped += 1
                continue
            await self._buffer_rows(batch, lsn)
            replayed += 1
        if recovered.pending:
            self._logger.info(
                "Replayed the lake writer's write-ahead log.",
                extra={"replayed_batches": replayed, "already_committed": skipped},
            )

    def _open(self) -> None:
        self._catalog = open_catalog(self.config)
        for name in TABLES:
            table = ensure_table(self._catalog, name)
            self.tables[name] = table
            snapshot = table.current_snapshot()
            self._visible[name] = snapshot.snapshot_id if snapshot else None
            for past in table.snapshots():
                ids = (past.summary.additional_properties if past.summary else {}).get(BATCH_IDS_PROPERTY)
                if ids:
                    self._committed.update(ids.split(","))

    def is_known(self, batch_id: str) -> bool:
        """Committed already, or buffered for the next commit."""
        return any(
            batch_id in known
            for known in (self._committed, self._buffer.known, self._flushing and self._flushing.known)
            if known
        )

    async def consume(self, batch: Batch) -> None:
        if self._stopping:
            raise Unavailable("the lake writer is shutting down")
        while (earlier := self._in_progress.get(batch.batch_id)) is not None:
            await earlier  # a retry of a batch still being written: wait for that attempt
        if self.is_known(batch.batch_id):
            return  # a replay of data the lake already holds: acknowledge, write nothing
        held = self._buffer.size_bytes + (self._flushing.size_bytes if self._flushing else 0)
        if held >= self.config.max_buffer_mib * MIB:
            self._flush_now.set()
            raise Throttled(
                f"the lake writer holds {held // MIB} MiB not yet committed; retry shortly",
                retry_after=1.0,
            )
        attempt = asyncio.get_running_loop().create_future()
        self._in_progress[batch.batch_id] = attempt
        try:
            lsn = None
            if self._wal is not None:
                lsn, _ = await self._wal.append(batch.to_record())
            await self._buffer_rows(batch, lsn)
        finally:
            del self._in_progress[batch.batch_id]
            attempt.set_result(None)

    async def _buffer_rows(self, batch: Batch, lsn: int | None) -> None:
        rows = await asyncio.to_thread(
            to_record_batch, batch.signal, batch.message, batch.tenant, self.config.region
        )
        self._buffer.add(TABLE_OF_SIGNAL[batch.signal], batch.tenant, rows, batch.batch_id, lsn)
        if self._buffer.size_bytes >= self.config.flush_size_mib * MIB:
            self._flush_now.set()

    def snapshot_view(self, table: str, tenant: str) -> TableView:
        """Committed snapshot and hot rows of one table and tenant, consistent with each other."""
        hot: list[pa.RecordBatch] = []
        for buffer in (self._flushing, self._buffer):
            if buffer is not None:
                hot.extend(buffer.rows.get(table, {}).get(tenant, []))
        return TableView(self.tables[table], self._visible.get(table), hot)

    async def _flusher(self) -> None:
        while True:
            started = self._buffer.started
            timeout = (
                self.config.flush_interval
                if started is None
                else max(0.0, started + self.config.flush_interval - time.monotonic())
            )
            try:
                async with asyncio.timeout(timeout):
                    await self._flush_now.wait()
            except TimeoutError:
                pass
            self._flush_now.clear()
            if self._buffer.started is not None:
                await self.flush()

    async def flush(self) -> None:
        """Commit every buffered row; on failure the rows stay buffered for the next flush."""
        async with self._flush_lock:
            buffer, self._buffer = self._buffer, _Buffer()
            if buffer.started is None:
                return
            self._flushing = buffer
            try:
                for name, tenants in buffer.rows.items():
                    snapshot_id = await asyncio.to_thread(self._commit, name, tenants, buffer.batch_ids[name])
                    # Publish the snapshot and retire its hot rows in one step of the event loop.
                    self._visible[name] = snapshot_id
                    self._committed.update(buffer.batch_ids.pop(name))
                    if self._wal is not None:
                        for lsn in buffer.lsns.pop(name, ()):
                            self._wal.ack(lsn)
                    buffer.size_bytes -= buffer.table_bytes.pop(name, 0)
                    tenants.clear()
                    self._commits.inc()
            except Exception:
                self._logger.exception(
                    "Committing to the lake failed; the rows stay buffered and are retried.",
                    extra={"buffered_bytes": buffer.size_bytes},
                )
                self._requeue(buffer)
            finally:
                self._flushing = None

    def _requeue(self, failed: _Buffer) -> None:
        """Put a failed flush's rows back in front of what arrived since."""
        newer, self._buffer = self._buffer, _Buffer()
        for source in (failed, newer):
            for name, tenants in source.rows.items():
                for tenant, batches in tenants.items():
                    self._buffer.rows[name][tenant].extend(batches)
            for name, ids in source.batch_ids.items():
                self._buffer.batch_ids[name].extend(ids)
                self._buffer.known.update(ids)
            for name, lsns in source.lsns.items():
                self._buffer.lsns[name].extend(lsns)
            for name, size in source.table_bytes.items():
                self._buffer.table_bytes[name] += size
            self._buffer.size_bytes += source.size_bytes
        self._buffer.started = failed.started

    def _commit(self, name: str, tenants: dict[str, list[pa.RecordBatch]], batch_ids: list[str]) -> int:
        """One Iceberg append of all tenants' rows of one table (blocking; runs in a thread)."""
        # Sort indices computed on the three key columns only, made contiguous (cheap: they are
        # small), then one take of the table. The sort is stable, so rows come out exactly as
        # `Table.sort_by` orders them.
        rows = pa.Table.from_batches(
            [rb for batches in tenants.values() for rb in batches], schema=TABLES[name]
        )
        keys = rows.select([column for column, _ in _SORT]).combine_chunks()
        rows = rows.take(pc.sort_indices(keys, sort_keys=_SORT))
        table = self.tables[name]
        properties = {BATCH_IDS_PROPERTY: ",".join(batch_ids)}
        for attempt in range(self.config.commit_retries + 1):
            try:
                table.append(rows, snapshot_properties=properties)
                break
            except CommitFailedException:
                if attempt == self.config.commit_retries:
                    raise
                table.refresh()
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return int(snapshot.snapshot_id)

    async def shutdown(self) -> None:
        """Commit what is buffered, then stop."""
        self._stopping = True
        await self._tasks.close(cancel=True)
        if self.tables:
            await self.flush()
        if self._wal is not None:
            await self._wal.close()
        if self._catalog is not None:
            await asyncio.to_thread(self._catalog.close)
