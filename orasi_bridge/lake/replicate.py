"""Replication of one region's lake into the global lake (`orasi lake replicate --to`).

::

    source lake (a region's catalog)                 global lake (its own catalog, namespace orasi)
    orasi.<table>: snapshots … → P → s1 → s2         orasi.<table>: partitioned by region, then as
         │  P: the position recorded for this lake    the source is (day(time), tenant); the rows'
         │  in the global table (``positions``)       own `region` column is the region partition
         │  s1, s2: `append` snapshots only, the files each added (manifest entries ADDED by it)
         ▼
    each file copied (``copy``: its bytes, or its rows in Arrow batches)
         → one fast append whose summary records orasi.replicated.<lake> = s2 (every other
           lake's position carried forward), so the data and the position commit atomically

Guarantees:

- Incremental and idempotent: a run copies only the `append` snapshots after the recorded
  position; a second run copies nothing.
- Resumable: a crash (or a failed commit) between writing files and committing leaves files no
  snapshot references, at the same names the next run writes again (named after the source
  file), never a duplicate row: the position did not move. A run that finds another run
  of the same lake committed meanwhile stops without committing.
- A lake's first run copies the current snapshot's live files and records the current snapshot.
- Snapshots that do not add data (`replace`, `overwrite`, `delete`: compaction, retention) are
  not copied: their rows are already in the global lake as the appends that first added them,
  and deletions by a region's retention are not propagated (the global lake has a retention of
  its own). The source must keep its snapshots (expiry) longer than the time between runs: a
  position the source's history no longer holds is an error, not a guess.
- The global lake's maintenance keeps the positions: its jobs' commits (compaction, retention)
  carry every lake's ``orasi.replicated.*`` forward (``tables.replace_files``), so the current
  snapshot, which expiry always keeps, holds them (``replica_tables.positions``).

Blocking; run in a thread.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files, schema_to_pyarrow
from pyiceberg.manifest import DataFile, DataFileContent, ManifestEntryStatus
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation, Snapshot
from pyiceberg.typedef import Record

from orasi_bridge.lake.catalog import filesystem, open_catalog, prepare_output
from orasi_bridge.lake.config import Config, ReplicateConfig
from orasi_bridge.lake.replica_tables import POSITION, ensure_replica, position_properties, positions
from orasi_bridge.lake.schema import NAMESPACE, TABLES

log = logging.getLogger("orasi.lake.replicate")

FILES_PER_COMMIT = 256
"""Files copied between two commits at most (a long backlog commits, and resumes, in steps)."""
COMMIT_ATTEMPTS = 5
"""Commits tried while other lakes' replications commit to the same global table."""
ROWS_PER_WRITE = 65_536
"""Rows rewritten at once when a file is copied row by row (``_rewrite``)."""
_THREADS = 4


class ReplicationError(Exception):
    """Replication cannot go on safely; the message says why and what to do."""


@dataclass
class Report:
    """What replication of one table did (or, in a dry run, would do)."""

    table: str
    snapshots: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    position: int | None = None
    commits: int = 0
    rewritten: int = 0  # files copied row by row rather than byte for byte

    def line(self) -> str:
        return (
            f"{self.table}: {self.snapshots} snapshots, {self.files} files ({self.rewritten} rewritten), "
            f"{self.rows} rows, {self.bytes} bytes in {self.commits} commits; position {self.position}"
        )


@dataclass(frozen=True)
class Pending:
    """A source snapshot still to copy, with the data files it added."""

    snapshot_id: int
    files: list[DataFile] = field(default_factory=list)


def global_config(source: Config, target: ReplicateConfig) -> Config:
    """The lake configuration of the global warehouse (its S3 access: the target's, or the source's)."""
    return Config(
        region=source.region,
        catalog_uri=target.catalog_uri,
        warehouse=target.to,
        s3=target.s3 or source.s3,
    )


def replicate(source: Config, target: ReplicateConfig, dry_run: bool = False) -> list[Report]:
    """Copy what the source lake's tables added since the last run into the global lake."""
    replica = global_config(source, target)
    source_catalog = open_catalog(source)
    global_catalog = open_catalog(replica)
    try:
        reports = []
        for name in TABLES:
            try:
                table = source_catalog.load_table(f"{NAMESPACE}.{name}")
            except NoSuchTableError:
                continue  # nothing written to it yet
            reports.append(
                replicate_table(
                    table, global_catalog, source.region, (filesystem(source), filesystem(replica)), dry_run
                )
            )
        return reports
    finally:
        source_catalog.close()
        global_catalog.close()


FileSystems = tuple[tuple[pafs.FileSystem, str], tuple[pafs.FileSystem, str]]


