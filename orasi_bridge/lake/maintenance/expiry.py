"""Snapshot expiry and orphan-file removal.

A table keeps its current snapshot (and every branch or tag head), its newest ``keep_snapshots``
snapshots, and every snapshot younger than ``keep_age`` — never less than the lake's
``dedup_window``: the writers read the batch ids of those snapshots' summaries back at start
(``committed.CommittedIds``) and before each commit (``commits.batch_ids_since``), and a replay
within the window is recognised only while the snapshot holding its id is kept. The others are
removed from the table's metadata in one commit (pyiceberg's ``expire_snapshots``, applied to the
catalog's current metadata, so it needs no retry against concurrent appends).

Then the files under the table's location that no kept snapshot needs — data files (with their
trace indexes), manifests, manifest lists and metadata files that are neither the current one nor
in its log — are removed once they are older than ``orphan_age``: a writer's files are
unreferenced between their upload and its commit, and a compaction's inputs stay referenced by
the snapshots before it until those expire. Queries read the current snapshot, which is kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from orasi_bridge.lake import traceindex
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.tables import Lake, listed_files


@dataclass
class ExpiryReport:
    dry_run: bool
    expired: dict[str, int] = field(default_factory=dict)  # snapshots, per table
    kept: dict[str, int] = field(default_factory=dict)
    orphans: dict[str, list[str]] = field(default_factory=dict)  # paths, per table
    bytes: int = 0

    @property
    def files(self) -> int:
        return sum(len(paths) for paths in self.orphans.values())

    def lines(self) -> list[str]:
        verb = "would expire" if self.dry_run else "expired"
        removal = "would remove" if self.dry_run else "removed"
        return [
            f"{name}: {verb} {self.expired[name]} snapshots, kept {self.kept[name]}; "
            f"{removal} {len(self.orphans.get(name, []))} orphan files"
            for name in self.expired
        ]


def expired_snapshots(table: Table, config: MaintenanceConfig, dedup_window: float, now: float) -> list[int]:
    """The ids of ``table``'s snapshots that expiry removes at ``now`` (seconds)."""
    horizon_ms = (now - max(config.keep_age, dedup_window)) * 1000
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    newest = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    return [
        snapshot.snapshot_id
        for snapshot in newest[config.keep_snapshots :]
        if snapshot.timestamp_ms < horizon_ms and snapshot.snapshot_id not in protected
    ]


def expire(
    lake: Lake,
    config: MaintenanceConfig,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    now: float | None = None,
) -> ExpiryReport:
    """Expire snapshots and remove orphan files in every table of ``lake`` (blocking)."""
    report = ExpiryReport(dry_run)
    clock = time.time() if now is None else now
    for name, table in lake.tables().items():
        if stop is not None and stop.is_set():
            break
        expired = expired_snapshots(table, config, lake.config.dedup_window, clock)
        if expired and not dry_run:
            expired = _expire(table, config, lake.config.dedup_window, clock)
        report.expired[name] = len(expired)
        report.kept[name] = len(table.snapshots()) - (len(expired) if dry_run else 0)
        orphans = _orphans(lake, table, set(expired) if dry_run else set(), clock - config.orphan_age)
        report.orphans[name] = sorted(orphans)
        report.bytes += sum(orphans.values())
        if not dry_run:
            for path in orphans:
                with contextlib.suppress(FileNotFoundError):  # another run took it first
                    lake.fs.delete_file(path)
    return report


def _expire(table: Table, config: MaintenanceConfig, dedup_window: float, now: float) -> list[int]:
    """Expire ``table``'s old snapshots, planned again on the new metadata after a conflict."""
    for attempt in range(config.commit_retries + 1):
        expired = expired_snapshots(table, config, dedup_window, now)
        try:
            if expired:
                table.maintenance.expire_snapshots().by_ids(expired).commit()
            table.refresh()
            return expired
        except CommitFailedException:
            table.refresh()
            if attempt == config.commit_retries:
                raise
    raise AssertionError("unreachable")


def _orphans(lake: Lake, table: Table, expiring: set[int], before: float) -> dict[str, int]:
    """The files under ``table``'s location (paths without the scheme, with their sizes) that no
    snapshot but those of ``expiring`` needs, last modified before ``before`` (seconds)."""
    io = table.io
    metadata = table.metadata
    needed = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    needed.update(s.statistics_path for s in metadata.statistics)
    manifests = {}
    for snapshot in table.snapshots():
        if snapshot.snapshot_id in expiring:
            continue
        needed.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            manifests[manifest.manifest_path] = manifest
    needed.update(manifests)
    for manifest in manifests.values():
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
            needed.add(entry.data_file.file_path)
            index = traceindex.index_path(entry.data_file.file_path)
            if index is not None:
                needed.add(index)
    needed_paths = {path.removeprefix(lake.prefix) for path in needed}
    location = table.location().removeprefix(lake.prefix).rstrip("/")
    return {
        info.path: info.size or 0
        for info in listed_files(lake.fs, location)
        if info.path not in needed_paths and info.mtime is not None and info.mtime.timestamp() < before
    }
