"""Lake benchmark, part 2 — queries: a per-service RED query and a trace-by-id lookup.

Synthetic spans (``benchmarks/lake_spans.py``) are built in chunks of ``--chunk-rows`` and
committed through the writer's commit path (``_commit``: sort, one pyiceberg append). At each
size of ``--query-sizes`` both queries run through ``QueryEngine.execute`` (one cold run, then
the median of ``--runs``); at the largest size the same queries also run through
``POST /api/v1/query`` of an ``orasi bridge`` on that lake. The queries get a 180 s limit
instead of the engine's default 30 s, so that a slow lookup yields a figure rather than a refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.lake_rig import (
    QUERY_TIMEOUT_S,
    Bridge,
    Lab,
    commit_rows,
    lake_config,
    make_writer,
    py_spy,
    start_bridge,
)
from benchmarks.lake_spans import N_OPERATIONS, N_SERVICES, SPANS_PER_TRACE, SpanFactory
from benchmarks.processes import HOST
from benchmarks.report import say, stats_of

TARGET_RED_10M_S = 1.0
TARGET_TRACE_10M_S = 0.3
# DuckDB computes several quantiles of one column in one pass when they are asked for as a list.
RED_SQL = """
SELECT service_name,
       count(*) AS spans,
       avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS error_rate,
       quantile_cont(duration_ns, [0.5, 0.95, 0.99]) AS p50_p95_p99_ns
