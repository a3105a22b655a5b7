"""The `lake` exporter's commits: idempotency by batch id, restarts, flush triggers, table layout.

Everything runs against the real SeaweedFS (data files) and PostgreSQL (Iceberg SQL catalog),
each test in its own catalog schema and warehouse prefix.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyiceberg.table.sorting import SortDirection
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, close_writer
from integration.bridge.helpers import count, run_crashing
from integration.bridge.servers import LakeSpace, s3_filesystem
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake import convert as convert_module
from orasi_bridge.lake.catalog import open_catalog
from orasi_bridge.lake.config import Config as LakeConfig
from orasi_bridge.lake.schema import MONTHLY, TABLES
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.errors import Throttled, Unavailable
from orasi_common.pdata import Signal
from orasi_common.pipeline.wal import WriteAheadLog
from orasi_common.telemetry.metrics import Metrics

WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
SPANS = len(data.expected_spans())
LOGS = len(data.expected_logs())
POINTS = len(data.expected_metric_points())


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` past the deadline."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.05)


def batch_ids_in_summaries(writer: LakeWriter, table: str) -> list[str]:
    """Every batch id any snapshot summary of ``table`` records (whatever the property's name)."""
    found: list[str] = []
    for snapshot in writer.tables[table].snapshots():
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        for value in properties.values():
            found += [part for part in str(value).split(",") if len(part) == 32]
    return found


async def stats(engine: QueryEngine, table: str, tenant: str = "default") -> dict[str, Any]:
    return (await engine.execute(f"SELECT count(*) FROM {table}", tenant, **WINDOW)).stats


async def test_flush_commits_each_table_once_with_its_batch_ids(make_writer: MakeWriter) -> None:
    metrics = Metrics("bridge")
    writer = await make_writer(metrics)
    engine = QueryEngine(writer, QueryLimits())
    traces = data.batch(Signal.TRACES, data.traces_request())
    more_traces = data.batch(Signal.TRACES, data.traces_request(data.T0 + 1))
    logs = data.batch(Signal.LOGS, data.logs_request())
    metric_points = data.batch(Signal.METRICS, data.metrics_request())
    for batch in (traces, more_traces, logs, metric_points):
        await writer.consume(batch)
    assert writer.tables["spans"].current_snapshot() is None

    await writer.flush()

    # One commit per table: spans, logs, metric_points, span_metrics_1m and span_metrics_1h (from
    # the spans).
    assert metrics.registry.get_sample_value("orasi_lake_commits_total", {"exporter": "lake"}) == 5
    for signal, items in (("traces", 2 * SPANS), ("logs", LOGS), ("metrics", POINTS)):
        labels = {"signal": signal, "exporter": "lake"}
        assert metrics.registry.get_sample_value("orasi_exporter_sent_items_total", labels) == items
    for table, ids, rows in (
        ("spans", [traces.batch_id, more_traces.batch_id], 2 * SPANS),
        ("logs", [logs.batch_id], LOGS),
        ("metric_points", [metric_points.batch_id], POINTS),
    ):
        assert len(writer.tables[table].snapshots()) == 1, table
        assert sorted(batch_ids_in_summaries(writer, table)) == sorted(ids), table
        assert await count(engine, table, **WINDOW) == rows
        # The catalog (PostgreSQL) answers the same to a fresh reader.
        writer.tables[table].refresh()
        scan = writer.tables[table].scan().to_arrow()
        assert scan.num_rows == rows
    # Nothing left to commit: a second flush makes no snapshot.
    await writer.flush()
    assert len(writer.tables["spans"].snapshots()) == 1
    assert metrics.registry.get_sample_value("orasi_lake_commits_total", {"exporter": "lake"}) == 5
    for signal, items in (("traces", 2 * SPANS), ("logs", LOGS), ("metrics", POINTS)):
        labels = {"signal": signal, "exporter": "lake"}
        assert metrics.registry.get_sample_value("orasi_exporter_sent_items_total", labels) == items


async def test_replayed_batch_id_is_written_once(writer: LakeWriter, engine: QueryEngine) -> None:
    batch_id = uuid.uuid4().hex
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), batch_id=batch_id))
    # A replay while the first copy is still buffered.
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), batch_id=batch_id))
    assert (await stats(engine, "spans"))["hot_rows"] == SPANS
    await writer.flush()
    snapshots = len(writer.tables["spans"].snapshots())
    # A replay after the commit: acknowledged, nothing buffered, nothing committed.
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), batch_id=batch_id))
    assert (await stats(engine, "spans"))["hot_rows"] == 0
    await writer.flush()
    assert len(writer.tables["spans"].snapshots()) == snapshots
    assert await count(engine, "spans", **WINDOW) == SPANS
    # Another id with the same content is another batch.
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    assert await count(engine, "spans", **WINDOW) == 2 * SPANS


