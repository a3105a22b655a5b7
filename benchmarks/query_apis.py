"""Query APIs benchmark (issue 18): Arrow Flight SQL against the engine in-process, the Jaeger API
over 10M spans, and a federated count over three bridges. One command, side by side in one run::

    python -m benchmarks.query_apis             # 10M-span lake (built once, then cached)
    python -m benchmarks.query_apis --quick     # 1M-span lake, fewer rounds
    python -m benchmarks.query_apis --rebuild   # build the cached lake again

Lakes are local directories with a SQLite catalog (as ``orasi up`` keeps them), of the Hipster
Shop corpus repeated with fresh trace ids (``benchmarks/corpus_lake.py``), written through the
lake writer's commit path. The Jaeger/Flight lake is kept in ``--cache``
(``~/.cache/orasi-bench``); the three federation lakes live in this run's temporary directory.
Every bridge is an ``orasi bridge`` process on free ports, stopped by its PID at the end.

1. Flight SQL: ``FLIGHT_SQL`` (1M rows of the lake's scalar span columns) through the bridge's
   Flight SQL port to ADBC's DB-API (``fetch_arrow_table``), alternating with the same SQL through
   ``QueryEngine.execute(as_arrow=True)`` in this process on the same lake; rows/s both ways and
   the ratio per round. Target: ratio ≥ 0.5.
2. Jaeger: ``GET /api/traces/{id}`` for distinct trace ids and ``GET /api/traces?service=&tags=``
   searches (limit 20; the corpus's services with their commonest ``grpc.method`` / ``http.method``
   value: the corpus has no ``http.route``) over the whole lake and over its last hour (Grafana's
   default range); the first call of each kind is reported apart (cold), then p50/p95. Targets:
   trace ≤ 300 ms, search ≤ 1 s (p50).
3. Federation: three bridges (own lake and region, static peers); ``SELECT count(*) FROM spans``
   locally on each (one at a time), then the three local counts sent at once, then globally on
   the first, interleaved round by round. Target: federated ≤ 2x the slowest bridge's local time
   (medians; the local time is each bridge alone, warm). The run also reports what the target's
   comparison leaves out: the three local counts at once (the slowest of them: the three bridges
   loaded as a global query loads them, on this machine's cores) and the CPU time the bridges
   spend per global count (from /proc), over the cores: no schedule finishes the global count
   sooner than that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from benchmarks import corpus_lake
from benchmarks.lake_rig import Lab
from benchmarks.processes import HOST, free_port, wait_http
from benchmarks.report import RESULTS, machine, say, stats_of, verdict, write_json
from orasi_common.testing.service_process import ServiceProcess

FLIGHT_ROWS = 1_000_000
FLIGHT_COLUMNS = (
    "trace_id, span_id, parent_span_id, service_name, name, kind, start_time_unix_nano, "
    "end_time_unix_nano, duration_ns, status_code, time"
)
COUNT_SQL = "SELECT count(*) AS n FROM spans"
MAX_ROWS = 2_000_000
TARGET_FLIGHT_RATIO = 0.5
TARGET_TRACE_S = 0.3
TARGET_SEARCH_S = 1.0
TARGET_FEDERATION_RATIO = 2.0


def iso(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9 // 1000:06d}+00"


def flight_sql(window: tuple[int, int]) -> str:
    start, end = window
    return (
        f"SELECT {FLIGHT_COLUMNS} FROM spans WHERE time >= TIMESTAMPTZ '{iso(start)}' "
        f"AND time < TIMESTAMPTZ '{iso(end)}' LIMIT {FLIGHT_ROWS}"
    )


def start_bridge(
    lab: Lab,
    name: str,
    lake: dict[str, Any],
    query_port: int | None = None,
    flight: bool = False,
    federation: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ServiceProcess, int, int | None]:
    """An ``orasi bridge`` on ``lake`` with the query API (and Flight SQL, federation): the process,
    its REST port and its Flight SQL port."""
    query_port = query_port or free_port()
    flight_port = free_port() if flight else None
    query_api: dict[str, Any] = {
        "endpoint": f"{HOST}:{query_port}",
        "lake": "lake",
        "limits": {"timeout": 180, "max_rows": MAX_ROWS},
    }
    if flight_port:
        query_api["flight_sql"] = f"{HOST}:{flight_port}"
    if federation:
        query_api["federation"] = federation
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{HOST}:{free_port()}"}}}},
        "exporters": {"lake": lake},
        "extensions": {"query_api": query_api},
        "service": {
            "telemetry": {"logs": {"level": "warning"}, "admin": {"endpoint": f"{HOST}:{free_port()}"}},
            "extensions": ["query_api"],
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["lake"]}},
        },
    }
    service = lab.processes.service("bridge", config, name, env)
    service.wait_ready(90)
    wait_http(f"http://{HOST}:{query_port}/api/v1/tables", service, 90)
    return service, query_port, flight_port


# --- 1. Flight SQL vs in-process ----------------------------------------------------------------


def bench_flight(lab: Lab, args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    import adbc_driver_flightsql.dbapi as flightsql

    from benchmarks.lake_rig import make_writer
    from orasi_bridge.query.engine import QueryEngine, QueryLimits

    lake = corpus_lake.lake_config(Path(meta["directory"]), "local")
    sql = flight_sql(tuple(meta["window_unix_nano"]))
    bridge, _, flight_port = start_bridge(lab, "flight-bridge", lake, flight=True)
    out: dict[str, Any] = {"sql": sql, "rounds": []}

    def over_flight() -> tuple[float, int]:
        started = time.perf_counter()
        with (
            flightsql.connect(f"grpc://{HOST}:{flight_port}", autocommit=True) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
        return time.perf_counter() - started, table.num_rows

    async def side_by_side() -> None:
        reader = make_writer(lake)
        await reader.start()
        engine = QueryEngine(reader, QueryLimits(timeout=180, max_rows=MAX_ROWS))

        async def in_process() -> tuple[float, int]:
            started = time.perf_counter()
            result = await engine.execute(sql, corpus_lake.TENANT, as_arrow=True)
            assert result.arrow is not None
            return time.perf_counter() - started, result.arrow.num_rows

        try:
            say("flight: warm-up (one query each way)")
            await in_process()
            await asyncio.to_thread(over_flight)
            for index in range(args.rounds):
                local_s, local_rows = await in_process()
                flight_s, flight_rows = await asyncio.to_thread(over_flight)
                if local_rows != flight_rows or local_rows < FLIGHT_ROWS:
                    raise AssertionError(f"rows: in-process {local_rows}, Flight SQL {flight_rows}")
                record = {
                    "rows": local_rows,
                    "in_process_s": round(local_s, 3),
                    "flight_s": round(flight_s, 3),
                    "in_process_rows_per_s": round(local_rows / local_s),
                    "flight_rows_per_s": round(flight_rows / flight_s),
                    "ratio": round(local_s / flight_s, 3),
                }
                out["rounds"].append(record)
                say(
                    f"flight round {index + 1}: in-process {record['in_process_rows_per_s']:,} rows/s, "
                    f"Flight SQL {record['flight_rows_per_s']:,} rows/s, ratio {record['ratio']}"
                )
        finally:
            engine.close()
            await reader.shutdown()

    try:
        asyncio.run(side_by_side())
    finally:
        lab.processes.stop(bridge)
    rounds = out["rounds"]
    out["in_process_rows_per_s"] = statistics.median(r["in_process_rows_per_s"] for r in rounds)
    out["flight_rows_per_s"] = statistics.median(r["flight_rows_per_s"] for r in rounds)
    out["ratio_median"] = statistics.median(r["ratio"] for r in rounds)
    out["target"] = TARGET_FLIGHT_RATIO
    out["pass"] = out["ratio_median"] >= TARGET_FLIGHT_RATIO
    return out


# --- 2. Jaeger ----------------------------------------------------------------------------------


def latencies(seconds: list[float]) -> dict[str, Any]:
    """p50 and p95 (ms, nearest rank) and the count of ``seconds``."""
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000, 1)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ordered[-1] * 1000, 1), "n": len(ordered)}


def bench_jaeger(lab: Lab, args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    import httpx

    lake = corpus_lake.lake_config(Path(meta["directory"]), "local")
    bridge, port, _ = start_bridge(lab, "jaeger-bridge", lake)
    base = f"http://{HOST}:{port}"
    start_us, end_us = (t // 1000 for t in meta["window_unix_nano"])
    out: dict[str, Any] = {"spans": meta["spans"]}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:

            def get(path: str, params: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
                started = time.perf_counter()
                response = client.get(path, params=params)
                seconds = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
                return seconds, response.json()

            ids = meta["trace_ids"]
            trace_runs, spans_seen = [], []
            for index, trace_id in enumerate(ids[: args.traces + 1]):
                seconds, body = get(f"/api/traces/{trace_id}")
                spans = len(body["data"][0]["spans"])
                if index == 0:
                    out["trace_cold_ms"] = round(seconds * 1000, 1)
                    continue
                trace_runs.append(seconds)
                spans_seen.append(spans)
            out["trace"] = latencies(trace_runs) | {"spans_per_trace_median": statistics.median(spans_seen)}
            # Over the whole lake, and over its last hour (Grafana's default time range).
            windows = {"all": (start_us, end_us), "last_hour": (end_us - 3600 * 10**6, end_us)}
            for label, window in windows.items():
                runs, found = [], []
                count = args.searches if label == "all" else args.searches_hour
                if count < 0:
                    continue
                for index in range(count + 1):
                    search = meta["searches"][index % len(meta["searches"])]
                    params = {
                        "service": search["service"],
                        "tags": json.dumps({search["key"]: search["value"]}),
                        "start": window[0],
                        "end": window[1],
                        "limit": 20,
                    }
                    seconds, body = get("/api/traces", params)
                    if not body["data"]:
                        raise AssertionError(f"the search {params} found nothing")
                    if index == 0:
                        out[f"search_{label}_cold_ms"] = round(seconds * 1000, 1)
                        continue
                    runs.append(seconds)
                    found.append(len(body["data"]))
                out[f"search_{label}"] = (
                    latencies(runs) | {"traces_found_median": statistics.median(found)}
                    if runs
                    else {"p50_ms": out[f"search_{label}_cold_ms"], "p95_ms": None, "n": 0}
                )
                say(f"jaeger search over {label}: p50 {out[f'search_{label}']['p50_ms']} ms")
            out["searches"] = meta["searches"]
    finally:
        lab.processes.stop(bridge)
    out["trace"]["pass"] = out["trace"]["p50_ms"] <= TARGET_TRACE_S * 1000
    for label in ("all", "last_hour"):
        if f"search_{label}" in out:
            out[f"search_{label}"]["pass"] = out[f"search_{label}"]["p50_ms"] <= TARGET_SEARCH_S * 1000
    say(f"jaeger over {meta['spans']:,} spans: trace by id p50 {out['trace']['p50_ms']} ms")
    return out


# --- 3. Federation ------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Three bridges, each on its own lake and region, every one a coordinator of the three."""

    regions: list[str]
    ports: dict[str, int]
    bridges: dict[str, ServiceProcess]
    expected: int
    body: dict[str, Any]

    def pids(self) -> dict[str, int]:
        return {region: bridge.pid for region, bridge in self.bridges.items()}


