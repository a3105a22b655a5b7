"""The Parquet data files of one flush, written by the bridge and described for an Iceberg commit.

``write_data_files`` sorts a table's buffered rows by tenant, day(time), service_name, time (so
each partition, tenant x day, is one contiguous run sorted as the table's sort order says; month
instead of day for the tables partitioned by month, ``schema.MONTHLY``), writes
one zstd Parquet file per partition (split by ``_files_for`` when large) with row groups of
``ROW_GROUP_ROWS`` rows (small enough that a trace lookup reads little, large enough to scan
fast), and returns the Iceberg ``DataFile`` of each, its statistics taken from the footer of the
file just written. Spans files also get their
trace index (``traceindex``). Files carry Iceberg field ids, so any Iceberg reader maps their
columns. Nothing is committed here: the caller adds the files in one snapshot, and removes them
(``delete_data_files``) when that commit certainly failed; a write that fails removes what it
wrote.

Blocking; run in a thread. The partitions' files are written concurrently.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform
from pyiceberg.typedef import Record
from pyiceberg.types import IcebergType, ListType, MapType, NestedField, StructType

from orasi_bridge.lake import traceindex
from orasi_bridge.lake.catalog import prepare_output
from orasi_bridge.lake.localcache import LocalCache
from orasi_common.pdata import _wirescan


class _LeftOutStatistics(logging.Filter):
    """pyiceberg warns about every column without statistics in every file (about 15 lines per
    flush); the lake leaves out those of map and list leaves on purpose (``write_data_files``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("PyArrow statistics missing")


logging.getLogger("pyiceberg.io.pyarrow").addFilter(_LeftOutStatistics())

ROW_GROUP_ROWS = 16_384
"""Rows per row group: a trace lookup reads whole row groups (all columns) of the hits."""

MICROS_PER_DAY = 86_400_000_000
_FIELD_ID = b"PARQUET:field_id"
# Columns whose values are (nearly) unique per row: a dictionary would be built and then dropped.
_NO_DICTIONARY = {
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "time_unix_nano",
    "observed_time_unix_nano",
    "duration_ns",
    "time",
    "value",
}
FILE_ROWS = 524_288
"""Rows per file at most: a flush's larger partitions are split, so that files encode in parallel."""
PARALLEL_FILE_ROWS = 32_768
"""Rows per file at least when a partition is split only so that its files encode in parallel
(into at most ``_THREADS`` files): Parquet encodes one file on one core."""
_THREADS = min(4, os.cpu_count() or 1)  # columns gathered / files written at once (GIL released)


@dataclass(frozen=True)
class Partition:
    """One file's run of the sorted rows: rows [start, stop) all have this tenant and day (or month),
    and for a table partitioned by region too (the global lake's, ``replica_tables``) this region."""

    tenant: str
    day: int | None  # days since 1970-01-01 of ``time`` (months for ``monthly``); None: null ``time``
    start: int
    stop: int
    region: str | None = None


def sort_rows(
    batches: list[pa.RecordBatch], schema: pa.Schema, monthly: bool = False
) -> tuple[pa.Table, list[Partition]]:
    """Rows sorted by tenant, day(time), service_name, time (stable; nulls last), and their runs;
    by month(time) instead of day(time) when ``monthly`` (the table's partitioning, ``MONTHLY``).

    Strings are ranked through their (small) dictionaries, so the sort compares integers only, and
    the rows are gathered by one ``take``.
    """
    rows = pa.Table.from_batches(batches, schema=schema)
    if rows.num_rows == 0:
        return rows, []
    tenant_rank, tenants = _ranks(rows.column("tenant"))
    service_rank, _ = _ranks(rows.column("service_name"))
    micros = rows.column("time").combine_chunks().cast(pa.int64())
    valid = np.asarray(micros.is_valid())
    micros_np = np.asarray(micros.fill_null(0))
    slot = (
        micros_np.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)  # Iceberg's month
        if monthly
        else np.floor_divide(micros_np, MICROS_PER_DAY)
    )
    day = np.where(valid, slot, np.iinfo(np.int64).max)
    time_key = np.where(valid, micros_np, np.iinfo(np.int64).max)  # nulls last, as sort_by does
    order = np.lexsort((time_key, service_rank, day, tenant_rank))
    indices = pa.array(order)
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="lake-sort") as pool:  # take releases the GIL
        columns = list(pool.map(lambda column: _take(column, order, indices), rows.columns))
    rows = pa.Table.from_arrays(columns, schema=schema)
    tenant_sorted, day_sorted = tenant_rank[order], day[order]
    cuts = np.flatnonzero((tenant_sorted[1:] != tenant_sorted[:-1]) | (day_sorted[1:] != day_sorted[:-1])) + 1
    bounds = [0, *cuts.tolist(), rows.num_rows]
    partitions = []
    for start, stop in itertools.pairwise(bounds):
        day_value = int(day_sorted[start])
        tenant = tenants[int(tenant_sorted[start])]
        run_day = None if day_value == np.iinfo(np.int64).max else day_value
        # A large run becomes several files, encoded in parallel (each still sorted).
        pieces = _files_for(stop - start)
        step = -(-(stop - start) // pieces)
        for piece in range(start, stop, step):
            partitions.append(Partition(tenant, run_day, piece, min(piece + step, stop)))
    return rows, partitions


def _files_for(rows: int) -> int:
    """Files for a partition of ``rows`` rows: at most FILE_ROWS each, and one per core while
    each keeps at least PARALLEL_FILE_ROWS."""
    return max(-(-rows // FILE_ROWS), min(_THREADS, rows // PARALLEL_FILE_ROWS))


def _take(column: pa.ChunkedArray, order: np.ndarray, indices: pa.Array) -> pa.Array:
    """``column.take(indices)``; for maps of strings, each row's entries are copied as one run
    (much faster than gathering every key and value)."""
    array = column.combine_chunks()
    kind = array.type
    if not (isinstance(kind, pa.MapType) and _is_string(kind.key_type) and _is_string(kind.item_type)):
        return array.take(indices)
    offsets = np.asarray(array.offsets)
    lengths = (offsets[1:] - offsets[:-1])[order]
    new_offsets = np.zeros(len(order) + 1, dtype=np.int32)
    np.cumsum(lengths, out=new_offsets[1:])
    shift = offsets[:-1][order] - new_offsets[:-1]
    entries = np.repeat(shift, lengths) + np.arange(new_offsets[-1], dtype=np.int32)
    mask = pa.array(np.asarray(array.is_null())[order]) if array.null_count else None
    return pa.MapArray.from_arrays(
        pa.array(new_offsets),
        _take_runs(array.keys, offsets[:-1][order], offsets[1:][order], entries),
        _take_runs(array.items, offsets[:-1][order], offsets[1:][order], entries),
        type=kind,
        mask=mask,
    )


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_binary(kind))


def _take_runs(values: pa.Array, starts: np.ndarray, stops: np.ndarray, entries: np.ndarray) -> pa.Array:
    """``values.take(entries)`` of a string array, where ``entries`` is the concatenation of the
    runs ``starts[i]:stops[i]``: the bytes of each run are contiguous, so they are copied as one
    slice, and only the offsets are computed per value."""
    first = values.offset
    value_offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[first : first + len(values) + 1]
    data = values.buffers()[2]
    byte_starts = value_offsets[starts].astype(np.int64)
    byte_stops = value_offsets[stops].astype(np.int64)
    gathered = _wirescan.gather(data if data is not None else b"", byte_starts, byte_stops)
    new_offsets = np.zeros(len(entries) + 1, dtype=np.int32)
    np.cumsum((value_offsets[1:] - value_offsets[:-1])[entries], out=new_offsets[1:])
    mask, nulls = None, 0
    if values.null_count:
        valid = np.asarray(values.is_valid())[entries]
        mask, nulls = pa.array(valid).buffers()[1], len(entries) - int(np.count_nonzero(valid))
    buffers = [mask, pa.py_buffer(new_offsets), pa.py_buffer(gathered)]
    return pa.Array.from_buffers(values.type, len(entries), buffers, null_count=nulls)


def _ranks(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each row's rank among the column's distinct values (nulls rank last), and those values."""
    encoded = column.combine_chunks().dictionary_encode()
    values = encoded.dictionary.to_pylist()
    order = sorted(range(len(values)), key=values.__getitem__)
    rank_of = np.empty(len(values) + 1, dtype=np.int64)
    rank_of[order] = np.arange(len(values))
    rank_of[len(values)] = len(values)  # null
    indices = np.asarray(encoded.indices.fill_null(len(values)))
    return rank_of[indices], [values[i] for i in order]


def write_data_files(
    table: Table,
    name: str,
    rows: pa.Table,
    partitions: list[Partition],
    fs: pafs.FileSystem,
    prefix: str,
    cache: LocalCache | None = None,
) -> list[DataFile]:
    """Write one Parquet file per partition (plus a trace index for spans); their DataFiles.

    With ``cache``, each file is encoded into it, uploaded from there and kept as a local copy.
    """
    metadata = table.metadata
    schema = metadata.schema()
    file_schema = with_field_ids(rows.schema, schema)
    spec = metadata.spec()
    plan = compute_statistics_plan(schema, metadata.properties)
    mapping = parquet_path_to_id_mapping(schema)
    location = table.location().rstrip("/")
    dictionary = [f.name for f in rows.schema if f.name not in _NO_DICTIONARY]
    # Min/max statistics for top-level columns only: those of map and list leaves (attribute
    # keys and values, events, links) cost a fifth of the encoding, and no reader prunes by them.
    min_max = [f.name for f in rows.schema if not pa.types.is_nested(f.type)]

    def write(part: Partition) -> DataFile:
        values: list[object] = []
        for spec_field in spec.fields:
            source = schema.find_field(spec_field.source_id)
            if isinstance(spec_field.transform, DayTransform | MonthTransform) and source.name == "time":
                first = rows.column("time").slice(part.start, 1).cast(pa.int64())[0].as_py()
                if first is not None and spec_field.transform.transform(source.field_type)(first) != part.day:
                    raise ValueError(
                        f"{name}: rows cut into runs of another partitioning than {spec_field.transform} "
                        "(sort_rows' monthly must be the table's)"
                    )
                values.append(part.day)
            elif isinstance(spec_field.transform, IdentityTransform) and source.name == "tenant":
                values.append(part.tenant)
            elif isinstance(spec_field.transform, IdentityTransform) and source.name == "region":
                if not _all_equal(
                    rows.column("region").slice(part.start, part.stop - part.start), part.region
                ):
                    raise ValueError(f"{name}: rows of other regions than {part.region!r} in its run")
                values.append(part.region)
            else:
                raise ValueError(
                    f"the lake writes tables partitioned by [region,] day or month(time), tenant; not {spec}"
                )
        record = Record(*values)
        path = f"{location}/data/{spec.partition_to_path(record, schema)}/{uuid.uuid4()}.parquet"
        try:
            return write_file(part, record, path)
        except BaseException:
            delete_data_files(fs, prefix, [path])  # what was uploaded of it
            raise

    def write_file(part: Partition, record: Record, path: str) -> DataFile:
        chunk = rows.slice(part.start, part.stop - part.start)
        remote = path.removeprefix(prefix)
        staged = cache.staging(remote) if cache is not None else None
        try:
            with (
                fs.open_output_stream(prepare_output(fs, remote))
                if staged is None
                else pafs.LocalFileSystem().open_output_stream(str(staged))
            ) as sink:
                writer = pq.ParquetWriter(
                    sink,
                    file_schema,
                    compression="zstd",
                    use_dictionary=dictionary,
                    write_statistics=min_max,
                    write_page_index=False,
                )
                writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
                writer.close()
                size = sink.tell()
            if staged is not None and cache is not None:
                pafs.copy_files(
                    str(staged),
                    prepare_output(fs, remote),
                    source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs,
                )
                cache.keep(staged, remote)
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        parquet_metadata = writer.writer.metadata
        index = traceindex.index_path(path)
        if name == "spans" and index is not None:
            traceindex.write(fs, index.removeprefix(prefix), chunk, ROW_GROUP_ROWS)
        statistics = data_file_statistics_from_parquet_metadata(parquet_metadata, plan, mapping)
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=record,
            file_size_in_bytes=size,
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )

    if len(partitions) == 1:
        return [write(partitions[0])]
    with ThreadPoolExecutor(min(max(_THREADS, 2), len(partitions)), thread_name_prefix="lake-write") as pool:
        futures = [pool.submit(write, part) for part in partitions]
    errors = [error for future in futures if (error := future.exception()) is not None]
    written = [future.result() for future in futures if future.exception() is None]
    if errors:
        delete_data_files(fs, prefix, [data_file.file_path for data_file in written])
        raise errors[0]
    return written


def _all_equal(column: pa.ChunkedArray, value: str | None) -> bool:
    """Whether every value of ``column`` is ``value`` (None: every one null)."""
    if value is None:
        return bool(column.null_count == len(column))
    return column.null_count == 0 and bool(pc.all(pc.equal(column, value)).as_py())


def delete_data_files(fs: pafs.FileSystem, prefix: str, paths: list[str]) -> None:
    """Remove files written for a commit that did not happen, with their trace indexes (best
    effort: a file that is missing or cannot be removed is left for an orphan-file sweep)."""
    for path in paths:
        index = traceindex.index_path(path)
        for remote in (path, index):
            if remote is not None:
                with contextlib.suppress(OSError):
                    fs.delete_file(remote.removeprefix(prefix))


def with_field_ids(arrow: pa.Schema, schema: Schema) -> pa.Schema:
    """``arrow`` with each field (nested ones too) tagged with its Iceberg field id."""
    return pa.schema([_field(field, schema.find_field(field.name)) for field in arrow])


def _field(field: pa.Field, iceberg: NestedField) -> pa.Field:
    return _tagged(field, iceberg.field_type, iceberg.field_id)


def _tagged(field: pa.Field, iceberg: IcebergType, field_id: int) -> pa.Field:
    kind = _type(field.type, iceberg)
    return pa.field(field.name, kind, field.nullable, {_FIELD_ID: str(field_id).encode()})


def _type(arrow: pa.DataType, iceberg: IcebergType) -> pa.DataType:
    if isinstance(arrow, pa.StructType) and isinstance(iceberg, StructType):
        children = [arrow.field(i) for i in range(arrow.num_fields)]
        return pa.struct([_field(child, iceberg.field_by_name(child.name)) for child in children])  # type: ignore[arg-type]
    if isinstance(arrow, pa.ListType) and isinstance(iceberg, ListType):
        return pa.list_(_tagged(arrow.value_field, iceberg.element_type, iceberg.element_id))
    if isinstance(arrow, pa.MapType) and isinstance(iceberg, MapType):
        return pa.map_(
            _tagged(arrow.key_field, iceberg.key_type, iceberg.key_id),
            _tagged(arrow.item_field, iceberg.value_type, iceberg.value_id),
        )
    return arrow
