"""The lake writer's derived tables: ``span_metrics_1m`` and its hourly rollup ``span_metrics_1h``
(RED metrics of the spans of each flush, ``spanmetrics.py``) and ``audit`` (the bridge's audit
events, ``audit.py``), committed through the writer's own commit path (``commits.Committer.commit``)
and published in its snapshots (``visible``).

Within a flush (``LakeWriter.flush``)::

    buffer → _flushing (before anything is awaited: queries see its rows throughout)
      ├─ span_metrics_1m ┐ ``commit_span_metrics``: the spans' rows derived (per minute,  ┐
      ├─ span_metrics_1h ┘ per hour); the batches each holds already, ``ids``, left out   │ same
      ├─ spans and the other tables                                                       ┘ batch ids
      └─ audit: ``commit_audit``, after the data (and alone when nothing else is buffered)

The span metrics tables commit while the spans' files are sorted and written (``begin_span_metrics``:
a task beside the spans' commit, whose append waits for it, ``SpanMetricsCommit.wait``), so their
appends still come first and a failure of theirs leaves the spans uncommitted.

Each span metrics table keeps its batch ids apart from the other tables' (``ids``): it is
committed before the spans (and the hourly table after the minutes), so a batch it holds may
still have to be committed to the next table (a crash or a failed commit in between); queries
then leave the hot spans of the batches it holds out of its hot rows (``unheld``), which are
derived from the buffered spans as the next flush will commit them (``hot_rows``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from orasi_bridge.lake import audit as audit_table
from orasi_bridge.lake.buffer import Owners
from orasi_bridge.lake.commits import Commit, without
from orasi_bridge.lake.committed import CommittedIds
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.spanmetrics import SOURCE, SPAN_METRICS, SPAN_METRICS_1H, SpanMetrics
from orasi_common.pipeline.component import Settings

CommitRows = Callable[..., Commit]
"""``commits.Committer.commit``: (table, rows per tenant, owners per tenant, batch ids, known, derive)."""

SPAN_METRICS_TABLES = (SPAN_METRICS, SPAN_METRICS_1H)
"""Derived from the spans, committed in this order just before them."""


@dataclass
class SpanMetricsCommit:
    """The span metrics tables' commit of one flush, running beside the spans' (``begin_span_metrics``)."""

    task: asyncio.Task[None]
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)

    def __post_init__(self) -> None:
        self.task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.done.set_exception(asyncio.CancelledError())
        elif task.exception() is not None:
            self.done.set_exception(task.exception())
        else:
            self.done.set_result(None)

    def wait(self) -> None:
        """Block until the tables are committed (the spans' commit thread, ``Committer.commit``'s
        ``ready``); raises their commit's error."""
        self.done.result()

    async def finish(self, failed: bool = False) -> None:
        """Wait for the commit to end, raising its error; ``failed``: the spans' commit failed on its
        own, whose error is the flush's (this one's is left)."""
        if failed:
            await asyncio.wait([self.task])
            if not self.task.cancelled():
                self.task.exception()  # retrieved: the flush raises the spans' error
            return
        await self.task


class DerivedTables:
    """A writer's ``span_metrics_1m`` and ``audit`` commits and hot rows."""

    def __init__(
        self, settings: Settings, config: Config, commit: CommitRows, visible: dict[str, int | None]
    ) -> None:
        self._logger = settings.logger
        self._commits = settings.metrics.lake_commits.labels(settings.id)
        self._commit = commit
        self._visible = visible  # the writer's published snapshot per table
        # the batch ids each span metrics table holds
        self.ids = {name: CommittedIds(config.dedup_window) for name in SPAN_METRICS_TABLES}
        self.span_metrics = (
            SpanMetrics(config.span_metrics, settings.metrics.span_metrics_late_spans.labels(settings.id))
            if config.span_metrics.enabled
            else None
        )
        self.audit = audit_table.AuditRows(config.region)  # the bridge's audit events

    @staticmethod
    def source_of(table: str) -> str:
        """The table whose buffered rows make ``table``'s hot rows."""
        return SOURCE if table in SPAN_METRICS_TABLES else table

    def begin_span_metrics(
        self,
        spans: dict[str, list[pa.RecordBatch]],
        owners: dict[str, list[Owners]],
        batch_ids: list[str],
        known: set[str],
    ) -> SpanMetricsCommit | None:
        """``commit_span_metrics`` started as a task (None: span metrics are off); the spans' commit
        appends once it is done (``SpanMetricsCommit.wait``), and the flush ``finish``es it."""
        if self.span_metrics is None:
            return None
        task = asyncio.ensure_future(self.commit_span_metrics(spans, owners, batch_ids, known))
        return SpanMetricsCommit(task)

    async def commit_span_metrics(
        self,
        spans: dict[str, list[pa.RecordBatch]],
        owners: dict[str, list[Owners]],
        batch_ids: list[str],
        known: set[str],
    ) -> None:
        """Commit the span metrics tables' rows of the spans a flush is about to commit, each
        leaving out the batches it holds already (``ids``: committed before a crash or a failed
        commit of the next table), and publish their snapshots: queries leave the hot spans of
        the batches a table holds out of its hot rows (``unheld``)."""
        metrics = self.span_metrics
        if metrics is None:
            return
        try:
            for name, derive in ((SPAN_METRICS, metrics.derive), (SPAN_METRICS_1H, metrics.derive_hourly)):
                held = self.ids[name]
                left_out = known | {i for i in batch_ids if i in held}
                done = await asyncio.to_thread(self._commit, name, spans, owners, batch_ids, left_out, derive)
                for committed_at, ids in done.by_others:
                    held.add(ids, committed_at=committed_at)
                held.add(i for i in batch_ids if i not in done.skipped)
                self._visible[name] = done.snapshot_id
                if name == SPAN_METRICS:
                    metrics.committed()
                if done.rows:
                    self._commits.inc()
        finally:
            metrics.forget()

    def unheld(
        self, table: str, tenant: str, spans: list[pa.RecordBatch], owners: list[Owners]
    ) -> list[pa.RecordBatch]:
        """Hot spans without those of batches ``table`` holds (replayed after a crash between its
        commit and the next table's): their metrics are in its snapshot. Call it in the same step
        of the event loop as reading that snapshot."""
        held = {i for owned in owners for i, _ in owned if i in self.ids[table]}
        return without({tenant: spans}, {tenant: owners}, held) if held else spans

    async def hot_rows(self, table: str, spans: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """The hot spans' rows of ``table`` (a span metrics table), as the next flush will commit them."""
        metrics = self.span_metrics
        if metrics is None or not spans:
            return []
        return await asyncio.to_thread(metrics.hot if table == SPAN_METRICS else metrics.hot_hourly, spans)

    async def commit_audit(self) -> None:
        """Commit the audit rows recorded since the last flush (kept for the next on failure)."""
        if not self.audit.pending:
            return
        tenants = self.audit.take()
        owners: dict[str, list[Owners]] = {tenant: [[] for _ in rows] for tenant, rows in tenants.items()}
        try:
            done = await asyncio.to_thread(self._commit, audit_table.TABLE, tenants, owners, [])
        except Exception as error:
            self.audit.put_back()
            self._logger.warning(
                "Committing the audit rows failed; they are retried at the next flush.",
                extra={"error": repr(error)},
            )
            return
        except asyncio.CancelledError:
            self.audit.put_back()
            raise
        self._visible[audit_table.TABLE] = done.snapshot_id  # with retiring its hot rows, in one step
        self.audit.committed()