FROM spans
GROUP BY service_name
ORDER BY service_name
""".strip()
TRACE_SQL = "SELECT * FROM spans WHERE trace_id = '{trace_id}'"


def bench_query(lab: Lab, args: argparse.Namespace, results: dict[str, Any]) -> None:
    out: dict[str, Any] = results.setdefault("query", {})
    sizes = sorted(args.query_sizes)
    catalog_uri = lab.database("query")
    warehouse = lab.warehouse("query")
    lake = lake_config(
        catalog_uri,
        warehouse,
        flush_interval=3600,
        flush_size_mib=100_000,
        max_buffer_mib=100_000,
        # The bridge keeps copies of the files it wrote (as a deployment would configure it).
        local_cache={"directory": str(lab.tmp / "lake-cache"), "max_mib": 8192},
    )
    hour_start_ns = (time.time_ns() // (3600 * 10**9) - 1) * 3600 * 10**9  # the previous clock hour
    window = (hour_start_ns, hour_start_ns + 3600 * 10**9)
    out["workload"] = {
        "services": N_SERVICES,
        "operations": N_OPERATIONS,
        "spans_per_trace": SPANS_PER_TRACE,
        "error_rate": 0.02,
        "span_attributes": 6,
        "resource_attributes": 5,
        "chunk_rows": args.chunk_rows,
        "window_unix_nano": list(window),
        "red_sql": RED_SQL,
        "trace_sql": TRACE_SQL,
    }
    out["sizes"] = {}
    asyncio.run(_query_sizes(lab, args, lake, sizes, window, out))
    if args.no_bridge:
        return
    # The REST API of a real bridge on the same lake (it reads the snapshot at its start).
    bridge = start_bridge(lab, "query-bridge", lake)
    try:
        largest = out["sizes"][str(sizes[-1])]
        out["rest"] = rest_queries(args, bridge, window, largest["trace_ids"], sizes[-1])
        if args.profile_dir:
            profiler = py_spy(lab, args, bridge.service.pid, "query-bridge-trace", seconds=8)
            rest_queries(args, bridge, window, largest["trace_ids"], sizes[-1], repeat_for=7.0)
            if profiler is not None:
                profiler.wait(30)
    finally:
        lab.processes.stop(bridge.service)


async def _query_sizes(
    lab: Lab,
    args: argparse.Namespace,
    lake: dict[str, Any],
    sizes: list[int],
    window: tuple[int, int],
    out: dict[str, Any],
) -> None:
    from orasi_bridge.query.engine import QueryEngine, QueryLimits

    writer = make_writer(lake)  # the loader: its commit path writes the chunks
    await writer.start()
    factory = SpanFactory(seed=11, hour_start_ns=window[0], tenant="default")
    loaded = 0
    generate_s = commit_s = 0.0
    trace_ids: list[str] = []
    try:
        for size in sizes:
            while loaded < size:
                rows = min(args.chunk_rows, size - loaded)
                started = time.perf_counter()
                batch, samples = await asyncio.to_thread(factory.table, rows)
                generated = time.perf_counter()
                await asyncio.to_thread(commit_rows, writer, batch)
                del batch
                committed = time.perf_counter()
                generate_s += generated - started
                commit_s += committed - generated
                loaded += rows
                trace_ids += samples
                say(
                    f"query: {loaded:,} spans in the lake (chunk: generate {generated - started:.1f} s, "
                    f"commit {committed - generated:.1f} s)"
                )
            # A fresh writer sees the latest snapshot, as a bridge started now would.
            reader = make_writer(lake)
            await reader.start()
            try:
                measured = await _measure(
                    QueryEngine(reader, QueryLimits(timeout=QUERY_TIMEOUT_S)), args, size, window, trace_ids
                )
            finally:
                await reader.shutdown()
            out["sizes"][str(size)] = measured
            out["sizes"][str(size)]["load"] = {
                "generate_s_total": generate_s,
                "commit_s_total": commit_s,
                "commit_rows_per_s": loaded / commit_s,
                "files": out["sizes"][str(size)]["red"]["files"],
            }
    finally:
        await writer.shutdown()


async def _measure(
    engine: Any, args: argparse.Namespace, size: int, window: tuple[int, int], trace_ids: list[str]
) -> dict[str, Any]:
    from orasi_common.errors import OrasiError

    start, end = window

    async def timed(sql: str) -> tuple[float, Any]:
        started = time.perf_counter()
        result = await engine.execute(sql, "default", start, end)
        return time.perf_counter() - started, result

    cold_red, result = await timed(RED_SQL)
    counted = sum(row[1] for row in result.rows)
    if counted != size:
        raise AssertionError(f"the RED query counted {counted} spans, not {size}")
    errors = sum(row[1] * row[2] for row in result.rows) / counted
    services = len(result.rows)
    red_runs, plan_ms = [], []
    for _ in range(args.runs):
        seconds, result = await timed(RED_SQL)
        red_runs.append(seconds)
        plan_ms.append(result.stats["plan_ms"])
    files = result.stats["files"]
    red = {
        "cold_s": cold_red,
        "seconds": stats_of(red_runs),
        "plan_ms_median": statistics.median(plan_ms),
        "files": files,
        "services": services,
        "error_rate_seen": errors,
    }
    rng = random.Random(size)
    try:
        cold_trace, result = await timed(TRACE_SQL.format(trace_id=trace_ids[0]))
    except OrasiError as error:  # e.g. over the engine's time limit: record it, go on
        say(f"query @ {size:,}: the trace lookup failed: {error}")
        return {"red": red, "trace": {"error": str(error)}, "trace_ids": trace_ids[:]}
    if not result.rows:
        raise AssertionError(f"trace {trace_ids[0]} was not found")
    trace_runs, trace_rows, trace_plan = [], [], []
    # A slow lookup gets fewer runs, to keep the whole run inside its budget.
    for _ in range(args.runs if cold_trace < 8 else min(args.runs, 2)):
        trace_id = rng.choice(trace_ids)
        seconds, result = await timed(TRACE_SQL.format(trace_id=trace_id))
        trace_runs.append(seconds)
        trace_rows.append(len(result.rows))
        trace_plan.append(result.stats["plan_ms"])
    if min(trace_rows) == 0:
        raise AssertionError("a trace lookup found nothing")
    say(
        f"query @ {size:,}: RED median {statistics.median(red_runs) * 1000:.0f} ms, "
        f"trace lookup median {statistics.median(trace_runs) * 1000:.0f} ms"
    )
    return {
        "red": red,
        "trace": {
            "cold_s": cold_trace,
            "seconds": stats_of(trace_runs),
            "plan_ms_median": statistics.median(trace_plan),
            "rows_per_trace": statistics.median(trace_rows),
        },
        "trace_ids": trace_ids[:],
    }


def rest_queries(
    args: argparse.Namespace,
    bridge: Bridge,
    window: tuple[int, int],
    trace_ids: list[str],
    size: int,
    repeat_for: float = 0.0,
) -> dict[str, Any]:
    import httpx

    url = f"http://{HOST}:{bridge.query_port}/api/v1/query"
    start, end = window
    out: dict[str, Any] = {"size": size}
    with httpx.Client(timeout=120) as client:

        def post(sql: str) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            response = client.post(url, json={"sql": sql, "start": start, "end": end})
            seconds = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(
                    f"POST /api/v1/query answered {response.status_code}: {response.text[:500]}"
                )
            return seconds, response.json()

        if repeat_for:
            deadline = time.monotonic() + repeat_for
            while time.monotonic() < deadline:
                post(TRACE_SQL.format(trace_id=random.choice(trace_ids)))
            return out
        cold, body = post(RED_SQL)
        if sum(row[1] for row in body["rows"]) != size:
            raise AssertionError("the REST RED query counted the wrong number of spans")
        runs = [post(RED_SQL)[0] for _ in range(args.runs)]
        out["red"] = {"cold_s": cold, "seconds": stats_of(runs), "server_stats": body["stats"]}
        try:
            cold, body = post(TRACE_SQL.format(trace_id=trace_ids[0]))
            n = args.runs if cold < 8 else 1  # keep a slow lookup inside the budget
            runs = [post(TRACE_SQL.format(trace_id=random.choice(trace_ids)))[0] for _ in range(n)]
        except RuntimeError as error:  # e.g. over the query time limit: record it, go on
            say(f"query via REST: the trace lookup failed: {error}")
            out["trace"] = {"error": str(error)}
            return out
        out["trace"] = {
            "cold_s": cold,
            "seconds": stats_of(runs),
            "rows": len(body["rows"]),
            "server_stats": body["stats"],
        }
    say(
        f"query @ {size:,} via REST: RED median {out['red']['seconds']['median'] * 1000:.0f} ms, "
        f"trace lookup median {out['trace']['seconds']['median'] * 1000:.0f} ms"
    )
    return out


def report(
    query: dict[str, Any], lines: list[str], row: Callable[..., None], verdict: Callable[[bool], str]
) -> None:
    """The query part's lines of the report, added to ``lines`` (``row(name, value, note)`` adds a row)."""
    lines.append("Query (QueryEngine.execute; cold = first run, then median of runs)")
    largest = max(int(s) for s in query["sizes"]) if query["sizes"] else 0
    for size, q in sorted(query["sizes"].items(), key=lambda kv: int(kv[0])):
        red, trace = q["red"], q["trace"]
        target = int(size) == largest and largest >= 10_000_000
        row(
            f"RED per service over {int(size):,} spans ({red['files']} files)",
            f"{red['seconds']['median'] * 1000:,.0f} ms",
            f"cold {red['cold_s'] * 1000:,.0f} ms, plan {red['plan_ms_median']:.0f} ms"
            + (
                f", target ≤ 1000 ms {verdict(red['seconds']['median'] <= TARGET_RED_10M_S)}"
                if target
                else ""
            ),
        )
        if "error" in trace:
            row(f"trace by id over {int(size):,} spans", "failed", trace["error"][:80])
            continue
        row(
            f"trace by id over {int(size):,} spans",
            f"{trace['seconds']['median'] * 1000:,.0f} ms",
            f"cold {trace['cold_s'] * 1000:,.0f} ms, {trace['rows_per_trace']:.0f} rows"
            + (
                f", target ≤ 300 ms {verdict(trace['seconds']['median'] <= TARGET_TRACE_10M_S)}"
                if target
                else ""
            ),
        )
    rest = query.get("rest")
    if rest:
        row(
            f"RED via POST /api/v1/query over {rest['size']:,}",
            f"{rest['red']['seconds']['median'] * 1000:,.0f} ms",
            f"cold {rest['red']['cold_s'] * 1000:,.0f} ms",
        )
        if "error" in rest["trace"]:
            row(
                f"trace by id via POST /api/v1/query over {rest['size']:,}",
                "failed",
                rest["trace"]["error"][:80],
            )
        else:
            row(
                f"trace by id via POST /api/v1/query over {rest['size']:,}",
                f"{rest['trace']['seconds']['median'] * 1000:,.0f} ms",
                f"cold {rest['trace']['cold_s'] * 1000:,.0f} ms",
            )
