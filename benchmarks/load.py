"""Load generation for the benchmarks: requests to send, and the generator processes that send them.

Payloads: ``corpus_payloads`` (the Hipster Shop corpus re-batched, through the package's corpus
reader), ``trace_request`` (one realistic generated request; with ``marker`` every span carries
the attribute key ``orasi.bench.span`` found nowhere else, so a sink counts spans with
``bytes.count``), ``probe_request`` (one span with a unique attribute) and ``count_spans`` (a
native wire scan). Payloads reach generator processes through a file (``write_payloads``).

Generators, each in its own ``spawn``-ed process so that its CPU is not the measured process's:

* ``paced_main`` — ``orasi bench``'s load loop (``orasi_common.bench.engine``) over OTLP/gRPC raw
  bytes, at full speed or at a fixed rate, after a warm-up; it reports the measured window to
  the parent first, then the figures of the window.
* ``counted_main`` — a fixed number of requests from threads making blocking calls (grpc's sync
  stack costs the sender less CPU per call than grpc.aio, which leaves more of the machine to
  the process under test), retrying refusals: "send N, how long did it take".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import multiprocessing.connection
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import die_with_parent, report_errors
from orasi_common.bench.engine import Payload, Plan, drive, percentiles
from orasi_common.bench.senders import GrpcSender
from orasi_common.pdata import Signal

MIB = 1024 * 1024
MAX_MESSAGE = 256 * MIB
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TENANT_HEADER = "x-orasi-tenant"
MARKER_KEY = "orasi.bench.span"
# KeyValue.key is field 1, wire type 2 (tag 0x0a), then the length (16) and the key itself.
MARKER = b"\x0a" + bytes([len(MARKER_KEY)]) + MARKER_KEY.encode()
PROBE_KEY = "bench.probe"

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


# ─────────────────────────────────────────── payloads ──────────────────────────────────────────


def trace_request(
    seed: int, spans: int = 100, services: int = 4, now_ns: int | None = None, marker: bool = False
) -> bytes:
    """A serialized ExportTraceServiceRequest of ``spans`` spans that looks like real traffic.

    ``services`` resources (10 attributes each), two scopes per resource, 10 attributes per span
    (11 with ``marker``), 5-span traces, 1 in 8 spans an error with an exception event.
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
    chosen = [SERVICES[(seed + i) % len(SERVICES)] for i in range(services)]
    per_resource = [spans // len(chosen) + (1 if i < spans % len(chosen) else 0) for i in range(len(chosen))]
    scopes = [
        ("opentelemetry.instrumentation.flask", "0.48b0"),
        ("opentelemetry.instrumentation.requests", "0.48b0"),
    ]
    seq = 0
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
                if marker:
                    span.attributes.append(kv(MARKER_KEY, seq))
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
                seq += 1
    data = request.SerializeToString()
    if marker and data.count(MARKER) != spans:
        raise AssertionError(f"the span marker occurs {data.count(MARKER)} times, not {spans}")
    return data


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


def corpus_payloads(spans: int) -> list[bytes]:
    """The corpus's spans in requests of ``spans`` each (a last, partial request left out)."""
    from benchmarks import corpus

    requests = corpus.rebatch(corpus.read_requests(), spans)
    if count_spans(requests[-1].SerializeToString()) < spans:
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


def write_payloads(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(len(p).to_bytes(4, "little") + p for p in payloads))


def read_payloads(path: Path) -> list[bytes]:
    """The requests ``write_payloads`` wrote."""
    data, out, offset = path.read_bytes(), [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        out.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


# ───────────────────────────────────────── generators ─────────────────────────────────────────


@dataclass(frozen=True)
class Paced:
    target: str
    payloads: Path
    spans_per_request: int
    duration: float
    warmup: float
    concurrency: int
    rate: float | None  # requests/s; None = as fast as acknowledged
    timeout: float = 10.0
    ca_file: Path | None = None  # set: TLS, verifying the target against this CA


def paced_main(conn: multiprocessing.connection.Connection, options: Paced, parent_pid: int) -> None:
    """Send ``options.payloads`` in a cycle; report the window, then the window's figures."""
    die_with_parent(parent_pid)
    report_errors(conn, lambda: asyncio.run(_paced(conn, options)))


async def _paced(conn: multiprocessing.connection.Connection, o: Paced) -> dict[str, Any]:
    import grpc

    credentials = None if o.ca_file is None else grpc.ssl_channel_credentials(o.ca_file.read_bytes())
    options = [("grpc.so_reuseport", 0)]
    sender = GrpcSender(o.target, Signal.TRACES, timeout=o.timeout, options=options, credentials=credentials)
    try:
        await sender.ready()
        payloads = [Payload(data, o.spans_per_request) for data in read_payloads(o.payloads)]
        rate = None if o.rate is None else o.rate * o.spans_per_request
        plan = Plan(o.duration, rate, o.concurrency, warmup=o.warmup)
        started = time.monotonic()
        conn.send({"window": (started + o.warmup, started + o.warmup + o.duration)})
        run = await drive(sender, itertools.cycle(payloads), plan, started=started)
    finally:
        await sender.close()
    acked = [answer for answer in run.in_window() if answer[3].status is None]
    errors: dict[str, int] = {}
    for *_, outcome in run.answers:
        if outcome.status is not None:
            errors[outcome.status] = errors.get(outcome.status, 0) + 1
    return {
        "acked_requests_total": sum(1 for *_, outcome in run.answers if outcome.status is None),
        "acked_requests_in_window": len(acked),
        "spans_per_request": o.spans_per_request,
        "window_s": o.duration,
        "errors": errors,
        "late_sends": run.late,
        "latency_ms": percentiles(sorted(latency for _, latency, _, _ in acked)),
    }


@dataclass(frozen=True)
class Counted:
    target: str
    payloads: list[bytes]
    requests: int
    concurrency: int
    tenant: str
    timeout: float = 30.0


def counted_main(conn: multiprocessing.connection.Connection, options: Counted) -> None:
    """Send ``options.requests`` requests (cycling the pool) once the parent says go."""
    die_with_parent()
    report_errors(conn, lambda: _counted(conn, options))


def _counted(conn: multiprocessing.connection.Connection, o: Counted) -> dict[str, Any]:
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
                        code = error.code().name
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
