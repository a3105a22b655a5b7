"""Retention per tenant: whole day partitions older than the tenant's limit are deleted.

A tenant's limit is ``retention.tenants[tenant]``, else ``retention.default`` (neither: kept
forever). A day partition goes when all of it is older than the limit (the cutoff is aligned to
the start of a day: a day is deleted once its end is ``limit`` old); rows without a time are never
deleted. Each table's expired partitions go in one snapshot that removes their files
(``tables.replace_files``: metadata only, no file is rewritten); the files themselves are removed
by the orphan-file removal once no kept snapshot needs them (``expiry``). If another job changed
those files meanwhile, the partitions are planned again from the new snapshot.

A month partition (``schema.MONTHLY``: the hourly rollup ``span_metrics_1h``) keeps the same days
as the day partitions of the other tables, so that queries over the rollup and over the minutes
still agree at the retention's edge: a month whose days are all expired is deleted as a whole, and
in a month partly expired, each file holding rows of an expired day (its ``time`` lower bound
before the cutoff) is rewritten without them (``_trimmed``: read, filtered, sorted and written by
the writer's code), its replacement committed in the same snapshot that removes it. As with
compaction, writers only add files meanwhile, so no row is lost or kept twice; a file another job
removed first makes the table planned again, the rewritten files deleted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from orasi_bridge.lake.files import Partition, delete_data_files, sort_rows, write_data_files
from orasi_bridge.lake.maintenance.config import MaintenanceConfig, RetentionConfig
from orasi_bridge.lake.maintenance.tables import (
    SECONDS_PER_DAY,
    Lake,
    PartitionKey,
    live_files,
    read_file,
    replace_files,
)
from orasi_bridge.lake.schema import TABLES, TIME


@dataclass(frozen=True)
class Deleted:
    table: str
    partition: PartitionKey
    files: int
    bytes: int
    rows: int  # rows deleted
    rewritten: int = 0  # files written with the rows kept (a month partition partly expired)


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
        return [
            f"{p.table} {p.partition}: {verb} ({p.files} files, {p.rows} rows"
            + (f"; the rest rewritten into {p.rewritten} files)" if p.rewritten else ")")
            for p in self.partitions
        ]


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
        days = partition.days()
        if first is not None and days is not None and days[1] <= first:
            expired[partition] = files
    return expired


def trimmed_partitions(
    table: Table, retention: RetentionConfig, now: float
) -> dict[PartitionKey, tuple[list[DataFile], int]]:
    """``table``'s month partitions partly past retention at ``now``: the files holding rows of an
    expired day, and the first kept µs (rows before it go)."""
    trimmed = {}
    time_id = table.schema().find_field("time").field_id
    for partition, files in live_files(table).items():
        first = first_kept_day(retention, partition.tenant, now)
        days = partition.days()
        if first is None or days is None or not days[0] < first < days[1]:
            continue
        cutoff_us = first * SECONDS_PER_DAY * 1_000_000
        old = [f for f in files if _lower_micros(f, time_id) < cutoff_us]
        if old:
            trimmed[partition] = (old, cutoff_us)
    return trimmed


def _lower_micros(data_file: DataFile, time_id: int) -> int:
    bound = (data_file.lower_bounds or {}).get(time_id)
    return int.from_bytes(bound, "little", signed=True) if bound else -(2**63)  # unknown: read it


def _trimmed(
    lake: Lake,
    table: Table,
    name: str,
    partition: PartitionKey,
    files: list[DataFile],
    cutoff_us: int,
    write: bool,
) -> tuple[list[DataFile], int]:
    """The rows of ``files`` from ``cutoff_us`` on, written as one file of ``partition`` (none when no
    row is kept, or unless ``write``), and the number of rows left out."""
    schema = TABLES[name]
    rows = pa.concat_tables([read_file(lake, f.file_path, schema) for f in files])
    kept = rows.filter(pc.field("time") >= pa.scalar(cutoff_us, TIME))
    removed = rows.num_rows - kept.num_rows
    if rows.num_rows != sum(f.record_count for f in files):
        raise RuntimeError(f"{name} {partition}: the files read hold other counts than their metadata's")
    if not write or kept.num_rows == 0:
        return [], removed
    ordered, runs = sort_rows(kept.to_batches(), schema, partition.monthly)
    if [(run.tenant, run.day) for run in runs] != [(partition.tenant, partition.day)] * len(runs):
        raise RuntimeError(
            f"{name} {partition}: the files read hold rows of other partitions; nothing rewritten"
        )
    written = write_data_files(
        table,
        name,
        ordered,
        [Partition(partition.tenant, partition.day, 0, ordered.num_rows, partition.region)],
        lake.fs,
        lake.prefix,
    )
    return written, removed


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
            trimmed = trimmed_partitions(table, config.retention, clock)
            files = [f for found in expired.values() for f in found]
            files += [f for found, _ in trimmed.values() for f in found]
            added: list[DataFile] = []
            # per partition: its files, rows deleted, files written with the rows kept
            done = {p: (found, sum(f.record_count for f in found), 0) for p, found in expired.items()}
            committing = False
            try:
                for partition, (found, cutoff_us) in trimmed.items():
                    outputs, removed = _trimmed(lake, table, name, partition, found, cutoff_us, not dry_run)
                    added += outputs
                    done[partition] = (found, removed, len(outputs))
                committing = True
                if (
                    dry_run
                    or not files
                    or replace_files(table, files, added, "retention", config.commit_retries)
                ):
                    break
            except Exception as error:
                # Certainly not committed unless the commit's outcome is unknown (a lost
                # connection): then the files stay, for the orphan-file removal if unreferenced.
                if not committing or isinstance(error, CommitFailedException):
                    delete_data_files(lake.fs, lake.prefix, [f.file_path for f in added])
                raise
            delete_data_files(lake.fs, lake.prefix, [f.file_path for f in added])  # planned again
        else:
            raise RuntimeError(f"{name}: other jobs kept changing the partitions past retention; try again")
        for partition, (found, removed, written) in sorted(done.items(), key=lambda item: str(item[0])):
            size = sum(f.file_size_in_bytes for f in found)
            report.partitions.append(Deleted(name, partition, len(found), size, removed, written))
    return report
