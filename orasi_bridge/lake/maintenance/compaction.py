"""Compaction: a partition's small files merged into files near ``target_file_mib``.

Per table and partition (tenant x day; tenant x month for ``schema.MONTHLY`` tables, whose files
of day partitions written before the table became monthly count as their month's, so compaction
moves them into the month's partition; in the global lake, each of those per region, its tables'
first partition field, ``replica_tables``), the files under three quarters of the target are
candidates; with at least ``min_input_files`` of them they are packed, in the order of their
first row's time, into bins of at most the target's size (a bin of one file is left alone). Each
bin's rows are read, sorted and written as one file by the writer's own code (``files``:
``sort_rows`` and ``write_data_files``, so the file is sorted by service_name, time, in the same
row groups, and a spans file gets its trace index; in the table's own partition spec), and the
partition's bins are committed as one snapshot that removes the inputs and adds the outputs
(``tables.replace_files``, which carries a global table's replication positions forward). Each output's
row count is checked against its inputs' before anything is committed; the partial aggregates of
``span_metrics_1m`` are merged on the way (``MERGED``: one row per group and minute, the totals
checked). A bin's rows are in memory
while they are sorted and written (as Arrow: tens of times their zstd size for spans, whose
attributes compress well): ``max_file_rows`` bounds the job's memory where ``target_file_mib``
would not.

The inputs stay on storage, referenced by the older snapshots (queries reading one keep working),
until snapshot expiry lets the orphan-file removal take them (``expiry``). A partition whose files
another job removed meanwhile is left for the next run, its new files deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from orasi_bridge.lake import spanmetrics
from orasi_bridge.lake.files import Partition, delete_data_files, sort_rows, write_data_files
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.tables import Lake, PartitionKey, live_files, read_file, replace_files
from orasi_bridge.lake.schema import MONTHLY, TABLES
from orasi_bridge.lake.spanmetrics import SPAN_METRICS, SPAN_METRICS_1H

MIB = 1024 * 1024
SMALL = 0.75
"""A file under this fraction of the target size is a compaction candidate."""


@dataclass(frozen=True)
class Compacted:
    """One partition's compaction: files and bytes before (the inputs) and after (the outputs)."""

    table: str
    partition: PartitionKey
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows: int
    committed: bool

    def line(self, dry_run: bool) -> str:
        state = "would merge" if dry_run else ("merged" if self.committed else "skipped (changed meanwhile)")
        return (
            f"{self.table} {self.partition}: {state} {self.files_before} files "
            f"({self.bytes_before / MIB:.1f} MiB) into {self.files_after} ({self.rows} rows)"
        )


@dataclass
class CompactionReport:
    dry_run: bool
    partitions: list[Compacted] = field(default_factory=list)

    @property
    def files(self) -> int:
        """Input files rewritten (committed)."""
        return sum(p.files_before for p in self.partitions if p.committed)

    @property
    def bytes(self) -> int:
        """Bytes written (committed)."""
        return sum(p.bytes_after for p in self.partitions if p.committed)

    def lines(self) -> list[str]:
        if not self.partitions:
            return ["nothing to compact"]
        return [p.line(self.dry_run) for p in self.partitions]


def plan(files: list[DataFile], config: MaintenanceConfig, time_id: int) -> list[list[DataFile]]:
    """The bins of a partition's files to merge (two files each at least, ``target_file_mib`` and
    ``max_file_rows`` at most), in time order (``time_id``: the field id of the table's `time`
    column)."""
    target = config.target_file_mib * MIB
    small = [f for f in files if f.file_size_in_bytes < SMALL * target]
    if len(small) < config.min_input_files:
        return []
    small.sort(key=lambda f: _lower_micros(f, time_id))
    bins: list[list[DataFile]] = [[]]
    size = rows = 0
    for data_file in small:
        if bins[-1] and (
            size + data_file.file_size_in_bytes > target
            or rows + data_file.record_count > config.max_file_rows
        ):
            bins.append([])
            size = rows = 0
        bins[-1].append(data_file)
        size += data_file.file_size_in_bytes
        rows += data_file.record_count
    return [merged for merged in bins if len(merged) > 1]


def _lower_micros(data_file: DataFile, time_id: int) -> int:
    bound = (data_file.lower_bounds or {}).get(time_id)
    return int.from_bytes(bound, "little", signed=True) if bound else 0


