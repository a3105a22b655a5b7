"""The agent benchmark's steady phases: what a node agent costs at a fixed rate after a spike.

* steady baseline: the steady rate straight to a do-nothing sink — the floor of grpc.aio.
* steady: a fresh agent, sampled idle first, gets ``--burst`` seconds at full speed, then a fixed
  ``--rate`` (100 requests/s = 10k spans/s); its CPU (% of one core) and RSS are sampled every
  second of the steady window. Targets: ≤ 10 % of one core and ≤ 100 MiB RSS.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.agent_rig import Agent, Rig, phase
from benchmarks.processes import pid_of
from benchmarks.report import fmt, verdict
from benchmarks.usage import sample

TARGET_CPU_PCT = 10.0
TARGET_RSS_MIB = 100.0


def steady_baseline(rig: Rig) -> dict[str, Any]:
    """The steady rate sent straight to a sink: what bare grpc.aio costs at that rate."""
    args = rig.args
    sink = rig.start_sink(count=False)
    try:
        load, usage = rig.run_load(
            sink.port, {"sink": pid_of(sink.process)}, duration=args.steady_duration, rate=args.rate
        )
        received = sink.settle(load["acked_requests_total"] * rig.spans_per_request, timeout=5)
    finally:
        rig.processes.stop(sink.process)
    return phase("steady-baseline", load, usage, {"sink": received})


def steady(rig: Rig) -> dict[str, Any]:
    args = rig.args
    sink = rig.start_sink()
    agent: Agent | None = None
    try:
        agent = rig.start_agent(sink.port, "steady")
        time.sleep(1.0)  # let start-up work settle
        now = time.monotonic()
        idle = sample({"agent": agent.service.pid}, now, now + args.idle, rss_of={"agent"})
        watch = {"agent": agent.service.pid, "sink": pid_of(sink.process)}
        burst: dict[str, Any] | None = None
        if args.burst > 0:
            burst_load, burst_usage = rig.run_load(agent.port, watch, duration=args.burst, rate=None)
            burst = {
                "spans_per_s": round(
                    burst_load["acked_requests_in_window"] * rig.spans_per_request / args.burst
                ),
                "agent": burst_usage["agent"],
                "acked_requests_total": burst_load["acked_requests_total"],
            }
        load, usage = rig.run_load(
            agent.port, watch, duration=args.steady_duration, rate=args.rate, profile_tag="steady"
        )
        if burst is not None:
            load["acked_requests_total"] += burst["acked_requests_total"]  # delivery counts both
        result = rig.finish_agent_phase("steady", load, usage, sink, agent)
        result["idle"] = idle["agent"]
        result["burst"] = burst
        return result
    finally:
        if agent is not None:
            rig.stop_agent(agent)
        rig.processes.stop(sink.process)


def run(rig: Rig, result: dict[str, Any]) -> None:
    """Both steady phases into ``result`` (``steady_baseline``, ``steady``, ``steady_targets``)."""
    args = rig.args
    rate = f"{args.rate * args.spans:,.0f} spans/s for {args.steady_duration:g} s"
    print(f"steady baseline: {rate} straight to a sink…", flush=True)
    result["steady_baseline"] = steady_baseline(rig)
    print(f"steady: {rate} through a fresh agent…", flush=True)
    result["steady"] = steady(rig)
    agent = result["steady"]["usage"]["agent"]
    result["steady_targets"] = {
        "cpu_pct_avg": agent["cpu_pct_avg"],
        "cpu_ok": agent["cpu_pct_avg"] <= TARGET_CPU_PCT,
        "rss_mib_max": agent["rss_mib_max"],
        "rss_ok": agent["rss_mib_max"] <= TARGET_RSS_MIB,
    }


def print_steady(result: dict[str, Any]) -> None:
    steady = result["steady"]
    agent, load = steady["usage"]["agent"], steady["load"]
    latency = load["latency_ms"] or {}
    v = steady["verification"]
    targets = result["steady_targets"]
    print()
    print(
        f"steady {result['settings']['steady_rate_spans_per_s']:,} spans/s for {load['window_s']:g} s: "
        f"achieved {steady['spans_per_s']:,} spans/s, latency p50 {fmt(latency.get('p50'))} ms "
        f"p99 {fmt(latency.get('p99'))} ms, late sends {load['late_sends']}, "
        f"errors {sum(load['errors'].values())}"
    )
    burst = steady.get("burst")
    if burst:
        print(
            f"  right after {result['settings']['burst_s']:g} s at full speed "
            f"({burst['spans_per_s']:,} spans/s, "
            f"agent CPU {burst['agent']['cpu_pct_avg']}%, RSS max {burst['agent']['rss_mib_max']} MiB)"
        )
    print(
        f"  agent CPU avg {agent['cpu_pct_avg']}% of one core "
        f"(event-loop thread {agent['main_thread_cpu_pct_avg']}%, "
        f"max 1 s sample {agent['cpu_pct_max_1s']}%; target ≤ {TARGET_CPU_PCT}%) "
        f"{verdict(targets['cpu_ok'])}"
    )
    print(
        f"  agent RSS avg {agent['rss_mib_avg']} MiB, max {agent['rss_mib_max']} MiB "
        f"(target ≤ {TARGET_RSS_MIB} MiB) {verdict(targets['rss_ok'])}"
    )
    idle = steady["idle"]
    print(f"  idle agent before the load: CPU {idle['cpu_pct_avg']}%, RSS {idle['rss_mib_max']} MiB")
    machine = steady["usage"]["machine"]
    print(
        f"  machine meanwhile: {machine['busy_cpu_pct']}% busy of {100 * (machine['cpus'] or 1)}, "
        f"{machine['unexplained_cpu_pct']}% by processes other than generator, agent and sink"
    )
    floor = result.get("steady_baseline")
    if floor:
        sink, machine = floor["usage"]["sink"], floor["usage"]["machine"]
        print(
            f"  same rate straight to the do-nothing grpc.aio sink: sink CPU {sink['cpu_pct_avg']}% "
            f"(event loop {sink['main_thread_cpu_pct_avg']}%), RSS {sink['rss_mib_max']} MiB — the floor of "
            f"one Python gRPC server at this rate (machine {machine['busy_cpu_pct']}% busy)"
        )
    print(
        f"  delivery: agent acknowledged {v['acked_by_agent_spans_total']:,} spans, sink received "
        f"{v['sink_spans_after_shutdown']:,}"
    )
