"""The agent's OTLP/gRPC ingest over TLS against plaintext, side by side in one run.

Run from the repository root (everything listens and sends on 127.0.0.1 only)::

    python -m benchmarks.tls_ingest              # 3 rounds of 12 s phases
    python -m benchmarks.tls_ingest --quick      # one round of 4 s phases, about 40 s in all

Target: TLS keeps ≥ 0.85 of the plaintext throughput (issue 20).

    load generator ──Export(bytes)──────────▶ orasi agent ──Export──▶ sink   (plaintext)
    load generator ══Export(bytes) over TLS══▶ orasi agent ──Export──▶ sink   (tls)

* The rig, the sink and the load are the agent benchmark's (``benchmarks/agent_rig.py``,
  ``benchmarks/load.py``): the Hipster Shop corpus in requests of ``--spans`` spans, sent by the
  real OTLP load generator at full speed with ``--concurrency`` calls in flight on one channel;
  the agent as ``examples/agent.yaml`` configures it.
* The TLS phase differs in one thing: the agent's ``receivers.otlp.protocols.grpc.tls`` holds a
  server certificate (EC P-256, issued by a CA made for the run with
  ``orasi_common.testing.certs.Authority``), and the generator verifies it against that CA.
  The agent → sink leg stays plaintext in both, so the difference is the ingest's TLS alone.
* Plaintext and TLS phases alternate for ``--rounds`` rounds (the same machine noise); each
  reports spans/s, the agent's CPU per span (µs) and the generator's, and the ratio TLS /
  plaintext per round and its median.
* Where the cost goes: each phase opens one channel, so one handshake per phase; the
  generator's channel is long-lived, as an SDK's is. ``--handshakes N`` also times N fresh
  channels' first call against the TLS and the plaintext agent (connection set-up cost), to set
  beside the per-byte cost the throughput phases show.

The figures go to stdout and to ``--json`` (default ``benchmarks/results/tls_ingest.json``).
Every process started here is stopped by its PID (``finally``); a watchdog alarm bounds the run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.agent_rig import AGENT_CONFIG, Agent, Rig
from benchmarks.load import EXPORT_METHOD, corpus_payloads
from benchmarks.processes import HOST, Stopped, pid_of, watchdog
from benchmarks.report import RESULTS, fmt, machine, median_ratio, verdict, write_json
from orasi_common.testing.certs import Authority

RESULTS_FILE = RESULTS / "tls_ingest.json"
TARGET_RATIO = 0.85
PHASES = ("plaintext", "tls")


def run_phase(rig: Rig, name: str, tag: str, pki: dict[str, Path]) -> dict[str, Any]:
    """One agent phase: ``name`` "plaintext" or "tls" (the receiver's ``tls`` and a verifying client)."""
    tls = name == "tls"
    server = {"cert_file": str(pki["cert"]), "key_file": str(pki["key"])} if tls else None
    sink = rig.start_sink()
    started: Agent | None = None
    try:
        started = rig.start_agent(sink.port, tag, tls=server)
        if rig.args.handshakes:
            handshakes = time_handshakes(started.port, pki["ca"] if tls else None, rig.args.handshakes)
        watch = {"agent": started.service.pid, "sink": pid_of(sink.process)}
        load, usage = rig.run_load(
            started.port, watch, duration=rig.args.duration, rate=None, ca_file=pki["ca"] if tls else None
        )
        row = rig.finish_agent_phase(name, load, usage, sink, started)
    finally:
        if started is not None:
            rig.stop_agent(started)
        rig.processes.stop(sink.process)
    per_request = row["receiver_cpu_us_per_request"]
    row["agent_cpu_us_per_span"] = round(per_request / rig.spans_per_request, 2) if per_request else None
    generator = usage["generator"]["cpu_pct_avg"]
    spans = load["acked_requests_in_window"] * rig.spans_per_request
    row["generator_cpu_us_per_span"] = round(1e4 * generator * load["window_s"] / spans, 2) if spans else None
    if rig.args.handshakes:
        row["first_call_ms"] = handshakes
    return row


def time_handshakes(port: int, ca_file: Path | None, count: int) -> dict[str, float] | None:
    """Milliseconds from a fresh channel to its first answered call (connect, TLS handshake if
    ``ca_file``, HTTP/2 set-up, one empty Export), ``count`` times in turn: median and p90."""
    import grpc

    times = []
    for _ in range(count):
        credentials = None if ca_file is None else grpc.ssl_channel_credentials(ca_file.read_bytes())
        started = time.perf_counter()
        with (
            grpc.insecure_channel(f"{HOST}:{port}")
            if credentials is None
            else grpc.secure_channel(f"{HOST}:{port}", credentials)
        ) as channel:
            channel.unary_unary(EXPORT_METHOD)(b"", timeout=10, wait_for_ready=True)
            times.append(1000 * (time.perf_counter() - started))
    if not times:
        return None
    times.sort()
    return {"median": round(statistics.median(times), 2), "p90": round(times[int(0.9 * (len(times) - 1))], 2)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rounds = sorted({r["round"] for r in rows})
    by = {(r["round"], r["phase"]): r for r in rows}
    both = [n for n in rounds if all((n, p) in by for p in PHASES)]
    ratios, ratio = median_ratio(
        [by[n, "tls"]["spans_per_s"] for n in both], [by[n, "plaintext"]["spans_per_s"] for n in both]
    )
    paid = [n for n in both if all(by[n, p]["agent_cpu_us_per_span"] for p in PHASES)]
    cpu_ratios, cpu_ratio = median_ratio(
        [by[n, "tls"]["agent_cpu_us_per_span"] for n in paid],
        [by[n, "plaintext"]["agent_cpu_us_per_span"] for n in paid],
    )

    def median_of(phase: str, key: str) -> float | None:
        values = [by[n, phase][key] for n in rounds if (n, phase) in by and by[n, phase][key] is not None]
        return round(statistics.median(values), 2) if values else None

    medians = {
        f"{p}_{key}_median": median_of(p, key)
        for p in PHASES
        for key in ("spans_per_s", "agent_cpu_us_per_span", "generator_cpu_us_per_span")
    }
    return {
        **medians,
        "ratio_per_round": ratios,
        "ratio_median": ratio,
        "agent_cpu_per_span_ratio_per_round": cpu_ratios,
        "agent_cpu_per_span_ratio_median": cpu_ratio,
    }


def print_report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    print()
    print(
        f"Orasi agent ingest, TLS vs plaintext — {result['machine']['cpus']} CPUs, Python "
        f"{result['machine']['python']}, {settings['requests']:,} corpus requests of "
        f"{settings['spans_per_request']} spans ({settings['request_bytes']:,} B on average), "
        f"{settings['concurrency']} calls in flight on one channel"
    )
    header = (
        f"{'round':>5} {'phase':<9} {'spans/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'agent %':>7} "
        f"{'gen %':>6} {'agent µs/span':>13} {'gen µs/span':>11} {'1st call ms':>11} {'err':>4}"
    )
    print(header)
    print("─" * len(header))
    for row in result["rows"]:
        latency = row["load"]["latency_ms"] or {}
        first = (row.get("first_call_ms") or {}).get("median")
        print(
            f"{row['round']:>5} {row['phase']:<9} {row['spans_per_s']:>9,} {fmt(latency.get('p50')):>7} "
            f"{fmt(latency.get('p99')):>7} {fmt(row['usage']['agent']['cpu_pct_avg']):>7} "
            f"{fmt(row['usage']['generator']['cpu_pct_avg']):>6} {fmt(row['agent_cpu_us_per_span']):>13} "
            f"{fmt(row['generator_cpu_us_per_span']):>11} {fmt(first):>11} "
            f"{sum(row['load']['errors'].values()):>4}"
        )
        v = row["verification"]
        if v["sink_spans_after_shutdown"] < v["acked_by_agent_spans_total"]:
            print(
                f"  warning: the agent acknowledged {v['acked_by_agent_spans_total']:,} spans and the "
                f"sink received {v['sink_spans_after_shutdown']:,}"
            )
    s = result["summary"]
    print()
    print(
        f"median plaintext {s['plaintext_spans_per_s_median']:,} spans/s, "
        f"TLS {s['tls_spans_per_s_median']:,} spans/s; "
        f"agent CPU per span {s['plaintext_agent_cpu_us_per_span_median']} → "
        f"{s['tls_agent_cpu_us_per_span_median']} µs"
    )
    print(
        f"ratio TLS/plaintext per round {s['ratio_per_round']} → median {s['ratio_median']:.3f} "
        f"(target ≥ {TARGET_RATIO}) {verdict(s['ratio_median'] >= TARGET_RATIO)}"
    )
    print(
        f"agent CPU per span, TLS/plaintext per round {s['agent_cpu_per_span_ratio_per_round']} → "
        f"median {s['agent_cpu_per_span_ratio_median']:.3f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tls_ingest",
        description="The agent's OTLP/gRPC ingest throughput over TLS vs plaintext, alternating in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="one round of short phases (a smoke run)")
    parser.add_argument("--duration", type=float, help="seconds measured per phase (12; quick 4)")
    parser.add_argument("--rounds", type=int, help="plaintext/TLS rounds, alternating (3; quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of load before each window (2; quick 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight (8)")
    parser.add_argument("--spans", type=int, default=100, help="spans per request (100)")
    parser.add_argument(
        "--handshakes",
        type=int,
        default=20,
        help="fresh channels timed per phase before the load (20; 0: none)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS_FILE, help=f"where to write the figures ({RESULTS_FILE})"
    )
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    defaults = (
        {"duration": 4.0, "rounds": 1, "warmup": 1.0}
        if args.quick
        else {
            "duration": 12.0,
            "rounds": 3,
            "warmup": 2.0,
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rounds < 1 or args.duration <= 0 or args.handshakes < 0:
        parser.error("--rounds and --duration must be positive, --handshakes not negative")
    # the rig's sink counts spans by a wire scan of corpus data, and its --compression/--profile
    args.data, args.compression, args.profile = "corpus", "none", None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payloads = corpus_payloads(args.spans)
    budget = int(args.rounds * 2 * (args.duration + args.warmup + 90) + 30)
    workdir = Path(tempfile.mkdtemp(prefix="orasi-bench-tls-"))
    rig = Rig(args, payloads, args.spans, workdir)
    authority = Authority.create("orasi bench CA")
    issued = authority.issue(workdir, "agent", hosts=("localhost", HOST))
    pki = {"cert": issued.cert, "key": issued.key, "ca": authority.write_ca(workdir / "ca.crt")}
    result: dict[str, Any] = {
        "benchmark": "tls_ingest",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "settings": {
            "spans_per_request": args.spans,
            "requests": len(payloads),
            "request_bytes": round(statistics.fmean(len(p) for p in payloads)),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "certificate": "EC P-256, SHA-256",
            "agent_config": AGENT_CONFIG,
        },
        "rows": [],
    }
    try:
        with watchdog(budget):
            for number in range(1, args.rounds + 1):
                for name in PHASES:
                    print(f"round {number}/{args.rounds}: {name}…", flush=True)
                    row = run_phase(rig, name, f"round{number}-{name}", pki)
                    row["round"] = number
                    result["rows"].append(row)
                    print(f"  {row['spans_per_s']:,} spans/s", flush=True)
    except Stopped as stop:
        print(f"tls_ingest: {stop}; stopping every process it started", file=sys.stderr)
        return 1
    finally:
        rig.processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    result["summary"] = summarize(result["rows"])
    print_report(result)
    if not args.no_json:
        write_json(args.json, result)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