async def test_replay_after_restart_is_skipped(make_writer: MakeWriter) -> None:
    ids = {signal: uuid.uuid4().hex for signal in Signal}
    requests = {
        Signal.TRACES: data.traces_request(),
        Signal.LOGS: data.logs_request(),
        Signal.METRICS: data.metrics_request(),
    }
    first = await make_writer()
    for signal, request in requests.items():
        await first.consume(data.batch(signal, request, batch_id=ids[signal]))
    await first.flush()
    await close_writer(first)

    # A new writer on the same catalog and warehouse reads the committed ids back.
    second = await make_writer()
    engine = QueryEngine(second, QueryLimits())
    for signal, request in requests.items():
        await second.consume(data.batch(signal, request, batch_id=ids[signal]))
    for table in ("spans", "logs", "metric_points"):
        assert (await stats(engine, table))["hot_rows"] == 0, table
    await second.flush()
    assert await count(engine, "spans", **WINDOW) == SPANS
    assert await count(engine, "logs", **WINDOW) == LOGS
    assert await count(engine, "metric_points", **WINDOW) == POINTS
    assert len(second.tables["spans"].snapshots()) == 1


async def test_shutdown_commits_what_is_buffered(make_writer: MakeWriter) -> None:
    writer = await make_writer()
    await writer.consume(data.batch(Signal.LOGS, data.logs_request()))
    await close_writer(writer)
    with pytest.raises(Unavailable):
        await writer.consume(data.batch(Signal.LOGS, data.logs_request()))
    await writer.shutdown()  # safe twice

    reader = await make_writer()
    engine = QueryEngine(reader, QueryLimits())
    assert await count(engine, "logs", **WINDOW) == LOGS
    assert (await stats(engine, "logs"))["files"] > 0


@pytest.mark.parametrize(
    ("config", "trigger"),
    [({"flush_interval": 0.2}, "age"), ({"flush_size_mib": 0.000_01}, "size")],
    ids=["flush_interval", "flush_size"],
)
async def test_a_flush_trigger_commits_without_being_asked(
    make_writer: MakeWriter, config: dict[str, float], trigger: str
) -> None:
    writer = await make_writer(**config)
    engine = QueryEngine(writer, QueryLimits())
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))

    async def committed() -> bool:
        current = await stats(engine, "spans")
        return bool(current["files"] > 0 and current["hot_rows"] == 0)

    await eventually(committed, f"the {trigger}-triggered flush")
    assert await count(engine, "spans", **WINDOW) == SPANS


async def test_full_buffer_refuses_with_a_retry_delay_then_drains(make_writer: MakeWriter) -> None:
    writer = await make_writer(max_buffer_mib=0.000_01)
    engine = QueryEngine(writer, QueryLimits())
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    refused = data.batch(Signal.LOGS, data.logs_request())
    with pytest.raises(Throttled) as raised:
        await writer.consume(refused)
    assert raised.value.retry_after is not None and raised.value.retry_after > 0

    async def accepted() -> bool:
        try:
            await writer.consume(refused)
        except Throttled:
            return False
        return True

    # The refusal asked for a flush; once it committed, the same batch is accepted.
    await eventually(accepted, "the buffer draining")
    assert await count(engine, "spans", **WINDOW) == SPANS
    assert await count(engine, "logs", **WINDOW) == LOGS


