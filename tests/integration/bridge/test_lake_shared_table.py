"""Two lake writers on one catalog and warehouse (bridges behind one load balancer): a batch both
hold is committed once.

The gateway re-sends a part whose bridge died to another bridge under the same batch id; if the
dead bridge had logged it, it replays it when it comes back, so two writers can buffer the same
batch. Whichever commits second reads the other's snapshot summaries (its commit conflicts and
is retried on the refreshed table) and leaves that batch's rows out; its log record is
acknowledged all the same. Real SeaweedFS and PostgreSQL, one lake per test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, close_writer
from integration.bridge.helpers import count
from integration.bridge.servers import LakeSpace, s3_filesystem
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake.catalog import COMMIT_NUM_RETRIES
from orasi_bridge.lake.rows import TABLE_OF_SIGNAL, otlp_rows
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.wal import WriteAheadLog
from orasi_common.telemetry.metrics import Metrics

WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
MINUTE = 60 * 10**9
REQUESTS = {
    Signal.TRACES: data.traces_request,
    Signal.LOGS: data.logs_request,
    Signal.METRICS: data.metrics_request,
}


def request_batch(signal: Signal, minute: int, batch_id: str) -> Batch:
    """The signal's test request shifted by ``minute`` minutes, so each batch's times are its own."""
    return data.batch(signal, REQUESTS[signal](data.T0 + minute * MINUTE), batch_id=batch_id)


def sorted_times(rows: pa.RecordBatch | pa.Table) -> list[int]:
    return sorted(rows.column("time").cast(pa.int64()).to_pylist())


def committed_table(writer: LakeWriter, table: str) -> pa.Table:
    """What a fresh reader of the catalog sees of ``table``."""
    writer.tables[table].refresh()
    return writer.tables[table].scan().to_arrow()


async def pending_records(directory: Path) -> int:
    """Records the writer's log still holds for replay (the writer closed)."""
    log = WriteAheadLog(directory / "lake", max_bytes=64 * 1024 * 1024)
    recovered = await log.open()
    await log.close()
    return len(recovered.pending)


def orphan_files(space: LakeSpace, writer: LakeWriter, table: str) -> set[str]:
    """Parquet files in the warehouse that no snapshot of ``table`` references."""
    fs = s3_filesystem()
    infos = fs.get_file_info(pafs.FileSelector(f"{space.prefix}/warehouse", recursive=True))
    on_disk = {f"s3://{info.path}" for info in infos if info.path.endswith(".parquet")}
    writer.tables[table].refresh()
    referenced = {task.file.file_path for task in writer.tables[table].scan().plan_files()}
    return {path for path in on_disk if f"/{table}/" in path} - referenced


def sent(metrics: Metrics, signal: Signal) -> float:
    labels = {"signal": signal.value, "exporter": "lake"}
    return metrics.registry.get_sample_value("orasi_exporter_sent_items_total", labels) or 0.0


@pytest.mark.parametrize("signal", list(Signal), ids=lambda signal: signal.value)
async def test_a_batch_both_writers_buffered_is_committed_once(
    signal: Signal, make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    table = TABLE_OF_SIGNAL[signal]
    first_metrics, second_metrics = Metrics("bridge"), Metrics("bridge")
    first = await make_writer(first_metrics, wal={"directory": str(tmp_path / "first")})
    second = await make_writer(second_metrics, wal={"directory": str(tmp_path / "second")})
    ids = {name: uuid.uuid4().hex for name in ("before", "shared", "after")}
    minutes = {"before": 1, "shared": 2, "after": 3}
    # The second writer converts its three batches together: the shared one's rows are in the
    # middle of one record batch.
    for name in ("before", "shared", "after"):
        await second.consume(request_batch(signal, minutes[name], ids[name]))
    await first.consume(request_batch(signal, minutes["shared"], ids["shared"]))
    await first.flush()
    # The second's table is stale: its first attempt conflicts, the retry finds the shared id.
    await second.flush()

    assert sorted(lake_space.committed_batch_ids(table)) == sorted(ids.values())
    expected = [otlp_rows([request_batch(signal, minute, "0" * 32)], "r") for minute in minutes.values()]
    stored = committed_table(second, table)
    assert sorted_times(stored) == sorted(t for rows in expected for t in sorted_times(rows))
    per_batch = expected[0].num_rows
    assert sent(first_metrics, signal) == per_batch
    assert sent(second_metrics, signal) == 2 * per_batch, "the second writer counted rows it left out"
    engine = QueryEngine(second, QueryLimits())
    assert await count(engine, table, **WINDOW) == 3 * per_batch
    assert (await engine.execute(f"SELECT count(*) FROM {table}", "default", **WINDOW)).stats["hot_rows"] == 0
    assert orphan_files(lake_space, second, table) == set(), (
        "the conflicting attempt's files were left behind"
    )

    await close_writer(second)
    await close_writer(first)
    assert await pending_records(tmp_path / "second") == 0, "the left-out batch stays in the log"
    assert await pending_records(tmp_path / "first") == 0


async def test_a_flush_of_batches_only_others_committed_adds_no_snapshot(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    first = await make_writer()
    second = await make_writer(wal={"directory": str(tmp_path / "second")})
    shared, other = uuid.uuid4().hex, uuid.uuid4().hex
    await second.consume(request_batch(Signal.TRACES, 1, shared))
    await first.consume(request_batch(Signal.TRACES, 1, shared))
    await first.consume(request_batch(Signal.TRACES, 2, other))
    await first.flush()
    snapshots = len(first.tables["spans"].snapshots())

    await second.flush()

    engine = QueryEngine(second, QueryLimits())
    spans = len(data.expected_spans())
    # Nothing committed; the first writer's snapshot is published instead of the retired hot rows.
    assert len(lake_space.committed_batch_ids()) == 2
    second.tables["spans"].refresh()
    assert len(second.tables["spans"].snapshots()) == snapshots
    result = await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)
    assert result.rows == [(2 * spans,)] and result.stats["hot_rows"] == 0
    # The ids of the other writer's commit are known now: a copy of one is acknowledged unwritten.
    assert second.is_known(other)
    await second.consume(request_batch(Signal.TRACES, 2, other))
    assert (await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)).stats["hot_rows"] == 0
    await close_writer(second)
    assert await pending_records(tmp_path / "second") == 0


