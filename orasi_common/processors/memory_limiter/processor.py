"""The `memory_limiter` processor: refuses data while the process uses too much memory.

Every ``check_interval`` it reads the process's resident memory. Above the soft limit
(hard limit minus spike headroom) it first has the allocators return the memory they hold free
(``allocator.release_free_memory``: glibc's free pages, jemalloc's retained freed pages), which
resident memory counts but the process can give back at once, and measures again; if memory is
still above the soft limit, new data is refused with ``Unavailable`` carrying a retry delay
(gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After); above the hard limit it also
forces a garbage collection. Data is accepted again once memory is below the soft limit.

When no data has come for ``release_when_idle`` seconds, it returns the free memory once too,
so that a process that took memory in a burst gives it back when the burst is over.

Live settings (``control.settings``): the limits (``limit_mib``, ``spike_limit_mib``,
``limit_percentage``, ``spike_limit_percentage``) and ``check_interval`` can change while it runs
(``reconfigure``): memory is measured against the new limits at once; the interval applies
from the next check.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import ClassVar

import psutil

from orasi_common.allocator import release_free_memory
from orasi_common.errors import Unavailable
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.processors.memory_limiter.config import Config

MIB = 1024 * 1024


def available_memory() -> int:
    """Bytes this process may use: the cgroup v2 limit when there is one, else the host's RAM."""
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            return min(int(text), psutil.virtual_memory().total)
    except OSError:
        pass
    return int(psutil.virtual_memory().total)


def limits(config: Config, total: int | None = None) -> tuple[int, int]:
    """(soft, hard) limits in bytes."""
    if config.limit_mib is not None:
        hard = int(config.limit_mib * MIB)
        spike = int(config.spike_limit_mib * MIB) if config.spike_limit_mib else hard // 5
    else:
        assert config.limit_percentage is not None
        total = available_memory() if total is None else total
        hard = int(total * config.limit_percentage / 100)
        spike = (
            int(total * config.spike_limit_percentage / 100) if config.spike_limit_percentage else hard // 5
        )
    return hard - spike, hard


class MemoryLimiter:
    reloadable_keys: ClassVar[frozenset[str]] = frozenset(
        {"limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage", "check_interval"}
    )

    def __init__(self, settings: Settings, config: Config, next_consumer: Consumer) -> None:
        self._config = config
        self._next = next_consumer
        self._logger = settings.logger
        self._refused = settings.metrics.processor_refused
        self._rss_gauge = settings.metrics.memory_rss_bytes
        self._id = settings.id
        self._process = psutil.Process()
        self.soft_limit, self.hard_limit = limits(config)
        self.refusing = False
        self._tasks = TaskScope()
        self._last_data = time.monotonic()
        self._released_since_data = True  # nothing to give back before any data

    @property
    def config(self) -> Config:
        return self._config

    def reconfigure(self, config: Config) -> None:
        """New limits, and a measurement against them now."""
        self._config = config
        self.soft_limit, self.hard_limit = limits(config)
        self.check()

    async def start(self) -> None:
        self.check()
        await self._tasks.open()
        self._tasks.spawn(self._monitor())

    def measure(self) -> int:
        """The process's resident memory, bytes."""
        return int(self._process.memory_info().rss)

    def check(self, rss: int | None = None) -> None:
        """Measure (or take) the resident memory and update the refusing state; a measurement
        above the soft limit is taken again after the allocators returned their free memory."""
        if rss is None:
            rss = self.measure()
            if rss >= self.soft_limit and release_free_memory():
                rss = self.measure()
        self._rss_gauge.set(rss)
        if rss >= self.hard_limit:
            gc.collect()
        refusing = rss >= self.soft_limit
        if refusing != self.refusing:
            self._logger.warning(
                "Memory is above the soft limit; refusing data."
                if refusing
                else "Memory is below the soft limit again; accepting data.",
                extra={
                    "rss_bytes": rss,
                    "soft_limit_bytes": self.soft_limit,
                    "hard_limit_bytes": self.hard_limit,
                },
            )
        self.refusing = refusing

    def release_if_idle(self, now: float | None = None) -> bool:
        """Return the allocators' free memory once no data came for ``release_when_idle`` s."""
        now = time.monotonic() if now is None else now
        idle = self._config.release_when_idle
        if not idle or self._released_since_data or now - self._last_data < idle:
            return False
        self._released_since_data = True
        return release_free_memory()

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self._config.check_interval)
            self.release_if_idle()
            self.check()

    async def consume(self, batch: Batch) -> None:
        self._last_data = time.monotonic()
        self._released_since_data = False
        if self.refusing:
            self._refused.labels(batch.signal.value, self._id).inc(batch.items)
            raise Unavailable(
                f"memory usage is above the soft limit of {self.soft_limit // MIB} MiB; "
                "data is refused until it drops",
                retry_after=self._config.retry_after,
            )
        await self._next.consume(batch)

    async def shutdown(self) -> None:
        await self._tasks.close(cancel=True)