def federation_lakes(
    lab: Lab, args: argparse.Namespace, tag: str = ""
) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """Three lakes of ``args.federation_copies`` corpus copies each, in this run's directory: the
    lake configs per region, the spans of all three, the query body's time window."""
    import pyarrow as pa

    regions = [f"bench-fed{tag}-{name}" for name in ("a", "b", "c")]
    rows = corpus_lake.corpus_rows("x")
    per_region = args.federation_copies
    first_slot = time.time_ns() - 60 * 10**9 - 3 * per_region * corpus_lake.SLOT_NS
    window = (first_slot, first_slot + 3 * per_region * corpus_lake.SLOT_NS)
    lakes = {}
    for index, region in enumerate(regions):
        mine = rows.set_column(
            rows.schema.names.index("region"), "region", pa.array([region] * rows.num_rows, pa.string())
        )
        copies = corpus_lake.Copies(mine, first_slot, seed=100 + index)
        directory = lab.tmp / region
        corpus_lake.write(directory, region, mine, copies, index * per_region, per_region, per_chunk=6)
        lakes[region] = corpus_lake.lake_config(directory, region)
    return lakes, 3 * per_region * rows.num_rows, {"sql": COUNT_SQL, "start": window[0], "end": window[1]}


def start_fleet(
    lab: Lab, lakes: dict[str, Any], expected: int, body: dict[str, Any], env: dict[str, str] | None = None
) -> Fleet:
    regions = list(lakes)
    ports = {region: free_port() for region in regions}
    peers = [{"region": region, "endpoint": f"{HOST}:{ports[region]}"} for region in regions]
    fleet = Fleet(regions, ports, {}, expected, body)
    try:
        for region in regions:
            fleet.bridges[region] = start_bridge(
                lab,
                f"bridge-{region}",
                lakes[region],
                ports[region],
                federation={"timeout": 60, "peers": peers},
                env=env,
            )[0]
    except BaseException:
        stop_fleet(lab, fleet)
        raise
    return fleet


