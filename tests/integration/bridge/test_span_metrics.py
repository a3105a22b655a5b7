"""span_metrics_1m through the lake writer and the query engine: its counts are the spans' (hot and
committed), a crash between its commit and the spans' counts nothing twice, late spans are
corrections. Real SeaweedFS and PostgreSQL (the lake tests' fixtures)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.servers import AWS_ENV, LakeSpace
from integration.bridge.test_lake_writer import TESTS_DIR, WINDOW, batch_ids_in_summaries
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake.spanmetrics import RED_SQL
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


async def rows(engine: QueryEngine, sql: str, **bounds: Any) -> list[tuple[Any, ...]]:
    result = await engine.execute(sql, "default", **(bounds or WINDOW))
    assert result.rows is not None
    return result.rows


async def per_group(engine: QueryEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return await rows(engine, PER_GROUP["span_metrics_1m"]), await rows(engine, PER_GROUP["spans"])


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
    commit = writer._commit

    def crash_before_the_spans(name, *args):
        if name == "spans":
            print("crashed", flush=True)
            os._exit(0)  # span_metrics_1m committed, the spans not: no shutdown, no flush
        return commit(name, *args)

    writer._commit = crash_before_the_spans
    await writer.flush()

asyncio.run(main())
"""


async def test_a_crash_between_the_two_commits_counts_the_replayed_batch_once(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    wal = {"directory": str(tmp_path / "wal")}
    batch_id = uuid.uuid4().hex
    script = CRASH_BETWEEN_COMMITS.format(
        tests=TESTS_DIR, config=json.dumps(lake_space.lake_config(wal=wal)), batch_id=batch_id
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **AWS_ENV},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert (process.returncode, stdout.decode().strip()) == (0, "crashed"), stderr.decode()[-4000:]

    writer = await make_writer(wal=wal)
    assert batch_ids_in_summaries(writer, "span_metrics_1m") == [batch_id]
    assert batch_ids_in_summaries(writer, "spans") == []
    engine = QueryEngine(writer, QueryLimits())
    # The replayed spans are hot; their metrics are the committed rows only.
    metrics, spans = await per_group(engine)
    assert metrics == spans and sum(row[5] for row in spans) == SPANS
    result = await engine.execute("SELECT count(*) FROM span_metrics_1m", "default", **WINDOW)
    assert result.stats["hot_rows"] == 0

    await writer.flush()  # the spans are committed; span_metrics_1m leaves the batch out

    assert await per_group(engine) == (metrics, spans)
    assert batch_ids_in_summaries(writer, "spans") == [batch_id]
    assert batch_ids_in_summaries(writer, "span_metrics_1m") == [batch_id]
    assert len(writer.tables["span_metrics_1m"].snapshots()) == 1


async def test_a_late_span_is_written_as_a_correction_and_counted(make_writer: MakeWriter) -> None:
    metrics = Metrics("bridge")
    writer = await make_writer(metrics, span_metrics={"allowed_lateness": 60})
    engine = QueryEngine(writer, QueryLimits())
    now = time.time_ns()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now, "on time")))
    await writer.flush()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now - 10 * 60 * 10**9, "late")))
    await writer.consume(data.batch(Signal.TRACES, data.span_request(now, "also on time")))
    window = {"start": now - 3600 * 10**9, "end": now + 60 * 10**9}
    sql = "SELECT name, late, sum(span_count) FROM span_metrics_1m GROUP BY ALL ORDER BY name"
    expected = [("also on time", False, 1), ("late", True, 1), ("on time", False, 1)]
    assert await rows(engine, sql, **window) == expected  # hot: marked the same
    late_spans = ("orasi_span_metrics_late_spans_total", {"exporter": "lake"})
    assert metrics.registry.get_sample_value(*late_spans) == 0

    await writer.flush()

    assert await rows(engine, sql, **window) == expected
    assert metrics.registry.get_sample_value(*late_spans) == 1
