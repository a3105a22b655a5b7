"""Throughput and steady-load benchmark of the agent: OTLP/gRPC in → batch → OTLP/gRPC out.

Run from the repository root (everything listens and sends on 127.0.0.1 only)::

    python -m benchmarks.agent_throughput            # full: 3 rounds of 12 s phases, 20 s steady
    python -m benchmarks.agent_throughput --quick    # smoke run, about 30 s in all
    python benchmarks/agent_throughput.py --duration 15 --rounds 3

Processes (each its own interpreter, started with ``spawn``)::

    load generator ──Export(bytes)──▶ sink                        (baseline)
    load generator ──Export(bytes)──▶ orasi agent ──Export──▶ sink (agent)

* The payloads: by default the Hipster Shop corpus (``shared/corpus/``, read and re-batched by
  ``benchmarks/corpus.py``) in requests of ``--spans`` spans (865 requests of 100 spans, 2 to 6
  resources each, 28 KB on average; the last, partial one left out), sent in a cycle; with ``--data
  generated`` one built request (3 resources, 10 attributes per span, varied ids). They are
  written once to a file the generators read.
* The generator sends those bytes with raw grpc.aio unary calls (no serializer), either at full
  speed with ``--concurrency`` calls in flight, or at a fixed rate; it counts acknowledged
  requests whose answer arrived inside the measured window (after ``--warmup``).
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
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_METHOD = f"/{TRACE_SERVICE}/Export"
MARKER_KEY = "orasi.bench.span"
# KeyValue.key is field 1, wire type 2 (tag 0x0a), then the length (16) and the key itself.
MARKER = b"\x0a" + bytes([len(MARKER_KEY)]) + MARKER_KEY.encode()
MIB = 1024 * 1024
MAX_MESSAGE = 256 * MIB
RESULTS = Path(__file__).resolve().parent / "results" / "agent_throughput.json"

DEFAULT_PEER_LIMIT = 4 * MIB  # gRPC's default max receive size, and Orasi's otlp receiver default
TARGET_RATIO = 0.6
TARGET_CPU_PCT = 10.0
TARGET_RSS_MIB = 100.0


# ───────────────────────────────────────── payload ─────────────────────────────────────────


def build_request(spans: int = 100, seed: int = 7) -> bytes:
    """A serialized ExportTraceServiceRequest with ``spans`` spans, looking like real traffic."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    rng = random.Random(seed)

    def kv(key: str, value: str | int | bool) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    services = [
        ("checkout", "shop", "1.14.2"),
        ("cart", "shop", "0.9.7"),
        ("frontend", "web", "3.2.0"),
    ]
    scopes = [
        ("opentelemetry.instrumentation.flask", "0.48b0"),
        ("opentelemetry.instrumentation.requests", "0.48b0"),
    ]
    routes = ["/api/cart/{id}", "/api/checkout", "/api/products", "/api/products/{id}", "/healthz"]
    methods = ["GET", "GET", "GET", "POST", "PUT"]
    request = ExportTraceServiceRequest()
    now_ns = 1_764_000_000_000_000_000
    seq = 0
    per_resource = [
        spans // len(services) + (1 if i < spans % len(services) else 0) for i in range(len(services))
    ]
    for (service, namespace, version), count in zip(services, per_resource, strict=True):
        resource_spans = request.resource_spans.add()
        pod = f"{service}-{rng.randrange(16**8):08x}-{rng.randrange(16**5):05x}"
        resource_spans.resource.attributes.extend(
            [
                kv("service.name", service),
                kv("service.namespace", namespace),
                kv("service.version", version),
                kv("deployment.environment", "production"),
                kv("host.name", f"node-{rng.randrange(100):03d}.eu-west-1.compute.internal"),
                kv("k8s.namespace.name", namespace),
                kv("k8s.pod.name", pod),
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
                if index % 5 == 0:  # a new trace every five spans
                    trace_id, parent = rng.randbytes(16), b""
                route = rng.choice(routes)
                method = rng.choice(methods)
                code = rng.choice([200, 200, 200, 200, 201, 204, 404, 500])
                start = now_ns + rng.randrange(10**9)
                span = scope_spans.spans.add(
                    trace_id=trace_id,
                    span_id=rng.randbytes(8),
                    parent_span_id=parent,
                    name=f"{method} {route}",
                    kind=Span.SPAN_KIND_SERVER if scope_name.endswith("flask") else Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + rng.randrange(50_000, 80_000_000),
                )
                span.attributes.extend(
                    [
                        kv(MARKER_KEY, seq),
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
                seq += 1
    data = request.SerializeToString()
    if data.count(MARKER) != spans:
        raise AssertionError(f"the span marker occurs {data.count(MARKER)} times, not {spans}")
    return data


# ───────────────────────────────────── child processes ─────────────────────────────────────


def _die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def sink_main(
    ready: multiprocessing.connection.Connection, stats: Any, parent_pid: int, counting: str | int
) -> None:
    """A do-nothing OTLP/gRPC trace sink; ``stats`` = [requests, spans, bytes, largest request].

    ``counting``: spans per request (a number: nothing is read), "marker" or "scan"."""
    _die_with_parent(parent_pid)
    asyncio.run(_sink(ready, stats, counting))


async def _sink(ready: multiprocessing.connection.Connection, stats: Any, counting: str | int) -> None:
    import grpc

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ]
    )
    marker = MARKER

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        stats[0] += 1
        if isinstance(counting, int):
            stats[1] += counting
        elif counting == "marker":
            stats[1] += request.count(marker)
        else:
            stats[1] += count_spans(request)
        stats[2] += len(request)
        if len(request) > stats[3]:
            stats[3] = len(request)
        return b""

    handler = grpc.unary_unary_rpc_method_handler(export)  # no (de)serializers: raw bytes
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),)
    )
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    ready.send(port)
    await server.wait_for_termination()


