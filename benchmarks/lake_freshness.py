"""Lake benchmark, part 3 — freshness: acknowledgement to queryable.

``orasi up`` (agent → gateway → bridge, ports chosen free) gets one span with a unique attribute
over OTLP/gRPC; from the agent's acknowledgement the query API is polled every ``--poll-ms``
until the span is visible (the query is bounded to ±10 s around the send). The same is measured
straight into the ingest bridge (S3 + PostgreSQL lake).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.lake_rig import Bridge, Lab, env
from benchmarks.load import EXPORT_METHOD, PROBE_KEY, probe_request
from benchmarks.processes import HOST, log_tail, wait_http
from benchmarks.report import say, stats_of

TARGET_FRESHNESS_S = 2.0


def measure_freshness(
    grpc_target: str, query_url: str, tries: int, poll_s: float, timeout: float = 30
) -> dict[str, Any]:
    """Ack → visible, ``tries`` times: send one probe span, poll the query API until it is there."""
    return asyncio.run(_freshness(grpc_target, query_url, tries, poll_s, timeout))


async def _freshness(
    grpc_target: str, query_url: str, tries: int, poll_s: float, limit: float
) -> dict[str, Any]:
    import grpc
    import httpx

    channel = grpc.aio.insecure_channel(grpc_target)
    await asyncio.wait_for(channel.channel_ready(), 30)
    call = channel.unary_unary(EXPORT_METHOD)
    latencies: list[float] = []
    query_ms: list[float] = []
    polls: list[int] = []
    send_ms: list[float] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for attempt in range(tries + 1):  # the first is a warm-up
                value = uuid.uuid4().hex
                payload = probe_request(value)
                sql = f"SELECT count(*) FROM spans WHERE attributes['{PROBE_KEY}'] = '{value}'"
                sent = time.perf_counter()
                await call(payload, timeout=30)
                acked = time.perf_counter()
                now = time.time_ns()
                body = {"sql": sql, "start": now - 10 * 10**9, "end": now + 10 * 10**9}
                count = 0
                while True:
                    polled = time.perf_counter()
                    response = await client.post(query_url, json=body)
                    answered = time.perf_counter()
                    if response.status_code != 200:
                        raise RuntimeError(
                            f"the query API answered {response.status_code}: {response.text[:300]}"
                        )
                    query_ms.append((answered - polled) * 1000)
                    count += 1
                    if response.json()["rows"][0][0] >= 1:
                        break
                    if answered - acked > limit:
                        raise RuntimeError(f"the probe span was not visible after {limit:g} s")
                    await asyncio.sleep(max(0.0, poll_s - (time.perf_counter() - polled)))
                if attempt:
                    latencies.append(answered - acked)
                    polls.append(count)
                    send_ms.append((acked - sent) * 1000)
                await asyncio.sleep(random.uniform(0.1, 0.4))  # do not phase-lock with batch timers
    finally:
        await channel.close()
    return {
        "seconds": stats_of(latencies),
        "all_seconds": [round(x, 4) for x in latencies],
        "polls_median": statistics.median(polls),
        "poll_interval_ms": poll_s * 1000,
        "query_ms": stats_of(query_ms),
        "export_call_ms": stats_of(send_ms),
    }


def bench_freshness(
    lab: Lab, args: argparse.Namespace, results: dict[str, Any], ingest_bridge: Bridge | None
) -> None:
    out: dict[str, Any] = results.setdefault("freshness", {})
    up, ports = lab.processes.orasi_up(lab.tmp / "up", env())
    say(f"freshness: orasi up (pid {up.pid}), {args.freshness_tries} probes")
    try:
        wait_http(f"http://{HOST}:{ports['bridge.query']}/api/v1/tables", up, 60)
        try:
            out["orasi_up"] = measure_freshness(
                f"{HOST}:{ports['agent.grpc']}",
                f"http://{HOST}:{ports['bridge.query']}/api/v1/query",
                args.freshness_tries,
                args.poll_ms / 1000,
            )
        except RuntimeError as error:
            raise RuntimeError(f"{error}; orasi up said:\n{log_tail(up)}") from None
        out["orasi_up"]["path"] = (
            "agent (batch 0.2 s) → gateway (batch 0.2 s) → bridge (hot rows), SQLite + local files"
        )
    finally:
        lab.processes.stop(up)
    say(f"freshness: orasi up median {out['orasi_up']['seconds']['median']:.3f} s")
    if ingest_bridge is not None:
        out["bridge_s3"] = measure_freshness(
            f"{HOST}:{ingest_bridge.grpc_port}",
            f"http://{HOST}:{ingest_bridge.query_port}/api/v1/query",
            max(3, args.freshness_tries // 2),
            args.poll_ms / 1000,
        )
        out["bridge_s3"]["path"] = (
            "straight into the ingest bridge (hot rows + committed files on S3, PostgreSQL catalog)"
        )
        say(f"freshness: bridge (S3 lake) median {out['bridge_s3']['seconds']['median']:.3f} s")
    out["target_s"] = TARGET_FRESHNESS_S


def report(
    fresh: dict[str, Any], lines: list[str], row: Callable[..., None], verdict: Callable[[bool], str]
) -> None:
    """The freshness part's lines of the report, added to ``lines`` (``row`` adds one)."""
    lines.append("Freshness (agent acknowledgement → visible in the query API)")
    for key, label in (
        ("orasi_up", "orasi up: agent → gateway → bridge"),
        ("bridge_s3", "straight into the bridge (S3 lake)"),
    ):
        if key in fresh:
            f = fresh[key]
            note = (
                f"p90 {f['seconds']['p90']:.3f} s, max {f['seconds']['max']:.3f} s, "
                f"query {f['query_ms']['median']:.0f} ms"
            )
            if key == "orasi_up":
                note += f", target ≤ 2 s {verdict(f['seconds']['median'] <= TARGET_FRESHNESS_S)}"
            row(label, f"{f['seconds']['median']:.3f} s", note)
