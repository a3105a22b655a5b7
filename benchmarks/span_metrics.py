"""Benchmark of ``span_metrics_1m``: RED per service over 30 days (target ≤ 100 ms), before and
after the hourly rollup ``span_metrics_1h``, in the same run.

Run from the repository root, with the test servers up (SeaweedFS S3 on 127.0.0.1:8333,
PostgreSQL on 127.0.0.1:5432)::

    python -m benchmarks.span_metrics              # 6 services x 4 operations, 30 days
    python -m benchmarks.span_metrics --quick      # 2 days, a smoke run
    python -m benchmarks.span_metrics --services 20 --operations 10 --runs 15

Thirty days of ``span_metrics_1m`` rows (every minute, per service and operation, a SERVER row
with status UNSET and, for one group in four, an ERROR row; 20-400 spans a row whose durations
fall in five neighbouring buckets around the operation's own) are built with numpy and committed
through the writer's commit path (``LakeWriter._commit``: one commit per day, as compaction
leaves them; kept in the writer's local cache too, as a deployment configures it), and their
hourly rollup (``spanmetrics.rollup``) to ``span_metrics_1h`` the same way; then the lake's
compaction runs (``maintenance.compaction.compact``), which leaves the minutes' day files alone
(one each) and merges the rollup's files into one per month (the table is partitioned by month;
``red_before_compaction``: the rollup query over its 30 daily files, before that).
A fresh writer (as a bridge started now) then answers, through ``QueryEngine.execute`` (one cold
run, then the median and the best of ``--runs``; each query's stats give the files it read):

- ``red_1m``: ``spanmetrics.RED_SQL`` over ``span_metrics_1m`` (before the rollup);
- ``red``: ``spanmetrics.red_sql`` (whole hours from ``span_metrics_1h``), answers held equal;
- ``red_unaligned``: the same over a window 30 min 7 s later at both ends (edges from the minutes),
  held equal to ``RED_SQL`` over that window;
- where ``red_1m``'s time goes: ``counts`` (three scalar columns, no percentiles), ``lists`` (the
  two bucket lists read, their lengths summed), ``unnest`` (the lists unnested and summed per
  service and bucket: the query without its percentiles).

Results go to ``benchmarks/results/span_metrics.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.lake_rig import QUERY_TIMEOUT_S, Lab, check_servers, env, lake_config, make_writer
from benchmarks.report import RESULTS, machine, say, stats_of, verdict, write_json
from orasi_bridge.lake.spanmetrics import RED_SQL, red_sql, rollup

TARGET_MS = 100.0
DAY_S = 86_400
MINUTE_US = 60_000_000

COUNTS_SQL = """
SELECT service_name, sum(span_count) AS spans, sum(error_count) / sum(span_count) AS error_ratio
FROM span_metrics_1m WHERE kind = 'SERVER' GROUP BY service_name ORDER BY service_name
""".strip()
LISTS_SQL = """
SELECT service_name, sum(len(duration_buckets)) AS buckets, sum(len(duration_bucket_counts)) AS counts
FROM span_metrics_1m WHERE kind = 'SERVER' GROUP BY service_name ORDER BY service_name
""".strip()
UNNEST_SQL = """
SELECT service_name, count(*) AS buckets, sum(n) AS spans FROM (
  SELECT service_name, bucket, sum(n) AS n,
         coalesce(sum(n) FILTER (WHERE status_code = 'ERROR'), 0) AS errors
  FROM (SELECT service_name, status_code, unnest(duration_buckets) AS bucket,
               unnest(duration_bucket_counts) AS n
        FROM span_metrics_1m WHERE kind = 'SERVER')
  GROUP BY ALL)