async def test_table_layout(make_writer: MakeWriter, lake_space: LakeSpace) -> None:
    # A first start that died between creating a table and partitioning it left it bare: the
    # next start completes it.
    catalog = open_catalog(LakeConfig.model_validate(lake_space.lake_config()))
    catalog.create_namespace_if_not_exists("orasi")
    catalog.create_table("orasi.spans", schema=TABLES["spans"])
    catalog.close()
    writer = await make_writer()
    for name, table in writer.tables.items():
        schema = table.schema()
        spec = [
            (schema.find_column_name(field.source_id), type(field.transform), field.name)
            for field in table.spec().fields
        ]
        by_time = (MonthTransform, "time_month") if name in MONTHLY else (DayTransform, "time_day")
        assert spec == [("time", *by_time), ("tenant", IdentityTransform, "tenant")], name
        order = [
            (schema.find_column_name(field.source_id), type(field.transform), field.direction)
            for field in table.sort_order().fields
        ]
        assert order == [
            ("service_name", IdentityTransform, SortDirection.ASC),
            ("time", IdentityTransform, SortDirection.ASC),
        ], name
        assert table.format_version == 2
        assert table.name() == ("orasi", name)
        assert table.metadata.location.startswith(lake_space.warehouse + "/orasi/" + name)


async def test_files_are_partitioned_by_day_and_tenant_sorted_and_zstd(
    writer: LakeWriter, lake_space: LakeSpace
) -> None:
    next_day = data.T0 + 24 * data.HOUR
    for tenant in ("tenant-a", "tenant-b"):
        for base in (data.T0, next_day):
            await writer.consume(data.batch(Signal.TRACES, data.traces_request(base), tenant=tenant))
    await writer.flush()

    table = writer.tables["spans"]
    tasks = list(table.scan().plan_files())
    partitions = Counter((task.file.partition[0], task.file.partition[1]) for task in tasks)
    day = data.T0 // (86_400 * 10**9)
    assert partitions == {
        (day, "tenant-a"): 1,
        (day + 1, "tenant-a"): 1,
        (day, "tenant-b"): 1,
        (day + 1, "tenant-b"): 1,
    }
    fs = s3_filesystem()
    spans_files = [path for path in lake_space.data_files() if "/orasi/spans/" in path]
    assert sorted(task.file.file_path.removeprefix("s3://") for task in tasks) == spans_files
    for task in tasks:
        path = task.file.file_path.removeprefix("s3://")
        parquet = pq.ParquetFile(fs.open_input_file(path))
        rows = parquet.read(columns=["tenant", "service_name", "time"]).to_pylist()
        assert {row["tenant"] for row in rows} == {task.file.partition[1]}
        assert [(r["service_name"], r["time"]) for r in rows] == sorted(
            (r["service_name"], r["time"]) for r in rows
        )
        codecs = {
            parquet.metadata.row_group(g).column(c).compression
            for g in range(parquet.metadata.num_row_groups)
            for c in range(parquet.metadata.num_columns)
        }
        assert codecs == {"ZSTD"}

    # The tenant predicate is pushed into the scan: a tenant's query plans its own files only.
    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute(
        "SELECT count(*) FROM spans", "tenant-a", start=data.T0 - data.HOUR, end=next_day + data.HOUR
    )
    assert result.rows == [(2 * SPANS,)]
    assert result.stats["files"] == 2
    # ... and the time predicate too: one day, one file.
    result = await engine.execute("SELECT count(*) FROM spans", "tenant-a", **WINDOW)
    assert (result.rows, result.stats["files"]) == ([(SPANS,)], 1)


async def test_shutdown_closes_catalog_connections(make_writer: MakeWriter, lake_space: LakeSpace) -> None:
    """A stopped writer holds no PostgreSQL connection (shutdown releases every resource)."""
    writer = await make_writer()
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    await writer.flush()
    assert lake_space.connections() >= 1  # the catalog's pool, while running
    await writer.shutdown()
    assert lake_space.connections() == 0, (
        "LakeWriter.shutdown() left the Iceberg catalog's PostgreSQL connections open "
        "(SqlCatalog.close() is never called)"
    )