def replicate_table(
    source: Table, catalog: Catalog, lake: str, filesystems: FileSystems, dry_run: bool = False
) -> Report:
    """Copy the source table's new appends into ``catalog``'s table of the same name (see module)."""
    name = source.name()[-1]
    report = Report(name)
    if dry_run:
        try:
            position: int | None = positions(catalog.load_table(f"{NAMESPACE}.{name}")).get(lake)
        except NoSuchTableError:
            position = None
    else:
        replica = ensure_replica(catalog, name, source)
        position = positions(replica).get(lake)
    todo = pending(source, position)
    report.position = position
    for step in _steps(todo):
        files = [data_file for snapshot in step for data_file in snapshot.files]
        report.snapshots += len(step)
        report.files += len(files)
        report.rows += sum(data_file.record_count for data_file in files)
        report.bytes += sum(data_file.file_size_in_bytes for data_file in files)
        if dry_run:
            report.position = step[-1].snapshot_id
            continue
        copied, rewritten = copy(source, replica, lake, files, filesystems)
        report.rewritten += rewritten
        commit(replica, lake, position, step[-1].snapshot_id, copied)
        position = report.position = step[-1].snapshot_id
        report.commits += 1
    if report.files:
        log.info(
            "Replicated a table to the global lake.",
            extra={
                "table": name,
                "lake": lake,
                "files": report.files,
                "rows": report.rows,
                "dry_run": dry_run,
            },
        )
    return report


def pending(table: Table, position: int | None) -> list[Pending]:
    """The source ``table``'s snapshots after ``position`` with the data files their appends
    added, oldest first (other operations with no files). Without a position: the current
    snapshot with every live data file."""
    current = table.current_snapshot()
    if current is None:
        return []
    if position is None:
        entries = (
            entry
            for manifest in current.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io)
        )
        return [
            Pending(current.snapshot_id, [entry.data_file for entry in entries if _is_data(entry.data_file)])
        ]
    found: list[Pending] = []
    snapshot: Snapshot | None = current
    while snapshot is not None and snapshot.snapshot_id != position:
        found.append(Pending(snapshot.snapshot_id, _added(table, snapshot)))
        parent = snapshot.parent_snapshot_id
        snapshot = None if parent is None else table.metadata.snapshot_by_id(parent)
    if snapshot is None:
        raise ReplicationError(
            f"{'.'.join(table.name())}: the last replicated snapshot {position} is no longer in the "
            "table's history (expired, or the table was rolled back): keep snapshots longer than "
            "the replication interval; to copy the table again, drop its position in the global lake"
        )
    found.reverse()
    return found


def _added(table: Table, snapshot: Snapshot) -> list[DataFile]:
    """The data files an `append` snapshot added (none for other operations)."""
    if snapshot.summary is None or snapshot.summary.operation != Operation.APPEND:
        return []
    files = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue  # an older manifest, carried over
        for entry in manifest.fetch_manifest_entry(table.io):
            added = entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot.snapshot_id
            if added and _is_data(entry.data_file):
                files.append(entry.data_file)
    return files


def _is_data(data_file: DataFile) -> bool:
    return data_file.content == DataFileContent.DATA


def _steps(todo: list[Pending]) -> Iterator[list[Pending]]:
    """``todo`` in consecutive runs of at most ``FILES_PER_COMMIT`` files (a larger snapshot alone),
    the snapshots without files riding along; a last run without files is not committed (its
    snapshots are walked again next time, and copy nothing again)."""
    step: list[Pending] = []
    count = 0
    for snapshot in todo:
        if count and count + len(snapshot.files) > FILES_PER_COMMIT:
            yield step
            step, count = [], 0
        step.append(snapshot)
        count += len(snapshot.files)
    if count:
        yield step


def copy(
    source: Table, replica: Table, lake: str, files: list[DataFile], filesystems: FileSystems
) -> tuple[list[DataFile], int]:
    """Copy ``files`` into the global table; its new DataFiles and how many were rewritten.

    A file is copied byte for byte when the two tables' schemas are the same (field ids too),
    its partition spec is the source table's current one and its statistics say it holds one
    region; otherwise its rows are read in Arrow batches and written again (``_rewrite``).
    """
    same_schema = source.schema().as_struct() == replica.schema().as_struct()
    region_id = source.schema().find_field("region").field_id
    spec_id = source.spec().spec_id

    def one(data_file: DataFile) -> tuple[list[DataFile], bool]:
        region = _one_region(data_file, region_id)
        if same_schema and data_file.spec_id == spec_id and region is not _MIXED:
            return [_copy_bytes(data_file, replica, region, filesystems)], False
        return _rewrite(source, replica, lake, data_file), True

    with ThreadPoolExecutor(_THREADS, thread_name_prefix="lake-replicate") as pool:
        results = list(pool.map(one, files))
    return [data_file for copied, _ in results for data_file in copied], sum(
        rewritten for _, rewritten in results
    )