def compact(
    lake: Lake, config: MaintenanceConfig, dry_run: bool = False, stop: threading.Event | None = None
) -> CompactionReport:
    """Compact every table of ``lake`` (blocking); ``stop`` set ends it between partitions."""
    report = CompactionReport(dry_run)
    for name, table in lake.tables().items():
        time_id = table.schema().find_field("time").field_id
        for partition, files in sorted(by_partition(table).items(), key=lambda item: str(item[0])):
            if stop is not None and stop.is_set():
                return report
            bins = plan(files, config, time_id)
            if not bins:
                continue
            inputs = [f for merged in bins for f in merged]
            rows = sum(f.record_count for f in inputs)
            before = sum(f.file_size_in_bytes for f in inputs)
            if dry_run:
                report.partitions.append(
                    Compacted(name, partition, len(inputs), len(bins), before, 0, rows, False)
                )
                continue
            outputs: list[DataFile] = []
            try:
                for merged in bins:
                    outputs.append(_rewrite(lake, table, name, partition, merged))
                committed = replace_files(table, inputs, outputs, "compact", config.commit_retries)
            except Exception as error:
                # Certainly not committed, unless the commit's outcome is unknown (a lost
                # connection): then the files stay, for the orphan-file removal if unreferenced.
                if isinstance(error, CommitFailedException) or len(outputs) < len(bins):
                    delete_data_files(lake.fs, lake.prefix, [f.file_path for f in outputs])
                raise
            if not committed:
                delete_data_files(lake.fs, lake.prefix, [f.file_path for f in outputs])
            after = sum(f.file_size_in_bytes for f in outputs)
            report.partitions.append(
                Compacted(name, partition, len(inputs), len(outputs), before, after, rows, committed)
            )
    return report


def _rewrite(
    lake: Lake, table: Table, name: str, partition: PartitionKey, merged: list[DataFile]
) -> DataFile:
    """One file of the rows of ``merged``, sorted and written as the writer writes its files."""
    schema = TABLES[name]
    # One contiguous copy of the inputs (the files' own tables freed as it is made), so that the
    # sort gathers from it directly: two copies of the rows at most, the inputs and the sorted.
    combined = pa.concat_tables([read_file(lake, f.file_path, schema) for f in merged]).combine_chunks()
    batches = combined.to_batches(max_chunksize=max(combined.num_rows, 1))
    merge = MERGED.get(name)
    totals = _totals(combined) if merge is not None else {}
    del combined
    if merge is not None:
        batches = [merge(batches)]
    rows, runs = sort_rows(batches, schema, partition.monthly)
    del batches
    expected = sum(f.record_count for f in merged) if merge is None else rows.num_rows
    if merge is not None and _totals(rows) != totals:
        raise RuntimeError(
            f"{name} {partition}: merging its partial rows changed their totals; nothing rewritten"
        )
    if rows.num_rows != expected or any(
        (run.tenant, run.day) != (partition.tenant, partition.day) for run in runs
    ):
        raise RuntimeError(
            f"{name} {partition}: the files read hold {rows.num_rows} rows of other "
            f"partitions or counts than their metadata's {expected}; nothing rewritten"
        )
    (written,) = write_data_files(
        table,
        name,
        rows,
        [Partition(partition.tenant, partition.day, 0, rows.num_rows, partition.region)],
        lake.fs,
        lake.prefix,
    )
    if written.record_count != expected:
        delete_data_files(lake.fs, lake.prefix, [written.file_path])
        raise RuntimeError(f"{name} {partition}: wrote {written.record_count} rows of {expected}")
    return written


def by_partition(table: Table) -> dict[PartitionKey, list[DataFile]]:
    """``live_files`` in the table's current partitioning: for a ``MONTHLY`` table, the files of
    its former day partitions (``catalog._set_up`` evolved it) join their month's."""
    found = live_files(table)
    if table.name()[-1] not in MONTHLY:
        return found
    months: dict[PartitionKey, list[DataFile]] = {}
    for partition, files in found.items():
        if not partition.monthly and partition.day is not None:
            month = int(np.datetime64(partition.day, "D").astype("datetime64[M]").astype(np.int64))
            partition = PartitionKey(partition.tenant, month, True, partition.region)
        elif not partition.monthly:
            partition = PartitionKey(partition.tenant, None, True, partition.region)
        months.setdefault(partition, []).extend(files)
    return months


MERGED: dict[str, Callable[[list[pa.RecordBatch]], pa.RecordBatch]] = {
    SPAN_METRICS: spanmetrics.merge,
    SPAN_METRICS_1H: spanmetrics.merge,
}
"""Tables of partial aggregates, whose rows compaction merges (the same answers from fewer rows):
``span_metrics_1m`` gets one row per group, minute and ``late``, ``span_metrics_1h`` one per group,
hour and ``late`` (their totals checked unchanged)."""
_TOTALS = ("span_count", "error_count", "duration_sum_ns")


def _totals(rows: pa.Table) -> dict[str, object]:
    return {column: pc.sum(rows.column(column)).as_py() for column in _TOTALS}
