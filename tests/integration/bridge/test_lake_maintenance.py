"""Lake maintenance against the real SeaweedFS and PostgreSQL: compaction, snapshot expiry with
orphan-file removal, retention per tenant, dry runs, and the schedule's leadership.

Each job is checked by the rows of every table before and after (counted through the query
engine, which reads a snapshot, and by a fresh scan of the catalog), with a writer ingesting and
queries running while it works; and by the batch-id rule the writers rely on (a replay within the
dedup window is still skipped after expiry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import yaml

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, close_writer, writer_settings
from integration.bridge.helpers import count
from integration.bridge.servers import LakeSpace, s3_filesystem
from orasi_bridge.lake import LakeWriter, traceindex
from orasi_bridge.lake.commits import batch_ids_since
from orasi_bridge.lake.config import Config as LakeConfig
from orasi_bridge.lake.maintenance.compaction import compact
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.expiry import expire
from orasi_bridge.lake.maintenance.retention import apply_retention
from orasi_bridge.lake.maintenance.scheduler import Scheduler
from orasi_bridge.lake.maintenance.tables import JOB_PROPERTY, Lake, PartitionKey, live_files
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common import cli
from orasi_common.extensions.etcd.config import Config as EtcdConfig
from orasi_common.pdata import Signal
from orasi_common.telemetry.metrics import Metrics

MINUTE = 60 * 10**9
DAY = 86_400 * 10**9
WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
PER_BATCH = {
    "spans": len(data.expected_spans()),
    "logs": len(data.expected_logs()),
    "metric_points": len(data.expected_metric_points()),
}
REQUESTS = {
    Signal.TRACES: data.traces_request,
    Signal.LOGS: data.logs_request,
    Signal.METRICS: data.metrics_request,
}


async def ingest(writer: LakeWriter, minutes: range, tenant: str = "default", base: int = data.T0) -> None:
    """One flush per minute of every signal's test request (one file per table and flush)."""
    for minute in minutes:
        for signal, request in REQUESTS.items():
            await writer.consume(data.batch(signal, request(base + minute * MINUTE), tenant=tenant))
        await writer.flush()


async def counts(engine: QueryEngine, tenant: str = "default", **bounds: Any) -> dict[str, int]:
    return {table: await count(engine, table, tenant, **(bounds or WINDOW)) for table in PER_BATCH}


def scanned(config: LakeConfig) -> dict[str, int]:
    """Rows of each table at its current snapshot, read by a fresh catalog connection."""
    lake = Lake(config)
    try:
        return {
            name: table.scan().to_arrow().num_rows
            for name, table in lake.tables().items()
            if name in PER_BATCH
        }
    finally:
        lake.close()


def partition_files(config: LakeConfig) -> dict[tuple[str, PartitionKey], int]:
    lake = Lake(config)
    try:
        return {
            (name, partition): len(files)
            for name, table in lake.tables().items()
            if name in PER_BATCH
            for partition, files in live_files(table).items()
        }
    finally:
        lake.close()


def stored_files(space: LakeSpace) -> set[str]:
    selector = pafs.FileSelector(space.prefix, recursive=True, allow_not_found=True)
    return {info.path for info in s3_filesystem().get_file_info(selector) if info.type == pafs.FileType.File}


def run(
    job: Any, config: LakeConfig, maintenance: MaintenanceConfig, dry_run: bool = False, **kw: Any
) -> Any:
    lake = Lake(config)
    try:
        return job(lake, maintenance, dry_run, None, **kw)
    finally:
        lake.close()


