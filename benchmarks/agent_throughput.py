"""Throughput and steady-load benchmark of the agent: OTLP/gRPC in → batch → OTLP/gRPC out.

Run from the repository root (everything listens and sends on 127.0.0.1 only)::

    python -m benchmarks.agent_throughput            # full: 3 rounds of 12 s phases, 20 s steady
    python -m benchmarks.agent_throughput --quick    # smoke run, about 30 s in all
    python benchmarks/agent_throughput.py --duration 15 --rounds 3

Processes (each its own interpreter): see ``benchmarks/agent_rig.py``; the steady phases are
``benchmarks/agent_steady.py``.

* The payloads: by default the Hipster Shop corpus (``shared/corpus/``, read and re-batched by
  ``benchmarks/corpus.py``) in requests of ``--spans`` spans (865 requests of 100 spans, 2 to 6
  resources each, 28 KB on average; the last, partial one left out), sent in a cycle; with ``--data
  generated`` one built request (3 resources, 10 attributes per span, varied ids). They are
  written once to a file the generators read.
* The generator (``benchmarks/load.py``: ``orasi bench``'s load loop in its own process) sends
  those bytes with raw grpc.aio unary calls, either at full speed with ``--concurrency`` calls in
  flight, or at a fixed rate; it counts acknowledged requests whose answer arrived inside the
  measured window (after ``--warmup``).
* The sink answers ``TraceService/Export`` with ``b""``. Sent to directly (the baselines) it
  does nothing else: every request holds ``--spans`` spans. Behind the agent it counts the
  spans it gets (generated data: every span carries one attribute whose key,
  ``orasi.bench.span``, appears nowhere else, so ``request.count(MARKER)``; corpus data: a
  native wire scan of the few large requests the agent forwards).
* Baseline and agent phases alternate for ``--rounds`` rounds so they see the same machine
  noise; the report gives per-round figures, their medians, and the ratio agent / baseline,
  both of spans/s and of CPU spent per request by the receiving process (sink or agent).
* The agent runs as ``examples/agent.yaml`` configures it (memory_limiter → resource → batch →
  otlp exporter, its queue in memory).
* The steady phase sends a fresh agent ``--burst`` seconds at full speed, then a fixed
  ``--rate`` (100 requests/s = 10k spans/s), and samples its CPU (psutil cpu_times deltas, % of
  one core) and RSS every second of the steady window: what a node agent costs after a spike.

The table goes to stdout and the figures to ``--json`` (default
``benchmarks/results/agent_throughput.json``; nothing reads it). Every process started here is
stopped by its PID in ``finally`` blocks; children also get SIGTERM if this process dies
(Linux ``PR_SET_PDEATHSIG``), and a watchdog alarm bounds the whole run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import agent_steady
from benchmarks.agent_rig import AGENT_CONFIG, Agent, Rig, phase
from benchmarks.load import corpus_payloads, trace_request
from benchmarks.processes import Stopped, pid_of, watchdog
from benchmarks.report import MIB, RESULTS, fmt, machine, median_ratio, verdict, write_json

RESULTS_FILE = RESULTS / "agent_throughput.json"
DEFAULT_PEER_LIMIT = 4 * MIB  # gRPC's default max receive size, and Orasi's otlp receiver default
TARGET_RATIO = 0.6


def baseline(rig: Rig) -> dict[str, Any]:
    sink = rig.start_sink(count=False)
    try:
        load, usage = rig.run_load(
            sink.port, {"sink": pid_of(sink.process)}, duration=rig.args.duration, rate=None
        )
        received = sink.settle(load["acked_requests_total"] * rig.spans_per_request, timeout=5)
    finally:
        rig.processes.stop(sink.process)
    return phase("baseline", load, usage, {"sink": received})


def agent(rig: Rig, tag: str, queue: str | None = None) -> dict[str, Any]:
    sink = rig.start_sink()
    started: Agent | None = None
    try:
        started = rig.start_agent(sink.port, tag, queue)
        watch = {"agent": started.service.pid, "sink": pid_of(sink.process)}
        load, usage = rig.run_load(
            started.port, watch, duration=rig.args.duration, rate=None, profile_tag=f"throughput-{tag}"
        )
        return rig.finish_agent_phase("agent", load, usage, sink, started)
    finally:
        if started is not None:
            rig.stop_agent(started)
        rig.processes.stop(sink.process)


def run_wal(rig: Rig, result: dict[str, Any]) -> None:
    """Alternating rounds with the exporter queue in memory and in the write-ahead log."""
    rounds = range(1, rig.args.rounds + 1)
    for number in rounds:
        for queue in ("memory", "wal"):
            print(f"round {number}/{rig.args.rounds}: agent, queue in {queue}…", flush=True)
            row = agent(rig, f"round{number}-{queue}", queue)
            row["round"], row["phase"] = number, f"queue-{queue}"
            result["throughput"].append(row)
            print(f"  {row['spans_per_s']:,} spans/s", flush=True)
    by = {(r["round"], r["phase"]): r["spans_per_s"] for r in result["throughput"]}
    ratios, ratio = median_ratio(
        [by[n, "queue-wal"] for n in rounds], [by[n, "queue-memory"] for n in rounds]
    )
    result["wal_summary"] = {
        "memory_spans_per_s_median": round(statistics.median(by[n, "queue-memory"] for n in rounds)),
        "wal_spans_per_s_median": round(statistics.median(by[n, "queue-wal"] for n in rounds)),
        "ratio_per_round": ratios,
        "ratio_median": ratio,
    }
    print(json.dumps(result["wal_summary"], indent=1))
    print(f"WAL on / off throughput: {ratio:.3f} (target ≥ 0.7)")


def run_throughput(rig: Rig, result: dict[str, Any]) -> None:
    args = rig.args
    for number in range(1, args.rounds + 1):
        for name in ("baseline", "agent"):
            print(
                f"round {number}/{args.rounds}: {name} ({args.warmup:g} s warm-up + {args.duration:g} s)…",
                flush=True,
            )
            row = baseline(rig) if name == "baseline" else agent(rig, f"round{number}")
            row["round"] = number
            result["throughput"].append(row)
            print(f"  {row['spans_per_s']:,} spans/s", flush=True)
    result["summary"] = summarize(result["throughput"])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rounds = sorted({r["round"] for r in rows})
    by = {(r["round"], r["phase"]): r["spans_per_s"] for r in rows}
    cost = {(r["round"], r["phase"]): r["receiver_cpu_us_per_request"] for r in rows}
    both = [n for n in rounds if (n, "baseline") in by and (n, "agent") in by]
    ratios, ratio = median_ratio([by[n, "agent"] for n in both], [by[n, "baseline"] for n in both])
    paid = [n for n in both if cost[n, "baseline"] and cost[n, "agent"]]
    cpu_ratios, cpu_ratio = median_ratio(
        [cost[n, "baseline"] for n in paid], [cost[n, "agent"] for n in paid]
    )
    baseline_rates = [by[n, "baseline"] for n in rounds if (n, "baseline") in by]
    agent_rates = [by[n, "agent"] for n in rounds if (n, "agent") in by]
    return {
        "baseline_spans_per_s_median": round(statistics.median(baseline_rates)) if baseline_rates else 0,
        "agent_spans_per_s_median": round(statistics.median(agent_rates)) if agent_rates else 0,
        "ratio_per_round": ratios,
        "ratio_median": ratio,
        "cpu_ratio_per_round": cpu_ratios,
        "cpu_ratio_median": cpu_ratio,
    }


def print_report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    print()
    print(
        f"Orasi agent benchmark — {result['machine']['cpus']} CPUs, Python {result['machine']['python']}, "
        f"{settings['data']} data, {settings['requests']:,} {settings['spans_per_request']}-span requests of "
        f"{settings['request_bytes']:,} B on average, "
        f"{settings['concurrency']} calls in flight, agent export compression {settings['compression']}"
    )
    if result["throughput"]:
        _print_throughput(result)
    if result.get("steady"):
        agent_steady.print_steady(result)


def _print_throughput(result: dict[str, Any]) -> None:
    print(
        "CPU columns: % of one core over the measured window; 'machine' = all cores busy (max "
        f"{100 * (result['machine']['cpus'] or 1)}), 'other' = of that, not the processes below"
    )
    header = (
        f"{'round':>5} {'phase':<9} {'spans/s':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'agent':>6} {'(loop)':>6} {'gen':>5} {'sink':>5} {'machine':>7} {'other':>5} "
        f"{'agent RSS':>9} {'µs/req':>6} {'err':>4}"
    )
    print(header)
    print("─" * len(header))
    for row in result["throughput"]:
        usage, load = row["usage"], row["load"]
        latency = load["latency_ms"] or {}
        agent = usage.get("agent", {})
        print(
            f"{row['round']:>5} {row['phase']:<9} {row['spans_per_s']:>9,} {row['requests_per_s']:>7,.0f} "
            f"{fmt(latency.get('p50')):>7} {fmt(latency.get('p99')):>7} "
            f"{fmt(agent.get('cpu_pct_avg')):>6} {fmt(agent.get('main_thread_cpu_pct_avg')):>6} "
            f"{fmt(usage['generator']['cpu_pct_avg']):>5} {fmt(usage['sink']['cpu_pct_avg']):>5} "
            f"{fmt(usage['machine']['busy_cpu_pct']):>7} {fmt(usage['machine']['unexplained_cpu_pct']):>5} "
            f"{fmt(agent.get('rss_mib_max'), ' MiB'):>9} {fmt(row['receiver_cpu_us_per_request']):>6} "
            f"{sum(load['errors'].values()):>4}"
        )
    summary = result["summary"]
    print()
    print(
        f"median baseline {summary['baseline_spans_per_s_median']:,} spans/s; "
        f"median agent {summary['agent_spans_per_s_median']:,} spans/s"
    )
    print(
        f"ratio agent/baseline per round {summary['ratio_per_round']} → median "
        f"{summary['ratio_median']:.3f} (target ≥ {TARGET_RATIO}) "
        f"{verdict(summary['ratio_median'] >= TARGET_RATIO)}"
    )
    print(
        f"CPU per request, sink/agent per round {summary['cpu_ratio_per_round']} → median "
        f"{summary['cpu_ratio_median']:.3f} (the same comparison, by CPU cost instead of spans/s)"
    )
    for row in result["throughput"]:
        if row["phase"] == "agent":
            v = row["verification"]
            print(
                f"round {row['round']} delivery: agent acknowledged "
                f"{v['acked_by_agent_spans_total']:,} spans; "
                f"sink received {v['sink_spans_before_shutdown']:,} before and "
                f"{v['sink_spans_after_shutdown']:,} after the agent's shutdown, "
                f"in {v['sink_requests']:,} requests "
                f"(largest {v['sink_largest_request_bytes'] / MIB:.2f} MiB)"
            )
    largest = max(
        (
            r["verification"]["sink_largest_request_bytes"]
            for r in result["throughput"]
            if r["phase"] == "agent"
        ),
        default=0,
    )
    if largest > DEFAULT_PEER_LIMIT:
        print(
            f"warning: the agent forwarded requests of up to {largest / MIB:.2f} MiB; a peer with the "
            f"default {DEFAULT_PEER_LIMIT // MIB} MiB gRPC receive limit refuses them (RESOURCE_EXHAUSTED)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agent_throughput",
        description="Throughput (agent vs. a do-nothing gRPC sink) and steady-load CPU/RSS of `orasi agent`.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short phases and one round (a smoke run, ~40 s)"
    )
    parser.add_argument("--duration", type=float, help="seconds measured per throughput phase (12; quick 4)")
    parser.add_argument("--rounds", type=int, help="baseline/agent rounds, alternating (3; quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of load before each window (2; quick 1)")
    parser.add_argument(
        "--steady-duration", type=float, help="seconds of each fixed-rate phase (20; quick 6)"
    )
    parser.add_argument("--idle", type=float, help="seconds the idle agent is sampled first (3; quick 1)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="requests/s when steady (100 = 10k spans/s)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per generator (8)")
    parser.add_argument("--spans", type=int, default=100, help="spans per request (100)")
    parser.add_argument(
        "--data",
        choices=["corpus", "generated"],
        default="corpus",
        help="what is sent: the Hipster Shop corpus re-batched, or one generated request (corpus)",
    )
    parser.add_argument(
        "--burst", type=float, help="seconds at full speed before the steady phase (10; quick 3; 0: none)"
    )
    parser.add_argument("--compression", choices=["none", "gzip"], default="none", help="agent → sink (none)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the steady phases")
    parser.add_argument(
        "--wal",
        action="store_true",
        help="instead: throughput with the exporter queue in memory vs in the write-ahead log, per round",
    )
    parser.add_argument("--skip-steady", action="store_true", help="only the throughput phases")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy record the agent in every agent phase into DIR (collapsed stacks; inflates its CPU)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS_FILE, help=f"where to write the figures ({RESULTS_FILE})"
    )
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    defaults = (
        {"duration": 4.0, "rounds": 1, "warmup": 1.0, "steady_duration": 6.0, "idle": 1.0, "burst": 3.0}
        if args.quick
        else {
            "duration": 12.0,
            "rounds": 3,
            "warmup": 2.0,
            "steady_duration": 20.0,
            "idle": 3.0,
            "burst": 10.0,
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rounds < 1 or args.duration <= 0 or args.steady_duration <= 0 or args.rate <= 0:
        parser.error("--rounds, --duration, --steady-duration and --rate must be positive")
    return args


def _budget(args: argparse.Namespace) -> int:
    """Seconds after which the watchdog aborts the run (generous: start-ups, drains, shutdowns)."""
    per_phase = args.warmup + 75
    total = 0.0
    if not args.skip_throughput:
        total += args.rounds * 2 * (args.duration + per_phase)
    if not args.skip_steady:
        total += 2 * (args.steady_duration + per_phase) + args.idle + args.burst + per_phase
    return int(total + 30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data == "corpus":
        payloads = corpus_payloads(args.spans)
    else:
        payloads = [trace_request(7, args.spans, services=3, now_ns=1_764_000_000_000_000_000, marker=True)]
    budget = _budget(args)
    rig = Rig(args, payloads, args.spans, Path(tempfile.mkdtemp(prefix="orasi-bench-")))
    result: dict[str, Any] = {
        "benchmark": "agent_throughput",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "settings": {
            "spans_per_request": args.spans,
            "data": args.data,
            "requests": len(payloads),
            "request_bytes": round(statistics.fmean(len(p) for p in payloads)),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "compression": args.compression,
            "steady_rate_spans_per_s": round(args.rate * args.spans),
            "steady_duration_s": args.steady_duration,
            "burst_s": args.burst,
            "agent_config": AGENT_CONFIG,
        },
        "throughput": [],
    }
    try:
        with watchdog(budget):
            if args.wal:
                run_wal(rig, result)
            elif not args.skip_throughput:
                run_throughput(rig, result)
            if not args.skip_steady and not args.wal:
                agent_steady.run(rig, result)
    except Stopped as stop:
        print(f"agent_throughput: {stop}; stopping every process it started", file=sys.stderr)
        return 1
    finally:
        rig.processes.stop_all()
        shutil.rmtree(rig.workdir, ignore_errors=True)
    if not args.wal:
        print_report(result)
    if args.wal and args.json == RESULTS_FILE:
        args.json = RESULTS_FILE.with_name("agent_wal.json")
    if not args.no_json:
        write_json(args.json, result)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