async def test_concurrent_retries_of_one_batch_are_written_once(
    writer: LakeWriter, engine: QueryEngine
) -> None:
    batch_id = uuid.uuid4().hex
    copies = [data.batch(Signal.TRACES, data.traces_request(), batch_id=batch_id) for _ in range(4)]
    await asyncio.gather(*(writer.consume(copy) for copy in copies))
    assert (await stats(engine, "spans"))["hot_rows"] == SPANS
    await writer.flush()
    assert await count(engine, "spans", **WINDOW) == SPANS


TESTS_DIR = str(Path(__file__).resolve().parents[2])
CRASHING_WRITER = """
import asyncio, json, os, sys
sys.path.insert(0, {tests!r})
from integration.bridge.conftest import build_writer
from integration.bridge import otlp_data as data
from orasi_common.pdata import Signal

async def main():
    writer = build_writer(json.loads({config!r}))
    await writer.start()
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), batch_id={committed!r}))
    await writer.flush()
    await writer.consume(data.batch(Signal.LOGS, data.logs_request(), batch_id={pending_logs!r}))
    later = data.traces_request(data.T0 + 1)
    await writer.consume(data.batch(Signal.TRACES, later, batch_id={pending_spans!r}))
    print("acknowledged", flush=True)
    os._exit(0)  # a crash: no shutdown, no flush

asyncio.run(main())
"""