async def test_compaction_merges_small_files_keeps_rows_order_index_and_batch_ids(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    await ingest(writer, range(6))
    assert set(partition_files(writer.config).values()) == {6}
    before = await counts(engine)
    assert before == {table: 6 * n for table, n in PER_BATCH.items()}
    committed_ids = {name: batch_ids_since(table, None)[0] for name, table in writer.tables.items()}
    trace_sql = f"SELECT count(*) FROM spans WHERE trace_id = '{data.TRACE_HEX}'"
    traced = (await engine.execute(trace_sql, "default", **WINDOW)).rows
    assert traced is not None and traced[0][0] % 6 == 0 and traced[0][0] > 0

    report = await asyncio.to_thread(run, compact, writer.config, MaintenanceConfig())

    merged = [(p.table, p.files_before, p.files_after, p.rows, p.committed) for p in report.partitions]
    assert sorted(m for m in merged if m[0] in PER_BATCH) == sorted(
        (table, 6, 1, 6 * n, True) for table, n in PER_BATCH.items()
    )
    assert set(partition_files(writer.config).values()) == {1}
    assert scanned(writer.config) == before
    lake = Lake(writer.config)
    try:
        for name, table in lake.tables().items():
            if name not in PER_BATCH:
                continue
            snapshot = table.current_snapshot()
            assert snapshot is not None and snapshot.summary is not None
            assert snapshot.summary.additional_properties.get(JOB_PROPERTY) == "compact"
            # The writers' ids are still found through the compaction's snapshot.
            assert batch_ids_since(table, None)[0] == committed_ids[name]
            (file,) = [f for files in live_files(table).values() for f in files]
            if name == "spans":
                index = traceindex.index_path(file.file_path)
                assert index is not None
                assert lake.fs.get_file_info(index.removeprefix(lake.prefix)).type == pafs.FileType.File
            rows = table.scan().to_arrow()
            keys = list(
                zip(rows.column("service_name").to_pylist(), rows.column("time").to_pylist(), strict=True)
            )
            assert keys == sorted(keys, key=lambda key: (key[0] is None, key[0] or "", key[1]))
    finally:
        lake.close()

    # The writer commits on top of the compaction (its append conflicts once and is retried), and
    # queries see every row once, a trace lookup included.
    await ingest(writer, range(6, 7))
    assert await counts(engine) == {table: 7 * n for table, n in PER_BATCH.items()}
    trace = (await engine.execute(trace_sql, "default", **WINDOW)).rows
    assert trace is not None and trace[0][0] == traced[0][0] // 6 * 7


async def test_jobs_with_concurrent_ingest_and_queries_lose_and_duplicate_no_row(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    await ingest(writer, range(8))
    done = asyncio.Event()
    seen: list[dict[str, int]] = []

    async def query() -> None:
        while not done.is_set():
            found = await counts(engine)
            assert all(found[table] % n == 0 for table, n in PER_BATCH.items()), found  # whole batches
            seen.append(found)

    async def jobs() -> None:
        maintenance = MaintenanceConfig(keep_snapshots=1, keep_age=1, orphan_age=1)
        try:
            await asyncio.to_thread(run, compact, writer.config, maintenance)
            await asyncio.to_thread(run, expire, writer.config, maintenance)
        finally:
            done.set()

    querying = asyncio.create_task(query())
    await asyncio.gather(jobs(), ingest(writer, range(8, 12)))
    await querying
    assert seen and all(
        seen[i][table] <= seen[i + 1][table] for i in range(len(seen) - 1) for table in PER_BATCH
    )
    await ingest(writer, range(12, 13))
    expected = {table: 13 * n for table, n in PER_BATCH.items()}
    assert await counts(engine) == expected
    assert scanned(writer.config) == expected


async def test_dry_runs_change_nothing(writer: LakeWriter, lake_space: LakeSpace) -> None:
    await ingest(writer, range(3))
    await ingest(writer, range(2), tenant="old", base=data.T0 - 40 * DAY)
    snapshots = {name: table.current_snapshot() for name, table in writer.tables.items()}
    files = stored_files(lake_space)
    maintenance = MaintenanceConfig.model_validate(
        {"keep_snapshots": 1, "keep_age": 1, "orphan_age": 1, "retention": {"default": "30d"}}
    )

    compacted = await asyncio.to_thread(run, compact, writer.config, maintenance, True)
    expired = await asyncio.to_thread(run, expire, writer.config, maintenance, True, now=time.time() + 7200)
    retained = await asyncio.to_thread(
        run, apply_retention, writer.config, maintenance, True, now=data.T0 / 1e9
    )

    assert {(p.table, p.files_before) for p in compacted.partitions if p.table in PER_BATCH} == {
        (table, n) for table in PER_BATCH for n in (3, 2)
    }
    assert {table: expired.expired[table] for table in PER_BATCH} == dict.fromkeys(
        PER_BATCH, 4
    )  # all but one
    assert {(p.table, p.partition.tenant) for p in retained.partitions if p.table in PER_BATCH} == {
        (table, "old") for table in PER_BATCH
    }
    assert all("would" in line for report in (compacted, expired, retained) for line in report.lines())
    assert stored_files(lake_space) == files
    lake = Lake(writer.config)
    try:
        for name, table in lake.tables().items():
            if name not in PER_BATCH:
                continue
            current = table.current_snapshot()
            assert current is not None and current.snapshot_id == snapshots[name].snapshot_id  # type: ignore[union-attr]
            assert len(table.snapshots()) == 5
    finally:
        lake.close()


async def test_expiry_keeps_the_dedup_window_so_replays_are_still_skipped(
    make_writer: MakeWriter, lake_space: LakeSpace
) -> None:
    writer = await make_writer(dedup_window=60)
    batches = [
        data.batch(Signal.TRACES, data.traces_request(data.T0 + minute * MINUTE), batch_id=f"b{minute}")
        for minute in range(3)
    ]
    for batch in batches:
        await writer.consume(batch)
        await writer.flush()
    spans = writer.tables["spans"]
    first, second, _ = sorted(spans.snapshots(), key=lambda s: s.timestamp_ms)
    maintenance = MaintenanceConfig(keep_snapshots=1, keep_age=1)

    # Now: nothing is older than the dedup window, whatever keep_age and keep_snapshots say.
    report = await asyncio.to_thread(run, expire, writer.config, maintenance)
    assert report.expired["spans"] == 0
    # A minute later for the first snapshot only: it alone goes.
    later = (first.timestamp_ms + second.timestamp_ms) / 2000 + 60
    report = await asyncio.to_thread(run, expire, writer.config, maintenance, now=later)
    assert report.expired["spans"] == 1
    await close_writer(writer)

    # A new bridge reads the kept snapshots' ids: a replay of b1 and b2 is skipped; b0's snapshot
    # is gone (it was past the window), so b0 would be written again.
    engine_writer = await make_writer(dedup_window=3600)
    engine = QueryEngine(engine_writer, QueryLimits())
    assert not engine_writer.is_known("b0")
    for batch in batches[1:]:
        assert engine_writer.is_known(batch.batch_id)
        await engine_writer.consume(batch)
    await engine_writer.flush()
    assert await count(engine, "spans", **WINDOW) == 3 * PER_BATCH["spans"]


async def test_expiry_removes_orphans_and_compacted_inputs_but_no_file_a_snapshot_needs(
    writer: LakeWriter, lake_space: LakeSpace
) -> None:
    engine = QueryEngine(writer, QueryLimits())
    await ingest(writer, range(5))
    await asyncio.to_thread(run, compact, writer.config, MaintenanceConfig())
    fs = s3_filesystem()
    location = writer.tables["spans"].location().removeprefix("s3://")
    stray = f"{location}/data/stray-{uuid.uuid4()}.parquet"
    with fs.open_output_stream(stray) as sink:
        sink.write(b"not referenced")
    before = stored_files(lake_space)
    inputs = {p for p in before if p.endswith(".parquet") and "/data/" in p}

    # Nothing young is removed.
    maintenance = MaintenanceConfig(keep_snapshots=1, keep_age=1, orphan_age=3600)
    young = await asyncio.to_thread(run, expire, writer.config, maintenance)
    assert young.files == 0
    # Later: every snapshot but the current one expires; what they alone needed goes.
    report = await asyncio.to_thread(run, expire, writer.config, maintenance, now=time.time() + 2 * 3600)
    assert {table: report.expired[table] for table in PER_BATCH} == dict.fromkeys(PER_BATCH, 5)  # 5 appends
    after = stored_files(lake_space)
    assert stray not in after
    live = {f.file_path.removeprefix("s3://") for files in _live(writer.config) for f in files}
    assert {p for p in after if p.endswith(".parquet") and "/data/" in p} == live
    removed = {p for p in inputs - after if any(f"/{table}/data/" in p for table in PER_BATCH)}
    assert len(removed) == 5 * 3 + 1  # the compacted inputs and the stray file
    assert sum(1 for p in after if "/spans/trace-index/" in p) == 1  # the compacted spans file's
    await ingest(writer, range(5, 6))
    assert await counts(engine) == {table: 6 * n for table, n in PER_BATCH.items()}


def _live(config: LakeConfig) -> list[list[Any]]:
    lake = Lake(config)
    try:
        return [files for table in lake.tables().values() for files in live_files(table).values()]
    finally:
        lake.close()


async def test_retention_deletes_exactly_the_old_partitions_of_each_tenant(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    days = (40, 20, 0)  # days before T0
    for tenant in ("acme", "other"):
        for ago in days:
            await ingest(writer, range(1), tenant=tenant, base=data.T0 - ago * DAY)
    everything = {"start": data.T0 - 50 * DAY, "end": data.T0 + data.HOUR}
    maintenance = MaintenanceConfig.model_validate(
        {"retention": {"default": "30d", "tenants": {"acme": "10d"}}}
    )

    report = await asyncio.to_thread(run, apply_retention, writer.config, maintenance, now=data.T0 / 1e9)

    deleted = sorted((p.table, p.partition.tenant, p.rows) for p in report.partitions if p.table in PER_BATCH)
    assert deleted == sorted(
        [(table, "acme", n) for table, n in PER_BATCH.items() for _ in (40, 20)]
        + [(table, "other", n) for table, n in PER_BATCH.items()]
    )
    await ingest(writer, range(1, 2))  # the writer publishes the retention's snapshot with its own
    assert await counts(engine, "acme", **everything) == dict(PER_BATCH)
    assert await counts(engine, "other", **everything) == {table: 2 * n for table, n in PER_BATCH.items()}
    assert await counts(engine, "default", **everything) == dict(PER_BATCH)
    again = await asyncio.to_thread(run, apply_retention, writer.config, maintenance, now=data.T0 / 1e9)
    assert again.partitions == []


async def test_scheduled_jobs_run_on_one_writer_of_a_lake_at_a_time(make_writer: MakeWriter) -> None:
    schedule = {"compact_interval": 0.2, "expire_interval": 1}
    metrics = [Metrics("bridge"), Metrics("bridge")]
    first = await make_writer(metrics[0], maintenance=schedule)
    await make_writer(metrics[1], maintenance=schedule)  # a second bridge of the lake
    await ingest(first, range(3))

    def runs(index: int, action: str, outcome: str = "success") -> float:
        labels = {"exporter": "lake", "action": action, "outcome": outcome}
        return metrics[index].registry.get_sample_value("orasi_lake_maintenance_runs_total", labels) or 0.0

    lake = Lake(first.config)
    try:
        tables = {name: table for name, table in lake.tables().items() if name in PER_BATCH}

        def compacted() -> bool:
            for table in tables.values():
                table.refresh()
            return all(len(files) == 1 for table in tables.values() for files in live_files(table).values())

        await _eventually(compacted, "scheduled compaction")
    finally:
        lake.close()
    await _eventually(lambda: runs(0, "expire") >= 1, "a scheduled expiry")
    assert runs(1, "compact") == runs(1, "expire") == 0
    assert runs(0, "compact", "failure") == runs(0, "expire", "failure") == 0

    def files() -> float:
        labels = {"exporter": "lake", "action": "compact"}
        return metrics[0].registry.get_sample_value("orasi_lake_maintenance_files_total", labels) or 0.0

    # Counted once the job's thread returned: each table's 3 files went through one run or more.
    await _eventually(lambda: files() >= 9, "the compacted files counted")

    await close_writer(first)  # the lock passes to the other writer
    await _eventually(lambda: runs(1, "compact") >= 1, "the second writer's compaction")


async def test_the_election_picks_one_scheduler_per_region(lake_space: LakeSpace) -> None:
    config = LakeConfig.model_validate(lake_space.lake_config(maintenance={"compact_interval": 0.2}))
    region = f"test-{uuid.uuid4().hex[:8]}"
    etcd = {"etcd": EtcdConfig(endpoints=["http://127.0.0.1:2379"], region=region)}
    metrics = [Metrics("bridge"), Metrics("bridge")]
    schedulers = []
    for index in range(2):
        settings = writer_settings(metrics[index])
        schedulers.append(Scheduler(dataclasses.replace(settings, extensions=etcd), config))
    for scheduler in schedulers:
        await scheduler.start()
    try:

        def runs(index: int) -> float:
            labels = {"exporter": "lake", "action": "compact", "outcome": "success"}
            return (
                metrics[index].registry.get_sample_value("orasi_lake_maintenance_runs_total", labels) or 0.0
            )

        await _eventually(lambda: runs(0) + runs(1) >= 3, "scheduled compactions")
        assert min(runs(0), runs(1)) == 0
        leader = 0 if runs(0) else 1
        await schedulers[leader].shutdown()
        await _eventually(lambda: runs(1 - leader) >= 1, "the follower's first compaction")
    finally:
        for scheduler in schedulers:
            await scheduler.shutdown()


async def _eventually(condition: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.1)


async def test_orasi_lake_commands_print_what_they_would_do_then_do_it(
    writer: LakeWriter, lake_space: LakeSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await ingest(writer, range(3))
    await ingest(writer, range(1), tenant="old", base=int(time.time() * 1e9) - 40 * DAY)
    lake = lake_space.lake_config(maintenance={"retention": {"tenants": {"old": "30d"}}, "keep_snapshots": 1})
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": {"lake": lake},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["lake"]}}},
            }
        )
    )
    files = stored_files(lake_space)

    def orasi_lake(*args: str) -> list[str]:
        assert cli.main(["lake", *args, "--config", str(path)]) == 0
        return [
            line
            for line in capsys.readouterr().out.splitlines()
            if line.split(" ", 1)[0].rstrip(":") in PER_BATCH
        ]

    planned = orasi_lake("compact", "--dry-run")
    assert len(planned) == 3 and all(
        "tenant=default/day=2024-05-31: would merge 3 files" in line for line in planned
    )
    retention = orasi_lake("retention", "--dry-run")
    assert len(retention) == 3 and all(
        "tenant=old" in line and "would delete (1 files" in line for line in retention
    )
    assert stored_files(lake_space) == files

    merged = await asyncio.to_thread(orasi_lake, "compact")
    assert len(merged) == 3 and all("merged 3 files" in line and "into 1" in line for line in merged)
    deleted = await asyncio.to_thread(orasi_lake, "retention")
    assert len(deleted) == 3 and all("tenant=old" in line and "deleted (1 files" in line for line in deleted)
    assert scanned(writer.config) == {table: 3 * n for table, n in PER_BATCH.items()}
    expired = await asyncio.to_thread(orasi_lake, "expire")
    assert len(expired) == 3 and all(
        "expired 0 snapshots" in line for line in expired
    )  # all within the window


async def test_compaction_merges_span_metrics_partial_rows_with_the_same_answers(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    for _ in range(3):  # the same minute's spans in three flushes: three partial rows per group
        await writer.consume(data.batch(Signal.TRACES, data.traces_request(data.T0)))
        await writer.flush()
    red = (
        "SELECT service_name, name, sum(span_count), sum(error_count), sum(duration_sum_ns) "
        "FROM span_metrics_1m GROUP BY ALL ORDER BY ALL"
    )
    before = (await engine.execute(red, "default", **WINDOW)).rows
    partial = await count(engine, "span_metrics_1m", **WINDOW)
    assert before and partial % 3 == 0

    report = await asyncio.to_thread(run, compact, writer.config, MaintenanceConfig())

    merged = [p for p in report.partitions if p.table == "span_metrics_1m"]
    assert [(p.files_before, p.files_after, p.committed) for p in merged] == [(3, 1, True)]
    assert [(p.files_before, p.rows) for p in report.partitions if p.table == "spans"] == [
        (3, 3 * PER_BATCH["spans"])
    ]
    await ingest(writer, range(5, 6))  # the writer publishes the compaction's snapshot with its own
    narrow = {"start": data.T0 - MINUTE, "end": data.T0 + MINUTE}
    assert (await engine.execute(red, "default", **narrow)).rows == before
    assert await count(engine, "span_metrics_1m", **narrow) == partial // 3
