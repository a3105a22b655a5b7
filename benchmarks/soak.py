"""Soak of `orasi up`: a steady rate of corpus spans for minutes, then idle; RSS over time.

Run from the repository root::

    python -m benchmarks.soak                          # 10 min at 20k spans/s, then 60 s idle
    python -m benchmarks.soak --minutes 2 --idle-seconds 30

``orasi up`` (agent → gateway (OTAP) → bridge in one process) starts on free ports with a
temporary ``--data-dir``. A load generator in another process sends the Hipster Shop corpus
(``benchmarks/corpus.py``) over OTLP/gRPC to the agent, re-batched to ``--batch`` spans per
request and paced to ``--rate`` spans/s (at most ``--concurrency`` requests in flight; a send
that cannot start on time is counted late, and the achieved rate is reported). It cycles the
corpus; each cycle gets its own trace and span ids (``TraceCopies``) and its own time slot
(cycle *c* starts ``c * slot`` after a base in the past, the slot longer than the corpus's 314
s), and every request names the run's own tenant (``x-orasi-tenant: soak-<run id>``), so that
counting the run's spans reads the time column alone. Nothing is retried: a refusal
(UNAVAILABLE, RESOURCE_EXHAUSTED) counts as refused, a partial success's rejected spans as
rejected, the rest of an OK answer as acknowledged, per cycle.

Every second the parent samples the ``orasi up`` process: RSS and its anonymous and file-backed
parts (``/proc/PID/smaps_rollup``), threads and CPU. After the load it samples ``--idle-seconds``
of idleness, then asks the query API for the spans of the run per cycle (from the time slots)
and compares them with what was acknowledged: every acknowledged span must be stored, nothing
more. A table every ~30 s and a summary are printed; every sample goes to
``benchmarks/results/soak-rss.csv`` and the summary to ``benchmarks/results/soak.json``.

Targets (issue 11): at 20k spans/s for 10 min, RSS ≤ 600 MiB, nothing refused, every acknowledged
span stored; RSS ≤ 350 MiB at the end of the idle period.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing.connection
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import TENANT_HEADER
from benchmarks.processes import HOST, Processes, die_with_parent, log_tail, receive, report_errors
from benchmarks.report import RESULTS, write_csv, write_json
from benchmarks.usage import cpu_seconds, memory, pressure
from orasi_common.bench.engine import Outcome, Payload, Plan, drive
from orasi_common.bench.senders import GrpcSender
from orasi_common.pdata import Signal

MIB = 1024 * 1024
MAX_LAG = 0.25
"""Seconds a send may start late; later, the time is given up (counted late) instead of caught up
in a burst, so the load stays steady and the achieved rate says what the machine allowed."""
SLOT_NS = 400 * 10**9  # at least the corpus's time span (314 s) + 60 s
TARGETS = {"max_rss_mib": 600, "idle_rss_mib": 350}
REFUSED = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
UNKNOWN = ("DEADLINE_EXCEEDED", "CANCELLED")  # may or may not have been stored
# Shared counters between the generator and the parent (spans unless said otherwise).
SENT, ACKED, REFUSED_N, REJECTED, UNKNOWN_N, FAILED, IN_FLIGHT, LATE, CYCLE = range(9)


# ───────────────────────────────────────── load generator ─────────────────────────────────────────


@dataclass(frozen=True)
class Load:
    target: str
    run_id: str
    rate: float  # spans/s
    batch: int
    seconds: float
    concurrency: int
    base_ns: int  # start of cycle 0's time slot
    timeout: float = 30.0


def cycle_key(run_id: str, cycle: int) -> int:
    """The 8 bytes XORed into cycle ``cycle``'s ids (never 0: no cycle repeats the corpus's ids)."""
    digest = hashlib.blake2b(f"{run_id}/{cycle}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def generator_main(conn: multiprocessing.connection.Connection, load: Load, stats: Any) -> None:
    die_with_parent()
    report_errors(conn, lambda: asyncio.run(_generate(conn, load, stats)))


def tenant(run_id: str) -> str:
    return f"soak-{run_id}"


def prepare(batch: int) -> tuple[list[Any], int, int]:
    """The corpus re-batched: (a copier per request, first and last time in it)."""
    from benchmarks.corpus import TraceCopies, read_requests, rebatch

    copies = [TraceCopies(request.SerializeToString()) for request in rebatch(read_requests(), batch)]
    return copies, min(c.first_ns for c in copies), max(c.last_ns for c in copies)


async def _generate(conn: multiprocessing.connection.Connection, load: Load, stats: Any) -> dict[str, Any]:
    """``orasi bench``'s load loop at ``load.rate`` spans/s, giving late time up (``MAX_LAG``);
    the corpus cycled, each cycle with its own ids and time slot (the payload's tag)."""
    copies, first_ns, last_ns = prepare(load.batch)
    slot_ns = last_ns - first_ns + 60 * 10**9
    conn.send({"ready": True, "cycle_spans": sum(c.spans for c in copies), "slot_ns": slot_ns})
    conn.recv()  # go
    sender = GrpcSender(
        load.target, Signal.TRACES, metadata=[(TENANT_HEADER, tenant(load.run_id))], timeout=load.timeout
    )
    await sender.ready(30)
    acked_per_cycle: Counter[int] = Counter()

    def payloads() -> Iterator[Payload]:
        for cycle in range(sys.maxsize):
            stats[CYCLE] = cycle
            key, shift = cycle_key(load.run_id, cycle), load.base_ns + cycle * slot_ns - first_ns
            for copier in copies:
                yield Payload(copier.copy(key, shift), copier.spans, cycle)

    def on_send(payload: Payload) -> None:
        stats[SENT] += payload.items
        stats[IN_FLIGHT] += 1

    def on_answer(payload: Payload, outcome: Outcome, latency: float) -> None:
        stats[IN_FLIGHT] -= 1
        if outcome.status is None or outcome.status == "PARTIAL_SUCCESS":
            stats[ACKED] += outcome.acked
            stats[REJECTED] += outcome.refused
            acked_per_cycle[payload.tag] += outcome.acked
            return
        name = outcome.status
        stats[REFUSED_N if name in REFUSED else UNKNOWN_N if name in UNKNOWN else FAILED] += payload.items

    plan = Plan(load.seconds, load.rate, load.concurrency, max_lag=MAX_LAG, give_up_lag=True)
    try:
        run = await drive(sender, payloads(), plan, on_send=on_send, on_answer=on_answer)
    finally:
        await sender.close()
    stats[LATE] = run.late
    latencies = sorted(latency for _, latency, _, outcome in run.answers if outcome.status is None)
    errors = Counter(o.status for *_, o in run.answers if o.status not in (None, "PARTIAL_SUCCESS"))
    return {
        "seconds": load.seconds,
        "acked_per_cycle": dict(acked_per_cycle),
        "errors": dict(errors),
        "latency_ms": {
            name: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)
            for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        }
        if latencies
        else {},
    }


