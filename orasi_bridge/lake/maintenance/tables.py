"""The lake as the maintenance jobs see it: its tables, their live files by partition, and the one
way a job changes a table (``replace_files``).

A job's commit removes and adds whole data files in one snapshot (pyiceberg's overwrite producer:
pyiceberg 0.12 cannot write Iceberg's ``replace`` operation), marked with ``JOB_PROPERTY`` and
without the writer's ``orasi.batch-ids``, but with the replication positions of a global lake's
table carried forward (``replica_tables.positions``: the next replication finds them in the
current snapshot, whatever expiry removed); its parent is the snapshot it read, so the writer's
``batch_ids_since`` still walks through it to the writers' snapshots. Like the writer's, the
commit succeeds only on the snapshot it read (pyiceberg's own retries are off on these tables,
``catalog.COMMIT_NUM_RETRIES``): on a conflict the table is read again and the same files are
committed on top of the new snapshot, unless a file to remove is gone from it (another job removed
it first), which ``replace_files`` reports so that the job plans again. Data files are immutable and
the writers only add files, so a commit can neither lose a row a writer added meanwhile nor hold
one twice.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.transforms import MonthTransform

from orasi_bridge.lake.catalog import filesystem, open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.replica_tables import position_properties, positions
from orasi_bridge.lake.schema import NAMESPACE, TABLES

JOB_PROPERTY = "orasi.maintenance"
"""Snapshot summary property naming the job that made the snapshot (``compact``, ``retention``)."""

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PartitionKey:
    """One partition of a lake table: a tenant's day (``day``: days since 1970-01-01; None for rows
    without a time), or month for a table partitioned by month (``monthly``: ``day`` counts months
    since 1970-01); in the global lake, whose tables are partitioned by region first
    (``replica_tables``), of one ``region`` (None in a regional lake, not partitioned by it)."""

    tenant: str
    day: int | None
    monthly: bool = False
    region: str | None = None

    def __str__(self) -> str:
        where = (
            f"tenant={self.tenant}" if self.region is None else f"region={self.region}/tenant={self.tenant}"
        )
        if self.day is None:
            return f"{where}/{'month' if self.monthly else 'day'}=no-time"
        if self.monthly:
            return f"{where}/month={1970 + self.day // 12:04d}-{self.day % 12 + 1:02d}"
        return f"{where}/day={time.strftime('%Y-%m-%d', time.gmtime(self.day * SECONDS_PER_DAY))}"

    def days(self) -> tuple[int, int] | None:
        """The first day and the day after the last of the partition (days since 1970-01-01)."""
        if self.day is None:
            return None
        if not self.monthly:
            return self.day, self.day + 1
        first, after = np.array([self.day, self.day + 1]).astype("datetime64[M]").astype("datetime64[D]")
        return int(first.astype(np.int64)), int(after.astype(np.int64))


class Lake:
    """A lake's catalog, tables and filesystem, opened for maintenance (blocking; ``close`` it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog: Catalog = open_catalog(config)
        self.fs, self.prefix = filesystem(config)

    def tables(self) -> dict[str, Table]:
        """The lake's tables that exist (maintenance never creates one)."""
        found = {}
        for name in TABLES:
            try:
                found[name] = self.catalog.load_table(f"{NAMESPACE}.{name}")
            except NoSuchTableError:
                continue
        return found

    def close(self) -> None:
        self.catalog.close()


def live_files(table: Table) -> dict[PartitionKey, list[DataFile]]:
    """The data files of ``table``'s current snapshot, by partition (each file's by its own spec:
    a table whose spec evolved from day to month, ``catalog._set_up``, holds both kinds; a global
    table's partitions are each region's)."""
    schema = table.schema()
    # spec id: positions of time, tenant and region (None: not partitioned by it) in the
    # partition record, monthly
    layouts: dict[int, tuple[int, int, int | None, bool]] = {}
    for spec_id, spec in table.specs().items():
        names = [schema.find_field(field.source_id).name for field in spec.fields]
        if "time" in names and "tenant" in names:
            at = names.index("time")
            layouts[spec_id] = (
                at,
                names.index("tenant"),
                names.index("region") if "region" in names else None,
                isinstance(spec.fields[at].transform, MonthTransform),
            )
    partitions: dict[PartitionKey, list[DataFile]] = defaultdict(list)
    for task in table.scan().plan_files():
        record = task.file.partition
        time_at, tenant_at, region_at, monthly = layouts[task.file.spec_id]
        region = None if region_at is None else record[region_at]
        partitions[PartitionKey(record[tenant_at], record[time_at], monthly, region)].append(task.file)
    return dict(partitions)


def replace_files(
    table: Table, removed: list[DataFile], added: list[DataFile], job: str, retries: int
) -> bool:
    """Remove ``removed`` and add ``added`` in one snapshot of ``table`` (blocking). False when a
    file of ``removed`` is no longer in the current snapshot (nothing committed); a conflict with
    other commits is retried ``retries`` times, with a growing jittered pause, then raised. The
    replication positions of the snapshot committed on are carried forward (a global table's)."""
    for attempt in range(retries + 1):
        properties = {JOB_PROPERTY: job, **position_properties(positions(table))}
        try:
            with (
                table.transaction() as transaction,
                transaction.update_snapshot(snapshot_properties=properties).overwrite() as overwrite,
            ):
                for data_file in removed:
                    overwrite.delete_data_file(data_file)
                for data_file in added:
                    overwrite.append_data_file(data_file)
            return True
        except ValidationException:
            table.refresh()
            return False
        except CommitFailedException:
            table.refresh()
            if attempt == retries:
                raise
            time.sleep(random.uniform(0.02, 0.1) * 2 ** min(attempt, 5))
    raise AssertionError("unreachable")


def listed_files(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """Every file under ``directory`` (a path without the URL scheme), with its modification time."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    return [info for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]


def read_file(lake: Lake, path: str, schema: pa.Schema) -> pa.Table:
    """A data file's rows in ``schema`` (columns added to the table since it was written: nulls)."""
    found = pq.read_table(path.removeprefix(lake.prefix), filesystem=lake.fs)
    columns = [
        found.column(f.name).cast(f.type)
        if f.name in found.column_names
        else pa.nulls(found.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
