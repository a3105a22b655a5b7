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

Isolation and cleanup: each run uses its own PostgreSQL databases (``orasi_bench_<id>_ingest``,
``_query``) and S3 prefix (``s3://orasi-telemetry-us-east-1/bench-<id>/``); both are dropped
at the end, as is the temporary directory. Every process started here is stopped by its PID in
``finally`` blocks (children also get SIGTERM if this process dies, via ``PR_SET_PDEATHSIG``),
and an alarm bounds the whole run. Only 127.0.0.1 is used.

The table goes to stdout and the figures to ``--json`` (default ``benchmarks/results/lake.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orasi_common.allocator import tune_allocators

HOST = "127.0.0.1"
S3_ENDPOINT = f"http://{HOST}:8333"
S3_REGION = "us-east-1"
BUCKET = "orasi-telemetry-us-east-1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
CATALOG_URL = "postgresql+psycopg://postgres@{host}:5432/{db}"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_METHOD = f"/{TRACE_SERVICE}/Export"
TENANT_HEADER = "x-orasi-tenant"
PROBE_KEY = "bench.probe"
MIB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results" / "lake.json"

TARGET_INGEST_RATIO = 0.25
TARGET_RED_10M_S = 1.0
TARGET_TRACE_10M_S = 0.3
TARGET_FRESHNESS_S = 2.0
# The engine's default limit is 30 s; a full-scan trace lookup over 10M spans can take longer on a
# loaded machine, and a figure is more useful than a refusal, so the benchmark allows more.
QUERY_TIMEOUT_S = 180.0

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

log = logging.getLogger("benchmarks.lake")


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ─────────────────────────────────────────── helpers ───────────────────────────────────────────


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stats_of(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "n": len(ordered),
    }


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "testkey")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testsecret")
    env.setdefault("AWS_REGION", S3_REGION)
    env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return env


def s3_filesystem() -> Any:
    import pyarrow.fs as pafs

    env = _env()
    return pafs.S3FileSystem(
        endpoint_override=f"{HOST}:8333",
        scheme="http",
        region=S3_REGION,
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
    )


# ───────────────────────────────────────── environment ─────────────────────────────────────────


class Lab:
    """This run's PostgreSQL databases, S3 prefix, temporary directory and child processes."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.prefix = f"bench-{self.run_id}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"orasi-lake-bench-{self.run_id}-"))
        self.databases: list[str] = []
        self.processes: list[subprocess.Popen[bytes] | multiprocessing.process.BaseProcess] = []
        self.keep = False

    # databases
    def database(self, suffix: str) -> str:
        import psycopg

        name = f"orasi_bench_{self.run_id}_{suffix}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return CATALOG_URL.format(host=HOST, db=name)

    def warehouse(self, part: str) -> str:
        return f"s3://{BUCKET}/{self.prefix}/{part}/warehouse"

    # processes
    def popen(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_file = open(self.tmp / log_name, "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(),
            preexec_fn=_die_with_parent,
        )
        log_file.close()
        self.processes.append(process)
        return process

    def log_tail(self, log_name: str, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.tmp / log_name).read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(
        self, process: subprocess.Popen[bytes] | multiprocessing.process.BaseProcess, grace: float = 20
    ) -> None:
        """SIGTERM by PID, then SIGKILL after ``grace`` seconds."""
        pid = process.pid
        if pid is None:
            return
        if isinstance(process, subprocess.Popen):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    process.wait(5)
        else:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                process.join(grace)
                if process.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    process.join(5)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)

    def close(self) -> None:
        for process in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop(process, grace=10)
        if self.keep:
            _say(f"--keep: left s3://{BUCKET}/{self.prefix}/, databases {self.databases}, {self.tmp}")
            return
        with contextlib.suppress(Exception):
            s3_filesystem().delete_dir(f"{BUCKET}/{self.prefix}")
        if self.databases:
            import psycopg

            with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
                for name in self.databases:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_servers() -> None:
    """Fail early, with the fix, when SeaweedFS or PostgreSQL is not there."""
    import psycopg
    import pyarrow.fs as pafs

    try:
        s3_filesystem().get_file_info(pafs.FileSelector(BUCKET))
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except Exception as error:
        raise SystemExit(
            f"the test servers are not reachable ({type(error).__name__}: {error}); "
            "start them with scripts/test-servers.sh start"
        ) from None


def lake_config(catalog_uri: str, warehouse: str, **overrides: Any) -> dict[str, Any]:
    return {
        "region": S3_REGION,
        "catalog_uri": catalog_uri,
        "warehouse": warehouse,
        "s3": {"endpoint": S3_ENDPOINT, "region": S3_REGION},
        **overrides,
    }


def make_writer(config: dict[str, Any]) -> Any:
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.writer import LakeWriter
    from orasi_common.pipeline.component import Kind, Settings
    from orasi_common.telemetry.metrics import Metrics

    settings = Settings(
        "lake", Kind.EXPORTER, "bridge", Metrics("bridge"), logging.getLogger("orasi.bench.lake")
    )
    return LakeWriter(settings, Config.model_validate(config))


def open_spans_table(config: dict[str, Any]) -> Any:
    """The pyiceberg ``orasi.spans`` table of a lake configuration (created when missing)."""
    from orasi_bridge.lake.catalog import ensure_table, open_catalog
    from orasi_bridge.lake.config import Config

    return ensure_table(open_catalog(Config.model_validate(config)), "spans")


def commit_rows(writer: Any, batch: Any) -> None:
    """One flush's commit of ``batch`` as the lake writer makes it (blocking)."""
    writer._commit("spans", {"default": [batch]}, [uuid.uuid4().hex])


@dataclass
class Bridge:
    process: subprocess.Popen[bytes]
    grpc_port: int
    query_port: int
    admin_port: int
    log_name: str


def start_bridge(
    lab: Lab, name: str, lake: dict[str, Any], timeout: float = 60, receiver_processes: int = 0
) -> Bridge:
    """``orasi bridge --config FILE`` with the otlp receiver (OTLP/gRPC served by
    ``receiver_processes`` workers; 0 = in the bridge's process), the lake exporter and the query API."""
    import yaml

    grpc_port, query_port, admin_port = free_port(), free_port(), free_port()
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {
                        "endpoint": f"{HOST}:{grpc_port}",
                        "max_recv_msg_size_mib": 16,
                        "processes": receiver_processes,
                    }
                }
            }
        },
        "processors": {"memory_limiter": {"limit_mib": 4096, "spike_limit_mib": 512}},
        "exporters": {"lake": lake},
        "extensions": {
            "query_api": {
                "endpoint": f"{HOST}:{query_port}",
                "lake": "lake",
                "limits": {"timeout": QUERY_TIMEOUT_S},
            }
        },
        "service": {
            "telemetry": {"logs": {"level": "warning"}, "admin": {"endpoint": f"{HOST}:{admin_port}"}},
            "extensions": ["query_api"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["lake"]}
            },
        },
    }
    path = lab.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_name = f"{name}.log"
    process = lab.popen([sys.executable, "-m", "orasi_common.cli", "bridge", "--config", str(path)], log_name)
    bridge = Bridge(process, grpc_port, query_port, admin_port, log_name)
    wait_http(lab, process, f"http://{HOST}:{admin_port}/readyz", log_name, timeout)
    wait_http(lab, process, f"http://{HOST}:{query_port}/api/v1/tables", log_name, timeout)
    return bridge