def read_payloads(path: Path) -> list[bytes]:
    """The requests ``write_payloads`` wrote."""
    data, out, offset = path.read_bytes(), [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        out.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


def write_payloads(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(len(p).to_bytes(4, "little") + p for p in payloads))


def corpus_payloads(spans: int) -> list[bytes]:
    """The corpus's spans in requests of ``spans`` each (a last, partial request left out)."""
    from benchmarks import corpus

    requests = corpus.rebatch(corpus.read_requests(), spans)
    count = sum(len(ss.spans) for rs in requests[-1].resource_spans for ss in rs.scope_spans)
    if count < spans:
        requests.pop()
    return [request.SerializeToString() for request in requests]


def count_spans(request: bytes) -> int:
    """Spans in a serialized ExportTraceServiceRequest, by a native wire scan (no parse)."""
    import numpy as np

    from orasi_common.pdata import protoscan

    buf = protoscan.Buffer(request)
    top = protoscan.scan(buf, np.zeros(1, np.int64), np.array([len(request)], np.int64))
    groups = protoscan.items(buf, top, 1)
    scopes = protoscan.items(buf, groups.fields, 2)
    return len(scopes.fields.rows(2, protoscan.LEN))


@dataclass
class LoadOptions:
    target: str
    payloads: Path
    spans_per_request: int
    duration: float
    warmup: float
    concurrency: int
    rate: float | None  # requests/s; None = as fast as acknowledged
    timeout: float = 10.0


def load_main(conn: multiprocessing.connection.Connection, options: LoadOptions, parent_pid: int) -> None:
    """Send ``options.payloads`` in a cycle to ``options.target``; report the window, then the counts."""
    _die_with_parent(parent_pid)
    try:
        result = asyncio.run(_load(conn, options))
    except BaseException as error:  # report, so the parent does not wait for nothing
        conn.send({"error": f"{type(error).__name__}: {error}"})
        raise
    conn.send(result)


async def _load(conn: multiprocessing.connection.Connection, o: LoadOptions) -> dict[str, Any]:
    import grpc

    channel = grpc.aio.insecure_channel(
        o.target, options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 0)]
    )
    try:
        await asyncio.wait_for(channel.channel_ready(), 15)
        call = channel.unary_unary(EXPORT_METHOD)  # bytes in, bytes out
        payloads = read_payloads(o.payloads)
        cycle = itertools.cycle(payloads)
        clock = time.monotonic  # CLOCK_MONOTONIC: comparable with the parent's clock on Linux
        window_start = clock() + o.warmup
        window_end = window_start + o.duration
        conn.send({"window": (window_start, window_end)})
        acked = acked_in_window = 0
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        late = 0

        async def send(sent_at: float) -> None:
            nonlocal acked, acked_in_window
            try:
                await call(next(cycle), timeout=o.timeout)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                if o.rate is None:
                    await asyncio.sleep(0.01)  # do not spin on a refusing peer
                return
            done = clock()
            acked += 1
            if window_start <= done < window_end:
                acked_in_window += 1
                latencies.append(done - sent_at)

        if o.rate is None:

            async def worker() -> None:
                while (now := clock()) < window_end:
                    await send(now)

            await asyncio.gather(*(worker() for _ in range(o.concurrency)))
        else:
            interval = 1.0 / o.rate
            slots = asyncio.Semaphore(o.concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def paced(scheduled: float) -> None:
                try:
                    await send(scheduled)  # latency from the scheduled time (no coordinated omission)
                finally:
                    slots.release()

            scheduled = clock()
            while scheduled < window_end:
                delay = scheduled - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                if clock() - scheduled > interval:
                    late += 1
                task = asyncio.create_task(paced(scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                scheduled += interval
            if tasks:
                await asyncio.gather(*tasks)
        latencies.sort()
        return {
            "acked_requests_total": acked,
            "acked_requests_in_window": acked_in_window,
            "spans_per_request": o.spans_per_request,
            "window_s": o.duration,
            "errors": dict(errors),
            "late_sends": late,
            "latency_ms": _percentiles(latencies),
        }
    finally:
        await channel.close()


def _percentiles(sorted_values: list[float]) -> dict[str, float] | None:
    if not sorted_values:
        return None

    def at(q: float) -> float:
        return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)}


# ───────────────────────────────────────── parent ──────────────────────────────────────────


class Processes:
    """Everything this run started, stopped by PID (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self) -> None:
        self._started: list[multiprocessing.process.BaseProcess | subprocess.Popen[bytes]] = []

    def add(self, process: Any) -> None:
        self._started.append(process)

    def stop(self, process: Any, grace: float = 15.0) -> None:
        if process in self._started:
            self._started.remove(process)
        if isinstance(process, subprocess.Popen):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(5)
            return
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
            process.join(grace)
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                process.join(5)

    def stop_all(self) -> None:
        for process in reversed(list(self._started)):
            with contextlib.suppress(Exception):
                self.stop(process, grace=10.0)


@dataclass
class Sink:
    process: multiprocessing.process.BaseProcess
    port: int
    stats: Any

    @property
    def spans(self) -> int:
        return int(self.stats[1])

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": int(self.stats[0]),
            "spans": int(self.stats[1]),
            "bytes": int(self.stats[2]),
            "largest_request_bytes": int(self.stats[3]),
        }


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path
    config: Path

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def metrics(self) -> dict[str, float]:
        """The agent's own counters of accepted and sent spans (from its /metrics)."""
        url = f"http://{HOST}:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for name in (
            "orasi_receiver_accepted_items_total",
            "orasi_exporter_sent_items_total",
            "orasi_exporter_send_failed_items_total",
            "orasi_receiver_refused_items_total",
        ):
            total = 0.0
            for match in re.finditer(rf'^{name}\{{[^}}]*signal="traces"[^}}]*\}} (\S+)$', text, re.M):
                total += float(match.group(1))
            out[name.removeprefix("orasi_").removesuffix("_total")] = total
        return out


