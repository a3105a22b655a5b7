"""The spans files the bridge writes itself, their trace index, and the reads the engine skips.

Real SeaweedFS and PostgreSQL. Row groups are made tiny (``files.ROW_GROUP_ROWS``) so that a few
dozen spans make files of many row groups, as millions would.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table, Transaction

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.servers import LakeSpace, s3_filesystem
from orasi_bridge.lake import LakeWriter, files, traceindex
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal
from orasi_common.telemetry.metrics import Metrics

DAY = 24 * data.HOUR
WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
SERVICES = ["checkout", "api", "billing"]


def trace_hex(n: int) -> str:
    """A canonical trace id; different ``n`` give different index keys (first 15 hex digits)."""
    return hashlib.md5(str(n).encode()).hexdigest()


def spans_request(spans: list[tuple[str, int, str]]) -> ExportTraceServiceRequest:
    """One span per (trace id hex, start ns, service); span ids are unique across calls."""
    request = ExportTraceServiceRequest()
    for trace_id, start, service in spans:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(data.key_values({"service.name": service}))
        resource_spans.scope_spans.add().spans.add(
            trace_id=bytes.fromhex(trace_id),
            span_id=random.getrandbits(64).to_bytes(8, "big"),
            name=f"op-{start % 7}",
            start_time_unix_nano=start,
            end_time_unix_nano=start + 1_000,
        )
    return request


def mixed_spans(traces: range, base: int, rng: random.Random) -> list[tuple[str, int, str]]:
    """Three spans per trace, in different services, at random times within a minute of ``base``."""
    return [
        (trace_hex(trace), base + rng.randrange(60 * 10**9), service)
        for trace in traces
        for service in SERVICES
    ]


async def commit(writer: LakeWriter, spans: list[tuple[str, int, str]], tenant: str = "default") -> None:
    await writer.consume(data.batch(Signal.TRACES, spans_request(spans), tenant=tenant))
    await writer.flush()


def data_files(writer: LakeWriter) -> list[Any]:
    return [task.file for task in writer.tables["spans"].scan().plan_files()]


async def span_ids(engine: QueryEngine, where: str, tenant: str = "default", **bounds: Any) -> set[str]:
    result = await engine.execute(f"SELECT span_id FROM spans WHERE {where}", tenant, **(bounds or WINDOW))
    assert result.rows is not None
    return {row[0] for row in result.rows}


@pytest.fixture
def small_row_groups(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(files, "ROW_GROUP_ROWS", 4)
    return 4


async def test_spans_file_is_sorted_with_row_groups_field_ids_and_an_index(
    make_writer: MakeWriter, small_row_groups: int
) -> None:
    writer = await make_writer()
    spans = mixed_spans(range(1, 11), data.T0, random.Random(1))
    await commit(writer, spans)

    (file,) = data_files(writer)
    assert file.record_count == len(spans)
    fs = s3_filesystem()
    parquet = pq.ParquetFile(fs.open_input_file(file.file_path.removeprefix("s3://")))
    sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
    assert sizes == [4] * 7 + [2]
    rows = parquet.read(columns=["service_name", "time"]).to_pylist()
    keys = [(row["service_name"], row["time"]) for row in rows]
    assert keys == sorted(keys)
    assert [row[0] for row in keys[:10]] == ["api"] * 10
    field_ids = {
        parquet.schema_arrow.field(name).metadata[b"PARQUET:field_id"]
        for name in ("tenant", "trace_id", "time")
    }
    assert field_ids == {b"1", b"6", b"23"}
    # Min/max statistics for top-level columns (Iceberg's bounds come from them), none for the
    # leaves of maps and lists.
    first = parquet.metadata.row_group(0)
    stats = {first.column(c).path_in_schema: first.column(c).is_stats_set for c in range(first.num_columns)}
    assert stats["service_name"] and stats["time"] and stats["trace_id"]
    assert not stats["attributes.key_value.key"] and not stats["resource_attributes.key_value.value"]
    assert file.lower_bounds and file.upper_bounds
    # The index names, for each trace, exactly the row groups holding its spans.
    index_path = traceindex.index_path(file.file_path)
    assert index_path is not None
    index = pq.read_table(fs.open_input_file(index_path.removeprefix("s3://")))
    trace_ids = parquet.read(columns=["trace_id"]).column("trace_id").to_pylist()
    expected = sorted(
        {(traceindex.key_of(trace_id), row // small_row_groups) for row, trace_id in enumerate(trace_ids)}
    )
    assert list(zip(index.column("key").to_pylist(), index.column("row_group").to_pylist(), strict=True)) == (
        expected
    )


async def test_trace_lookup_reads_indexed_row_groups_of_every_commit_and_tenant_and_hot_rows(
    make_writer: MakeWriter, small_row_groups: int
) -> None:
    writer = await make_writer()
    rng = random.Random(2)
    wanted = trace_hex(7)
    await commit(writer, mixed_spans(range(1, 21), data.T0, rng))
    await commit(
        writer, mixed_spans(range(7, 8), data.T0 + 1, rng) + mixed_spans(range(30, 50), data.T0, rng)
    )
    await commit(writer, mixed_spans(range(7, 8), data.T0, rng), tenant="other")
    await writer.consume(data.batch(Signal.TRACES, spans_request([(wanted, data.T0 + 5, "hot")])))
    engine = QueryEngine(writer, QueryLimits())

    # The same question, worded so that the index cannot be used, reads everything.
    everything = await span_ids(engine, f"trace_id || '' = '{wanted}'")
    assert len(everything) == 3 + 3 + 1
    result = await engine.execute(
        f"SELECT span_id FROM spans WHERE trace_id = '{wanted}'", "default", **WINDOW
    )
    assert result.rows is not None
    assert {row[0] for row in result.rows} == everything
    index = result.stats["trace_index"]
    assert index["files_indexed"] == 2
    all_row_groups = sum(-(-file.record_count // small_row_groups) for file in data_files(writer))
    assert 2 <= index["row_groups"] <= 6 < all_row_groups
    assert await span_ids(
        engine, f"trace_id IN ('{wanted}', '{trace_hex(31)}')"
    ) == everything | await span_ids(engine, f"trace_id || '' = '{trace_hex(31)}'")
    assert await span_ids(engine, f"trace_id = '{trace_hex(999)}'") == set()
    assert len(await span_ids(engine, f"trace_id = '{wanted}'", tenant="other")) == 3


async def test_a_file_without_an_index_is_read_whole(make_writer: MakeWriter, small_row_groups: int) -> None:
    writer = await make_writer()
    rng = random.Random(3)
    await commit(writer, mixed_spans(range(1, 21), data.T0, rng))
    await commit(writer, mixed_spans(range(1, 21), data.T0, rng))
    first, _ = data_files(writer)
    index_path = traceindex.index_path(first.file_path)
    assert index_path is not None
    s3_filesystem().delete_file(index_path.removeprefix("s3://"))

    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute(
        f"SELECT span_id FROM spans WHERE trace_id = '{trace_hex(5)}'", "default", **WINDOW
    )
    assert result.rows is not None
    assert len(result.rows) == 6
    assert result.stats["trace_index"]["files_indexed"] == 1


async def test_files_of_other_tenants_or_outside_the_range_are_never_read(make_writer: MakeWriter) -> None:
    writer = await make_writer()
    rng = random.Random(4)
    inside = mixed_spans(range(1, 5), data.T0 - 30 * 60 * 10**9, rng)
    await commit(writer, inside)
    await commit(writer, mixed_spans(range(5, 9), data.T0, rng), tenant="other")
    await commit(writer, mixed_spans(range(9, 13), data.T0 + DAY, rng))
    # A file straddling the end of the range: only its rows inside may count.
    straddling = [
        (trace_hex(20), data.T0 + data.HOUR - 10**9, "api"),
        (trace_hex(20), data.T0 + 2 * data.HOUR, "api"),
    ]
    await commit(writer, straddling)
    # Remove the files the query must not touch: reading one would fail the query.
    fs = s3_filesystem()
    for file in data_files(writer):
        in_range = file.partition[1] == "default" and file.partition[0] == data.T0 // DAY
        if not in_range:
            fs.delete_file(file.file_path.removeprefix("s3://"))

    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)
    assert result.rows == [(len(inside) + 1,)]
    assert result.stats["files"] == 2
    assert result.stats["files_unfiltered"] == 1  # the straddling file is filtered by time
    assert await span_ids(engine, f"trace_id = '{trace_hex(20)}'") == await span_ids(
        engine, f"trace_id || '' = '{trace_hex(20)}'"
    )
    assert len(await span_ids(engine, f"trace_id = '{trace_hex(20)}'")) == 1


async def test_queries_read_the_local_copies_of_files_while_they_are_kept(
    make_writer: MakeWriter, tmp_path: Path
) -> None:
    cache = tmp_path / "copies"
    # spans files only (span_metrics_1m's files would be copied too)
    writer = await make_writer(
        local_cache={"directory": str(cache), "max_mib": 1}, span_metrics={"enabled": False}
    )
    rng = random.Random(5)
    await commit(writer, mixed_spans(range(1, 21), data.T0, rng))
    (copy,) = cache.iterdir()
    (file,) = data_files(writer)
    fs = s3_filesystem()
    remote = fs.open_input_file(file.file_path.removeprefix("s3://")).read()
    assert copy.read_bytes() == remote

    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)
    assert (result.rows, result.stats["files_local"]) == ([(60,)], 1)
    copy.unlink()  # trimmed (or lost): the warehouse's file is read instead
    result = await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)
    assert (result.rows, result.stats["files_local"]) == ([(60,)], 0)

    # The directory stays under its bound: the oldest copies go first.
    big = [(trace_hex(n), data.T0 + n, "api") for n in range(30_000)]
    for _ in range(3):
        await commit(writer, big)
    sizes = [entry.stat().st_size for entry in cache.iterdir()]
    assert sum(sizes) <= 1024 * 1024 < sum(file.file_size_in_bytes for file in data_files(writer))
    assert not [entry for entry in cache.iterdir() if not entry.name.endswith(".parquet")]


async def test_a_large_partition_is_split_into_sorted_files(
    make_writer: MakeWriter, small_row_groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "FILE_ROWS", 12)
    writer = await make_writer()
    spans = mixed_spans(range(1, 11), data.T0, random.Random(6))
    await commit(writer, spans)

    written = data_files(writer)
    assert sorted(file.record_count for file in written) == [10, 10, 10]
    fs = s3_filesystem()
    every = []
    for file in written:
        rows = pq.read_table(fs.open_input_file(file.file_path.removeprefix("s3://"))).to_pylist()
        keys = [(row["service_name"], row["time"]) for row in rows]
        assert keys == sorted(keys)
        every += keys
    assert len(set(every)) == len(spans)
    engine = QueryEngine(writer, QueryLimits())
    assert len(await span_ids(engine, "true")) == len(spans)
    assert len(await span_ids(engine, f"trace_id = '{trace_hex(3)}'")) == 3


async def test_a_commit_that_certainly_failed_leaves_no_files_and_the_rows_commit_later(
    make_writer: MakeWriter, lake_space: LakeSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics("bridge")
    writer = await make_writer(metrics, commit_retries=1)
    attempts = 0

    def conflict(self: Transaction) -> Table:
        nonlocal attempts
        attempts += 1
        raise CommitFailedException("another writer committed first")

    with monkeypatch.context() as patched:
        patched.setattr(Transaction, "commit_transaction", conflict)
        await writer.consume(
            data.batch(Signal.TRACES, spans_request(mixed_spans(range(1, 4), data.T0, random.Random(2))))
        )
        await writer.flush()  # fails: logged, the rows stay buffered
    assert attempts == 2  # the first try and one retry
    assert lake_space.written_files() == []
    assert data_files(writer) == []
    failures = ("orasi_lake_commit_failures_total", {"exporter": "lake"})  # alert OrasiLakeCommitsFailing
    assert metrics.registry.get_sample_value(*failures) == 1

    await writer.flush()
    assert metrics.registry.get_sample_value(*failures) == 1
    (file,) = data_files(writer)
    index = traceindex.index_path(file.file_path)
    assert index is not None
    spans_files = [path for path in lake_space.written_files() if "/orasi/spans/" in path]
    assert spans_files == sorted(p.removeprefix("s3://") for p in (file.file_path, index))


async def test_a_failed_upload_removes_the_files_of_the_flush_already_written(
    make_writer: MakeWriter, lake_space: LakeSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = await make_writer()
    spans = mixed_spans(range(1, 4), data.T0, random.Random(3))
    prepare = files.prepare_output
    started: list[str] = []

    def failing_for_tenant_b(fs: Any, path: str) -> str:
        started.append(path)
        if "tenant=b" in path:
            raise OSError("the store refused the upload")
        return prepare(fs, path)

    with monkeypatch.context() as patched:
        patched.setattr(files, "prepare_output", failing_for_tenant_b)
        await writer.consume(data.batch(Signal.TRACES, spans_request(spans), tenant="a"))
        await writer.consume(data.batch(Signal.TRACES, spans_request(spans), tenant="b"))
        await writer.flush()  # fails: logged, the rows stay buffered
    assert any("tenant=a" in path for path in started)  # tenant a's file was written, then removed
    assert lake_space.written_files() == []

    await writer.flush()
    assert sorted(file.partition[1] for file in data_files(writer)) == ["a", "b"]
    # two spans files and their indexes, and span_metrics_1m's and span_metrics_1h's two files
    assert len(lake_space.written_files()) == 8
