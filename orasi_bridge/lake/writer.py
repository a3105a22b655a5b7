"""The `lake` exporter: batches → Arrow buffers → Parquet files → Iceberg commits.

Rows are buffered per table and tenant and flushed when the buffers reach ``flush_size_mib`` or
the oldest row is ``flush_interval`` old. A flush makes one Iceberg append per table (``files``
writes one zstd Parquet file per tenant x day, sorted by service_name, time, spans with a trace
index) whose snapshot summary records the ``batch_id``s it holds, atomically with the data.
Those ids are read back at start, so a replayed batch is acknowledged and skipped, never
written twice.

Several bridges may write one table (behind a load balancer, a part whose bridge died is re-sent
to another under the same id, and the first may replay it from its log when it comes back).
Before each commit attempt a writer reads the batch ids of the snapshots committed since the last
one it saw, remembers them, and leaves out of its append the rows of batches among them (``Buffer``
keeps which batch each row belongs to), acknowledging their log records all the same. The append
succeeds only if the table is still at the snapshot it checked (Iceberg's optimistic concurrency;
pyiceberg's own retry on the refreshed table, which would skip the check, is turned off by the
table property ``catalog.COMMIT_NUM_RETRIES``), so a batch is in one commit of one writer.

With ``wal`` configured, a batch is acknowledged only once it is durable in the bridge's
write-ahead log, in the form it was accepted (``Batch.to_record``: OTLP bytes, or OTAP tables as
Arrow IPC, written off the event loop); its record is dropped from the log when the commit
holding it succeeds, and after a crash the log is replayed into the buffers (batches already
committed are skipped) through the same path, and the same converters, as live batches.

OTLP batches wait as received and become Arrow rows many at a time (``CONVERT_ITEMS`` items, or
when a query or a flush needs them: the converter's cost is mostly per call); a batch that
arrived as OTAP becomes rows at once, straight from its tables (``rows``), so invalid tables
fail its sender. So does an OTLP batch of a tenant with a subject in validation ``reject``: its
rows are checked before it is acknowledged, the violating ones left out, and the sender gets a
``PartialSuccess`` naming them once the rest is durable (the log record says which rows were
kept, ``kept.py``, so a replay writes exactly those). While ``CONVERT_BACKLOG`` items wait for
conversion, ``consume`` waits before accepting more. A batch is stamped with the time it was
accepted (``received_ns``, kept in its record): the observed time of log records that have
neither time.

Queries see committed data at the snapshot the writer last published plus every buffered row,
captured together (``snapshot_view``) so a row is never seen twice or missed during a flush. A
commit's snapshot holds every commit before it, other writers' too; a writer with nothing to
commit looks at the tables each ``flush_interval`` instead (``_follow``), remembers the batch ids
the others committed, and publishes their snapshot while it stays idle.

The derived tables are committed within each flush through the same commit path
(``derived.DerivedTables``): ``span_metrics_1m`` and ``span_metrics_1h`` while the spans' files are
written, and appended before them; the audit rows after the data.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from orasi_bridge.lake import audit as audit_table
from orasi_bridge.lake import convert
from orasi_bridge.lake import kept as wal_records
from orasi_bridge.lake.buffer import Bools, Buffer, Entry, Owners
from orasi_bridge.lake.commits import BATCH_IDS_PROPERTY, Commit, Committer
from orasi_bridge.lake.committed import CommittedIds
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.convert import Converted, holds_otap
from orasi_bridge.lake.derived import DerivedTables
from orasi_bridge.lake.global_dedup import GlobalDedup
from orasi_bridge.lake.maintenance.scheduler import Scheduler
from orasi_bridge.lake.registry_checks import RegistryChecks
from orasi_bridge.lake.replicate_schedule import ReplicationSchedule
from orasi_bridge.lake.rows import TABLE_OF_SIGNAL
from orasi_bridge.lake.spanmetrics import SOURCE
from orasi_bridge.stream import Chain
from orasi_common.errors import OrasiError, PartialSuccess, Throttled, Unavailable
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import SHUTDOWN, failure_reason
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.pipeline.wal import Recovered, WriteAheadLog, read_payload

if TYPE_CHECKING:
    from orasi_bridge.registry.registry import Registry

MIB = 1024 * 1024
SIGNAL_OF_TABLE = {table: signal for signal, table in TABLE_OF_SIGNAL.items()}

SHUTDOWN_RETRY_FIRST = 0.05
SHUTDOWN_RETRY_MAX = 2.0
"""Seconds between the final flush's attempts at shutdown: doubled after each, with jitter."""


