"""Retention per tenant: whole day partitions older than the tenant's limit are deleted.

A tenant's limit is ``retention.tenants[tenant]``, else ``retention.default`` (neither: kept
forever). A day partition goes when all of it is older than the limit (the cutoff is aligned to
the start of a day: a day is deleted once its end is ``limit`` old); rows without a time are never
deleted. Each table's expired partitions go in one snapshot that removes their files
(``tables.replace_files``: metadata only, no file is rewritten); the files themselves are removed
by the orphan-file removal once no kept snapshot needs them (``expiry``). If another job changed
those files meanwhile, the partitions are planned again from the new snapshot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from orasi_bridge.lake.maintenance.config import MaintenanceConfig, RetentionConfig
from orasi_bridge.lake.maintenance.tables import (
    SECONDS_PER_DAY,
    Lake,
    PartitionKey,
    live_files,
    replace_files,
)


@dataclass(frozen=True)
class Deleted:
    table: str
    partition: PartitionKey
    files: int
    bytes: int
    rows: int


@dataclass
class RetentionReport:
    dry_run: bool
    partitions: list[Deleted] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(p.files for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def lines(self) -> list[str]:
        if not self.partitions:
            return ["no partition past its tenant's retention"]
        verb = "would delete" if self.dry_run else "deleted"
        return [f"{p.table} {p.partition}: {verb} ({p.files} files, {p.rows} rows)" for p in self.partitions]


def first_kept_day(retention: RetentionConfig, tenant: str, now: float) -> int | None:
    """The oldest day (days since 1970-01-01) kept of ``tenant``'s rows at ``now`` (None: all)."""
    limit = retention.tenants.get(tenant, retention.default)
    return None if limit is None else int((now - limit) // SECONDS_PER_DAY)


def expired_partitions(
    table: Table, retention: RetentionConfig, now: float
) -> dict[PartitionKey, list[DataFile]]:
    """``table``'s partitions past their tenant's retention at ``now``, with their files."""
    expired = {}
    for partition, files in live_files(table).items():
        first = first_kept_day(retention, partition.tenant, now)
        if first is not None and partition.day is not None and partition.day < first:
            expired[partition] = files
    return expired


def apply_retention(
    lake: Lake,
    config: MaintenanceConfig,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    now: float | None = None,
) -> RetentionReport:
    """Delete the partitions past retention in every table of ``lake`` (blocking)."""
    report = RetentionReport(dry_run)
    clock = time.time() if now is None else now
    if config.retention.default is None and not config.retention.tenants:
        return report
    for name, table in lake.tables().items():
        if stop is not None and stop.is_set():
            break
        for _ in range(config.commit_retries + 1):
            expired = expired_partitions(table, config.retention, clock)
            files = [f for found in expired.values() for f in found]
            if dry_run or not files or replace_files(table, files, [], "retention", config.commit_retries):
                break
        else:
            raise RuntimeError(f"{name}: other jobs kept changing the partitions past retention; try again")
        for partition, found in sorted(expired.items(), key=lambda item: str(item[0])):
            report.partitions.append(
                Deleted(
                    name,
                    partition,
                    len(found),
                    sum(f.file_size_in_bytes for f in found),
                    sum(f.record_count for f in found),
                )
            )
    return report