async def test_writers_starting_together_on_a_new_lake_all_start(make_writer: MakeWriter) -> None:
    """Bridges sharing a lake start together: one creates each table, the others take it."""
    writers = await asyncio.gather(*(make_writer() for _ in range(3)))
    for table in TABLE_OF_SIGNAL.values():
        ids = {writer.tables[table].metadata.table_uuid for writer in writers}
        assert len(ids) == 1, table
        loaded = writers[0].tables[table]
        loaded.refresh()
        assert not loaded.spec().is_unpartitioned() and not loaded.sort_order().is_unsorted
        assert loaded.properties[COMMIT_NUM_RETRIES] == "0", "pyiceberg would retry appends unchecked"


async def test_an_idle_writer_follows_the_commits_of_the_others(make_writer: MakeWriter) -> None:
    """Queries of a bridge with nothing buffered see what the other bridges committed, and it
    acknowledges a copy of a batch they committed without writing it."""
    busy = await make_writer()
    idle = await make_writer(flush_interval=0.2)
    engine = QueryEngine(idle, QueryLimits())
    batch_id = uuid.uuid4().hex
    await busy.consume(request_batch(Signal.TRACES, 1, batch_id))
    await busy.flush()

    spans = len(data.expected_spans())
    await eventually(
        lambda: count(engine, "spans", **WINDOW), spans, "the idle writer's query sees the commit"
    )
    assert idle.is_known(batch_id)
    await idle.consume(request_batch(Signal.TRACES, 1, batch_id))
    assert (await engine.execute("SELECT count(*) FROM spans", "default", **WINDOW)).stats["hot_rows"] == 0


async def test_a_batch_learned_as_committed_after_it_was_buffered_is_left_out(
    make_writer: MakeWriter, lake_space: LakeSpace
) -> None:
    """The writer learns another's commit (``_follow``, as its flusher does when idle) while it
    holds a copy of one of its batches: the ids are remembered and the snapshot is taken as seen,
    so the next flush finds that batch among the remembered ids, not among the new snapshots."""
    first, second = await make_writer(), await make_writer()
    shared, own = uuid.uuid4().hex, uuid.uuid4().hex
    await second.consume(request_batch(Signal.TRACES, 1, shared))
    await second.consume(request_batch(Signal.TRACES, 2, own))
    await first.consume(request_batch(Signal.TRACES, 1, shared))
    await first.flush()
    await second._follow()

    await second.flush()

    assert sorted(lake_space.committed_batch_ids()) == sorted([shared, own])
    assert await count(QueryEngine(second, QueryLimits()), "spans", **WINDOW) == 2 * len(
        data.expected_spans()
    )


async def eventually(
    read: Callable[[], Awaitable[int]], expected: int, what: str, within: float = 10.0
) -> None:
    """Poll ``read`` until it returns ``expected``; fail naming ``what`` past ``within`` seconds."""
    deadline = time.monotonic() + within
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"{what}: still {value} after {within} s, expected {expected}"
        await asyncio.sleep(0.05)


async def test_a_writer_stopping_while_another_commits_commits_all_it_acknowledged(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    """Shutdown waits for the flush in flight (never cancels it: it took the rows out of the
    buffer) and retries the final commit, which conflicts while another writer keeps committing
    to the table, until it holds: every batch it acknowledged is committed once, its log is empty."""
    stopping = await make_writer(
        wal={"directory": str(tmp_path / "stopping")}, commit_retries=0, flush_interval=0.2
    )
    busy = await make_writer()
    acknowledged = [uuid.uuid4().hex for _ in range(6)]
    for minute, batch_id in enumerate(acknowledged):
        await stopping.consume(request_batch(Signal.TRACES, minute, batch_id))
    done = asyncio.Event()
    busy_ids: list[str] = []

    async def commit_in_a_loop() -> None:
        while not done.is_set():
            batch_id = uuid.uuid4().hex
            await busy.consume(request_batch(Signal.TRACES, 100 + len(busy_ids), batch_id))
            busy_ids.append(batch_id)
            await busy.flush()

    looping = asyncio.create_task(commit_in_a_loop())
    try:
        deadline = time.monotonic() + 10
        while stopping._flushing is None:  # the flusher's flush took the rows: now in flight
            assert time.monotonic() < deadline, "the stopping writer's flusher never flushed"
            await asyncio.sleep(0.002)
        await stopping.shutdown()
        assert len(busy_ids) >= 1 and not looping.done()
    finally:
        done.set()
        await looping

    committed = lake_space.committed_batch_ids()
    assert len(committed) == len(set(committed)), "a batch was committed twice"
    assert set(acknowledged) <= set(committed), "acknowledged batches were not committed at shutdown"
    assert await pending_records(tmp_path / "stopping") == 0, "the stopping writer's log kept records"
    rows = committed_table(busy, "spans")
    assert len(rows) == len(data.expected_spans()) * len(committed)