def wait_http(lab: Lab, process: subprocess.Popen[bytes], url: str, log_name: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{log_name}: the process exited with {process.returncode}:\n{lab.log_tail(log_name)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s:\n{lab.log_tail(log_name)}")


# ─────────────────────────────────────────── payloads ──────────────────────────────────────────

SERVICES = [
    ("frontend", "web", "3.2.0"),
    ("checkout", "shop", "1.14.2"),
    ("cart", "shop", "0.9.7"),
    ("payment", "shop", "2.0.1"),
    ("catalog", "shop", "5.1.0"),
    ("shipping", "logistics", "1.3.3"),
    ("recommendation", "ml", "0.4.0"),
    ("currency", "shop", "1.0.9"),
]
ROUTES = [
    "/api/cart/{id}",
    "/api/checkout",
    "/api/products",
    "/api/products/{id}",
    "/healthz",
    "/api/orders/{id}",
]
METHODS = ["GET", "GET", "GET", "POST", "PUT"]


def build_request(
    seed: int, spans: int = 100, services_per_request: int = 4, now_ns: int | None = None
) -> bytes:
    """A serialized ExportTraceServiceRequest of ``spans`` spans that looks like real traffic.

    ``services_per_request`` resources (10 attributes each), two scopes per resource, 10
    attributes per span, 5-span traces, 1 in 8 spans an error with an exception event.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    rng = random.Random(seed)
    now_ns = time.time_ns() if now_ns is None else now_ns

    def kv(key: str, value: str | int | bool) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    request = ExportTraceServiceRequest()
    chosen = [SERVICES[(seed + i) % len(SERVICES)] for i in range(services_per_request)]
    per_resource = [spans // len(chosen) + (1 if i < spans % len(chosen) else 0) for i in range(len(chosen))]
    scopes = [
        ("opentelemetry.instrumentation.flask", "0.48b0"),
        ("opentelemetry.instrumentation.requests", "0.48b0"),
    ]
    for (service, namespace, version), count in zip(chosen, per_resource, strict=True):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [
                kv("service.name", service),
                kv("service.namespace", namespace),
                kv("service.version", version),
                kv("deployment.environment", "production"),
                kv("host.name", f"node-{rng.randrange(100):03d}.us-east-1.compute.internal"),
                kv("k8s.namespace.name", namespace),
                kv("k8s.pod.name", f"{service}-{rng.randrange(16**8):08x}-{rng.randrange(16**5):05x}"),
                kv("telemetry.sdk.language", "python"),
                kv("telemetry.sdk.name", "opentelemetry"),
                kv("telemetry.sdk.version", "1.27.0"),
            ]
        )
        resource_spans.schema_url = "https://opentelemetry.io/schemas/1.24.0"
        split = [count // 2 + count % 2, count // 2]
        for (scope_name, scope_version), scope_count in zip(scopes, split, strict=True):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = scope_name
            scope_spans.scope.version = scope_version
            trace_id, parent = rng.randbytes(16), b""
            for index in range(scope_count):
                if index % 5 == 0:
                    trace_id, parent = rng.randbytes(16), b""
                route, method = rng.choice(ROUTES), rng.choice(METHODS)
                code = rng.choice([200, 200, 200, 200, 201, 204, 404, 500])
                start = now_ns - rng.randrange(5 * 10**9)
                span = scope_spans.spans.add(
                    trace_id=trace_id,
                    span_id=rng.randbytes(8),
                    parent_span_id=parent,
                    name=f"{method} {route}",
                    kind=Span.SPAN_KIND_SERVER if scope_name.endswith("flask") else Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + int(rng.lognormvariate(math.log(20e6), 1.0)),
                )
                span.attributes.extend(
                    [
                        kv("http.request.method", method),
                        kv("http.route", route),
                        kv("http.response.status_code", code),
                        kv("url.path", route.replace("{id}", str(rng.randrange(10**6)))),
                        kv("url.scheme", "https"),
                        kv("server.address", f"{service}.{namespace}.svc.cluster.local"),
                        kv("server.port", 8080),
                        kv(
                            "client.address",
                            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                        ),
                        kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) python-requests/2.32.3"),
                        kv("http.request.resend", index % 7 == 0),
                    ]
                )
                if code >= 500:
                    span.status.code = Status.STATUS_CODE_ERROR
                    span.status.message = "upstream returned 500"
                    event = span.events.add(name="exception", time_unix_nano=start + 1000)
                    event.attributes.extend(
                        [kv("exception.type", "RuntimeError"), kv("exception.message", "upstream failed")]
                    )
                parent = span.span_id
    return request.SerializeToString()


def probe_request(value: str) -> bytes:
    """One span whose attribute ``bench.probe`` is ``value``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="freshness-probe"))
    )
    now = time.time_ns()
    span = resource_spans.scope_spans.add().spans.add(
        trace_id=uuid.uuid4().bytes,
        span_id=os.urandom(8),
        name="probe",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1000,
    )
    span.attributes.append(KeyValue(key=PROBE_KEY, value=AnyValue(string_value=value)))
    return request.SerializeToString()


