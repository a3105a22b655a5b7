"""span_metrics_1m and its hourly rollup span_metrics_1h through the lake writer and the query
engine: their counts are the spans' (hot and committed), RED over the rollup answers what it
answers over the minutes, a crash between two of the three commits counts nothing twice, late
spans are corrections. Real SeaweedFS and PostgreSQL (the lake tests' fixtures)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.helpers import run_crashing
from integration.bridge.servers import LakeSpace
from integration.bridge.test_lake_writer import TESTS_DIR, WINDOW, batch_ids_in_summaries
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake.spanmetrics import RED_SQL, red_sql
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal
from orasi_common.telemetry.metrics import Metrics

SPANS = len(data.expected_spans())

PER_GROUP = {
    "span_metrics_1m": "SELECT service_name, name, kind, status_code, date_trunc('minute', time) AS minute, "
    "sum(span_count), sum(error_count), sum(duration_sum_ns), min(duration_min_ns), max(duration_max_ns) "
    "FROM span_metrics_1m GROUP BY ALL ORDER BY ALL",
    "spans": "SELECT service_name, name, kind, status_code, date_trunc('minute', time) AS minute, "
    "count(*), count_if(status_code = 'ERROR'), sum(duration_ns), min(duration_ns), max(duration_ns) "
    "FROM spans GROUP BY ALL ORDER BY ALL",
}
PER_HOUR = {
    table: PER_GROUP[source]
    .replace("date_trunc('minute', time) AS minute", "date_trunc('hour', time) AS hour")
    .replace(f"FROM {source}", f"FROM {table}")
    for table, source in (
        ("span_metrics_1h", "span_metrics_1m"),
        ("span_metrics_1m", "span_metrics_1m"),
        ("spans", "spans"),
    )
}


async def rows(engine: QueryEngine, sql: str, **bounds: Any) -> list[tuple[Any, ...]]:
    result = await engine.execute(sql, "default", **(bounds or WINDOW))
    assert result.rows is not None
    return result.rows


async def per_group(engine: QueryEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return await rows(engine, PER_GROUP["span_metrics_1m"]), await rows(engine, PER_GROUP["spans"])


async def per_hour(engine: QueryEngine, **bounds: Any) -> tuple[list[tuple[Any, ...]], ...]:
    """Per group and hour: from span_metrics_1h, span_metrics_1m and the spans."""
    return tuple([await rows(engine, sql, **bounds) for sql in PER_HOUR.values()])


async def test_span_metrics_count_the_spans_hot_and_committed(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    batches = [data.batch(Signal.TRACES, data.traces_request(data.T0 + offset)) for offset in (0, 61 * 10**9)]
    for batch in batches:
        await writer.consume(batch)
    metrics, spans = await per_group(engine)
    assert metrics == spans and sum(row[5] for row in metrics) == 2 * SPANS
    assert len({row[4] for row in metrics}) == 2  # two minutes

    await writer.flush()

    assert await per_group(engine) == (metrics, spans)
    result = await engine.execute("SELECT count(*) FROM span_metrics_1m", "default", **WINDOW)
    assert result.stats["hot_rows"] == 0 and result.stats["files"] == 1
    # Committed with the spans' batch ids, in one snapshot.
    assert sorted(batch_ids_in_summaries(writer, "span_metrics_1m")) == sorted(b.batch_id for b in batches)
    assert len(writer.tables["span_metrics_1m"].snapshots()) == 1
    # RED from the stored buckets (the README's query): the macros run in the query sandbox.
    red = await rows(engine, RED_SQL.format(seconds=3600))
    exact = await rows(
        engine,
        "SELECT service_name, count(*) / 3600.0, count_if(status_code = 'ERROR') / count(*), "
        "quantile_cont(duration_ns, 0.5), quantile_cont(duration_ns, 0.99) FROM spans "
        "WHERE kind = 'SERVER' GROUP BY ALL ORDER BY ALL",
    )
    assert [row[:3] for row in red] == [row[:3] for row in exact] and red
    for (_, _, _, p50, _, p99), (_, _, _, exact_p50, exact_p99) in zip(red, exact, strict=True):
        # at most one bucket off: a factor of √2 either way
        assert exact_p50 / 1.42 <= p50 <= exact_p50 * 1.42 and exact_p99 / 1.42 <= p99 <= exact_p99 * 1.42


async def test_span_metrics_1h_rolls_up_the_minutes_and_red_over_it_answers_the_same(
    writer: LakeWriter,
) -> None:
    engine = QueryEngine(writer, QueryLimits())
    # Two hours, and a minute of the unaligned window's first edge (read from span_metrics_1m).
    offsets = (0, 61 * 60 * 10**9, -(3 * 60 + 55) * 60 * 10**9)
    batches = [data.batch(Signal.TRACES, data.traces_request(data.T0 + offset)) for offset in offsets]
    for batch in batches:
        await writer.consume(batch)
    hour = data.T0 - data.T0 % data.HOUR
    # An hourly row is in a window when its hour's start is: whole hours, for the three to agree.
    hours = {"start": hour - 4 * data.HOUR, "end": hour + 4 * data.HOUR - 1}
    window = {"start": data.T0 - 4 * data.HOUR, "end": data.T0 + 4 * data.HOUR}  # not on the hour
    hourly, minutes, spans = await per_hour(engine, **hours)
    assert hourly == minutes == spans and sum(row[5] for row in hourly) == 3 * SPANS
    assert len({row[4] for row in hourly}) == 3  # three hours
    red = await rows(engine, RED_SQL.format(seconds=8 * 3600), **window)
    assert red and await rows(engine, red_sql(window["start"], window["end"]), **window) == red

    await writer.flush()

    assert await per_hour(engine, **hours) == (hourly, minutes, spans)
    result = await engine.execute("SELECT count(*) FROM span_metrics_1h", "default", **hours)
    assert result.stats["hot_rows"] == 0 and result.stats["files"] == 1
    # Committed with the spans' batch ids, in one snapshot, one row per group and hour.
    assert sorted(batch_ids_in_summaries(writer, "span_metrics_1h")) == sorted(b.batch_id for b in batches)
    assert len(writer.tables["span_metrics_1h"].snapshots()) == 1
    assert result.rows == [(len(hourly),)]
    rolled_up = await engine.execute(red_sql(window["start"], window["end"]), "default", **window)
    assert rolled_up.rows == red
    assert rolled_up.stats["tables"] == ["span_metrics_1h", "span_metrics_1m"]


CRASH_BETWEEN_COMMITS = """
import asyncio, json, os, sys
sys.path.insert(0, {tests!r})
from integration.bridge.conftest import build_writer
from integration.bridge import otlp_data as data
from orasi_common.pdata import Signal