GROUP BY service_name ORDER BY service_name
""".strip()
HALF_HOUR_NS = 1_807 * 10**9  # the unaligned window's shift: 30 min 7 s


def day_rows(day_start_us: int, services: int, operations: int, rng: np.random.Generator) -> pa.RecordBatch:
    """One day of rows: per minute, each service x operation's UNSET row and, for a quarter of
    them, an ERROR row."""
    from orasi_bridge.lake.schema import SPAN_METRICS_1M
    from orasi_bridge.lake.spanmetrics import BUCKETS

    groups = [
        (s, o, status) for s in range(services) for o in range(operations) for status in ("UNSET", "ERROR")
    ]
    groups = [g for g in groups if g[2] == "UNSET" or (g[0] + g[1]) % 4 == 0]
    minutes = DAY_S // 60
    n = minutes * len(groups)
    group = np.tile(np.arange(len(groups)), minutes)
    minute = np.repeat(np.arange(minutes), len(groups))
    service = np.array([g[0] for g in groups])[group]
    operation = np.array([g[1] for g in groups])[group]
    error = np.array([g[2] == "ERROR" for g in groups])[group]
    centre = 20 + (service * 3 + operation * 2) % (BUCKETS - 30)  # 1 µs x √2^centre
    spread = rng.integers(1, 80, size=(n, 5)) * np.where(error, 1, 5)[:, None]
    buckets = centre[:, None] + np.arange(-2, 3)[None, :]
    count = spread.sum(axis=1)
    bounds = 1000 * 2 ** (buckets / 2)
    duration_sum = (spread * bounds * 0.85).sum(axis=1).astype(np.int64)
    offsets = pa.array(np.arange(0, 5 * n + 1, 5, dtype=np.int32))
    columns = {
        "tenant": pa.array(["default"] * n),
        "region": pa.array(["us-east-1"] * n),
        "service_name": pa.array([f"service-{s}" for s in range(services)]).take(pa.array(service)),
        "name": pa.array([f"GET /api/v1/op-{o}" for o in range(operations)]).take(pa.array(operation)),
        "kind": pa.array(["SERVER"] * n),
        "status_code": pa.array(np.where(error, "ERROR", "UNSET")),
        "span_count": pa.array(count),
        "error_count": pa.array(np.where(error, count, 0)),
        "duration_sum_ns": pa.array(duration_sum),
        "duration_min_ns": pa.array((bounds[:, 0] * 0.75).astype(np.int64)),
        "duration_max_ns": pa.array(bounds[:, -1].astype(np.int64)),
        "duration_buckets": pa.ListArray.from_arrays(offsets, pa.array(buckets.ravel().astype(np.int32))),
        "duration_bucket_counts": pa.ListArray.from_arrays(
            offsets, pa.array(spread.ravel().astype(np.int64))
        ),
        "late": pa.array(np.zeros(n, dtype=bool)),
        "time": pa.array(day_start_us + minute * MINUTE_US + 0, pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
    }
    return pa.RecordBatch.from_arrays(
        [columns[name] for name in SPAN_METRICS_1M.names], schema=SPAN_METRICS_1M
    )


async def run(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    from orasi_bridge.query.engine import QueryEngine, QueryLimits

    lake = lake_config(
        lab.database("span_metrics"),
        lab.warehouse("span_metrics"),
        flush_interval=3600,
        # The bridge keeps copies of the files it wrote (as a deployment would configure it).
        local_cache={"directory": str(lab.tmp / "lake-cache"), "max_mib": 4096},
    )
    end_us = time.time_ns() // 1000 // (DAY_S * 1_000_000) * (DAY_S * 1_000_000)  # today, 00:00 UTC
    start_us = end_us - args.days * DAY_S * 1_000_000
    rng = np.random.default_rng(5)
    loader = make_writer(lake)
    await loader.start()
    rows = hourly_rows = 0
    try:
        # Whole days, plus the first 30 minutes of the next (the unaligned window's last edge).
        for day in range(args.days + 1):
            batch = day_rows(start_us + day * DAY_S * 1_000_000, args.services, args.operations, rng)
            if day == args.days:
                batch = batch.filter(pa.array(np.arange(batch.num_rows) < batch.num_rows // 48))
            hourly = rollup([batch])
            for name, rows_of in (("span_metrics_1m", batch), ("span_metrics_1h", hourly)):
                batch_id = uuid.uuid4().hex
                owners = {"default": [[(batch_id, rows_of.num_rows)]]}
                await asyncio.to_thread(loader._commit, name, {"default": [rows_of]}, owners, [batch_id])
            if day < args.days:
                rows += batch.num_rows
                hourly_rows += hourly.num_rows
            say(f"span_metrics: day {day + 1}/{args.days + 1} committed ({rows:,} + {hourly_rows:,} rows)")
    finally:
        await loader.shutdown()
    # The same rows before compaction: one file of the rollup per day (30), as the month
    # partitions hold them between a day's flushes and the next compaction.
    start_ns, end_ns = start_us * 1000, end_us * 1000 - 1
    uncompacted = make_writer(lake)
    await uncompacted.start()
    engine = QueryEngine(uncompacted, QueryLimits(timeout=QUERY_TIMEOUT_S))
    try:
        sql, warm = red_sql(start_ns, end_ns), []
        result = await engine.execute(sql, "default", start=start_ns, end=end_ns)
        for _ in range(args.runs):
            started = time.perf_counter()
            result = await engine.execute(sql, "default", start=start_ns, end=end_ns)
            warm.append((time.perf_counter() - started) * 1000)
        before_compaction = {"warm_ms": stats_of(warm), "files": result.stats["files"], "rows": result.rows}
    finally:
        engine.close()
        await uncompacted.shutdown()
    say(
        f"span_metrics: red before compaction: warm median {before_compaction['warm_ms']['median']:.0f} ms, "
        f"best {before_compaction['warm_ms']['min']:.0f} ms ({before_compaction['files']} files)"
    )
    compacted = await asyncio.to_thread(compact_lake, lake)
    say(f"span_metrics: compaction: {'; '.join(compacted)}")
    reader = make_writer(lake)  # a bridge started now: it reads the latest snapshot
    await reader.start()
    engine = QueryEngine(reader, QueryLimits(timeout=QUERY_TIMEOUT_S))
    seconds = args.days * DAY_S
    shifted = (start_ns + HALF_HOUR_NS, end_ns + HALF_HOUR_NS)
    queries = {  # name: (SQL, window)
        "red_1m": (RED_SQL.format(seconds=seconds), (start_ns, end_ns)),
        "red": (red_sql(start_ns, end_ns), (start_ns, end_ns)),
        "red_unaligned": (red_sql(*shifted), shifted),
        "counts": (COUNTS_SQL, (start_ns, end_ns)),
        "lists": (LISTS_SQL, (start_ns, end_ns)),
        "unnest": (UNNEST_SQL, (start_ns, end_ns)),
    }
    out: dict[str, Any] = {
        "workload": {
            "days": args.days,
            "services": args.services,
            "operations": args.operations,
            "rows": rows,
            "hourly_rows": hourly_rows,
            "files": args.days,
            "compaction": compacted,
            "red_sql": queries["red"][0],
        },
        "machine": machine(),
    }
    answers: dict[str, list[Any]] = {}
    try:
        for name, (sql, (start, end)) in queries.items():
            started = time.perf_counter()
            result = await engine.execute(sql, "default", start=start, end=end)
            cold_ms = (time.perf_counter() - started) * 1000
            warm = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = await engine.execute(sql, "default", start=start, end=end)
                warm.append((time.perf_counter() - started) * 1000)
            assert result.rows is not None and len(result.rows) == args.services, result.rows
            answers[name] = [list(row) for row in result.rows]
            out[name] = {"cold_ms": round(cold_ms, 1), "warm_ms": stats_of(warm), "stats": result.stats}
            median, best = out[name]["warm_ms"]["median"], out[name]["warm_ms"]["min"]
            say(
                f"span_metrics: {name}: cold {cold_ms:.0f} ms, warm median {median:.0f} ms, best "
                f"{best:.0f} ms ({result.stats['files']} files, plan {result.stats['plan_ms']:.0f} ms)"
            )
        unaligned_1m = await engine.execute(
            RED_SQL.format(seconds=seconds), "default", start=shifted[0], end=shifted[1]
        )
    finally:
        engine.close()
        await reader.shutdown()
    # The rollup answers exactly what the minutes answer, aligned or not.
    assert answers["red"] == answers["red_1m"], (answers["red"], answers["red_1m"])
    assert answers["red_unaligned"] == [list(row) for row in unaligned_1m.rows or []]
    assert before_compaction.pop("rows") == result_rows(answers["red"])
    out["red_before_compaction"] = before_compaction
    out["red_answer"] = answers["red"]
    out["counts_answer"] = answers["counts"]
    out["speedup"] = round(out["red_1m"]["warm_ms"]["median"] / out["red"]["warm_ms"]["median"], 1)
    out["target_ms"] = TARGET_MS
    out["verdict"] = verdict(out["red"]["warm_ms"]["median"] <= TARGET_MS, "MISS")
    return out


def result_rows(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in rows]


def compact_lake(config: dict[str, Any]) -> list[str]:
    """Run the lake's compaction as its schedule would (blocking); what it did, per partition."""
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.maintenance.compaction import compact
    from orasi_bridge.lake.maintenance.config import MaintenanceConfig
    from orasi_bridge.lake.maintenance.tables import Lake

    lake = Lake(Config.model_validate(config))
    try:
        return compact(lake, MaintenanceConfig()).lines()
    finally:
        lake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--services", type=int, default=6)
    parser.add_argument("--operations", type=int, default=4)
    parser.add_argument(
        "--runs", type=int, default=9, help="warm runs of each query (the median is reported)"
    )
    parser.add_argument("--quick", action="store_true", help="2 days, 3 runs")
    parser.add_argument("--keep", action="store_true", help="leave the databases and S3 prefix")
    args = parser.parse_args()
    if args.quick:
        args.days, args.runs = 2, 3
    for name, value in env().items():  # the S3 credentials of the test servers
        os.environ.setdefault(name, value)
    check_servers()
    lab = Lab()
    lab.keep = args.keep
    try:
        out = asyncio.run(run(lab, args))
    finally:
        lab.close()
    red, before = out["red"]["warm_ms"]["median"], out["red_1m"]["warm_ms"]["median"]
    say(
        f"span_metrics: RED per service over {args.days} days: {red:.0f} ms median (best "
        f"{out['red']['warm_ms']['min']:.0f} ms, {out['red']['stats']['files']} files) from "
        f"{out['workload']['hourly_rows']:,} hourly rows (unaligned "
        f"{out['red_unaligned']['warm_ms']['median']:.0f} ms, {out['red_unaligned']['stats']['files']} "
        f"files), {before:.0f} ms from "
        f"{out['workload']['rows']:,} minute rows ({out['speedup']}x); target {TARGET_MS:.0f} ms: "
        f"{out['verdict']}"
    )
    if not args.quick:
        write_json(RESULTS / "span_metrics.json", out)


if __name__ == "__main__":
    main()
