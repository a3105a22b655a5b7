"""``orasi_storage_*``: how full the filesystems holding a service's directories are.

Components declare the directories they write (a write-ahead log, a cache, a local warehouse)
when they are created, through ``Metrics.watch_volume(volume, directory)``; nothing else is
configured. The gauges are computed when /metrics is scraped, with one ``os.statvfs`` per
volume (a system call that reads no file), and the admin port renders /metrics in a thread, so
the event loop never waits on the disk. A directory that does not exist (yet) has no sample:
a component creates its directory in ``start()``.

Usage is what ``df`` shows: used blocks over the blocks an unprivileged process could have,
``(blocks - free) / (blocks - free + available)``, so the blocks reserved for root count as full.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class Usage:
    """One filesystem's usage as statvfs reports it."""

    used_bytes: int
    available_bytes: int

    @property
    def percent(self) -> float:
        total = self.used_bytes + self.available_bytes
        return 100.0 * self.used_bytes / total if total else 0.0


def usage(directory: str) -> Usage | None:
    """The usage of the filesystem holding ``directory``; None when it cannot be read."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return Usage((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize)


class StorageCollector(Collector):
    """The volumes a service watches; collected at scrape time (thread-safe)."""

    def __init__(self) -> None:
        self._volumes: dict[str, str] = {}
        self._lock = threading.Lock()

    def watch(self, volume: str, directory: str) -> None:
        """Report ``directory``'s filesystem as ``volume`` (a later call for it replaces it)."""
        with self._lock:
            self._volumes[volume] = directory

    def volumes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._volumes)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        percent = GaugeMetricFamily(
            "orasi_storage_usage_percent",
            "Used space of the filesystem holding a volume (WAL, cache, data), percent, as df shows it.",
            labels=["volume"],
        )
        available = GaugeMetricFamily(
            "orasi_storage_available_bytes",
            "Space left for the service on the filesystem holding a volume, bytes.",
            labels=["volume"],
        )
        for volume, directory in sorted(self.volumes().items()):
            found = usage(directory)
            if found is not None:
                percent.add_metric([volume], found.percent)
                available.add_metric([volume], found.available_bytes)
        yield percent
        yield available

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe(), registering would call collect() (and statvfs) once up front.
        yield GaugeMetricFamily("orasi_storage_usage_percent", "", labels=["volume"])
        yield GaugeMetricFamily("orasi_storage_available_bytes", "", labels=["volume"])


__all__ = ["StorageCollector", "Usage", "usage"]