_MIXED = object()


def _one_region(data_file: DataFile, region_id: int) -> object:
    """The one `region` value of a file's rows (None: all null), or ``_MIXED`` when its statistics
    do not prove a single value (several values, nulls and values, truncated or missing bounds)."""
    nulls = (data_file.null_value_counts or {}).get(region_id)
    if nulls == data_file.record_count:
        return None
    lower = (data_file.lower_bounds or {}).get(region_id)
    upper = (data_file.upper_bounds or {}).get(region_id)
    if nulls != 0 or lower is None or lower != upper:
        return _MIXED
    return lower.decode()


def _copy_bytes(data_file: DataFile, replica: Table, region: object, filesystems: FileSystems) -> DataFile:
    (source_fs, source_prefix), (target_fs, target_prefix) = filesystems
    partition = Record(region, *_values(data_file.partition))
    spec = replica.spec()
    name = data_file.file_path.rsplit("/", 1)[-1]
    path = (
        f"{replica.location().rstrip('/')}/data/{spec.partition_to_path(partition, replica.schema())}/{name}"
    )
    pafs.copy_files(
        data_file.file_path.removeprefix(source_prefix),
        prepare_output(target_fs, path.removeprefix(target_prefix)),
        source_filesystem=source_fs,
        destination_filesystem=target_fs,
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=data_file.file_format,
        partition=partition,
        record_count=data_file.record_count,
        file_size_in_bytes=data_file.file_size_in_bytes,
        column_sizes=data_file.column_sizes,
        value_counts=data_file.value_counts,
        null_value_counts=data_file.null_value_counts,
        nan_value_counts=data_file.nan_value_counts,
        lower_bounds=data_file.lower_bounds,
        upper_bounds=data_file.upper_bounds,
        key_metadata=data_file.key_metadata,
        split_offsets=data_file.split_offsets,
        equality_ids=None,
        sort_order_id=None,
        spec_id=spec.spec_id,
    )


def _values(partition: Record) -> list[object]:
    return [partition[position] for position in range(len(partition))]


def _rewrite(source: Table, replica: Table, lake: str, data_file: DataFile) -> list[DataFile]:
    """A file's rows, read with the source table's schema in Arrow batches and written into the
    global table (partitioned by pyiceberg's writer), under names derived from the source file."""
    target = schema_to_pyarrow(replica.schema(), include_field_ids=False)
    scan = ArrowScan(source.metadata, source.io, source.schema(), AlwaysTrue())
    write_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"{lake}:{data_file.file_path}")
    written: list[DataFile] = []
    counter = iter(range(1 << 30))
    for chunk in _chunks(scan.to_record_batches([FileScanTask(data_file)]), ROWS_PER_WRITE):
        rows = _conform(pa.Table.from_batches(chunk), target)
        written += _dataframe_to_data_files(replica.metadata, rows, replica.io, write_uuid, counter)  # type: ignore[arg-type]
    return written


def _chunks(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    chunk: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        chunk.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def _conform(rows: pa.Table, target: pa.Schema) -> pa.Table:
    """``rows`` with the global table's columns in its order (null where the source has none)."""
    columns = [
        rows.column(f.name) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in target
    ]
    return pa.Table.from_arrays(columns, names=target.names)


def commit(replica: Table, lake: str, start: int | None, position: int, files: list[DataFile]) -> None:
    """Add ``files`` in one snapshot recording ``lake``'s new ``position`` (and every other lake's,
    as the table had them). Retried on conflicts with other lakes' commits; refused when this
    lake's position moved from ``start`` meanwhile (another run copied the same snapshots)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        replica.refresh()
        known = positions(replica)
        if known.get(lake) != start:
            raise ReplicationError(
                f"another replication of the lake {lake!r} committed meanwhile (position "
                f"{known.get(lake)}, expected {start}); nothing was committed by this one"
            )
        known[lake] = position
        try:
            _append(replica, files, position_properties(known))
            return
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS:
                raise


def _append(replica: Table, files: list[DataFile], properties: dict[str, str]) -> None:
    """One fast append of ``files`` whose summary holds ``properties`` (tests make it fail)."""
    with (
        replica.transaction() as transaction,
        transaction.update_snapshot(snapshot_properties=properties).fast_append() as append,
    ):
        for data_file in files:
            append.append_data_file(data_file)


__all__ = ["POSITION", "ReplicationError", "Report", "positions", "replicate", "replicate_table"]