async def test_write_ahead_log_replays_acknowledged_rows_after_a_crash(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    """With `wal`, what was acknowledged but not committed survives a crash of the process."""
    wal = {"directory": str(tmp_path / "wal")}
    ids = {"committed": uuid.uuid4().hex, "pending_logs": uuid.uuid4().hex, "pending_spans": uuid.uuid4().hex}
    script = CRASHING_WRITER.format(
        tests=TESTS_DIR,
        config=json.dumps(lake_space.lake_config(wal=wal)),
        **ids,
    )
    await run_crashing(script, "acknowledged")

    writer = await make_writer(wal=wal)
    engine = QueryEngine(writer, QueryLimits())
    # Replayed into the buffers (the committed batch is not replayed twice) ...
    assert (await stats(engine, "spans"))["hot_rows"] == SPANS
    assert (await stats(engine, "logs"))["hot_rows"] == LOGS
    assert await count(engine, "spans", **WINDOW) == 2 * SPANS
    # ... and committed by the next flush, after which the log holds nothing to replay.
    await writer.flush()
    await close_writer(writer)
    again = await make_writer(wal=wal)
    engine = QueryEngine(again, QueryLimits())
    assert (await stats(engine, "spans"))["hot_rows"] == 0
    assert (await stats(engine, "logs"))["hot_rows"] == 0
    assert await count(engine, "spans", **WINDOW) == 2 * SPANS
    assert await count(engine, "logs", **WINDOW) == LOGS


async def test_a_replay_of_more_than_one_conversion_starts_the_writer(
    make_writer: MakeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log holding more than CONVERT_ITEMS items is replayed with the background converter at
    work (it once failed the start: the converter was spawned before the writer's tasks were
    open, so a bridge whose log held 8,192 spans could not start again after a crash)."""
    monkeypatch.setattr(convert_module, "CONVERT_ITEMS", 1)
    log = WriteAheadLog(tmp_path / "wal" / "lake", max_bytes=64 * 1024 * 1024)
    await log.open()
    for offset in range(3):
        await log.append(data.batch(Signal.TRACES, data.traces_request(data.T0 + offset)).to_record())
    await log.close()

    writer = await make_writer(wal={"directory": str(tmp_path / "wal")})
    engine = QueryEngine(writer, QueryLimits())
    assert await count(engine, "spans", **WINDOW) == 3 * SPANS


def timeless_log(body: str) -> Any:
    """A logs request of one record with neither time_unix_nano nor observed_time_unix_nano."""
    request = data.log_request(0, body)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert (record.time_unix_nano, record.observed_time_unix_nano) == (0, 0)
    return request


async def test_a_log_record_without_times_is_observed_when_the_bridge_received_it(
    make_writer: MakeWriter, tmp_path: Path
) -> None:
    """OTLP: observed time "MUST be set once the event is observed by OpenTelemetry": a record
    with neither time is placed at the bridge's receipt (so the default last-hour query finds it),
    live and, from the time kept in the log's record, after a crash."""
    writer = await make_writer()
    before = time.time_ns()
    await writer.consume(data.batch(Signal.LOGS, timeless_log("live")))
    after = time.time_ns()
    engine = QueryEngine(writer, QueryLimits())
    sql = "SELECT body, time_unix_nano, observed_time_unix_nano, epoch_ns(time) FROM logs"
    for read in ("buffered", "committed"):
        result = await engine.execute(sql, "default")  # no bounds: the last hour
        assert result.rows is not None and len(result.rows) == 1, read
        body, time_ns, observed, at = result.rows[0]
        assert (body, time_ns) == ("live", None)
        assert before <= observed <= after and at == observed // 1000 * 1000, read
        await writer.flush()

    replayed = data.batch(Signal.LOGS, timeless_log("replayed"))
    replayed.received_ns = received = time.time_ns() - 600 * 10**9  # accepted ten minutes ago
    log = WriteAheadLog(tmp_path / "wal" / "lake", max_bytes=64 * 1024 * 1024)
    await log.open()
    await log.append(replayed.to_record())
    await log.close()
    again = QueryEngine(await make_writer(wal={"directory": str(tmp_path / "wal")}), QueryLimits())
    result = await again.execute(f"{sql} WHERE body = 'replayed'", "default")
    assert result.rows is not None and [row[1:3] for row in result.rows] == [(None, received)]


class HeldConversion:
    """The writer's conversions block (in their thread) until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        convert = convert_module.convert

        def held_convert(chunks: Any, region: str) -> Any:
            self.entered.set()
            self.release.wait(30)
            return convert(chunks, region)

        monkeypatch.setattr(convert_module, "CONVERT_ITEMS", 1)
        monkeypatch.setattr(convert_module, "convert", held_convert)

    async def started(self, writer: LakeWriter, name: str) -> None:
        """Consume one span named ``name``, then wait until its conversion is held."""
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0, name)))
        await eventually(lambda: _true(self.entered.is_set()), "the background conversion to start")


async def _true(value: bool) -> bool:
    return value


async def test_batches_waiting_behind_a_running_conversion_are_converted_without_new_data(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches that arrive while the background converter is busy are converted by it next,
    not left waiting for the next flush (nothing else arrives to start another conversion)."""
    held = HeldConversion(monkeypatch)
    writer = await make_writer(flush_interval=3600, flush_size_mib=1024)
    try:
        await held.started(writer, "first")
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + 1, "second")))
        assert writer._buffer.pending_items == 1  # waits behind the held conversion
    finally:
        held.release.set()
    await eventually(lambda: _true(writer._buffer.pending_items == 0), "the second batch's conversion")
    rows = [
        batch for tenants in writer._buffer.rows.values() for batches in tenants.values() for batch in batches
    ]
    assert sorted(name for batch in rows for name in batch.column("name").to_pylist()) == ["first", "second"]
    await eventually(lambda: _true(not writer._converting), "the background converter to end")


async def test_ingest_waits_while_the_conversion_backlog_is_full_and_resumes_after(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past CONVERT_BACKLOG unconverted items, consume waits for the converter before accepting."""
    held = HeldConversion(monkeypatch)
    monkeypatch.setattr(convert_module, "CONVERT_BACKLOG", 2)
    writer = await make_writer(flush_interval=3600, flush_size_mib=1024)
    try:
        await held.started(writer, "first")
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + 1, "second")))
        third = asyncio.create_task(
            writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + 2, "third")))
        )
        for _ in range(20):  # an accepted batch of spans needs no thread: a few loop turns
            await asyncio.sleep(0)
        assert not third.done()  # two items wait for conversion: the backlog is full
        assert writer._buffer.pending_items == 1  # "second"; "third" was not accepted yet
    finally:
        held.release.set()
    await asyncio.wait_for(third, 30)
    await writer.flush()
    names = writer.tables["spans"].scan(selected_fields=("name",)).to_arrow().column("name").to_pylist()
    assert sorted(names) == ["first", "second", "third"]


async def test_batches_that_arrive_during_a_flush_are_due_one_interval_after_they_arrived(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that arrives while a flush converts is left for the next flush, and its age counts
    from its arrival (at the latest), not from the end of the flush that passed it by."""
    held = HeldConversion(monkeypatch)
    monkeypatch.setattr(convert_module, "CONVERT_ITEMS", 1_000_000)  # only the flush converts
    writer = await make_writer(flush_interval=3600, flush_size_mib=1024)
    await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0, "first")))
    flushing = asyncio.create_task(writer.flush())
    try:
        await eventually(lambda: _true(held.entered.is_set()), "the flush's conversion to start")
        arrived = time.monotonic()
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + 1, "second")))
    finally:
        held.release.set()
    await asyncio.wait_for(flushing, 30)
    assert writer._buffer.pending_items == 1  # "second" waits for the next flush
    assert writer._buffer.started is not None and writer._buffer.started <= arrived