# ───────────────────────────────────────── sampling ─────────────────────────────────────────


class Sampler:
    def __init__(self, pid: int, stats: Any, started: float) -> None:
        self.pid, self.stats, self.started = pid, stats, started
        self.rows: list[dict[str, Any]] = []
        self._last = (started, self._cpu(), 0)

    def _cpu(self) -> float:
        return cpu_seconds(self.pid)[self.pid]

    def sample(self, phase: str) -> dict[str, Any]:
        now, cpu, acked = time.monotonic(), self._cpu(), self.stats[ACKED]
        then, cpu_then, acked_then = self._last
        self._last = (now, cpu, acked)
        row = {
            "t": round(now - self.started, 1),
            "phase": phase,
            **{k: round(v, 1) for k, v in memory(self.pid).items()},
            "cpu_pct": round(100 * (cpu - cpu_then) / max(now - then, 1e-6), 1),
            "rate": round((acked - acked_then) / max(now - then, 1e-6)),
            "sent": self.stats[SENT],
            "acked": acked,
            "refused": self.stats[REFUSED_N],
            "in_flight": self.stats[IN_FLIGHT],
            "late": self.stats[LATE],
            "cpu_pressure": pressure("cpu"),  # other work on the machine shows here
            "io_pressure": pressure("io"),
        }
        self.rows.append(row)
        return row


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['t']:7.0f}s {row['phase']:5} rss {row['rss']:7.1f} MiB (anon {row['anon']:7.1f}, "
        f"file {row['file']:5.1f}) threads {row['threads']:3.0f}  cpu {row['cpu_pct']:5.1f} %  "
        f"rate {row['rate']:6d}/s  acked {row['acked']:>10,}  refused {row['refused']:>8,}  "
        f"stalls cpu/io {row['cpu_pressure'] or 0:4.0f}/{row['io_pressure'] or 0:2.0f} %",
        flush=True,
    )


