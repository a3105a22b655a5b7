"""Benchmark of the bridge's lake: ingest rate, query latency and freshness, against real servers.

Run from the repository root, with the test servers up (``scripts/test-servers.sh start``:
SeaweedFS S3 on 127.0.0.1:8333, PostgreSQL on 127.0.0.1:5432)::

    python -m benchmarks.lake                  # full: 300k-span ingest, 1M and 10M-span queries
    python -m benchmarks.lake --quick          # smoke run, about 30 s
    python -m benchmarks.lake --ingest-spans 100000 --query-sizes 1000000 --runs 7
    python -m benchmarks.lake --only ingest --profile-dir /tmp/prof --profile-gil   # py-spy the bridge

Three parts, each against the same machine in one run (it has 2 cores and is noisy, so the
report gives ratios of figures measured side by side, plus the absolute figures):

1. **Ingest.** Realistic 100-span ``ExportTraceServiceRequest``\\ s (4 services each, 10
   attributes per span, 10 per resource; every request distinct unless ``--pool`` cycles a few,
   since repeated rows make Parquet's dictionaries and zstd unrealistically cheap) are converted
   to Arrow by ``rows.spans_batch`` alone (the converter), then the *same* Arrow rows are
   written by pyarrow as one zstd Parquet file to SeaweedFS (the raw baseline), in alternating
   rounds. The commit step is also timed alone on those rows (the writer's sort, then
   pyiceberg's append). The lake path is measured twice: in this process (``Batch`` →
   ``LakeWriter.consume`` … → ``flush`` → Parquet on S3 → Iceberg commit in PostgreSQL) and
   through a running ``orasi bridge`` (OTLP/gRPC in ``--receiver-processes`` worker processes)
   fed ``--bridge-spans`` spans (the requests cycled) by a load generator in another process, in
   ``--bridge-rounds`` rounds one after another (the median round is reported).
   The bridge's rate is measured while it is loaded (``steady_rate``: the commits after the
   first, up to the last one before the load ended, read back from the catalog's snapshots);
   the rate from the first send to the last commit is reported too. Besides the wall-clock
   ratio (the target), CPU seconds per span of the bridge (its workers included) are compared
   with those of the raw write: that ratio moves much less when other processes share the cores.
2. **Query.** Synthetic spans (20 services, 50 operations, 8-span traces with random 16-byte ids,
   lognormal durations, 2 % errors, one hour of start times) are built with numpy/pyarrow in
   chunks of ``--chunk-rows`` and committed through the writer's commit path (``_commit``: sort,
   one pyiceberg append). At each size of
   ``--query-sizes`` a per-service RED query and a trace-by-id lookup run through
   ``QueryEngine.execute`` (one cold run, then the median of ``--runs``); at the largest size the
   same queries also run through ``POST /api/v1/query`` of an ``orasi bridge`` on that lake.
   The queries get a 180 s limit instead of the engine's default 30 s, so that a slow lookup
   yields a figure rather than a refusal.
3. **Freshness.** ``orasi up`` (agent → gateway → bridge, ports chosen free) gets one span with a
   unique attribute over OTLP/gRPC; from the agent's acknowledgement the query API is polled every
   ``--poll-ms`` until the span is visible (the query is bounded to ±10 s around the send). The
   same is measured straight into the ingest bridge (S3 + PostgreSQL lake).

The parts are ``benchmarks/lake_ingest.py``, ``lake_query.py`` (data: ``lake_spans.py``) and
``lake_freshness.py``; the databases, S3 prefix, bridge and writer are ``lake_rig.py``'s.

Isolation and cleanup: each run uses its own PostgreSQL databases (``orasi_bench_<id>_ingest``,
``_query``) and S3 prefix (``s3://orasi-telemetry-us-east-1/bench-<id>/``); both are dropped
at the end, as is the temporary directory. Every process started here is stopped by its PID in
``finally`` blocks (children also get SIGTERM if this process dies, via ``PR_SET_PDEATHSIG``),
and an alarm bounds the whole run. Only 127.0.0.1 is used.

The table goes to stdout and the figures to ``--json`` (default ``benchmarks/results/lake.json``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import lake_freshness, lake_ingest, lake_query
from benchmarks.lake_rig import BUCKET, Lab, check_servers, env
from benchmarks.processes import Stopped, watchdog
from benchmarks.report import RESULTS, say, write_json
from orasi_common.allocator import tune_allocators

RESULTS_FILE = RESULTS / "lake.json"


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(f"  {name:<52} {value:>18}  {note}")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for key, part in (("ingest", lake_ingest), ("query", lake_query), ("freshness", lake_freshness)):
        if results.get(key):
            part.report(results[key], lines, row, verdict)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about 30 s")
    parser.add_argument(
        "--ingest-spans", type=int, help="spans sent in the ingest part (default 300000; quick 30000)"
    )
    parser.add_argument(
        "--query-sizes",
        type=lambda s: [int(float(x)) for x in s.split(",")],
        help="comma-separated lake sizes in spans (default 1000000,10000000; quick 200000,1000000)",
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=1_000_000, help="spans per generated chunk and commit"
    )
    parser.add_argument("--runs", type=int, help="measured runs per query (default 5; quick 3)")
    parser.add_argument("--freshness-tries", type=int, help="probe spans (default 10; quick 4)")
    parser.add_argument(
        "--poll-ms", type=float, default=20, help="query API poll interval in the freshness part"
    )
    parser.add_argument(
        "--pool",
        type=int,
        help="distinct request payloads, cycled (default: every request distinct, as real traffic is)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="gRPC calls in flight from the load generator"
    )
    parser.add_argument(
        "--bridge-spans",
        type=int,
        help="spans sent to the ingest bridge, cycling the distinct requests (default 1200000; quick 300000)",
    )
    parser.add_argument(
        "--bridge-rounds",
        type=int,
        help="rounds sent to the ingest bridge one after another; the median round is reported, as "
        "the raw write's median of its rounds (default 3; quick 1)",
    )
    parser.add_argument(
        "--receiver-processes",
        type=int,
        default=1,
        help="the ingest bridge's protocols.grpc.processes (0: OTLP/gRPC served in the bridge's process)",
    )
    parser.add_argument(
        "--flush-interval", type=float, default=2.0, help="lake flush_interval (s) in the ingest part"
    )
    parser.add_argument(
        "--flush-size-mib",
        type=float,
        help="lake flush_size_mib in the ingest part (default 128; quick 32, so that the bridge "
        "commits often enough while loaded to be measured)",
    )
    parser.add_argument(
        "--ingest-timeout", type=float, default=600, help="seconds the bridge may take to commit everything"
    )
    parser.add_argument("--only", default="ingest,query,freshness", help="parts to run (comma-separated)")
    parser.add_argument(
        "--no-bridge", action="store_true", help="skip the parts that need an `orasi bridge` process"
    )
    parser.add_argument("--profile-dir", help="record py-spy profiles of the bridge processes here")
    parser.add_argument("--profile-gil", action="store_true", help="py-spy samples the GIL holder only")
    parser.add_argument(
        "--json", type=Path, default=RESULTS_FILE, help=f"where the figures go (default {RESULTS_FILE})"
    )
    parser.add_argument(
        "--budget", type=float, help="seconds before the run is aborted (default 1500; quick 400)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the S3 prefix, databases and temp dir")
    args = parser.parse_args(argv)
    quick = args.quick
    args.ingest_spans = args.ingest_spans or (30_000 if quick else 300_000)
    args.bridge_spans = args.bridge_spans or (300_000 if quick else 1_200_000)
    args.flush_size_mib = args.flush_size_mib or (32 if quick else 128)
    args.bridge_rounds = args.bridge_rounds or (1 if quick else 3)
    args.query_sizes = args.query_sizes or ([200_000, 1_000_000] if quick else [1_000_000, 10_000_000])
    args.runs = args.runs or (3 if quick else 5)
    args.freshness_tries = args.freshness_tries or (4 if quick else 10)
    args.budget = args.budget or (400 if quick else 1500)
    args.only = {p.strip() for p in args.only.split(",") if p.strip()}
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in env().items():
        os.environ.setdefault(name, value)
    tune_allocators()  # as `orasi` services do, so in-process figures match theirs
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_servers()
    lab = Lab()
    lab.keep = args.keep
    started = time.time()
    results: dict[str, Any] = {
        "benchmark": "lake",
        "run_id": lab.run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_start": os.getloadavg(),
        },
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python -m benchmarks.lake", *(argv if argv is not None else sys.argv[1:])]),
        "s3_prefix": f"s3://{BUCKET}/{lab.prefix}/",
    }
    say(f"run {lab.run_id}: s3://{BUCKET}/{lab.prefix}/, databases orasi_bench_{lab.run_id}_*")
    failed: BaseException | None = None
    ingest_bridge = None
    try:
        with watchdog(args.budget, f"the run took longer than --budget {args.budget:g} s"):
            if "ingest" in args.only:
                results["machine"]["loadavg_ingest"] = os.getloadavg()
                ingest_bridge = lake_ingest.bench_ingest(lab, args, results)
            if "freshness" in args.only:
                results["machine"]["loadavg_freshness"] = os.getloadavg()
                lake_freshness.bench_freshness(lab, args, results, ingest_bridge)
            if ingest_bridge is not None:
                lab.processes.stop(ingest_bridge.service)
                ingest_bridge = None
            if "query" in args.only:
                results["machine"]["loadavg_query"] = os.getloadavg()
                lake_query.bench_query(lab, args, results)
    except BaseException as error:
        failed = error
        results["error"] = f"{type(error).__name__}: {error}"
    finally:
        say("cleaning up")
        lab.close()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.time() - started
    write_json(args.json, results, indent=2)
    print(report(results))
    print(f"\nfigures: {args.json}   elapsed: {results['elapsed_s']:.0f} s")
    if failed is not None:
        if isinstance(failed, KeyboardInterrupt):
            return 130
        if isinstance(failed, Stopped) and failed.signal is signal.SIGTERM:
            return 143  # as the shell reports a process SIGTERM ended
        raise failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