async def test_an_item_that_does_not_convert_is_dropped_alone_and_counted(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receivers validate every batch, so a span the converter refuses is a converter bug; the
    writer then converts the batch's parts, and drops and counts only the span that fails alone."""
    convert = convert_module.otlp_rows

    def refusing(batches: list[Any], region: str, types: Any = None) -> Any:
        if any("poison" in name for batch in batches for name in _span_names(batch)):
            raise ValueError("the converter cannot take this span")
        return convert(batches, region, types)

    monkeypatch.setattr(convert_module, "otlp_rows", refusing)  # together, then one by one
    metrics = Metrics("bridge")
    writer = await make_writer(metrics)
    request = data.span_request(data.T0, "span-0")
    spans = request.resource_spans[0].scope_spans[0].spans
    for index in range(1, 40):
        spans.add().CopyFrom(spans[0])
        spans[index].name = "poison" if index == 23 else f"span-{index}"
    await writer.consume(data.batch(Signal.TRACES, request))
    other = data.batch(Signal.TRACES, data.span_request(data.T0 + 1, "other"))
    await writer.consume(other)
    await writer.flush()

    names = writer.tables["spans"].scan(selected_fields=("name",)).to_arrow().column("name").to_pylist()
    assert sorted(names) == sorted([f"span-{i}" for i in range(40) if i != 23] + ["other"])
    failed = {"signal": "traces", "exporter": "lake", "reason": "malformed"}
    assert metrics.registry.get_sample_value("orasi_exporter_send_failed_items_total", failed) == 1


def _span_names(batch: Any) -> list[str]:
    return [s.name for rs in batch.message.resource_spans for ss in rs.scope_spans for s in ss.spans]


async def test_a_flush_logs_no_third_party_warnings(
    make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """pyiceberg's warning about each column left without statistics is expected, not a fault."""
    writer = await make_writer()
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    with caplog.at_level("WARNING"):
        await writer.flush()
    assert writer.tables["spans"].current_snapshot() is not None
    assert [r.getMessage() for r in caplog.records if not r.name.startswith("orasi")] == []


async def test_a_query_during_a_flush_sees_every_row_while_the_audit_rows_commit(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush commits the audit rows too (a query records one): while that commit runs, the
    buffer being flushed must stay visible to queries (it is ``_flushing`` before anything is
    awaited), or a query between two commits misses every hot row."""
    writer = await make_writer()
    engine = QueryEngine(writer, QueryLimits())
    await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0, "seen-throughout")))
    sql = "SELECT count(*) FROM spans WHERE name = 'seen-throughout'"
    window = (data.T0 - data.HOUR, data.T0 + data.HOUR)
    assert (await engine.execute(sql, "default", *window)).rows == [(1,)]  # and an audit row waits
    entered, release = asyncio.Event(), asyncio.Event()
    commit_audit = writer.derived.commit_audit

    async def held() -> None:
        entered.set()
        await release.wait()
        await commit_audit()

    monkeypatch.setattr(writer.derived, "commit_audit", held)
    flushing = asyncio.create_task(writer.flush())
    async with asyncio.timeout(10):
        await entered.wait()
    try:
        assert (await engine.execute(sql, "default", *window)).rows == [(1,)]
    finally:
        release.set()
        await flushing
    assert (await engine.execute(sql, "default", *window)).rows == [(1,)]