@dataclass
class Bench:
    args: argparse.Namespace
    payloads: list[bytes]
    spans_per_request: int
    processes: Processes = field(default_factory=Processes)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orasi-bench-")))

    def __post_init__(self) -> None:
        self.mp = multiprocessing.get_context("spawn")
        self.payload_file = self.workdir / "payloads.bin"
        write_payloads(self.payload_file, self.payloads)

    # ── starting things ──

    def start_sink(self, *, count: bool = True) -> Sink:
        """A sink; ``count``: count the spans it gets (behind the agent), else take every
        request to hold ``spans_per_request`` (sent to directly: it does nothing)."""
        stats = self.mp.RawArray("q", 4)
        receive, send = self.mp.Pipe(duplex=False)
        counting: str | int = self.spans_per_request
        if count:
            counting = "marker" if self.args.data == "generated" else "scan"
        process = self.mp.Process(
            target=sink_main, args=(send, stats, os.getpid(), counting), name="bench-sink", daemon=True
        )
        process.start()
        self.processes.add(process)
        send.close()
        if not receive.poll(30):
            raise RuntimeError("the sink did not start within 30 s")
        return Sink(process, int(receive.recv()), stats)

    def start_agent(self, sink_port: int, tag: str, queue: str | None = None) -> Agent:
        """An agent as examples/agent.yaml batches; with ``queue`` ("memory" or "wal") the
        durable-pipeline shape instead: no batch processor, the exporter's queue in memory or in
        a write-ahead log (acknowledged after fsync)."""
        port, admin_port = _free_port(), _free_port()
        config = self.workdir / f"agent-{tag}.yaml"
        template = AGENT_CONFIG if queue is None else QUEUE_AGENT_CONFIG
        storage = (
            f"storage: {{directory: {self.workdir / ('wal-' + tag)}, durable: true}}"
            if queue == "wal"
            else ""
        )
        config.write_text(
            template.format(
                host=HOST,
                port=port,
                admin_port=admin_port,
                sink_port=sink_port,
                compression=self.args.compression,
                storage=storage,
            )
        )
        log = self.workdir / f"agent-{tag}.log"
        orasi = shutil.which("orasi", path=str(Path(sys.executable).parent)) or shutil.which("orasi")
        command = [orasi] if orasi else [sys.executable, "-m", "orasi_common.cli"]
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [*command, "agent", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # this process runs no threads of its own
            )
        self.processes.add(process)
        agent = Agent(process, port, admin_port, log, config)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the agent exited with {process.returncode}:\n{agent.log_tail()}")
            if _ready(admin_port):
                return agent
            time.sleep(0.1)
        raise RuntimeError(f"the agent was not ready within 30 s:\n{agent.log_tail()}")

    def run_load(
        self,
        target_port: int,
        watch: dict[str, int],
        *,
        duration: float,
        rate: float | None,
        profile_tag: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run one generator process; sample ``watch`` (name → pid) during its window.

        With ``--profile DIR`` and a ``profile_tag``, py-spy records the agent over the window.
        """
        options = LoadOptions(
            target=f"{HOST}:{target_port}",
            payloads=self.payload_file,
            spans_per_request=self.spans_per_request,
            duration=duration,
            warmup=self.args.warmup,
            concurrency=self.args.concurrency,
            rate=rate,
        )
        receive, send = self.mp.Pipe(duplex=False)
        process = self.mp.Process(
            target=load_main, args=(send, options, os.getpid()), name="bench-load", daemon=True
        )
        process.start()
        self.processes.add(process)
        send.close()
        spy: subprocess.Popen[bytes] | None = None
        try:
            first = _receive(receive, 30, "the load generator did not connect within 30 s")
            if "error" in first:
                raise RuntimeError(f"load generator: {first['error']}")
            assert process.pid is not None
            window_start, window_end = first["window"]
            if self.args.profile and profile_tag and "agent" in watch:
                spy = self._start_profiler(watch["agent"], window_start, window_end, profile_tag)
            usage = sample({"generator": process.pid, **watch}, window_start, window_end, rss_of=set(watch))
            result = _receive(receive, options.timeout + 30, "the load generator did not finish")
            if "error" in result:
                raise RuntimeError(f"load generator: {result['error']}")
        finally:
            self.processes.stop(process)
            if spy is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)
                self.processes.stop(spy)
        return result, usage

    def _start_profiler(self, pid: int, start: float, end: float, tag: str) -> subprocess.Popen[bytes] | None:
        """``py-spy record`` of ``pid`` from ``start`` to ``end`` (collapsed stacks; inflates CPU)."""
        spy = shutil.which("py-spy")
        if spy is None:
            print("  (--profile: py-spy is not installed; pip install py-spy)", flush=True)
            return None
        if (delay := start - time.monotonic()) > 0:
            time.sleep(delay)
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"agent-{tag}.txt"
        process = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(end - start))),
                "--rate",
                "100",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.add(process)
        return process

    # ── phases ──

    def baseline(self) -> dict[str, Any]:
        sink = self.start_sink(count=False)
        try:
            load, usage = self.run_load(
                sink.port, {"sink": _pid(sink.process)}, duration=self.args.duration, rate=None
            )
            received = _settle(sink, load["acked_requests_total"] * self.spans_per_request, timeout=5)
        finally:
            self.processes.stop(sink.process)
        return _phase("baseline", load, usage, {"sink": received})

    def agent(self, tag: str, queue: str | None = None) -> dict[str, Any]:
        sink = self.start_sink()
        agent: Agent | None = None
        try:
            agent = self.start_agent(sink.port, tag, queue)
            watch = {"agent": agent.process.pid, "sink": _pid(sink.process)}
            load, usage = self.run_load(
                agent.port, watch, duration=self.args.duration, rate=None, profile_tag=f"throughput-{tag}"
            )
            return self._finish_agent_phase("agent", load, usage, sink, agent)
        finally:
            if agent is not None:
                self.processes.stop(agent.process)
            self.processes.stop(sink.process)

    def steady_baseline(self) -> dict[str, Any]:
        """The steady rate sent straight to a sink: what bare grpc.aio costs at that rate."""
        sink = self.start_sink(count=False)
        try:
            load, usage = self.run_load(
                sink.port,
                {"sink": _pid(sink.process)},
                duration=self.args.steady_duration,
                rate=self.args.rate,
            )
            received = _settle(sink, load["acked_requests_total"] * self.spans_per_request, timeout=5)
        finally:
            self.processes.stop(sink.process)
        return _phase("steady-baseline", load, usage, {"sink": received})

    def steady(self) -> dict[str, Any]:
        sink = self.start_sink()
        agent: Agent | None = None
        try:
            agent = self.start_agent(sink.port, "steady")
            time.sleep(1.0)  # let start-up work settle
            now = time.monotonic()
            idle = sample({"agent": agent.process.pid}, now, now + self.args.idle, rss_of={"agent"})
            watch = {"agent": agent.process.pid, "sink": _pid(sink.process)}
            burst: dict[str, Any] | None = None
            if self.args.burst > 0:
                burst_load, burst_usage = self.run_load(
                    agent.port, watch, duration=self.args.burst, rate=None
                )
                burst = {
                    "spans_per_s": round(
                        burst_load["acked_requests_in_window"] * self.spans_per_request / self.args.burst
                    ),
                    "agent": burst_usage["agent"],
                    "acked_requests_total": burst_load["acked_requests_total"],
                }
            load, usage = self.run_load(
                agent.port,
                watch,
                duration=self.args.steady_duration,
                rate=self.args.rate,
                profile_tag="steady",
            )
            if burst is not None:
                load["acked_requests_total"] += burst["acked_requests_total"]  # delivery counts both
            phase = self._finish_agent_phase("steady", load, usage, sink, agent)
            phase["idle"] = idle["agent"]
            phase["burst"] = burst
            return phase
        finally:
            if agent is not None:
                self.processes.stop(agent.process)
            self.processes.stop(sink.process)

    def _finish_agent_phase(
        self, name: str, load: dict[str, Any], usage: dict[str, Any], sink: Sink, agent: Agent
    ) -> dict[str, Any]:
        expected = load["acked_requests_total"] * self.spans_per_request
        received = _settle(sink, expected, timeout=10)
        own = agent.metrics()
        self.processes.stop(agent.process)  # graceful: flushes whatever is still batched
        after_shutdown = sink.snapshot()
        verification = {
            "acked_by_agent_spans_total": expected,
            "sink_spans_before_shutdown": received["spans"],
            "sink_spans_after_shutdown": after_shutdown["spans"],
            "sink_requests": after_shutdown["requests"],
            "sink_bytes": after_shutdown["bytes"],
            "sink_largest_request_bytes": after_shutdown["largest_request_bytes"],
            "agent_metrics": own,
            "agent_exit_code": agent.process.returncode,
        }
        return _phase(name, load, usage, verification)


AGENT_CONFIG = """\
# Written by benchmarks/agent_throughput.py: examples/agent.yaml's processors and exporter, on
# loopback ports, with the exporter's queue in memory (--wal measures the write-ahead log).
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{port}
        max_recv_msg_size_mib: 4
processors:
  memory_limiter:
    check_interval: 1
    limit_mib: 400
    spike_limit_mib: 80
  resource:
    detect: true
    kubernetes_mode: node
  batch:
    timeout: 0.2
    send_batch_size: 8192
    send_batch_size_mib: 3
    send_batch_max_size: 16384
exporters:
  otlp:
    endpoint: {host}:{sink_port}
    tls:
      insecure: true
    compression: {compression}
    timeout: 5
    sending_queue:
      num_consumers: 4
      max_size_mib: 64
      on_full: block
service:
  telemetry:
    logs:
      level: info
    admin:
      endpoint: {host}:{admin_port}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlp]