# ─────────────────────────────────────── load generator ────────────────────────────────────────


@dataclass
class LoadOptions:
    target: str
    payloads: list[bytes]
    requests: int
    concurrency: int
    tenant: str
    timeout: float = 30.0


def load_main(conn: multiprocessing.connection.Connection, options: LoadOptions) -> None:
    """Child process: send ``options.requests`` requests (cycling the pool), retrying refusals."""
    _die_with_parent()
    try:
        result = _load(conn, options)
    except BaseException as error:  # report, so the parent does not wait for nothing
        conn.send({"error": f"{type(error).__name__}: {error}"})
        raise
    conn.send(result)


def _load(conn: multiprocessing.connection.Connection, o: LoadOptions) -> dict[str, Any]:
    """``o.concurrency`` threads making blocking calls on one channel (grpc's sync stack costs
    the sender less CPU per call than grpc.aio, which leaves more of the machine to the bridge)."""
    import grpc

    with grpc.insecure_channel(
        o.target, options=[("grpc.max_send_message_length", 64 * MIB), ("grpc.so_reuseport", 0)]
    ) as channel:
        grpc.channel_ready_future(channel).result(timeout=15)
        call = channel.unary_unary(EXPORT_METHOD)  # raw bytes in and out
        metadata = ((TENANT_HEADER, o.tenant),)
        conn.send({"ready": True})
        conn.recv()  # go
        indices = iter(range(o.requests))  # next() on a shared iterator is atomic under the GIL
        retries: dict[str, int] = {}
        latencies: list[float] = []
        started_wall, started, cpu = time.time(), time.perf_counter(), time.process_time()

        def worker() -> None:
            for index in indices:
                payload = o.payloads[index % len(o.payloads)]
                while True:
                    sent = time.perf_counter()
                    try:
                        call(payload, timeout=o.timeout, metadata=metadata)
                    except grpc.RpcError as error:
                        code = error.code().name  # type: ignore[attr-defined]
                        retries[code] = retries.get(code, 0) + 1
                        if sum(retries.values()) > 10 * o.requests + 100:
                            raise
                        time.sleep(0.05)
                        continue
                    latencies.append(time.perf_counter() - sent)
                    break

        with concurrent.futures.ThreadPoolExecutor(o.concurrency) as threads:
            for done in [threads.submit(worker) for _ in range(o.concurrency)]:
                done.result()
        elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "requests": o.requests,
            "started_wall": started_wall,
            "finished_wall": started_wall + elapsed,
            "elapsed_s": elapsed,
            "cpu_s": time.process_time() - cpu,
            "retries": retries,
            "latency_ms": {
                "p50": round(latencies[len(latencies) // 2] * 1000, 2),
                "p99": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 2),
            },
        }


# ─────────────────────────────────────────── ingest ────────────────────────────────────────────


def snapshots_after(table: Any, baseline_ids: set[int]) -> list[Any]:
    table.refresh()
    return sorted(
        (s for s in table.snapshots() if s.snapshot_id not in baseline_ids), key=lambda s: s.timestamp_ms
    )


def added_records(snapshot: Any) -> int:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    return int(props.get("added-records", 0))


