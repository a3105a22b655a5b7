"""The lake exporter's maintenance schedule: each job of ``JOBS`` every ``<action>_interval``.

Jobs run on one bridge per region at a time: the leader of the control plane's election
``/orasi/<region>/leader/<election>`` when the service has an `etcd` extension with endpoints
(the bridges sharing a lake take turns as leadership moves), otherwise the first lake exporter of
this process for that lake (``orasi up``). A new leader runs each job after ``min(interval,
FIRST_RUN)`` seconds, then every interval; one job at a time, in a thread, on its own catalog
connection. A job that fails is logged and counted and runs again at its next turn. Leadership
only keeps the jobs from repeating each other's work: a job still running when its bridge lost
the election (or run by `orasi lake` meanwhile) is safe, its commits conflict and are planned
again like any other (``tables``).
``shutdown`` stops the job in flight at its next partition, waiting ``SHUTDOWN_WAIT`` at most.

Every run counts ``orasi_lake_maintenance_runs_total{action,outcome}``, its duration, and the
files and bytes its report names.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable
from typing import ClassVar, Protocol

from orasi_bridge.lake.config import Config
from orasi_bridge.lake.maintenance.jobs import JOBS, Report
from orasi_bridge.lake.maintenance.tables import Lake
from orasi_common.control.election import Election
from orasi_common.discovery.etcd import EtcdDefaults
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.tasks import TaskScope

FIRST_RUN = 300.0
"""Seconds a new leader waits at most before each job's first run."""
SHUTDOWN_WAIT = 5.0
"""Seconds shutdown waits for the job in flight (it stops at its next partition or table)."""
CAMPAIGN_RETRY = 5.0
"""Seconds between attempts at joining the election while etcd cannot be reached."""


class Leadership(Protocol):
    async def campaign(self) -> None: ...
    async def wait_until(self, leader: bool) -> None: ...
    async def shutdown(self) -> None: ...


class LocalLock:
    """Leadership within this process: the first holder of ``key`` leads until its shutdown."""

    _held: ClassVar[set[str]] = set()
    RETRY = 1.0

    def __init__(self, key: str) -> None:
        self.key = key
        self._leader = False
        self._stopped = asyncio.Event()

    async def campaign(self) -> None:
        return None

    async def wait_until(self, leader: bool) -> None:
        if not leader:
            await self._stopped.wait()  # held until shutdown
            return
        while not self._leader:
            if self.key not in self._held:
                self._held.add(self.key)
                self._leader = True
                return
            await asyncio.sleep(self.RETRY)

    async def shutdown(self) -> None:
        if self._leader:
            self._held.discard(self.key)
            self._leader = False
        self._stopped.set()


class Scheduler:
    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._logger = settings.logger
        self._intervals = {
            action: interval
            for action in JOBS
            if (interval := getattr(config.maintenance, f"{action}_interval")) is not None
        }
        self._tasks = TaskScope()
        self._stop = threading.Event()
        self._running: asyncio.Future[Report] | None = None
        self._lake: Lake | None = None
        self._leadership: Leadership | None = None

    def _make_leadership(self) -> Leadership:
        etcd = EtcdDefaults.of(self._settings.extensions)
        if etcd is None:
            return LocalLock(f"{self._config.catalog_uri} {self._config.warehouse}")
        candidate = f"{socket.gethostname()}-{os.getpid()}-{self._settings.id}"
        return Election(etcd.endpoints, etcd.region, self._config.maintenance.election, candidate)

    async def start(self) -> None:
        if not self._intervals:
            return
        metrics, exporter = self._settings.metrics, self._settings.id
        for action in self._intervals:  # every series at 0 from the start, as rates and alerts need
            for outcome in ("success", "failure"):
                metrics.lake_maintenance_runs.labels(exporter, action, outcome)
            for family in (metrics.lake_maintenance_files, metrics.lake_maintenance_bytes):
                family.labels(exporter, action)
            metrics.lake_maintenance_duration.labels(exporter, action)
        self._leadership = self._make_leadership()
        await self._tasks.open()
        self._tasks.spawn(self._schedule(self._leadership), name="lake-maintenance")

    async def _schedule(self, leadership: Leadership) -> None:
        while True:  # etcd may be down when the bridge starts: it runs without maintenance meanwhile
            try:
                await leadership.campaign()
                break
            except Exception as error:
                self._logger.warning(
                    "Cannot run for the lake's maintenance yet; trying again.",
                    extra={"error": repr(error), "retry_in": CAMPAIGN_RETRY},
                )
                await asyncio.sleep(CAMPAIGN_RETRY)
        while True:
            await leadership.wait_until(True)
            self._logger.info("Leading the lake's maintenance.", extra={"jobs": sorted(self._intervals)})
            now = time.monotonic()
            due = {action: now + min(interval, FIRST_RUN) for action, interval in self._intervals.items()}
            lost = asyncio.ensure_future(leadership.wait_until(False))
            try:
                while not lost.done():
                    action = min(due, key=due.__getitem__)
                    await asyncio.wait([lost], timeout=max(0.0, due[action] - time.monotonic()))
                    if lost.done():
                        break
                    await self._run(action)
                    due[action] = time.monotonic() + self._intervals[action]
            finally:
                lost.cancel()

    async def _run(self, action: str) -> None:
        metrics = self._settings.metrics
        exporter = self._settings.id
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(None, self._job, action)
        try:
            report = await asyncio.shield(self._running)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.lake_maintenance_runs.labels(exporter, action, "failure").inc()
            self._logger.warning(
                "A lake maintenance job failed; it runs again at its next turn.",
                extra={"action": action, "error": repr(error)},
            )
            await self._close_lake()  # a fresh connection next time
            return
        finally:
            metrics.lake_maintenance_duration.labels(exporter, action).observe(time.monotonic() - started)
        metrics.lake_maintenance_runs.labels(exporter, action, "success").inc()
        metrics.lake_maintenance_files.labels(exporter, action).inc(report.files)
        metrics.lake_maintenance_bytes.labels(exporter, action).inc(report.bytes)
        self._logger.info(
            "Ran a lake maintenance job.",
            extra={"action": action, "files": report.files, "bytes": report.bytes, "report": report.lines()},
        )

    def _job(self, action: str) -> Report:
        if self._lake is None:
            self._lake = Lake(self._config)
        return JOBS[action](self._lake, self._config.maintenance, False, self._stop)

    async def _close_lake(self) -> None:
        lake, self._lake = self._lake, None
        if lake is not None:
            await asyncio.to_thread(lake.close)

    async def shutdown(self) -> None:
        """Stop scheduling, give the job in flight ``SHUTDOWN_WAIT`` seconds to end at its next
        partition (then it is left to finish in its thread: whatever it commits is safe), give up
        leadership."""
        self._stop.set()
        await self._tasks.close(cancel=True)
        finished = True
        if self._running is not None:
            try:
                await asyncio.wait_for(_quietly(asyncio.shield(self._running)), SHUTDOWN_WAIT)
            except TimeoutError:
                finished = False
                self._logger.warning(
                    "A lake maintenance job is still running at shutdown; it is left to finish.",
                    extra={"waited": SHUTDOWN_WAIT},
                )
        if self._leadership is not None:
            await self._leadership.shutdown()
            self._leadership = None
        if finished:  # else its catalog stays open for the job's thread
            await self._close_lake()


async def _quietly(future: Awaitable[object]) -> None:
    try:
        await future
    except Exception:  # counted and logged by _run, or cut short by the shutdown
        return