async def _record(batch: Batch) -> bytes:
    """The batch's write-ahead log record (OTAP tables are written as Arrow IPC in a thread)."""
    return await asyncio.to_thread(batch.to_record) if holds_otap(batch) else batch.to_record()


@dataclass(frozen=True)
class TableView:
    """What a query of one table and tenant sees: committed files at a snapshot, plus hot rows."""

    table: Table
    snapshot_id: int | None
    hot: list[pa.RecordBatch]


class LakeWriter:
    reloadable_keys: ClassVar[frozenset[str]] = frozenset({"stream"})
    """The stream processors change without a restart (SIGHUP, live settings): batches converted
    from then on go through the new ones."""

    def __init__(self, settings: Settings, config: Config) -> None:
        self.config = config
        self._settings = settings
        self._logger = settings.logger
        self._commits = settings.metrics.lake_commits.labels(settings.id)
        self._commit_failures = settings.metrics.lake_commit_failures.labels(settings.id)
        for volume, directory in config.local_directories().items():
            settings.metrics.watch_volume(f"{volume}/{settings.id}", directory)
        self._failed = settings.metrics.exporter_send_failed
        self._sent = settings.metrics.exporter_sent  # items committed
        self._catalog: Catalog | None = None
        self._committer = Committer(config)
        self.tables = self._committer.tables  # filled by start
        self._visible: dict[str, int | None] = {}
        self._buffer = Buffer()
        self._flushing: Buffer | None = None
        self._committed = CommittedIds(config.dedup_window)
        # span_metrics_1m, span_metrics_1h and audit, committed through the committer (derived.py)
        self.derived = DerivedTables(settings, config, self._committer.commit, self._visible)
        self.audit = self.derived.audit  # the bridge's audit events (lake/audit.py)
        # batch ids claimed across the regions' lakes (global_dedup.py); None: this lake's rule only
        self._claims = GlobalDedup(config.global_dedup, config.warehouse) if config.global_dedup else None
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._flush_now = asyncio.Event()
        self._tail_wake = asyncio.Event()  # the tail sampler holds more, or shutdown began
        self._flush_lock = asyncio.Lock()
        self._tasks = TaskScope()
        self._convert_lock = asyncio.Lock()
        self._converting = False
        self._unconverted = 0  # items waiting for conversion or being converted
        self._converted = asyncio.Event()  # set (and replaced) whenever a conversion ends
        self._stopping = False
        self._shut = False
        self._registry = RegistryChecks(settings)  # nothing until use_registry
        self._stream: Chain | None = None  # built at start (a redact salt may be read from a file)
        # the stream's thread: a chunk's rows go through the stream while the next one converts
        self._stream_pool = ThreadPoolExecutor(1, thread_name_prefix="lake-stream")
        self._follow_failed = False
        self._maintenance = Scheduler(settings, config)  # its jobs, when config.maintenance sets intervals
        self._replication = ReplicationSchedule(settings, config)  # when config.replicate is set
        self._wal = (
            WriteAheadLog.from_config(
                config.wal, settings.id, settings.metrics.wal_corrupt_segments.labels(settings.id).inc
            )
            if config.wal
            else None
        )

    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        self._stream = await asyncio.to_thread(self._chain, self.config)
        # The tasks first: a replay of more than CONVERT_ITEMS items starts the background
        # converter, and a long one needs flushes (by size) before it ends.
        await self._tasks.open()
        self._tasks.spawn(self._flusher(), name="lake-flusher")
        self._tasks.spawn(self._tail_releaser(), name="lake-tail-sampler")
        if self._wal is not None:
            await self._replay(await self._wal.open())
        await self._maintenance.start()
        await self._replication.start()

    async def _replay(self, recovered: Recovered) -> None:
        """Buffer what the log kept from before a crash, except batches already committed."""
        assert self._wal is not None
        replayed = skipped = 0
        for lsn, location in recovered.pending:
            record, kept = wal_records.parse(await asyncio.to_thread(read_payload, location))
            batch = Batch.from_record(record)
            if self.is_known(batch.batch_id):
                self._wal.ack(lsn)
                skipped += 1
                continue
            try:
                await self._buffer_rows(batch, lsn, kept=kept)
            except OrasiError as error:  # it can never be written: count it, never replay it again
                self._failed.labels(batch.signal.value, self._settings.id, failure_reason(error)).inc(
                    batch.items
                )
                self._logger.error(
                    "A batch in the write-ahead log cannot be written and is dropped.",
                    extra={"batch_id": batch.batch_id, "items": batch.items, "error": error.message},
                )
                self._wal.ack(lsn)
                continue
            replayed += 1
        if recovered.pending:
            self._logger.info(
                "Replayed the lake writer's write-ahead log.",
                extra={"replayed_batches": replayed, "already_committed": skipped},
            )

    def _open(self) -> None:
        self._catalog = self._committer.open()
        self._visible.update(self._committer.seen)
        for name, table in self.tables.items():
            for past in sorted(table.snapshots(), key=lambda snapshot: snapshot.timestamp_ms):
                ids = (past.summary.additional_properties if past.summary else {}).get(BATCH_IDS_PROPERTY)
                if ids:
                    self._ids_of(name).add(ids.split(","), committed_at=past.timestamp_ms / 1000)

    def _chain(self, config: Config) -> Chain | None:
        """The stream's chain; it takes over the tail sampler of the one it replaces, and keeps its
        decisions beside the write-ahead log (``stream/tail.py``)."""
        if not config.stream and self._stream is None:
            return None
        wal = self._wal.directory if self._wal is not None else None
        decisions = wal.with_name(f"{wal.name}.tail") if wal is not None else None
        return Chain.build(config.stream, self._settings, self._stream, decisions)

    def reconfigure(self, config: Config) -> None:
        """Apply a new ``stream`` (``Reconfigurable``); raises, keeping the current one, when a
        redact salt cannot be read."""
        self._stream = self._chain(config)
        self.config = config
        self._tail_wake.set()  # its decisions may be due sooner

    def use_registry(self, registry: Registry) -> None:
        """Check ingest against ``registry``'s policies and record the attribute types seen
        (the bridge's query API, which serves the registry, calls it)."""
        self._registry.use(registry)

    def _ids_of(self, table: str) -> CommittedIds:
        """The batch ids committed to ``table`` that this writer remembers."""
        return self.derived.ids.get(table, self._committed)

    def is_known(self, batch_id: str) -> bool:
        """Committed already, or buffered for the next commit (or held by the tail sampler)."""
        return any(
            batch_id in known
            for known in (self._committed, self._buffer.known, self._flushing and self._flushing.known)
            if known
        ) or (self._stream is not None and self._stream.held(batch_id))

    async def consume(self, batch: Batch) -> None:
        while self._unconverted >= convert.CONVERT_BACKLOG and not self._stopping:
            await self._converted.wait()
        if self._stopping:
            raise Unavailable("the lake writer is shutting down")
        while (earlier := self._in_progress.get(batch.batch_id)) is not None:
            await earlier  # a retry of a batch still being written: wait for that attempt
        if self.is_known(batch.batch_id):
            return  # a replay of data the lake already holds: acknowledge, write nothing
        await self._registry.load_policies(batch.tenant)
        held = self._buffer.size_bytes + (self._flushing.size_bytes if self._flushing else 0)
        if held >= self.config.max_buffer_mib * MIB:
            self._flush_now.set()
            raise Throttled(
                f"the lake writer holds {held // MIB} MiB not yet committed; retry shortly",
                retry_after=1.0,
            )
        attempt = asyncio.get_running_loop().create_future()
        self._in_progress[batch.batch_id] = attempt
        if not batch.received_ns:
            batch.received_ns = time.time_ns()
        try:
            converted, kept, refused = await self._convert_now(batch)
            if kept is None or kept.any():
                lsn = None
                if self._wal is not None:  # with the rows kept, when a subject rejected some
                    lsn, _ = await self._wal.append(wal_records.record(await _record(batch), kept))
                try:
                    await self._buffer_rows(batch, lsn, converted)
                except OrasiError:
                    if lsn is not None and self._wal is not None:
                        self._wal.ack(lsn)  # refused: the sender knows; never replay it
                    raise
        finally:
            del self._in_progress[batch.batch_id]
            attempt.set_result(None)
        if refused is not None:
            raise refused  # the rest is kept: the sender gets a partial success

    async def _convert_now(
        self, batch: Batch
    ) -> tuple[Converted | None, Bools | None, PartialSuccess | None]:
        """The rows of a batch converted before it is acknowledged, the rows of it kept and the
        refusal of the others (``convert.convert_now``), or (None, None, None): converted later."""
        inspect = self._registry.inspection()
        if not convert.converts_now(batch, inspect):
            return None, None, None
        converted = await asyncio.to_thread(
            convert.convert_now, batch, self.config.region, self._stream, inspect
        )
        self._registry.seen(inspect)
        return converted

    async def _buffer_rows(
        self,
        batch: Batch,
        lsn: int | None,
        converted: Converted | None = None,
        kept: Bools | None = None,
    ) -> None:
        """Buffer a batch's rows (``converted`` already), or the batch for a later conversion;
        ``kept``: a replayed batch accepted in part (``kept.py``)."""
        table = TABLE_OF_SIGNAL[batch.signal]
        if converted is None and (holds_otap(batch) or kept is not None):
            converted, _ = await asyncio.to_thread(
                convert.batch_rows, batch, table, self.config.region, self._stream, None, kept
            )
        if converted is not None:
            self._add_rows(self._buffer, table, batch.tenant, converted, [(batch, lsn)], 0)
        else:
            self._buffer.add_pending(table, batch, lsn)
            self._unconverted += batch.items
        if self._buffer.size_bytes >= self.config.flush_size_mib * MIB:
            self._flush_now.set()
        self._convert_soon()

    def _convert_soon(self) -> None:
        """Convert waiting batches in the background once there are ``CONVERT_ITEMS`` of them."""
        if self._buffer.pending_items >= convert.CONVERT_ITEMS and not (self._converting or self._stopping):
            self._converting = True
            self._tasks.spawn(self._convert_in_background(), name="lake-converter")

    async def _convert_in_background(self) -> None:
        try:
            while self._buffer.pending_items >= convert.CONVERT_ITEMS:
                async with self._convert_lock:
                    await self._convert_pending()
        finally:
            self._converting = False

    async def _convert_pending(self) -> None:
        """Turn every batch waiting in the current buffer into rows (hold ``_convert_lock``)."""
        buffer = self._buffer
        work = buffer.take_pending()
        if not work:
            return
        chunks = convert.chunks(work)
        items = sum(batch.items for entries in work.values() for batch, _ in entries)
        converted: list[Converted | None]
        try:
            try:
                inspect = self._registry.inspection()
                region = self.config.region
                options: dict[str, Any] = {} if inspect is None else {"inspect": inspect}
                if self._stream is not None:
                    options["stream"], options["pool"] = self._stream, self._stream_pool
                converted = list(await asyncio.to_thread(convert.convert, chunks, region, **options))
                self._registry.seen(inspect)
            except Exception:
                converted, dropped, losses = await asyncio.to_thread(
                    convert.convert_one_by_one, chunks, self.config.region, self._stream
                )
                self._count_lost(losses)
                for table, batch, lsn in dropped:
                    buffer.forget(table, batch)
                    if lsn is not None and self._wal is not None:
                        self._wal.ack(lsn)  # it can never be written; do not replay it
        except asyncio.CancelledError:
            buffer.restore_pending(work)  # cancelled (shutdown, a query's deadline): keep them waiting
            raise
        self._unconverted -= items  # converted, or dropped as unconvertible
        self._converted.set()
        self._converted = asyncio.Event()
        for (table, tenant, entries), result in zip(chunks, converted, strict=True):
            if result is not None:
                size = sum(batch.size_bytes for batch, _ in entries)
                self._add_rows(buffer, table, tenant, result, entries, size)

    def _count_lost(self, losses: list[convert.Lost]) -> None:
        for lost in losses:
            self._failed.labels(lost.batch.signal.value, self._settings.id, "malformed").inc(lost.items)
            self._logger.error(
                "Items of a batch could not be converted to lake rows and are dropped.",
                extra={
                    "batch_id": lost.batch.batch_id,
                    "table": lost.table,
                    "tenant": lost.tenant,
                    "items": lost.items,
                    "error": repr(lost.error),
                },
            )

    def _add_rows(
        self, buffer: Buffer, table: str, tenant: str, converted: Converted, entries: list[Entry], size: int
    ) -> None:
        """Buffer converted rows (their batches counted as ``size`` bytes while waiting), or hand
        them to the stream's tail sampler, which holds them and their batches (whose log records
        stay) until its decisions (``_tail_releaser``)."""
        rows, counts = converted
        stream = self._stream
        if stream is None or not stream.holds(table):
            buffer.add_rows(table, tenant, rows, entries, counts, size)
            return
        for batch, _ in entries if size else ():
            buffer.forget(table, batch)  # the sampler's now (``held``)
        stream.hold(tenant, rows, entries, counts)
        self._tail_wake.set()

    async def _tail_releaser(self) -> None:
        """Buffer the tail sampler's groups whose traces are decided, when its decisions are due."""
        while not self._stopping:
            due = self._stream.due() if self._stream is not None else None
            try:
                async with asyncio.timeout(None if due is None else max(0.0, due - time.monotonic())):
                    await self._tail_wake.wait()
            except TimeoutError:
                pass
            self._tail_wake.clear()
            if self._stopping:
                return
            try:
                await self._release_held()
            except Exception:
                self._logger.exception("The tail sampler's decisions failed; retried in a second.")
                await asyncio.sleep(1.0)

    async def _release_held(self, everything: str | None = None) -> None:
        """Buffer what the tail sampler decided (``everything``: decide it all now, for that reason)."""
        stream = self._stream
        due = stream.due() if stream is not None else None
        if stream is None or due is None or (everything is None and due > time.monotonic()):
            return
        released = await asyncio.to_thread(stream.release, time.monotonic(), everything)
        for group in released:
            self._buffer.add_rows(group.table, group.tenant, group.rows, group.entries, group.counts, 0)
        stream.released(released)  # in the same step: their ids are known throughout
        if self._buffer.size_bytes >= self.config.flush_size_mib * MIB:
            self._flush_now.set()

    async def snapshot_view(self, table: str, tenant: str) -> TableView:
        """Committed snapshot and hot rows of one table and tenant, consistent with each other;
        every batch acknowledged before the call is in one or the other."""
        if table == audit_table.TABLE:
            return TableView(self.tables[table], self._visible.get(table), self.audit.hot(tenant))
        source = self.derived.source_of(table)
        async with self._convert_lock:
            await self._convert_pending()
            hot: list[pa.RecordBatch] = []
            owners: list[Owners] = []
            for buffer in (self._flushing, self._buffer):
                if buffer is not None:
                    hot.extend(buffer.rows.get(source, {}).get(tenant, []))
                    owners.extend(buffer.owners.get(source, {}).get(tenant, []))
            snapshot_id = self._visible.get(table)
            if source != table:  # spans of batches the table holds are in its snapshot
                hot = self.derived.unheld(table, tenant, hot, owners)
        if source != table:
            hot = await self.derived.hot_rows(table, hot)
        return TableView(self.tables[table], snapshot_id, hot)

    async def _flusher(self) -> None:
        """Flush by age or size (``_flush_now``), or follow the other writers while idle; ends,
        after the flush in flight, once shutdown began (shutdown makes the final flush)."""
        while not self._stopping:
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
            if self._stopping:
                return
            if self._buffer.started is not None:
                await self.flush()
            else:
                await self._follow()
                if self.audit.pending:  # the audit rows alone: committed, and still following
                    await self.flush()

    async def _follow(self) -> None:
        """While nothing is buffered, take in what other writers sharing the tables committed
        since the last snapshot this writer saw: their batch ids are remembered (a copy sent here
        later is acknowledged unwritten), and queries see their rows once this writer is still
        idle when the answer comes (so no row is both committed and buffered in what they see)."""
        async with self._flush_lock:
            try:
                found = await asyncio.to_thread(self._committer.commits_since, dict(self._committer.seen))
            except Exception as error:  # the catalog unreachable: the next flush or look retries
                if not self._follow_failed:
                    self._logger.warning(
                        "Reading the lake's new commits failed; retried at the next interval.",
                        extra={"error": repr(error)},
                    )
                self._follow_failed = True
                return
            self._follow_failed = False
            idle = self._buffer.started is None and not self._in_progress
            for name, (snapshot_id, by_others) in found.items():
                for committed_at, ids in by_others:
                    self._ids_of(name).add(ids, committed_at=committed_at)
                self._committer.seen[name] = snapshot_id
                if idle:
                    self._visible[name] = snapshot_id

    async def flush(self) -> None:
        """Commit every buffered row; on failure the rows stay buffered for the next flush."""
        async with self._flush_lock:
            async with self._convert_lock:
                began = time.monotonic()
                await self._convert_pending()
                buffer = self._buffer
                # Batches that arrived while converting wait for the next flush (flush_interval
                # after they arrived, not after this flush), and are converted while it commits.
                self._buffer = buffer.move_pending(since=began)
            self._convert_soon()
            if buffer.started is None:
                await self.derived.commit_audit()
                return
            # From here queries see the buffer's rows as _flushing until each table's commit
            # retires them: nothing may be awaited between taking the buffer and this line.
            self._flushing = buffer
            try:
                for name, tenants in buffer.rows.items():
                    # Batches known as committed since they were buffered (a copy accepted while
                    # the ids of another writer's commit were being read) are left out too.
                    known = {i for i in buffer.batch_ids[name] if i in self._committed}
                    if self._claims is not None:  # and those another region's lake claimed first
                        known |= await asyncio.to_thread(
                            self._claims.claimed_elsewhere, buffer.batch_ids[name]
                        )
                    done = await self._commit_table(name, tenants, buffer, known)
                    # Publish the snapshot and retire its hot rows in one step of the event loop.
                    self._visible[name] = done.snapshot_id
                    for committed_at, ids in done.by_others:
                        self._committed.add(ids, committed_at=committed_at)
                    self._committed.add(buffer.batch_ids.pop(name))
                    if self._wal is not None:
                        for lsn in buffer.lsns.pop(name, ()):
                            self._wal.ack(lsn)  # committed here, or by another writer
                    buffer.size_bytes -= buffer.table_bytes.pop(name, 0)
                    self._sent.labels(SIGNAL_OF_TABLE[name].value, self._settings.id).inc(done.rows)
                    tenants.clear()
                    buffer.owners.pop(name, None)
                    if done.skipped:
                        self._logger.info(
                            "Batches another writer committed first were left out of this commit.",
                            extra={"table": name, "batches": len(done.skipped)},
                        )
                    if done.rows:
                        self._commits.inc()
            except Exception:
                self._commit_failures.inc()
                self._logger.exception(
                    "Committing to the lake failed; the rows stay buffered and are retried.",
                    extra={"buffered_bytes": buffer.size_bytes},
                )
                await self._put_back(buffer)
            except asyncio.CancelledError:
                # Only past the shutdown deadline: the rows are kept for the account of what stays
                # in the log (a commit its thread still completes is skipped at replay).
                await self._put_back(buffer)
                raise
            finally:
                self._flushing = None
            await self.derived.commit_audit()  # after the data (see above)
            await self._registry.record_observed()

    async def _commit_table(
        self, name: str, tenants: dict[str, list[pa.RecordBatch]], buffer: Buffer, known: set[str]
    ) -> Commit:
        """One table's commit of a flush, in a thread; the spans' with the span metrics tables'
        beside it (``derived.begin_span_metrics``), which are appended first."""
        metrics = None
        if name == SOURCE:
            metrics = self.derived.begin_span_metrics(
                tenants, buffer.owners[name], buffer.batch_ids[name], known
            )
        try:
            done = await asyncio.to_thread(
                self._committer.commit,
                name,
                tenants,
                buffer.owners[name],
                buffer.batch_ids[name],
                known,
                ready=None if metrics is None else metrics.wait,
            )
        except asyncio.CancelledError:
            if metrics is not None:
                metrics.task.cancel()
            raise
        except Exception:
            if metrics is not None:
                await metrics.finish(failed=True)
            raise
        if metrics is not None:
            await metrics.finish()
        return done

    async def _put_back(self, buffer: Buffer) -> None:
        """Put a failed flush's rows back in front of what arrived since."""
        async with self._convert_lock:  # no conversion may publish into the newer buffer now
            buffer.absorb(self._buffer)
            self._buffer, self._flushing = buffer, None

    async def shutdown(self) -> None:
        """Commit what is buffered, then stop.

        A flush in flight is waited for, never cancelled (it took the rows out of the buffer), and
        the final flush is retried with backoff until it commits: it conflicts while other writers
        commit to the same tables. Both are bounded by ``shutdown_timeout``; what is still
        uncommitted then stays in the write-ahead log, for the next start, and is logged."""
        if self._shut:
            return
        self._shut = self._stopping = True
        await self._replication.shutdown()
        await self._maintenance.shutdown()
        self._converted.set()  # senders waiting for the converter are refused now
        self._flush_now.set()  # the flusher ends after its flush in flight
        self._tail_wake.set()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                await self._tasks.close()
                if self.tables:
                    await self._flush_until_committed()
        except TimeoutError:
            pass
        await self._tasks.close(cancel=True)  # anything left once the deadline passed
        self._stream_pool.shutdown(wait=False)
        self._report_uncommitted()
        if self._wal is not None:
            await self._wal.close()
        if self._catalog is not None:
            await asyncio.to_thread(self._catalog.close)
        if self._claims is not None:
            await asyncio.to_thread(self._claims.close)

    async def _flush_until_committed(self) -> None:
        delay = SHUTDOWN_RETRY_FIRST
        while True:
            await self.flush()
            if self._wal is None:  # nothing else keeps what the tail sampler holds: decided now
                await self._release_held(everything="shutdown")
            if self._buffer.started is None:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: writers stopping together
            delay = min(2 * delay, SHUTDOWN_RETRY_MAX)

    def _report_uncommitted(self) -> None:
        """Say loudly what the shutdown deadline left uncommitted (and count it when no log keeps it)."""
        buffer = self._buffer
        if buffer.started is None:
            return
        items: dict[str, int] = defaultdict(int)
        for (table, _), entries in buffer.pending.items():
            items[table] += sum(batch.items for batch, _ in entries)
        for table, tenants in buffer.rows.items():
            items[table] += sum(rows.num_rows for batches in tenants.values() for rows in batches)
        fields = {"batches": len(buffer.known), "items": dict(items), "timeout": self.config.shutdown_timeout}
        if self._wal is not None:
            self._logger.error(
                "The shutdown deadline passed before the lake commit succeeded: these acknowledged "
                "batches stay only in the write-ahead log, committed when this bridge starts again "
                "with the same log (lost if it never does).",
                extra={**fields, "wal": self.config.wal.directory if self.config.wal else None},
            )
            return
        for table, count in items.items():
            self._failed.labels(SIGNAL_OF_TABLE[table].value, self._settings.id, SHUTDOWN).inc(count)
        self._logger.error(
            "The shutdown deadline passed before the lake commit succeeded, and no write-ahead log "
            "keeps these acknowledged batches: they are lost.",
            extra=fields,
        )