def stop_fleet(lab: Lab, fleet: Fleet) -> None:
    for bridge in fleet.bridges.values():
        lab.processes.stop(bridge)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FleetRounds:
    """The measurements of one fleet, round by round: each bridge's local count alone, the three
    local counts sent at once (the slowest of them: the three bridges loaded as in a global
    query), the global count on the first bridge; wall times, and the CPU time the bridges spent
    (from /proc, 10 ms ticks: meaningful summed over rounds)."""

    def __init__(self, fleet: Fleet, client: Any) -> None:
        self.fleet = fleet
        self.client = client
        self.local: dict[str, list[float]] = {region: [] for region in fleet.regions}
        self.local_cpu: dict[str, float] = dict.fromkeys(fleet.regions, 0.0)
        self.concurrent: list[float] = []
        self.federated: list[float] = []
        self.federated_cpu: dict[str, float] = dict.fromkeys(fleet.regions, 0.0)
        self.regions_last: dict[str, Any] = {}
        self.stats_last: dict[str, Any] = {}

    def post(self, region: str, scope: str, client: Any = None) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = (client or self.client).post(
            f"http://{HOST}:{self.fleet.ports[region]}/api/v1/query", json={**self.fleet.body, "scope": scope}
        )
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{region} {scope}: {response.status_code} {response.text[:300]}")
        return seconds, response.json()

    def warm_up(self) -> str | None:
        for region in self.fleet.regions:  # each bridge's first query opens its tables
            self.post(region, "local")
        _, answer = self.post(self.fleet.regions[0], "global")
        if answer["rows"] != [[self.fleet.expected]]:
            raise AssertionError(
                f"federated count {answer['rows']} != {self.fleet.expected}: {answer['stats']}"
            )
        self.post(self.fleet.regions[0], "global")
        return cast(str | None, answer["stats"].get("plan"))

    def round(self, pool: Any, clients: list[Any]) -> None:
        pids = self.fleet.pids()
        for region in self.fleet.regions:
            before = cpu_seconds(pids[region])
            self.local[region].append(self.post(region, "local")[0])
            self.local_cpu[region] += cpu_seconds(pids[region]) - before
        at_once = pool.map(self.post, self.fleet.regions, ["local"] * 3, clients)
        self.concurrent.append(max(seconds for seconds, _ in at_once))
        before_all = {region: cpu_seconds(pid) for region, pid in pids.items()}
        seconds, answer = self.post(self.fleet.regions[0], "global")
        for region, pid in pids.items():
            self.federated_cpu[region] += cpu_seconds(pid) - before_all[region]
        if answer["rows"] != [[self.fleet.expected]]:
            raise AssertionError(f"federated count {answer['rows']} != {self.fleet.expected}")
        self.federated.append(seconds)
        self.regions_last = answer["stats"].get("regions", {})
        self.stats_last = {k: v for k, v in answer["stats"].items() if k != "regions"}

    def summary(self) -> dict[str, Any]:
        rounds = len(self.federated)
        out: dict[str, Any] = {
            "local_ms": {region: stats_of([s * 1000 for s in runs]) for region, runs in self.local.items()},
            "federated_ms": stats_of([s * 1000 for s in self.federated]),
            "three_local_at_once_slowest_ms": stats_of([s * 1000 for s in self.concurrent]),
            "regions_stats_last": self.regions_last,
            "coordinator_stats_last": self.stats_last,
        }
        slowest = max(statistics.median(runs) for runs in self.local.values())
        federated = statistics.median(self.federated)
        out["slowest_local_median_ms"] = round(slowest * 1000, 2)
        out["ratio"] = round(federated / slowest, 3)
        out["ratio_to_three_at_once"] = round(federated / statistics.median(self.concurrent), 3)
        # CPU: a local count's CPU on its bridge (mean over rounds, slowest bridge's region), and
        # a global count's CPU summed over the three bridges: over 2 cores, no schedule can
        # finish the global count before that sum / 2.
        local_cpu = {region: cpu / rounds * 1000 for region, cpu in self.local_cpu.items()}
        federated_cpu = sum(self.federated_cpu.values()) / rounds * 1000
        cores = os.cpu_count() or 1
        out["cpu_ms_per_local_count"] = {region: round(ms, 1) for region, ms in local_cpu.items()}
        out["cpu_ms_per_federated_count"] = {
            region: round(cpu / rounds * 1000, 1) for region, cpu in self.federated_cpu.items()
        }
        out["cpu_ms_per_federated_count_total"] = round(federated_cpu, 1)
        out["cores"] = cores
        out["cpu_floor_ms"] = round(federated_cpu / cores, 1)
        out["cpu_floor_ratio"] = round(federated_cpu / cores / (slowest * 1000), 3)
        return out


