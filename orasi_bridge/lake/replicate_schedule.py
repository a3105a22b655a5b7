"""The lake exporter's replication schedule: ``replicate`` into the global lake every ``interval``.

One bridge per lake replicates at a time: the leader of the control plane's election
``/orasi/<region>/leader/lake-replicate`` when the service has an `etcd` extension with endpoints,
otherwise the first lake exporter of this process for that lake (``orasi up``, where each region's
bridge replicates its own lake into ``<data-dir>/global``). A new leader replicates after
``min(interval, FIRST_RUN)`` seconds, then every ``interval``; each run in a thread. A run that
fails is logged and runs again at the next turn: a run is idempotent and resumes where the last
commit left off (``replicate``), so a leader that dies mid-run costs nothing but the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

from orasi_bridge.lake.config import Config
from orasi_bridge.lake.maintenance.scheduler import Leadership, LocalLock
from orasi_bridge.lake.replicate import Report, replicate
from orasi_common.control.election import Election
from orasi_common.discovery.etcd import EtcdDefaults
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.tasks import TaskScope

ELECTION = "lake-replicate"
ACTION = "replicate"
"""The ``action`` label of the maintenance metrics that count replication runs."""
FIRST_RUN = 30.0
"""Seconds a new leader waits at most before its first run."""


class ReplicationSchedule:
    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._tasks = TaskScope()
        self._leadership: Leadership | None = None
        self._running: asyncio.Future[list[Report]] | None = None

    def _make_leadership(self) -> Leadership:
        etcd = EtcdDefaults.of(self._settings.extensions)
        if etcd is None:
            return LocalLock(f"{ELECTION} {self._config.catalog_uri} {self._config.warehouse}")
        candidate = f"{socket.gethostname()}-{os.getpid()}-{self._settings.id}"
        return Election(etcd.endpoints, etcd.region, ELECTION, candidate)

    async def start(self) -> None:
        """Campaign and schedule, when the lake has a `replicate` section (else nothing)."""
        if self._config.replicate is None:
            return
        self._leadership = self._make_leadership()
        await self._leadership.campaign()
        await self._tasks.open()
        self._tasks.spawn(
            self._schedule(self._leadership, self._config.replicate.interval), name="lake-replicate"
        )

    async def _schedule(self, leadership: Leadership, interval: float) -> None:
        logger = self._settings.logger
        while True:
            await leadership.wait_until(True)
            logger.info("Leading the lake's replication.", extra={"to": self._to})
            due = time.monotonic() + min(interval, FIRST_RUN)
            lost = asyncio.ensure_future(leadership.wait_until(False))
            try:
                while True:
                    await asyncio.wait([lost], timeout=max(0.0, due - time.monotonic()))
                    if lost.done():
                        break
                    await self.run_once()
                    due = time.monotonic() + interval
            finally:
                lost.cancel()

    @property
    def _to(self) -> str:
        return self._config.replicate.to if self._config.replicate else ""

    async def run_once(self) -> bool:
        """One replication (in a thread); whether it succeeded (a failure is logged). Counted as
        the maintenance jobs are, with ``action="replicate"``: runs by outcome, duration, and the
        files and bytes copied (``OrasiLakeMaintenanceFailing`` covers it)."""
        config, target = self._config, self._config.replicate
        assert target is not None
        logger, metrics, exporter = self._settings.logger, self._settings.metrics, self._settings.id
        started = time.monotonic()
        self._running = asyncio.get_running_loop().run_in_executor(None, replicate, config, target)
        try:
            reports = await asyncio.shield(self._running)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.lake_maintenance_runs.labels(exporter, ACTION, "failure").inc()
            logger.warning(
                "Replication to the global lake failed; it runs again at its next turn.",
                extra={"to": self._to, "error": repr(error)},
            )
            return False
        finally:
            metrics.lake_maintenance_duration.labels(exporter, ACTION).observe(time.monotonic() - started)
        metrics.lake_maintenance_runs.labels(exporter, ACTION, "success").inc()
        metrics.lake_maintenance_files.labels(exporter, ACTION).inc(sum(report.files for report in reports))
        metrics.lake_maintenance_bytes.labels(exporter, ACTION).inc(sum(report.bytes for report in reports))
        copied = {report.table: report.rows for report in reports if report.rows}
        if copied:
            logger.info("Replicated the lake to the global lake.", extra={"to": self._to, "rows": copied})
        return True

    async def shutdown(self) -> None:
        """Stop scheduling, wait for the run in flight (a commit is not cut), give up leadership."""
        await self._tasks.close(cancel=True)
        if self._running is not None:
            with contextlib.suppress(Exception):  # logged by run_once
                await self._running
        if self._leadership is not None:
            await self._leadership.shutdown()
            self._leadership = None