async def main():
    writer = build_writer(json.loads({config!r}))
    await writer.start()
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), batch_id={batch_id!r}))
    commit = writer._committer.commit

    def crash():
        print("crashed", flush=True)
        os._exit(0)  # the tables before it committed, it and the next not: no shutdown, no flush

    def crash_before(name, *args, ready=None):
        if name == {crash_before!r}:
            if ready is None:
                crash()
            # the spans' files are written beside the span metrics commits: crash before appending
            return commit(name, *args, ready=lambda: (ready(), crash()))
        return commit(name, *args, ready=ready)

    writer._committer.commit = crash_before
    writer.derived._commit = crash_before
    await writer.flush()

asyncio.run(main())
"""


@pytest.mark.parametrize("crash_before", ["spans", "span_metrics_1h"])
async def test_a_crash_between_two_commits_counts_the_replayed_batch_once(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path, crash_before: str
) -> None:
    wal = {"directory": str(tmp_path / "wal")}
    batch_id = uuid.uuid4().hex
    script = CRASH_BETWEEN_COMMITS.format(
        tests=TESTS_DIR,
        config=json.dumps(lake_space.lake_config(wal=wal)),
        batch_id=batch_id,
        crash_before=crash_before,
    )
    await run_crashing(script, "crashed")

    writer = await make_writer(wal=wal)
    rolled_up = crash_before == "spans"  # else span_metrics_1h holds nothing yet
    assert batch_ids_in_summaries(writer, "span_metrics_1m") == [batch_id]
    assert batch_ids_in_summaries(writer, "span_metrics_1h") == ([batch_id] if rolled_up else [])
    assert batch_ids_in_summaries(writer, "spans") == []
    engine = QueryEngine(writer, QueryLimits())
    # The replayed spans are hot; a table's metrics are its committed rows only, or its hot rows.
    metrics, spans = await per_group(engine)
    assert metrics == spans and sum(row[5] for row in spans) == SPANS
    hourly = await per_hour(engine)
    assert hourly[0] == hourly[1] == hourly[2]
    for table, hot in (("span_metrics_1m", False), ("span_metrics_1h", not rolled_up)):
        result = await engine.execute(f"SELECT count(*) FROM {table}", "default", **WINDOW)
        assert (result.stats["hot_rows"] > 0) == hot, table

    await writer.flush()  # the rest is committed; the tables holding the batch leave it out

    assert await per_group(engine) == (metrics, spans)
    assert await per_hour(engine) == hourly
    for table in ("spans", "span_metrics_1m", "span_metrics_1h"):
        assert batch_ids_in_summaries(writer, table) == [batch_id], table
    assert len(writer.tables["span_metrics_1m"].snapshots()) == 1
    assert len(writer.tables["span_metrics_1h"].snapshots()) == 1


async def test_a_late_span_is_written_as_a_correction_and_counted(make_writer: MakeWriter) -> None:
    metrics = Metrics("bridge")
    writer = await make_writer(metrics, span_metrics={"allowed_lateness": 60})
    engine = QueryEngine(writer, QueryLimits())
    now = time.time_ns()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now, "on time")))
    await writer.flush()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now - 10 * 60 * 10**9, "late")))
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now, "also on time")))
    window = {"start": now - 3 * 3600 * 10**9, "end": now + 60 * 10**9}  # from an hour's start on
    sql = "SELECT name, late, sum(span_count) FROM {} GROUP BY ALL ORDER BY name"
    expected = [("also on time", False, 1), ("late", True, 1), ("on time", False, 1)]
    for table in ("span_metrics_1m", "span_metrics_1h"):  # hot: marked the same
        assert await rows(engine, sql.format(table), **window) == expected, table
    late_spans = ("orasi_span_metrics_late_spans_total", {"exporter": "lake"})
    assert metrics.registry.get_sample_value(*late_spans) == 0

    await writer.flush()

    for table in ("span_metrics_1m", "span_metrics_1h"):
        assert await rows(engine, sql.format(table), **window) == expected, table
    assert metrics.registry.get_sample_value(*late_spans) == 1


async def test_the_spans_files_are_written_while_the_span_metrics_commit_and_appended_after(
    writer: LakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = data.batch(Signal.TRACES, data.traces_request())
    await writer.consume(batch)
    events: list[str] = []
    written = threading.Event()
    commit, derived_commit = writer._committer.commit, writer.derived._commit

    def spans_commit(name: str, *args: Any, **options: Any) -> Any:
        ready = options.pop("ready", None)

        def waited() -> None:
            events.append(f"{name} files written")
            written.set()
            if ready is not None:
                ready()
            events.append(f"{name} appends")

        options["ready"] = waited
        return commit(name, *args, **options)

    def metrics_commit(name: str, *args: Any) -> Any:
        if name == "span_metrics_1h":  # the spans' files are written meanwhile, not after
            events.append("spans written beside" if written.wait(30) else "spans not written")
        done = derived_commit(name, *args)
        events.append(f"{name} committed")
        return done

    monkeypatch.setattr(writer._committer, "commit", spans_commit)
    monkeypatch.setattr(writer.derived, "_commit", metrics_commit)
    await writer.flush()

    # span_metrics_1m commits while the spans' files are written or before (its rows are few)
    assert sorted(events[:2]) == ["span_metrics_1m committed", "spans files written"]
    assert events[2:] == ["spans written beside", "span_metrics_1h committed", "spans appends"]
    for table in ("span_metrics_1m", "span_metrics_1h", "spans"):
        assert batch_ids_in_summaries(writer, table) == [batch.batch_id], table


async def test_a_failed_span_metrics_commit_leaves_the_spans_uncommitted_until_the_next_flush(
    writer: LakeWriter, lake_space: LakeSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = QueryEngine(writer, QueryLimits())
    batch = data.batch(Signal.TRACES, data.traces_request())
    await writer.consume(batch)
    derived_commit = writer.derived._commit
    failures = [RuntimeError("the catalog went away")]

    def failing(name: str, *args: Any) -> Any:
        if name == "span_metrics_1h" and failures:
            raise failures.pop()
        return derived_commit(name, *args)

    monkeypatch.setattr(writer.derived, "_commit", failing)
    await writer.flush()  # logged; the rows stay buffered

    assert batch_ids_in_summaries(writer, "span_metrics_1m") == [batch.batch_id]
    assert batch_ids_in_summaries(writer, "span_metrics_1h") == []
    assert writer.tables["spans"].current_snapshot() is None
    # The spans' files written beside the failed commit were removed (never appended).
    assert not [path for path in lake_space.data_files() if "/orasi/spans/" in path]
    metrics, spans = await per_group(engine)
    assert metrics == spans and sum(row[5] for row in spans) == SPANS

    await writer.flush()

    for table in ("span_metrics_1m", "span_metrics_1h", "spans"):
        assert batch_ids_in_summaries(writer, table) == [batch.batch_id], table
    assert await per_group(engine) == (metrics, spans)
    assert len([path for path in lake_space.data_files() if "/orasi/spans/" in path]) == 1