def bench_federation(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    import concurrent.futures

    import httpx

    lakes, expected, body = federation_lakes(lab, args)
    fleet = start_fleet(lab, lakes, expected, body)
    out: dict[str, Any] = {"sql": COUNT_SQL, "spans": expected, "spans_per_region": expected // 3}
    clients = [httpx.Client(timeout=120) for _ in range(3)]
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            rounds = FleetRounds(fleet, clients[0])
            out["plan"] = rounds.warm_up()
            for _ in range(args.federation_runs):
                rounds.round(pool, clients)
            out |= rounds.summary()
    finally:
        for client in clients:
            client.close()
        stop_fleet(lab, fleet)
    out["target"] = TARGET_FEDERATION_RATIO
    out["pass"] = out["ratio"] <= TARGET_FEDERATION_RATIO
    say(
        f"federation: slowest local {out['slowest_local_median_ms']:.1f} ms, federated "
        f"{out['federated_ms']['median']:.1f} ms, ratio {out['ratio']}; the three local counts at once "
        f"{out['three_local_at_once_slowest_ms']['median']:.1f} ms; CPU per global count "
        f"{out['cpu_ms_per_federated_count_total']} ms over {out['cores']} cores "
        f"(floor ratio {out['cpu_floor_ratio']})"
    )
    return out


# --- the command --------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [f"Query APIs ({results['mode']}, {results['elapsed_s']:.0f} s)"]
    f = results.get("flight")
    if f:
        lines.append(
            f"  Flight SQL, {f['rounds'][0]['rows']:,} rows: "
            f"in-process {f['in_process_rows_per_s']:,.0f} rows/s, "
            f"ADBC {f['flight_rows_per_s']:,.0f} rows/s, ratio {f['ratio_median']} "
            f"(target ≥ {TARGET_FLIGHT_RATIO}) {verdict(f['pass'])}"
        )
    j = results.get("jaeger")
    if j:
        t = j["trace"]
        lines.append(
            f"  Jaeger over {j['spans']:,} spans: trace by id p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms, "
            f"cold {j['trace_cold_ms']} ms (target ≤ 300 ms) {verdict(t['pass'])}"
        )
        for label in ("all", "last_hour"):
            if f"search_{label}" not in j:
                continue
            s = j[f"search_{label}"]
            lines.append(
                f"  Jaeger search (service + tag) over {label.replace('_', ' ')}: p50 {s['p50_ms']} ms, "
                f"p95 {s['p95_ms']} ms, cold {j[f'search_{label}_cold_ms']} ms (target ≤ 1000 ms) "
                f"{verdict(s['pass'])}"
            )
    d = results.get("federation")
    if d:
        local = ", ".join(f"{r} {v['median']:.1f}" for r, v in d["local_ms"].items())
        lines.append(
            f"  Federated count over {d['spans']:,} spans: local medians (ms) {local}; federated "
            f"{d['federated_ms']['median']:.1f} ms, ratio {d['ratio']} (target ≤ 2) {verdict(d['pass'])}"
        )
        lines.append(
            "    the three local counts at once: slowest "
            f"{d['three_local_at_once_slowest_ms']['median']:.1f} ms "
            f"(federated / that {d['ratio_to_three_at_once']}); CPU per global count "
            f"{d['cpu_ms_per_federated_count_total']} ms on {d['cores']} cores: floor "
            f"{d['cpu_floor_ms']} ms = {d['cpu_floor_ratio']}x the slowest local"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M-span lake, fewer rounds")
    parser.add_argument("--rebuild", action="store_true", help="build the cached lake again")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "orasi-bench")
    parser.add_argument("--spans", type=int, help="spans of the Jaeger/Flight lake (10M; --quick 1M)")
    parser.add_argument("--rounds", type=int, help="Flight SQL rounds (5; --quick 2)")
    parser.add_argument("--traces", type=int, help="trace lookups after the cold one (20; --quick 6)")
    parser.add_argument("--searches", type=int, help="whole-lake searches after the cold one (6; --quick 2)")
    parser.add_argument(
        "--searches-hour",
        type=int,
        help="last-hour searches after the cold one (6; --quick -1: none, that hour is the whole lake)",
    )
    parser.add_argument("--federation-copies", type=int, help="corpus copies per region (6; --quick 1)")
    parser.add_argument("--federation-runs", type=int, help="interleaved count rounds (9; --quick 5)")
    parser.add_argument("--skip", action="append", default=[], choices=["flight", "jaeger", "federation"])
    parser.add_argument("--json", type=Path, default=RESULTS / "query_apis.json")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory and logs")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "spans": 1_000_000 if quick else 10_000_000,
        "rounds": 2 if quick else 5,
        "traces": 6 if quick else 20,
        "searches": 2 if quick else 6,
        "searches_hour": -1 if quick else 6,
        "federation_copies": 1 if quick else 6,
        "federation_runs": 5 if quick else 9,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "query_apis",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "mode": "quick" if quick else "full",
        "command": "python -m benchmarks.query_apis" + (" --quick" if quick else ""),
    }
    lab = Lab()
    lab.keep = args.keep
    try:
        meta = corpus_lake.cached_lake(args.cache, args.spans, args.rebuild)
        results["lake"] = {k: v for k, v in meta.items() if k != "trace_ids"}
        if "flight" not in args.skip:
            results["flight"] = bench_flight(lab, args, meta)
        if "jaeger" not in args.skip:
            results["jaeger"] = bench_jaeger(lab, args, meta)
        if "federation" not in args.skip:
            results["federation"] = bench_federation(lab, args)
    finally:
        lab.close()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_json(args.json, results)
    print(report(results))
    say(f"results in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