def bench_ingest(lab: Lab, args: argparse.Namespace, results: dict[str, Any]) -> Bridge | None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from orasi_bridge.lake.rows import otlp as rows
    from orasi_bridge.lake.schema import SPANS
    from orasi_bridge.lake.writer import CONVERT_ITEMS

    out: dict[str, Any] = results.setdefault("ingest", {})
    requests = max(1, args.ingest_spans // 100)
    spans = requests * 100
    pool = min(args.pool or requests, requests)
    _say(f"ingest: building {pool:,} distinct 100-span requests")
    with concurrent.futures.ProcessPoolExecutor(
        os.cpu_count(), mp_context=multiprocessing.get_context("spawn")
    ) as builders:
        payloads = list(builders.map(build_request, range(pool), chunksize=64))
    out["workload"] = {
        "spans": spans,
        "requests": requests,
        "spans_per_request": 100,
        "distinct_payloads": len(payloads),
        "payload_bytes_avg": int(statistics.mean(len(p) for p in payloads)),
        "attributes_per_span": 10,
        "services_per_request": 4,
    }

    # 1a/1b. The converter alone (parsing excluded; timed separately) and pyarrow's raw Parquet
    # (zstd) of the same rows to SeaweedFS and to memory, in alternating rounds so that both see
    # the same machine noise: round 0 converts every request (the rows every later step uses),
    # rounds 1 and 2 re-convert a third of them. Each figure is a median over its rounds; CPU
    # seconds (this process, all threads) are recorded too, as they move less with the noise.
    started = time.perf_counter()
    for payload in payloads:
        ExportTraceServiceRequest.FromString(payload)
    parse_s = (time.perf_counter() - started) * requests / len(payloads)
    s3 = s3_filesystem()
    convert_rates, convert_cpu, memory_rates, s3_rates, s3_cpu = [], [], [], [], []
    batches: list[Any] = []
    table = None
    size = 0
    for round_ in range(3):
        count = requests if round_ == 0 else max(1, requests // 3)
        started, cpu = time.perf_counter(), time.process_time()
        # As the writer does: requests merged (their bytes concatenated) CONVERT_ITEMS at a time.
        per_chunk = max(1, CONVERT_ITEMS // 100)
        converted = [
            rows.spans_batch(
                b"".join(payloads[i % len(payloads)] for i in range(first, min(first + per_chunk, count))),
                "default",
                S3_REGION,
            )
            for first in range(0, count, per_chunk)
        ]
        convert_rates.append(count * 100 / (time.perf_counter() - started))
        convert_cpu.append((time.process_time() - cpu) / (count * 100))
        if round_ == 0:
            batches = converted
            table = pa.Table.from_batches(batches, schema=SPANS)
        del converted
        sink = pa.BufferOutputStream()
        started = time.perf_counter()
        pq.write_table(table, sink, compression="zstd")
        memory_rates.append(spans / (time.perf_counter() - started))
        size = sink.getvalue().size
        del sink
        started, cpu = time.perf_counter(), time.process_time()
        pq.write_table(
            table, f"{BUCKET}/{lab.prefix}/raw/spans-{round_}.parquet", filesystem=s3, compression="zstd"
        )
        s3_rates.append(spans / (time.perf_counter() - started))
        s3_cpu.append((time.process_time() - cpu) / spans)
    assert table is not None
    converter_rate = statistics.median(convert_rates)
    out["converter"] = {
        "spans_per_s": converter_rate,
        "spans_per_s_rounds": convert_rates,
        "us_per_span": 1e6 / converter_rate,
        "cpu_us_per_span": statistics.median(convert_cpu) * 1e6,
        "protobuf_parse_spans_per_s": spans / parse_s,
        "arrow_bytes_per_span": table.nbytes / spans,
        "input_chunks": len(batches),
    }
    _say(f"ingest: converter {converter_rate:,.0f} spans/s")
    raw_rate = statistics.median(s3_rates)
    out["raw_parquet"] = {
        "rows_per_s": raw_rate,
        "rows_per_s_rounds": s3_rates,
        "cpu_us_per_row": statistics.median(s3_cpu) * 1e6,
        "memory_rows_per_s": statistics.median(memory_rates),
        "bytes_per_span": size / spans,
        "compression": "zstd (pyarrow default level)",
        "input": "the converter's table as produced: one chunk per request, unsorted",
    }
    _say(f"ingest: raw Parquet to S3 {raw_rate:,.0f} rows/s")

    # 1c. the lake's commit step alone, on the same rows: the writer's sort, files and commit
    catalog_uri = lab.database("ingest")
    warehouse = lab.warehouse("ingest")
    flush = {"flush_interval": args.flush_interval, "flush_size_mib": args.flush_size_mib}
    asyncio.run(_commit_alone(make_writer(lake_config(catalog_uri, warehouse)), table, out))
    writer = make_writer(lake_config(catalog_uri, warehouse, **flush))
    del table, batches
    _say(f"ingest: commit step alone {out['commit_alone']['rows_per_s']:,.0f} rows/s")

    # 1d. the exporter path in this process
    asyncio.run(_inprocess(writer, payloads, requests, out))
    _say(f"ingest: in-process lake exporter {out['lake_inprocess']['spans_per_s']:,.0f} spans/s")

    raw = out["raw_parquet"]["rows_per_s"]
    out["ratio_inprocess_vs_raw_parquet"] = out["lake_inprocess"]["spans_per_s"] / raw
    out["ratio_converter_vs_raw_parquet"] = out["converter"]["spans_per_s"] / raw
    out["target_ratio"] = TARGET_INGEST_RATIO

    # 1e. a running `orasi bridge`, fed over OTLP/gRPC from another process
    if args.no_bridge:
        return None
    bridge = start_bridge(
        lab,
        "ingest-bridge",
        lake_config(catalog_uri, warehouse, **flush),
        receiver_processes=args.receiver_processes,
    )
    bridge_requests = max(1, args.bridge_spans // 100)
    _say(
        f"ingest: bridge up (pid {bridge.process.pid}), "
        f"{args.bridge_rounds} rounds of {bridge_requests * 100:,} spans"
    )
    spans_table = open_spans_table(lake_config(catalog_uri, warehouse))
    rounds = []
    for number in range(1, args.bridge_rounds + 1):
        last = number == args.bridge_rounds
        rounds.append(_bridge_round(lab, args, bridge, spans_table, payloads, bridge_requests, profile=last))
        _say(
            f"ingest: round {number}: bridge {rounds[-1]['spans_per_s']:,.0f} spans/s committed while "
            f"loaded, {rounds[-1]['burst_spans_per_s']:,.0f} from first send to last commit, "
            f"{rounds[-1]['ack_spans_per_s']:,.0f} acknowledged"
        )
    # The median round (as the raw write's figure is the median of its rounds).
    median = sorted(rounds, key=lambda r: r["spans_per_s"])[len(rounds) // 2]
    out["lake_bridge_grpc"] = {
        **median,
        "rounds": [
            {key: r[key] for key in ("spans_per_s", "burst_spans_per_s", "ack_spans_per_s")} for r in rounds
        ],
        "receiver_processes": args.receiver_processes,
        "concurrency": args.concurrency,
        "flush_interval_s": args.flush_interval,
        "flush_size_mib": args.flush_size_mib,
    }
    out["ratio_bridge_vs_raw_parquet"] = (
        out["lake_bridge_grpc"]["spans_per_s"] / out["raw_parquet"]["rows_per_s"]
    )
    out["ratio_bridge_first_send_to_last_commit_vs_raw_parquet"] = (
        out["lake_bridge_grpc"]["burst_spans_per_s"] / out["raw_parquet"]["rows_per_s"]
    )
    out["cpu_ratio_bridge_vs_raw_parquet"] = (
        out["raw_parquet"]["cpu_us_per_row"] / out["lake_bridge_grpc"]["bridge_cpu_us_per_span"]
    )
    return bridge


def _bridge_round(
    lab: Lab,
    args: argparse.Namespace,
    bridge: Bridge,
    spans_table: Any,
    payloads: list[bytes],
    requests: int,
    profile: bool,
) -> dict[str, Any]:
    """Send ``requests`` requests (cycling ``payloads``) to the bridge from a load generator
    process, wait until the lake holds them all, and measure the rate at which spans are
    committed while the load runs (see ``steady_rate``); py-spy records the round if ``profile``
    and --profile-dir say so."""
    import psutil

    spans = requests * 100
    baseline = {s.snapshot_id for s in spans_table.snapshots()}
    bridge_ps = psutil.Process(bridge.process.pid)
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe()
    options = LoadOptions(f"{HOST}:{bridge.grpc_port}", payloads, requests, args.concurrency, "default")
    loader = context.Process(target=load_main, args=(child_conn, options), name="lake-bench-load")
    loader.start()
    lab.processes.append(loader)
    profiler = (
        _py_spy(lab, args, bridge.process.pid, "ingest-bridge", seconds=max(10, spans / 50_000))
        if profile
        else None
    )
    try:
        first = _recv(parent_conn, loader, 60)
        if "error" in first:
            raise RuntimeError(f"load generator: {first['error']}")
        cpu_before = _cpu_seconds(bridge_ps)
        parent_conn.send("go")
        load = _recv(parent_conn, loader, args.ingest_timeout)
        if "error" in load:
            raise RuntimeError(f"load generator: {load['error']}")
        deadline = time.monotonic() + args.ingest_timeout
        committed, last = 0, None
        while time.monotonic() < deadline:
            new = snapshots_after(spans_table, baseline)
            committed = sum(added_records(s) for s in new)
            if committed >= spans:
                last = new[-1]
                break
            if bridge.process.poll() is not None:
                raise RuntimeError(f"the bridge exited:\n{lab.log_tail(bridge.log_name)}")
            time.sleep(0.25)
        if last is None:
            raise RuntimeError(
                f"the bridge committed {committed} of {spans} spans within {args.ingest_timeout} s"
            )
        cpu_after = _cpu_seconds(bridge_ps)
    finally:
        lab.stop(loader)
        if profiler is not None:  # py-spy writes its profile on SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.kill(profiler.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
            lab.stop(profiler)
    total_s = last.timestamp_ms / 1000 - load["started_wall"]
    cpu_s = sum(cpu_after.values()) - sum(cpu_before.values())
    main_cpu_s = cpu_after[bridge.process.pid] - cpu_before[bridge.process.pid]
    timeline = [(s.timestamp_ms / 1000 - load["started_wall"], added_records(s)) for s in new]
    return {
        "spans_per_s": steady_rate(timeline, load["elapsed_s"]),
        "burst_spans_per_s": spans / total_s,
        "seconds_first_send_to_last_commit": total_s,
        "ack_spans_per_s": spans / load["elapsed_s"],
        "ack_seconds": load["elapsed_s"],
        "commits": len(new),
        "commit_timeline": [{"at_s": round(at, 3), "spans": count} for at, count in timeline],
        "committed_spans": committed,
        "bridge_cpu_s": cpu_s,
        "receiver_processes_cpu_s": cpu_s - main_cpu_s,
        "bridge_cpu_pct_of_core": 100 * cpu_s / total_s,
        "bridge_cpu_us_per_span": cpu_s / spans * 1e6,
        "load_generator_cpu_s": load["cpu_s"],
        "request_latency_ms": load["latency_ms"],
        "retries": load["retries"],
    }


def steady_rate(timeline: list[tuple[float, int]], load_s: float) -> float:
    """Spans committed per second while the load ran: the spans of the commits after the first,
    up to the last one made before the load ended, over the time between those commits.

    The first commit holds what arrived while nothing was committed yet (start-up), and commits
    after the load ended wait for ``flush_interval`` (the last partial buffer): neither measures
    how fast the lake takes data, so the window leaves them out.
    """
    loaded = [(at, count) for at, count in timeline if at <= load_s]
    if len(loaded) < 3:
        raise RuntimeError(
            f"only {len(loaded)} commits while the load ran (need 3): send more spans (--bridge-spans)"
        )
    return sum(count for _, count in loaded[1:]) / (loaded[-1][0] - loaded[0][0])


def _cpu_seconds(process: Any) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its children (the bridge's OTLP/gRPC
    workers), by pid."""
    return {each.pid: sum(each.cpu_times()[:2]) for each in (process, *process.children(recursive=True))}


def _recv(conn: multiprocessing.connection.Connection, process: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            message: dict[str, Any] = conn.recv()
            return message
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
    raise RuntimeError(f"{process.name} did not answer within {timeout:g} s")


async def _commit_alone(writer: Any, table: Any, out: dict[str, Any]) -> None:
    """The writer's commit (``LakeWriter._commit``: sort, Parquet files, one Iceberg commit) of
    the converter's rows, with the sort also timed alone."""
    from orasi_bridge.lake.files import sort_rows
    from orasi_bridge.lake.schema import SPANS

    batches = table.to_batches()
    await writer.start()
    try:
        started = time.perf_counter()
        sort_rows(batches, SPANS)
        sort_s = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.to_thread(writer._commit, "spans", {"default": batches}, [uuid.uuid4().hex])
        commit_s = time.perf_counter() - started
    finally:
        await writer.shutdown()
    rows = table.num_rows
    out["commit_alone"] = {
        "rows_per_s": rows / commit_s,
        "sort_s": sort_s,
        "sort_rows_per_s": rows / sort_s,
        "commit_s": commit_s,
        "write_and_commit_s": commit_s - sort_s,
        "input_chunks": len(batches),
    }


async def _inprocess(writer: Any, payloads: list[bytes], requests: int, out: dict[str, Any]) -> None:
    from orasi_common.errors import Throttled
    from orasi_common.pdata import Batch, Signal

    await writer.start()
    try:
        throttled = 0
        started, cpu = time.perf_counter(), time.process_time()
        for index in range(requests):
            while True:
                batch = Batch.from_serialized(Signal.TRACES, payloads[index % len(payloads)], tenant="inproc")
                try:
                    await writer.consume(batch)
                    break
                except Throttled:
                    throttled += 1
                    await asyncio.sleep(0.05)
        consumed = time.perf_counter()
        await writer.flush()
        finished, cpu = time.perf_counter(), time.process_time() - cpu
    finally:
        await writer.shutdown()
    spans = requests * 100
    out["lake_inprocess"] = {
        "spans_per_s": spans / (finished - started),
        "seconds": finished - started,
        "consume_s": consumed - started,
        "consume_spans_per_s": spans / (consumed - started),
        "final_flush_s": finished - consumed,
        "cpu_us_per_span": cpu / spans * 1e6,
        "commits": _counter(writer, "_commits"),
        "throttled": throttled,
    }


def _counter(component: Any, name: str) -> int | None:
    """The value of a component's Prometheus counter child (None when it is not there)."""
    with contextlib.suppress(Exception):
        return int(getattr(component, name)._value.get())
    return None


def _py_spy(
    lab: Lab, args: argparse.Namespace, pid: int, name: str, seconds: float
) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of ``pid`` for ``seconds`` into --profile-dir, when asked.

    Raw collapsed stacks, one file per profile. ``--profile-gil`` samples only the thread that
    holds the GIL (where Python time goes; threads waiting for the GIL are not counted).
    """
    if not args.profile_dir or shutil.which("py-spy") is None:
        return None
    target = Path(args.profile_dir) / f"{name}{'-gil' if args.profile_gil else ''}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    return lab.popen(
        [
            *(["py-spy", "record", "--gil"] if args.profile_gil else ["py-spy", "record"]),
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--format",
            "raw",
            "--threads",
            "--duration",
            str(int(seconds)),
            "--output",
            str(target),
        ],
        f"py-spy-{name}.log",
    )


# ──────────────────────────────────────── query data ───────────────────────────────────────────

N_SERVICES = 20
N_OPERATIONS = 50
SPANS_PER_TRACE = 8
SERVICE_NAMES = [
    "frontend",
    "checkout",
    "cart",
    "payment",
    "catalog",
    "shipping",
    "recommendation",
    "currency",
    "ads",
    "email",
    "auth",
    "search",
    "inventory",
    "pricing",
    "reviews",
    "notifications",
    "accounts",
    "gateway",
    "fraud",
    "loyalty",
]


class SpanFactory:
    """Vectorized synthetic spans of the lake's schema (orasi_bridge.lake.schema.SPANS)."""

    def __init__(self, seed: int, hour_start_ns: int, tenant: str) -> None:
        import numpy as np
        import pyarrow as pa

        self.np, self.pa = np, pa
        self.rng = np.random.default_rng(seed)
        self.hour_start_ns = hour_start_ns
        self.tenant = tenant
        ops = np.arange(N_OPERATIONS)
        self.op_service = ops % N_SERVICES
        verbs = ["GET", "POST", "PUT", "DELETE"]
        nouns = [
            "/api/items",
            "/api/items/{id}",
            "/api/orders",
            "/api/users/{id}",
            "/rpc/Process",
            "/rpc/Lookup",
        ]
        self.op_route = [nouns[i % len(nouns)] for i in ops]
        self.op_method = [verbs[i % len(verbs)] for i in ops]
        self.op_names = pa.array([f"{self.op_method[i]} {self.op_route[i]}" for i in ops], pa.string())
        kinds = ["SERVER", "CLIENT", "INTERNAL", "SERVER", "CONSUMER", "PRODUCER"]
        self.op_kind = pa.array([kinds[i % len(kinds)] for i in ops], pa.string())
        self.services = pa.array(SERVICE_NAMES[:N_SERVICES], pa.string())
        self.scope = pa.array([f"io.opentelemetry.{s}" for s in SERVICE_NAMES[:N_SERVICES]], pa.string())
        # Resource variants: 3 pods per service, 5 attributes each.
        keys, values = [], []
        for s in range(N_SERVICES):
            for pod in range(3):
                name = SERVICE_NAMES[s]
                pairs = [
                    ("service.name", name),
                    ("service.version", f"1.{s}.{pod}"),
                    ("deployment.environment", "production"),
                    ("host.name", f"node-{(s * 3 + pod) % 17:03d}.us-east-1.compute.internal"),
                    ("k8s.pod.name", f"{name}-{(s * 7919 + pod * 104729) % 16**8:08x}-{pod:05x}"),
                ]
                keys += [k for k, _ in pairs]
                values += [v for _, v in pairs]
        self.resource_keys = pa.array(keys, pa.string())
        self.resource_values = pa.array(values, pa.string())
        self.resource_width = 5
        self.attribute_keys = pa.array(
            [
                "http.request.method",
                "http.route",
                "http.response.status_code",
                "server.address",
                "user.id",
                "net.peer.port",
            ],
            pa.string(),
        )

    def _hex(self, count: int, width: int) -> Any:
        """``count`` random lowercase hex strings of ``width`` bytes, as an Arrow string array."""
        np, pa = self.np, self.pa
        raw = self.rng.integers(0, 256, size=(count, width), dtype=np.uint8)
        digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        text = np.empty((count, 2 * width), dtype=np.uint8)
        text[:, 0::2] = digits[raw >> 4]
        text[:, 1::2] = digits[raw & 15]
        offsets = np.arange(0, 2 * width * (count + 1), 2 * width, dtype=np.int32)
        return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))

    def table(self, rows: int) -> tuple[Any, list[str]]:
        """``rows`` spans (a whole number of traces when possible) and a few of their trace ids."""
        import pyarrow.compute as pc

        from orasi_bridge.lake.schema import EVENT, LINK, SPANS

        np, pa, rng = self.np, self.pa, self.rng
        traces = -(-rows // SPANS_PER_TRACE)
        trace_of_row = np.arange(rows) // SPANS_PER_TRACE
        position = np.arange(rows) % SPANS_PER_TRACE
        trace_ids = self._hex(traces, 16)
        trace_id = trace_ids.take(pa.array(trace_of_row))
        span_id = self._hex(rows, 8)
        parent_ids = self._hex(rows, 8)
        parent_span_id = pc.if_else(pa.array(position == 0), pa.scalar(None, pa.string()), parent_ids)
        op = rng.integers(0, N_OPERATIONS, size=rows)
        op_arrow = pa.array(op)
        service_index = self.op_service[op]
        trace_start = self.hour_start_ns + rng.integers(0, 3600 * 10**9 - 10**9, size=traces)
        start = trace_start[trace_of_row] + position * rng.integers(0, 60_000_000, size=rows)
        duration = rng.lognormal(mean=math.log(20e6), sigma=1.0, size=rows).astype(np.int64) + 1000
        error = rng.random(rows) < 0.02
        ok = rng.random(rows) < 0.1
        status = np.where(error, "ERROR", np.where(ok, "OK", "UNSET"))
        status_message = pc.if_else(
            pa.array(error), pa.scalar("internal error"), pa.scalar(None, pa.string())
        )
        # span attributes: 6 per span, interleaved key by key
        width = len(self.attribute_keys)
        methods = pa.array(self.op_method, pa.string()).take(op_arrow)
        routes = pa.array(self.op_route, pa.string()).take(op_arrow)
        codes = pa.array(np.where(error, "500", np.where(rng.random(rows) < 0.05, "404", "200")))
        servers = pa.array([f"{s}.svc.cluster.local" for s in SERVICE_NAMES[:N_SERVICES]]).take(
            pa.array(service_index)
        )
        users = pc.binary_join_element_wise(
            "user-", pc.cast(pa.array(rng.integers(0, 100_000, size=rows)), pa.string()), ""
        )
        ports = pc.cast(pa.array(rng.integers(1024, 65535, size=rows)), pa.string())
        columns = [methods, routes, codes, servers, users, ports]
        interleave = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).reshape(-1)
        values = pa.concat_arrays(
            [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        )
        attributes = pa.MapArray.from_arrays(
            pa.array(np.arange(0, width * (rows + 1), width, dtype=np.int32)),
            self.attribute_keys.take(pa.array(np.tile(np.arange(width), rows))),
            values.take(pa.array(interleave)),
            type=pa.map_(pa.string(), pa.string()),
        )
        resource = service_index * 3 + rng.integers(0, 3, size=rows)
        rw = self.resource_width
        resource_take = pa.array((resource[:, None] * rw + np.arange(rw)[None, :]).reshape(-1))
        resource_attributes = pa.MapArray.from_arrays(
            pa.array(np.arange(0, rw * (rows + 1), rw, dtype=np.int32)),
            self.resource_keys.take(resource_take),
            self.resource_values.take(resource_take),
            type=pa.map_(pa.string(), pa.string()),
        )
        empty = pa.array(np.zeros(rows + 1, dtype=np.int32))
        service_take = pa.array(service_index)
        arrays = {
            "tenant": pa.array(np.full(rows, self.tenant)),
            "region": pa.array(np.full(rows, S3_REGION)),
            "service_name": self.services.take(service_take),
            "name": self.op_names.take(op_arrow),
            "kind": self.op_kind.take(op_arrow),
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": parent_span_id,
            "trace_state": pa.nulls(rows, pa.string()),
            "flags": pa.array(np.full(rows, 256, dtype=np.int64)),
            "start_time_unix_nano": pa.array(start.astype(np.int64)),
            "end_time_unix_nano": pa.array((start + duration).astype(np.int64)),
            "duration_ns": pa.array(duration),
            "status_code": pa.array(status),
            "status_message": status_message,
            "attributes": attributes,
            "resource_attributes": resource_attributes,
            "scope_name": self.scope.take(service_take),
            "scope_version": pa.array(np.full(rows, "2.1.0")),
            "events": pa.ListArray.from_arrays(empty, pa.array([], EVENT), type=pa.list_(EVENT)),
            "links": pa.ListArray.from_arrays(empty, pa.array([], LINK), type=pa.list_(LINK)),
            "dropped_attributes_count": pa.array(np.zeros(rows, dtype=np.int64)),
            "time": pa.array((start // 1000).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
        }
        batch = pa.RecordBatch.from_arrays([arrays[f.name] for f in SPANS], schema=SPANS)
        samples = trace_ids.take(pa.array(rng.integers(0, traces, size=8))).to_pylist()
        return batch, samples


# ─────────────────────────────────────────── queries ───────────────────────────────────────────


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
            profiler = _py_spy(lab, args, bridge.process.pid, "query-bridge-trace", seconds=8)
            rest_queries(args, bridge, window, largest["trace_ids"], sizes[-1], repeat_for=7.0)
            if profiler is not None:
                profiler.wait(30)
    finally:
        lab.stop(bridge.process)


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
                _say(
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
        _say(f"query @ {size:,}: the trace lookup failed: {error}")
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
    _say(
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
            _say(f"query via REST: the trace lookup failed: {error}")
            out["trace"] = {"error": str(error)}
            return out
        out["trace"] = {
            "cold_s": cold,
            "seconds": stats_of(runs),
            "rows": len(body["rows"]),
            "server_stats": body["stats"],
        }
    _say(
        f"query @ {size:,} via REST: RED median {out['red']['seconds']['median'] * 1000:.0f} ms, "
        f"trace lookup median {out['trace']['seconds']['median'] * 1000:.0f} ms"
    )
    return out


# ────────────────────────────────────────── freshness ──────────────────────────────────────────


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
    from orasi_common.up import PORTS

    ports = {name: free_port() for name in PORTS}
    data_dir = lab.tmp / "up"
    command = [sys.executable, "-m", "orasi_common.cli", "up", "--data-dir", str(data_dir), "--host", HOST]
    for name, port in ports.items():
        command += ["--port", f"{name}={port}"]
    process = lab.popen(command, "orasi-up.log")
    _say(f"freshness: orasi up (pid {process.pid}), {args.freshness_tries} probes")
    try:
        wait_http(lab, process, f"http://{HOST}:{ports['bridge.query']}/api/v1/tables", "orasi-up.log", 60)
        wait_http(lab, process, f"http://{HOST}:{ports['agent.admin']}/readyz", "orasi-up.log", 60)
        try:
            out["orasi_up"] = measure_freshness(
                f"{HOST}:{ports['agent.grpc']}",
                f"http://{HOST}:{ports['bridge.query']}/api/v1/query",
                args.freshness_tries,
                args.poll_ms / 1000,
            )
        except RuntimeError as error:
            raise RuntimeError(f"{error}; orasi up said:\n{lab.log_tail('orasi-up.log')}") from None
        out["orasi_up"]["path"] = (
            "agent (batch 0.2 s) → gateway (batch 0.2 s) → bridge (hot rows), SQLite + local files"
        )
    finally:
        lab.stop(process)
    _say(f"freshness: orasi up median {out['orasi_up']['seconds']['median']:.3f} s")
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
        _say(f"freshness: bridge (S3 lake) median {out['bridge_s3']['seconds']['median']:.3f} s")
    out["target_s"] = TARGET_FRESHNESS_S


# ─────────────────────────────────────────── report ────────────────────────────────────────────


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(f"  {name:<52} {value:>18}  {note}")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    ingest = results.get("ingest")
    if ingest:
        lines.append(f"Ingest ({ingest['workload']['spans']:,} spans in 100-span requests)")
        row(
            "converter rows.spans_batch alone",
            f"{ingest['converter']['spans_per_s']:,.0f} spans/s",
            f"{ingest['converter']['us_per_span']:.1f} µs/span wall, "
            f"{ingest['converter']['cpu_us_per_span']:.1f} CPU",
        )
        row("protobuf parse alone", f"{ingest['converter']['protobuf_parse_spans_per_s']:,.0f} spans/s")
        row(
            "raw pyarrow Parquet zstd → SeaweedFS (same rows)",
            f"{ingest['raw_parquet']['rows_per_s']:,.0f} rows/s",
            f"{ingest['raw_parquet']['cpu_us_per_row']:.1f} µs CPU/row; "
            f"to memory {ingest['raw_parquet']['memory_rows_per_s']:,.0f} rows/s",
        )
        c = ingest["commit_alone"]
        row(
            "commit step alone: sort + Parquet files + Iceberg commit",
            f"{c['rows_per_s']:,.0f} rows/s",
            f"sort {c['sort_s']:.2f} s of {c['commit_s']:.2f} s",
        )
        i = ingest["lake_inprocess"]
        row(
            "lake exporter in-process (consume → flush → commit)",
            f"{i['spans_per_s']:,.0f} spans/s",
            f"consume {i['consume_spans_per_s']:,.0f}/s, final flush {i['final_flush_s']:.2f} s, "
            f"{i['cpu_us_per_span']:.0f} µs CPU/span",
        )
        b = ingest.get("lake_bridge_grpc")
        if b:
            row(
                f"orasi bridge over OTLP/gRPC, committed while loaded (median of {len(b['rounds'])} rounds)",
                f"{b['spans_per_s']:,.0f} spans/s",
                f"first send → last commit {b['burst_spans_per_s']:,.0f}/s, "
                f"acked {b['ack_spans_per_s']:,.0f}/s, {b['commits']} commits, "
                f"bridge {b['bridge_cpu_pct_of_core']:.0f}% of a core "
                f"({b['receiver_processes']} receiver workers: {b['receiver_processes_cpu_s']:.1f} CPU s), "
                f"{b['bridge_cpu_us_per_span']:.0f} µs CPU/span",
            )
            ratio = ingest["ratio_bridge_vs_raw_parquet"]
            row(
                "ratio bridge (while loaded) / raw Parquet",
                f"{ratio:.3f}",
                f"target ≥ {TARGET_INGEST_RATIO} {verdict(ratio >= TARGET_INGEST_RATIO)}",
            )
            row(
                "CPU-time ratio bridge / raw Parquet (per span)",
                f"{ingest['cpu_ratio_bridge_vs_raw_parquet']:.3f}",
                "raw CPU µs/row ÷ bridge CPU µs/span: less sensitive to the machine's noise",
            )
        row("ratio in-process exporter / raw Parquet", f"{ingest['ratio_inprocess_vs_raw_parquet']:.3f}")
        row("ratio converter alone / raw Parquet", f"{ingest['ratio_converter_vs_raw_parquet']:.3f}")
    query = results.get("query")
    if query:
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
    fresh = results.get("freshness")
    if fresh:
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
    return "\n".join(lines)


# ──────────────────────────────────────────── main ─────────────────────────────────────────────


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
        "--json", type=Path, default=RESULTS, help=f"where the figures go (default {RESULTS})"
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


class Budget(Exception):
    """The run went over --budget seconds."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in _env().items():
        os.environ.setdefault(name, value)
    tune_allocators()  # as `orasi` services do, so in-process figures match theirs
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_servers()

    def on_alarm(signum: int, frame: Any) -> None:
        raise Budget(f"the run took longer than --budget {args.budget:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.budget))
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
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
    _say(f"run {lab.run_id}: s3://{BUCKET}/{lab.prefix}/, databases orasi_bench_{lab.run_id}_*")
    failed: BaseException | None = None
    ingest_bridge = None
    try:
        if "ingest" in args.only:
            results["machine"]["loadavg_ingest"] = os.getloadavg()
            ingest_bridge = bench_ingest(lab, args, results)
        if "freshness" in args.only:
            results["machine"]["loadavg_freshness"] = os.getloadavg()
            bench_freshness(lab, args, results, ingest_bridge)
        if ingest_bridge is not None:
            lab.stop(ingest_bridge.process)
            ingest_bridge = None
        if "query" in args.only:
            results["machine"]["loadavg_query"] = os.getloadavg()
            bench_query(lab, args, results)
    except BaseException as error:
        failed = error
        results["error"] = f"{type(error).__name__}: {error}"
    finally:
        signal.alarm(0)
        _say("cleaning up")
        lab.close()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.time() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report(results))
    print(f"\nfigures: {args.json}   elapsed: {results['elapsed_s']:.0f} s")
    if failed is not None:
        if isinstance(failed, KeyboardInterrupt):
            return 130
        raise failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
