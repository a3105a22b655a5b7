"""`orasi lake verify`: a lake's integrity, checked from its catalog and its files.

For each table of the lake's namespace, at its current snapshot:

- every data file exists and its Parquet footer reads, with the row count the manifest records
  (``deep``: every row group is also read and decompressed);
- no batch id is in two snapshots of the current snapshot's history (the exactly-once rule of
  ``commits.py``);
- the row counts of that history add up: each snapshot's total is its parent's plus what it added
  minus what it deleted, and the current total is the sum of the files' rows.

Nothing is written. Files are read by ``VERIFY_THREADS`` threads (object stores answer slowly
one request at a time).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from orasi_bridge.lake.catalog import filesystem, open_catalog
from orasi_bridge.lake.commits import BATCH_IDS_PROPERTY
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.schema import NAMESPACE

VERIFY_THREADS = 16
SHOWN = 10
"""The most ids or files one problem lists."""


@dataclass(frozen=True)
class SnapshotCounts:
    snapshot_id: int
    operation: str
    added_rows: int
    deleted_rows: int
    total_rows: int
    batch_ids: int


@dataclass
class TableReport:
    name: str
    files: int = 0
    rows: int = 0
    snapshots: list[SnapshotCounts] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verify_lake(config: Config, deep: bool = False) -> list[TableReport]:
    """One report per table of the lake (blocking)."""
    catalog = open_catalog(config)
    fs, prefix = filesystem(config)
    try:
        return [_verify(table, fs, prefix, deep) for table in _tables(catalog)]
    finally:
        catalog.close()


def _tables(catalog: Catalog) -> list[Table]:
    if (NAMESPACE,) not in catalog.list_namespaces():
        return []
    return [catalog.load_table(identifier) for identifier in sorted(catalog.list_tables(NAMESPACE))]


def _verify(table: Table, fs: pafs.FileSystem, prefix: str, deep: bool) -> TableReport:
    report = TableReport(table.name()[-1])
    history = history_of(table)
    report.snapshots = [snapshot_counts(snapshot) for snapshot in history]
    _check_batch_ids(history, report)
    _check_totals(report)
    if not history:
        return report
    files = [(task.file.file_path, task.file.record_count) for task in table.scan().plan_files()]
    report.files = len(files)
    report.rows = sum(count for _, count in files)
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:
        found = list(
            pool.map(lambda item: _check_file(fs, item[0].removeprefix(prefix), item[1], deep), files)
        )
    broken = [f"{path}: {why}" for (path, _), why in zip(files, found, strict=True) if why]
    if broken:
        report.problems.append(f"{len(broken)} data files do not read: " + "; ".join(broken[:SHOWN]))
    total = report.snapshots[-1].total_rows
    if total != report.rows:
        report.problems.append(f"the current snapshot says {total} rows, its files hold {report.rows}")
    return report


def history_of(table: Table) -> list[Snapshot]:
    """The current snapshot and its ancestors, oldest first."""
    history: list[Snapshot] = []
    snapshot = table.current_snapshot()
    while snapshot is not None:
        history.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = None if parent is None else table.metadata.snapshot_by_id(parent)
    history.reverse()
    return history


def _summary(snapshot: Snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def snapshot_counts(snapshot: Snapshot) -> SnapshotCounts:
    summary = snapshot.summary
    values = _summary(snapshot)
    ids = values.get(BATCH_IDS_PROPERTY, "")
    return SnapshotCounts(
        snapshot_id=snapshot.snapshot_id,
        operation=summary.operation.value if summary is not None else "unknown",
        added_rows=int(values.get("added-records", 0)),
        deleted_rows=int(values.get("deleted-records", 0)),
        total_rows=int(values.get("total-records", 0)),
        batch_ids=len(ids.split(",")) if ids else 0,
    )


def _check_batch_ids(history: list[Snapshot], report: TableReport) -> None:
    seen: Counter[str] = Counter()
    for snapshot in history:
        ids = _summary(snapshot).get(BATCH_IDS_PROPERTY)
        if ids:
            seen.update(ids.split(","))
    twice = sorted(batch_id for batch_id, times in seen.items() if times > 1)
    if twice:
        report.problems.append(f"{len(twice)} batch ids were committed twice: {', '.join(twice[:SHOWN])}")


def _check_totals(report: TableReport) -> None:
    total = 0
    for counts in report.snapshots:
        expected = total + counts.added_rows - counts.deleted_rows
        if counts.total_rows != expected:
            report.problems.append(
                f"snapshot {counts.snapshot_id} ({counts.operation}) says {counts.total_rows} rows; "
                f"its parent's {total} + {counts.added_rows} added - {counts.deleted_rows} deleted "
                f"is {expected}"
            )
        total = counts.total_rows


def _check_file(fs: pafs.FileSystem, path: str, record_count: int, deep: bool) -> str | None:
    """Why the data file at ``path`` fails, or None."""
    try:
        with fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            rows = parquet.metadata.num_rows
            if rows != record_count:
                return f"{rows} rows in the file, {record_count} in the manifest"
            if deep:
                for group in range(parquet.num_row_groups):
                    parquet.read_row_group(group)
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"does not read ({error})"
    return None