# ───────────────────────────────────────── the lake ─────────────────────────────────────────


def query(url: str, sql: str, start: int, end: int, tenant: str) -> list[list[Any]]:
    body = json.dumps({"sql": sql, "start": start, "end": end}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", TENANT_HEADER: tenant})
    with urllib.request.urlopen(request, timeout=120) as response:
        return list(json.loads(response.read())["rows"])


def stored_per_cycle(url: str, run_id: str, base_ns: int, slot_ns: int, end_ns: int) -> dict[int, int]:
    sql = f"SELECT (start_time_unix_nano - {base_ns}) // {slot_ns} AS cycle, count(*) FROM spans GROUP BY 1"
    rows = query(url, sql, base_ns - 3600 * 10**9, end_ns, tenant(run_id))
    return {int(cycle): int(count) for cycle, count in rows}


def scrape(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """The sums of these counters (over their labels) on one admin port; {} if it does not answer."""
    text = ""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics") as answer:
            text = answer.read().decode()
    except OSError:
        pass
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.partition("{")[0].partition(" ")[0]
        if name in names:
            key = name.removeprefix("orasi_").removesuffix("_items_total")
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


COUNTERS = (
    "orasi_receiver_refused_items_total",
    "orasi_processor_refused_items_total",
    "orasi_exporter_send_failed_items_total",
    "orasi_exporter_enqueue_failed_items_total",
)
"""Refusals and failures the services count themselves (reported per service)."""
DELIVERED = "orasi_exporter_sent_items_total"
"""What the agent delivered (the gateway acknowledges a batch once the bridge has it)."""


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:12]
    tmp = Path(tempfile.mkdtemp(prefix=f"orasi-soak-{run_id}-"))
    processes = Processes(tmp)
    up = None
    try:
        up, ports = processes.orasi_up(tmp / "data")
        print(f"soak {run_id}: orasi up pid {up.pid}, data {tmp / 'data'}", flush=True)

        # Time slots: cycle c's spans lie in [base + c·slot, base + c·slot + 314 s), all in the past
        # (the generator derives the slot from the corpus; SLOT_NS bounds it).
        cycles_max = int(args.minutes * 60 * args.rate / 80_000) + 2
        base_ns = time.time_ns() - (cycles_max + 1) * SLOT_NS
        load = Load(
            target=f"{HOST}:{ports['agent.grpc']}",
            run_id=run_id,
            rate=args.rate,
            batch=args.batch,
            seconds=args.minutes * 60,
            concurrency=args.concurrency,
            base_ns=base_ns,
        )
        stats = processes.mp.Array("q", 9, lock=False)
        parent, child = processes.mp.Pipe()
        generator = processes.spawn(generator_main, child, load, stats, name="soak-load")
        ready = receive(parent, generator, 120)
        slot_ns = ready["slot_ns"]
        if slot_ns > SLOT_NS:
            raise RuntimeError("the corpus spans more time than SLOT_NS allows")
        started = time.monotonic()
        sampler = Sampler(up.pid, stats, started)
        print_row(sampler.sample("start"))
        parent.send("go")
        next_print = started + args.print_every
        result: dict[str, Any] | None = None
        while result is None:
            time.sleep(max(0.0, started + len(sampler.rows) - time.monotonic()))
            if not up.running():
                raise RuntimeError(f"orasi up exited with {up.returncode}")
            row = sampler.sample("load")
            if time.monotonic() >= next_print:
                print_row(row)
                next_print += args.print_every
            if parent.poll():
                result = receive(parent, generator, 1)
        # Drain: until the agent delivered everything it acknowledged (its log may hold a backlog,
        # e.g. after the bridge refused for a while); only then is the process idle.
        drain_from = time.monotonic()
        while time.monotonic() - drain_from < args.drain_timeout:
            delivered = scrape(ports["agent.admin"], (DELIVERED,)).get("exporter_sent", 0.0)
            if delivered >= stats[ACKED]:
                break
            time.sleep(max(0.0, started + len(sampler.rows) - time.monotonic()))
            row = sampler.sample("drain")
            if time.monotonic() >= next_print:
                print_row(row)
                next_print += args.print_every
        drain_seconds = time.monotonic() - drain_from
        load_rows = list(sampler.rows)  # the load and its backlog
        busy = [row for row in load_rows if row["phase"] == "load"]
        idle_from = time.monotonic()
        while time.monotonic() - idle_from < args.idle_seconds:
            time.sleep(max(0.0, started + len(sampler.rows) - time.monotonic()))
            row = sampler.sample("idle")
            if time.monotonic() >= next_print:
                print_row(row)
                next_print += args.print_every
        idle_row = sampler.rows[-1]
        print_row(idle_row)

        acked = {int(k): v for k, v in result["acked_per_cycle"].items()}
        url = f"http://{HOST}:{ports['bridge.query']}/api/v1/query"
        stored: dict[int, int] = {}
        deadline = time.monotonic() + args.settle_seconds
        while time.monotonic() < deadline:  # the idle period is normally long enough
            stored = stored_per_cycle(url, run_id, base_ns, slot_ns, time.time_ns() + 3600 * 10**9)
            if stored == acked:
                break
            time.sleep(2)
        after_query = memory(up.pid)
        counters = {s: scrape(ports[f"{s}.admin"], COUNTERS) for s in ("agent", "gateway", "bridge")}
        total_acked, total_stored = sum(acked.values()), sum(stored.values())
        mismatched = {c: (acked.get(c, 0), stored.get(c, 0)) for c in acked.keys() | stored.keys()}
        mismatched = {c: v for c, v in mismatched.items() if v[0] != v[1]}
        return {
            "run_id": run_id,
            "minutes": args.minutes,
            "target_rate": args.rate,
            "batch": args.batch,
            "achieved_rate": round(total_acked / result["seconds"]),
            "sent_rate": round(stats[SENT] / result["seconds"]),
            "load_seconds": round(result["seconds"], 1),
            "cycles": stats[CYCLE] + 1,
            "cycle_spans": ready["cycle_spans"],
            "sent": stats[SENT],
            "acked": total_acked,
            "refused": stats[REFUSED_N],
            "rejected": stats[REJECTED],
            "unknown": stats[UNKNOWN_N],
            "failed": stats[FAILED],
            "late_sends": stats[LATE],
            "errors": result["errors"],
            "latency_ms": result["latency_ms"],
            "drain_seconds": round(drain_seconds, 1),
            "stored": total_stored,
            "mismatched_cycles": {str(c): v for c, v in sorted(mismatched.items())},
            "rss_start_mib": load_rows[0]["rss"],
            "max_rss_mib": max(r["rss"] for r in load_rows),
            "max_anon_mib": max(r["anon"] for r in load_rows),
            "max_threads": max(r["threads"] for r in sampler.rows),
            "mean_cpu_pct": round(sum(r["cpu_pct"] for r in busy) / max(1, len(busy)), 1),
            "idle_rss_mib": idle_row["rss"],
            "idle_anon_mib": idle_row["anon"],
            "idle_threads": idle_row["threads"],
            "rss_after_lake_query_mib": round(after_query["rss"], 1),
            "service_counters": counters,
            "samples": sampler.rows,
        }
    except BaseException:
        if up is not None:
            print("orasi up said:\n" + log_tail(up))
        raise
    finally:
        processes.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(summary: dict[str, Any]) -> bool:
    s = summary
    ok = {
        "max_rss": s["max_rss_mib"] <= TARGETS["max_rss_mib"],
        "idle_rss": s["idle_rss_mib"] <= TARGETS["idle_rss_mib"],
        "refused": s["refused"] == 0,
        "stored": s["stored"] == s["acked"] and not s["mismatched_cycles"],
    }
    verdict = {key: "met" if value else "MISSED" for key, value in ok.items()}
    lines = [
        f"soak {s['run_id']}: {s['minutes']:g} min at {s['target_rate']:,.0f} spans/s: achieved "
        f"{s['achieved_rate']:,}/s acknowledged, {s['sent_rate']:,}/s sent ({s['batch']} spans per "
        f"request, {s['cycles']} corpus cycles, {s['late_sends']} late sends)",
        f"RSS at start {s['rss_start_mib']:.0f} MiB; max under load {s['max_rss_mib']:.0f} MiB "
        f"(anon {s['max_anon_mib']:.0f}), target ≤ {TARGETS['max_rss_mib']}: {verdict['max_rss']}",
        f"RSS at the end of idle {s['idle_rss_mib']:.0f} MiB (anon {s['idle_anon_mib']:.0f}, "
        f"{s['idle_threads']:.0f} threads), target ≤ {TARGETS['idle_rss_mib']}: {verdict['idle_rss']}; "
        f"after the lake query {s['rss_after_lake_query_mib']:.0f} MiB",
        f"refused {s['refused']:,}, target 0: {verdict['refused']}; rejected (partial success) "
        f"{s['rejected']:,}; unknown (timed out) {s['unknown']:,}; failed {s['failed']:,}",
        f"acknowledged {s['acked']:,}, stored {s['stored']:,}: {verdict['stored']}",
        f"orasi up CPU under load {s['mean_cpu_pct']:.0f} % of one core; max threads {s['max_threads']:.0f}",
        f"acknowledgement latency (ms) {s['latency_ms']}; "
        f"all delivered {s['drain_seconds']:.0f} s after the load",
        f"counted by the services: {s['service_counters']}",
    ]
    if s["mismatched_cycles"]:
        lines.append(f"cycles whose counts differ (acked, stored): {s['mismatched_cycles']}")
    if s["errors"]:
        lines.append(f"errors: {s['errors']}")
    print("\n" + "\n  ".join(lines))
    return all(ok.values())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="minutes of load (default 10)")
    parser.add_argument("--rate", type=float, default=20_000, help="spans/s (default 20000)")
    parser.add_argument(
        "--idle-seconds", type=float, default=60, help="seconds idle after the load (default 60)"
    )
    parser.add_argument("--batch", type=int, default=200, help="spans per request (default 200)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at most (default 64)")
    parser.add_argument(
        "--print-every", type=float, default=30, help="seconds between table rows (default 30)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600,
        help="seconds after the load to wait for the agent to deliver what it acknowledged",
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=120, help="how long the lake check waits for stored = acked"
    )
    parser.add_argument("--csv", type=Path, default=RESULTS / "soak-rss.csv", help="every sample")
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json", help="the summary")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    ok = report(summary)
    write_csv(args.csv, summary["samples"])
    write_json(args.json, {k: v for k, v in summary.items() if k != "samples"}, indent=2)
    print(f"  samples: {args.csv}; summary: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