"""


QUEUE_AGENT_CONFIG = """\
# Written by benchmarks/agent_throughput.py --wal: the durable pipeline shape (no batch processor
# before the queue), the exporter's queue in memory or, with storage, in a write-ahead log.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{port}
        max_recv_msg_size_mib: 4
exporters:
  otlp:
    endpoint: {host}:{sink_port}
    tls:
      insecure: true
    compression: {compression}
    timeout: 5
    sending_queue:
      num_consumers: 8
      max_size_mib: 256
      on_full: block
      {storage}
service:
  telemetry:
    logs:
      level: info
    admin:
      endpoint: {host}:{admin_port}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"""


def _pid(process: multiprocessing.process.BaseProcess) -> int:
    assert process.pid is not None
    return process.pid


def _ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{admin_port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:  # refused while starting; HTTPError 503 until ready
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _receive(conn: multiprocessing.connection.Connection, timeout: float, message: str) -> dict[str, Any]:
    if not conn.poll(timeout):
        raise RuntimeError(message)
    try:
        return dict(conn.recv())
    except EOFError:
        raise RuntimeError(f"{message} (it exited)") from None


def _settle(sink: Sink, expected: int, timeout: float) -> dict[str, int]:
    """Wait until the sink has ``expected`` spans, or its count stops moving for a second."""
    deadline = time.monotonic() + timeout
    last, last_change = sink.spans, time.monotonic()
    while time.monotonic() < deadline and sink.spans < expected:
        time.sleep(0.05)
        if sink.spans != last:
            last, last_change = sink.spans, time.monotonic()
        elif time.monotonic() - last_change > 1.0:
            break
    return sink.snapshot()


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every core, every process, the kernel)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _main_thread_cpu(process: psutil.Process) -> float:
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def sample(
    pids: dict[str, int], start: float, end: float, rss_of: set[str], every: float = 1.0
) -> dict[str, Any]:
    """CPU (% of one core) and, for ``rss_of``, RSS of each process between ``start`` and ``end``.

    For processes in ``rss_of`` the share of their main thread (the event loop) is given too, and
    ``machine`` says how busy the whole machine was (up to 100 per core) and how much of that the
    watched processes do not explain (other load on a shared machine, kernel networking).
    """
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    if (delay := start - time.monotonic()) > 0:
        time.sleep(delay)
    first = {name: cpu(p) for name, p in processes.items()}
    first_main = {name: _main_thread_cpu(processes[name]) for name in rss_of}
    first_machine = _machine_busy()
    began = previous_at = time.monotonic()
    previous = dict(first)
    per_second: dict[str, list[float]] = {name: [] for name in processes}
    rss: dict[str, list[int]] = {name: [processes[name].memory_info().rss] for name in rss_of}
    while (now := time.monotonic()) < end:
        time.sleep(min(every, end - now))
        at = time.monotonic()
        for name, process in processes.items():
            used = cpu(process)
            if at - previous_at > 0.2:
                per_second[name].append(100 * (used - previous[name]) / (at - previous_at))
            previous[name] = used
            if name in rss:
                rss[name].append(process.memory_info().rss)
        previous_at = at
    machine = _machine_busy() - first_machine
    last_main = {name: _main_thread_cpu(processes[name]) for name in rss_of}
    elapsed = max(1e-9, previous_at - began)
    out: dict[str, Any] = {}
    for name in processes:
        entry: dict[str, Any] = {
            "cpu_pct_avg": round(100 * (previous[name] - first[name]) / elapsed, 1),
            "cpu_pct_max_1s": round(max(per_second[name]), 1) if per_second[name] else None,
        }
        if name in rss:
            entry["main_thread_cpu_pct_avg"] = round(100 * (last_main[name] - first_main[name]) / elapsed, 1)
            entry["rss_mib_avg"] = round(statistics.fmean(rss[name]) / MIB, 1)
            entry["rss_mib_max"] = round(max(rss[name]) / MIB, 1)
        out[name] = entry
    watched = sum(previous[name] - first[name] for name in processes)
    out["machine"] = {
        "cpus": psutil.cpu_count(),
        "busy_cpu_pct": round(100 * machine / elapsed, 1),
        "unexplained_cpu_pct": round(100 * (machine - watched) / elapsed, 1),
    }
    return out


def _phase(
    name: str, load: dict[str, Any], usage: dict[str, Any], verification: dict[str, Any]
) -> dict[str, Any]:
    requests = load["acked_requests_in_window"]
    spans_per_s = requests * load["spans_per_request"] / load["window_s"]
    receiver = usage.get("agent") or usage.get("sink") or {}
    per_request = (
        1e4 * receiver["cpu_pct_avg"] * load["window_s"] / requests if requests and receiver else None
    )
    return {
        "phase": name,
        "spans_per_s": round(spans_per_s),
        "requests_per_s": round(requests / load["window_s"], 1),
        # CPU the receiving process (agent, or the sink when it is sent to directly) spent per
        # request: less sensitive to other load than spans/s, which depends on CPU it was given.
        "receiver_cpu_us_per_request": round(per_request) if per_request is not None else None,
        "load": load,
        "usage": usage,
        "verification": verification,
    }


# ────────────────────────────────────────── report ─────────────────────────────────────────


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


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
        _print_steady(result)


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
            f"{_fmt(latency.get('p50')):>7} {_fmt(latency.get('p99')):>7} "
            f"{_fmt(agent.get('cpu_pct_avg')):>6} {_fmt(agent.get('main_thread_cpu_pct_avg')):>6} "
            f"{_fmt(usage['generator']['cpu_pct_avg']):>5} {_fmt(usage['sink']['cpu_pct_avg']):>5} "
            f"{_fmt(usage['machine']['busy_cpu_pct']):>7} {_fmt(usage['machine']['unexplained_cpu_pct']):>5} "
            f"{_fmt(agent.get('rss_mib_max'), ' MiB'):>9} {_fmt(row['receiver_cpu_us_per_request']):>6} "
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
        f"{_verdict(summary['ratio_median'] >= TARGET_RATIO)}"
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


def _print_steady(result: dict[str, Any]) -> None:
    steady = result["steady"]
    agent, load = steady["usage"]["agent"], steady["load"]
    latency = load["latency_ms"] or {}
    v = steady["verification"]
    targets = result["steady_targets"]
    print()
    print(
        f"steady {result['settings']['steady_rate_spans_per_s']:,} spans/s for {load['window_s']:g} s: "
        f"achieved {steady['spans_per_s']:,} spans/s, latency p50 {_fmt(latency.get('p50'))} ms "
        f"p99 {_fmt(latency.get('p99'))} ms, late sends {load['late_sends']}, "
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
        f"{_verdict(targets['cpu_ok'])}"
    )
    print(
        f"  agent RSS avg {agent['rss_mib_avg']} MiB, max {agent['rss_mib_max']} MiB "
        f"(target ≤ {TARGET_RSS_MIB} MiB) {_verdict(targets['rss_ok'])}"
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


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rounds = sorted({r["round"] for r in rows})
    by = {(r["round"], r["phase"]): r["spans_per_s"] for r in rows}
    ratios = [
        round(by[n, "agent"] / by[n, "baseline"], 3)
        for n in rounds
        if by.get((n, "baseline")) and (n, "agent") in by
    ]
    cost = {(r["round"], r["phase"]): r["receiver_cpu_us_per_request"] for r in rows}
    cpu_ratios = [
        round(cost[n, "baseline"] / cost[n, "agent"], 3)
        for n in rounds
        if cost.get((n, "baseline")) and cost.get((n, "agent"))
    ]
    baseline = [by[n, "baseline"] for n in rounds if (n, "baseline") in by]
    agent = [by[n, "agent"] for n in rounds if (n, "agent") in by]
    return {
        "baseline_spans_per_s_median": round(statistics.median(baseline)) if baseline else 0,
        "agent_spans_per_s_median": round(statistics.median(agent)) if agent else 0,
        "ratio_per_round": ratios,
        "ratio_median": round(statistics.median(ratios), 3) if ratios else 0.0,
        "cpu_ratio_per_round": cpu_ratios,
        "cpu_ratio_median": round(statistics.median(cpu_ratios), 3) if cpu_ratios else 0.0,
    }


# ────────────────────────────────────────── main ───────────────────────────────────────────


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
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the figures ({RESULTS})")
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


class _Abort(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payloads = corpus_payloads(args.spans) if args.data == "corpus" else [build_request(args.spans)]

    def on_signal(signum: int, _frame: Any) -> None:
        raise _Abort(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(_budget(args))
    bench = Bench(args, payloads, args.spans)
    result: dict[str, Any] = {
        "benchmark": "agent_throughput",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        },
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
        if args.wal:
            for number in range(1, args.rounds + 1):
                for queue in ("memory", "wal"):
                    print(f"round {number}/{args.rounds}: agent, queue in {queue}…", flush=True)
                    row = bench.agent(f"round{number}-{queue}", queue)
                    row["round"], row["phase"] = number, f"queue-{queue}"
                    result["throughput"].append(row)
                    print(f"  {row['spans_per_s']:,} spans/s", flush=True)
            by = {(r["round"], r["phase"]): r["spans_per_s"] for r in result["throughput"]}
            ratios = [round(by[n, "queue-wal"] / by[n, "queue-memory"], 3) for n in range(1, args.rounds + 1)]
            result["wal_summary"] = {
                "memory_spans_per_s_median": round(
                    statistics.median(by[n, "queue-memory"] for n in range(1, args.rounds + 1))
                ),
                "wal_spans_per_s_median": round(
                    statistics.median(by[n, "queue-wal"] for n in range(1, args.rounds + 1))
                ),
                "ratio_per_round": ratios,
                "ratio_median": round(statistics.median(ratios), 3),
            }
            print(json.dumps(result["wal_summary"], indent=1))
            print(f"WAL on / off throughput: {result['wal_summary']['ratio_median']:.3f} (target ≥ 0.7)")
        elif not args.skip_throughput:
            for number in range(1, args.rounds + 1):
                for phase in ("baseline", "agent"):
                    print(
                        f"round {number}/{args.rounds}: {phase} "
                        f"({args.warmup:g} s warm-up + {args.duration:g} s)…",
                        flush=True,
                    )
                    row = bench.baseline() if phase == "baseline" else bench.agent(f"round{number}")
                    row["round"] = number
                    result["throughput"].append(row)
                    print(f"  {row['spans_per_s']:,} spans/s", flush=True)
            result["summary"] = summarize(result["throughput"])
        if not args.skip_steady and not args.wal:
            rate = f"{args.rate * args.spans:,.0f} spans/s for {args.steady_duration:g} s"
            print(f"steady baseline: {rate} straight to a sink…", flush=True)
            result["steady_baseline"] = bench.steady_baseline()
            print(f"steady: {rate} through a fresh agent…", flush=True)
            result["steady"] = bench.steady()
            agent = result["steady"]["usage"]["agent"]
            result["steady_targets"] = {
                "cpu_pct_avg": agent["cpu_pct_avg"],
                "cpu_ok": agent["cpu_pct_avg"] <= TARGET_CPU_PCT,
                "rss_mib_max": agent["rss_mib_max"],
                "rss_ok": agent["rss_mib_max"] <= TARGET_RSS_MIB,
            }
    except _Abort as stop:
        print(f"agent_throughput: {stop}; stopping every process it started", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        bench.processes.stop_all()
        shutil.rmtree(bench.workdir, ignore_errors=True)
    if not args.wal:
        print_report(result)
    if args.wal and args.json == RESULTS:
        args.json = RESULTS.with_name("agent_wal.json")
    if not args.no_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
