"""What the fault tests share: real `orasi` processes, one isolated lake each, a counting sender.

The services run as separate OS processes (``orasi agent|gateway|bridge --config FILE``) and are
stopped, killed or signalled by their own PID. Data goes in as raw OTLP/gRPC ``Export`` calls,
one request = one batch of spans whose ``seq`` attributes are unique within a test run, so the
sender knows exactly which spans were acknowledged; the lake is read back through the bridge's
query API (``POST /api/v1/query``).

The processes are ``ServiceProcess``es configured with the topology builder
(``orasi_common.topology``). Each test gets a lake of its own, the LakeSpace of the lake tests
(integration/bridge/servers.py): a PostgreSQL schema for the Iceberg SQL catalog and a warehouse
prefix on SeaweedFS. Addresses come from the environment with the defaults of
scripts/test-servers.sh:

    ORASI_TEST_S3_ENDPOINT   http://127.0.0.1:8333
    ORASI_TEST_CATALOG_URI   postgresql+psycopg://postgres@127.0.0.1:5432/orasi_test
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION   testkey / testsecret / us-east-1
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from integration.bridge.servers import AWS_ENV, LakeSpace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from orasi_common.control.registration import decode, parse_key, prefix
from orasi_common.control.registry import etcd_client
from orasi_common.testing.service_process import ServiceProcess, metric_samples
from orasi_common.topology import Ports, forwarder, service

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BATCH_ID_KEY = "x-orasi-batch-id"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` past ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError, AssertionError) as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")
        time.sleep(interval)


# --- configurations -------------------------------------------------------------------------

MEMORY_LIMITER = {"memory_limiter": {"check_interval": 1, "limit_mib": 8192}}
TRACES = ("traces",)


def bridge_config(
    lake: LakeSpace,
    ports: Ports,
    *,
    wal_dir: Path | None,
    flush_interval: float = 0.5,
    wal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OTLP in → `lake` exporter (with its write-ahead log when ``wal_dir``) + the query API."""
    lake_exporter = lake.lake_config(region=AWS_ENV["AWS_REGION"], flush_interval=flush_interval)
    if wal_dir is not None:
        lake_exporter["wal"] = {"directory": str(wal_dir), **(wal or {})}
    return service(
        ports, "otlp", MEMORY_LIMITER, "lake", lake_exporter, signals=TRACES, log_level="info", query_api=True
    )


def forwarder_config(
    upstream: str,
    ports: Ports,
    *,
    wal_dir: Path | None,
    storage: Mapping[str, Any] | None = None,
    queue: Mapping[str, Any] | None = None,
    batch: Mapping[str, Any] | None = None,
    shutdown_timeout: float = 10.0,
) -> dict[str, Any]:
    """An agent or gateway: OTLP in → (batch) → persistent sending queue → OTLP/gRPC upstream.

    Retries never give up (``max_elapsed_time: 0``): a persistent queue keeps what it accepted
    until the upstream takes it. ``batch`` adds the batch processor with that configuration.
    """
    sending_queue: dict[str, Any] = {"num_consumers": 4, "on_full": "block", "block_timeout": 0.5}
    if wal_dir is not None:
        sending_queue["storage"] = {"directory": str(wal_dir), "max_size_mib": 256, **(storage or {})}
    sending_queue.update(queue or {})
    processors: dict[str, Mapping[str, Any]] = dict(MEMORY_LIMITER)
    if batch is not None:
        processors["batch"] = dict(batch)
    exporter = forwarder(
        upstream,
        "gzip",
        timeout=5,
        retry_on_failure={"initial_interval": 0.05, "max_interval": 0.5, "max_elapsed_time": 0},
        sending_queue=sending_queue,
        shutdown_timeout=shutdown_timeout,
    )
    return service(ports, "otlp", processors, "otlp", exporter, signals=TRACES, log_level="info")


def query(
    bridge: ServiceProcess, sql: str, timeout: float = 60.0, scope: str | None = None
) -> dict[str, Any]:
    """The answer (rows, stats) of ``sql`` over the whole of the test's time range; ``scope:
    global`` asks every region of the bridge's federation (README, Federation)."""
    now = time.time_ns()
    request: dict[str, Any] = {"sql": sql, "start": now - 6 * 3600 * 10**9, "end": now + 3600 * 10**9}
    if scope is not None:
        request["scope"] = scope
    response = httpx.post(bridge.query_url + "/api/v1/query", json=request, timeout=timeout)
    assert response.status_code == 200, f"query failed: HTTP {response.status_code}: {response.text}"
    answer: dict[str, Any] = response.json()
    return answer


# --- the sender -------------------------------------------------------------------------------


def span_id(seq: int) -> bytes:
    """The span id of span ``seq`` (unique within a run; its trace id holds the run)."""
    return (seq + 1).to_bytes(8, "big")


def traces_request(run: str, seqs: Iterable[int]) -> bytes:
    """One ExportTraceServiceRequest: a span per ``seq`` (attributes run, seq), now-ish times."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(
        key="service.name", value=common_pb2.AnyValue(string_value="fault-test")
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "fault"
    now = time.time_ns()
    run_bytes = bytes.fromhex(run[:16])
    for seq in seqs:
        span = scope_spans.spans.add(
            name=f"op-{seq % 7}",
            trace_id=run_bytes + seq.to_bytes(8, "big"),
            span_id=span_id(seq),
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
            kind=2,
        )
        span.attributes.add(key="run", value=common_pb2.AnyValue(string_value=run))
        span.attributes.add(key="seq", value=common_pb2.AnyValue(int_value=seq))
    return bytes(request.SerializeToString())


@dataclass
class Outcome:
    ok: bool
    code: grpc.StatusCode | None = None
    details: str = ""


_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class SpanSender:
    """Raw OTLP/gRPC ``TraceService/Export`` calls, each carrying a stable ``x-orasi-batch-id``."""

    def __init__(self, run: str | None = None, spans_per_request: int = 20) -> None:
        self.run = run or uuid.uuid4().hex
        self.spans_per_request = spans_per_request
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.acked: set[int] = set()
        self.acked_batches: set[str] = set()
        self.attempted: set[int] = set()
        self.refusals: dict[str, int] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._payloads: dict[str, bytes] = {}  # batch id → request bytes, identical on every retry

    def next_request(self) -> tuple[str, list[int]]:
        """A new request's batch id and span seqs."""
        with self._lock:
            seqs = [next(self._seq) for _ in range(self.spans_per_request)]
            self.attempted.update(seqs)
        return uuid.uuid4().hex, seqs

    def _call(self, endpoint: str) -> Callable[..., Any]:
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                # Reconnect quickly after a restart of the process behind ``endpoint``.
                channel = self._channels[endpoint] = grpc.insecure_channel(endpoint, options=_RECONNECT)
        return channel.unary_unary(TRACE_EXPORT)

    def send(self, endpoint: str, batch_id: str, seqs: list[int], timeout: float = 10.0) -> Outcome:
        """One Export call; acknowledged seqs are recorded."""
        with self._lock:
            payload = self._payloads.setdefault(batch_id, traces_request(self.run, seqs))
        try:
            self._call(endpoint)(payload, timeout=timeout, metadata=[(BATCH_ID_KEY, batch_id)])
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            with self._lock:
                self.refusals[code.name] = self.refusals.get(code.name, 0) + 1
            return Outcome(False, code, error.details() or "")  # type: ignore[attr-defined]
        with self._lock:
            self.acked.update(seqs)
            self.acked_batches.add(batch_id)
            self._payloads.pop(batch_id, None)
        return Outcome(True)

    def send_until_acked(self, endpoint: Callable[[], str], deadline: float) -> list[int]:
        """One new request, retried (same batch id) on any failure until acknowledged."""
        batch_id, seqs = self.next_request()
        while True:
            if self.send(endpoint(), batch_id, seqs).ok:
                return seqs
            if time.monotonic() > deadline:
                raise AssertionError(f"request {batch_id} was never acknowledged; refusals {self.refusals}")
            time.sleep(0.1)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


class Load:
    """Background senders: new requests continuously; a refused request is retried with the same
    batch id until acknowledged or the load stops (then it counts as attempted, not acknowledged).
    """

    def __init__(
        self, sender: SpanSender, endpoint: Callable[[], str], threads: int = 2, pause: float = 0.0
    ) -> None:
        self.sender = sender
        self._endpoint = endpoint
        self._pause = pause
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self.requests_acked = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch_id, seqs = self.sender.next_request()
                while not self._stop.is_set():
                    if self.sender.send(self._endpoint(), batch_id, seqs, timeout=5.0).ok:
                        self.requests_acked += 1
                        break
                    self._stop.wait(0.05)
                if self._pause:
                    self._stop.wait(self._pause)
        except BaseException as error:  # reported by stop()
            self._errors.append(error)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"
        assert not self._errors, f"a load thread failed: {self._errors!r}"


# --- reading the lake back ------------------------------------------------------------------


@dataclass(frozen=True)
class LakeCount:
    """What the lake holds of a run: rows, the seqs of whole requests, and broken requests."""

    rows: int
    seqs: frozenset[int]
    partial: dict[int, tuple[int, int]]  # request number → (rows, distinct seqs) when not whole


def lake_count(bridge: ServiceProcess, sender: SpanSender) -> LakeCount:
    """Spans of the sender's run in the lake (committed + buffered), counted per request.

    A request's spans have consecutive seqs, so the query groups by request number and the answer
    stays small (one row per request) however many spans the run sent.
    """
    k = sender.spans_per_request
    rows = query(
        bridge,
        f"SELECT CAST(attributes['seq'] AS BIGINT) // {k} AS request, count(*), "
        "count(DISTINCT attributes['seq']), min(CAST(attributes['seq'] AS BIGINT)) "
        f"FROM spans WHERE attributes['run'] = '{sender.run}' GROUP BY 1",
    )["rows"]
    seqs: set[int] = set()
    partial: dict[int, tuple[int, int]] = {}
    for request, total, distinct, first in rows:
        if distinct == k and first == request * k:
            seqs.update(range(first, first + k))
        if total != k or distinct != k:
            partial[int(request)] = (int(total), int(distinct))
    return LakeCount(sum(int(row[1]) for row in rows), frozenset(seqs), partial)


def assert_exactly_once(count: LakeCount, sender: SpanSender) -> None:
    """Every acknowledged span is in the lake once; nothing else but attempted spans is."""
    missing = sorted(sender.acked - count.seqs)
    assert not missing, f"{len(missing)} acknowledged spans are missing from the lake, e.g. {missing[:20]}"
    assert not count.partial, f"requests in the lake twice or in part (rows, distinct): {count.partial}"
    duplicated = count.rows - len(count.seqs)
    assert duplicated == 0, f"{duplicated} spans are in the lake more than once"
    strangers = sorted(count.seqs - sender.attempted)
    assert not strangers, f"spans nobody sent are in the lake: {strangers[:20]}"


def wait_for_lake(bridge: ServiceProcess, sender: SpanSender, timeout: float) -> LakeCount:
    """Wait until every acknowledged span is queryable (or fail with what is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        count = lake_count(bridge, sender)
        if sender.acked <= count.seqs or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def query_stats(bridge: ServiceProcess, run: str) -> dict[str, Any]:
    """The ``stats`` of a count over ``run`` (``hot_rows``: rows still in the bridge's buffers)."""
    stats: dict[str, Any] = query(
        bridge, f"SELECT count(*) FROM spans WHERE attributes['run'] = '{run}'", 30.0
    )["stats"]
    return stats


def wait_for_commits(bridge: ServiceProcess, run: str, timeout: float) -> None:
    """Wait until nothing is left in the bridge's memory buffers (everything committed)."""
    wait_until(
        lambda: query_stats(bridge, run).get("hot_rows") == 0, timeout, "the bridge to commit its buffers"
    )


# --- etcd: registration and discovery -------------------------------------------------------

ROUTED = "orasi_loadbalancer_routed_items_total"
ENDPOINTS = "orasi_loadbalancer_endpoints"
QUEUED = "orasi_queue_size_batches"


def with_etcd(
    process: ServiceProcess, etcd_url: str, region: str, lease_ttl: int = 3, instance: str = ""
) -> ServiceProcess:
    """``process``'s configuration with the `etcd` extension (listed last, as it must be);
    ``instance`` names its registration (default: host and PID, new at every start)."""
    assert process.config is not None
    section: dict[str, Any] = {"endpoints": [etcd_url], "region": region, "lease_ttl": lease_ttl}
    if instance:
        section["instance"] = instance
    process.config.setdefault("extensions", {})["etcd"] = section
    process.config["service"].setdefault("extensions", []).append("etcd")
    return process


def balancer_config(ports: Ports, *, wal_dir: Path, protocol: str = "otlp") -> dict[str, Any]:
    """A gateway: OTLP in → `loadbalancing` over the bridges the `etcd` extension's region has
    registered, behind a persistent queue whose retries never give up."""
    exporter = {
        "protocol": protocol,
        "resolver": {"etcd": {"service": "bridge"}},
        "tls": {"insecure": True},
        "compression": "gzip",
        "circuit_breaker": {"failure_threshold": 3, "open_duration": 1},
        "endpoint_timeout": 2,
        "timeout": 10,
        "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.5, "max_elapsed_time": 0},
        "sending_queue": {
            "num_consumers": 4,
            "on_full": "block",
            "block_timeout": 0.5,
            "storage": {"directory": str(wal_dir), "max_size_mib": 256},
        },
    }
    return service(ports, "otlp", MEMORY_LIMITER, "loadbalancing", exporter, signals=TRACES, log_level="info")


ENDPOINTS_CHANGED = "Upstream endpoints changed."
BREAKER_CHANGED = "Circuit breaker of an upstream changed state."


def logged_at(record: Mapping[str, Any]) -> float:
    """When a log record was written, on this process's monotonic clock (from its ``ts``)."""
    wall = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return wall - (time.time() - time.monotonic())


def in_ring_at(gateway: ServiceProcess, endpoint: str, since: float) -> float | None:
    """When (monotonic) the gateway's ring first took ``endpoint`` after ``since``."""
    for record in gateway.logged(ENDPOINTS_CHANGED):
        at = logged_at(record)
        if at >= since and endpoint in record["endpoints"]:
            return at
    return None


def breaker_changes(gateway: ServiceProcess, endpoint: str) -> list[tuple[float, str]]:
    """When (monotonic) the gateway's breaker of ``endpoint`` changed and to what (``open``,
    ``half_open``, ``closed``), in order, as its latest start logged it."""
    return [
        (logged_at(record), str(record.get("state")))
        for record in gateway.logged(BREAKER_CHANGED)
        if record.get("endpoint") == endpoint
    ]


def routed(gateway: ServiceProcess, endpoint: str) -> float:
    """The items ``gateway``'s load balancer has delivered to ``endpoint``."""
    samples = gateway.metric_samples()
    return float(sum(v for name, labels, v in samples if name == ROUTED and labels["endpoint"] == endpoint))


def steady(gateways: ServiceProcess | Iterable[ServiceProcess], endpoint: str, seconds: float) -> bool:
    """Nothing was routed to ``endpoint`` by the gateway (or any of ``gateways``) during the same
    ``seconds``."""
    group = [gateways] if isinstance(gateways, ServiceProcess) else list(gateways)
    before = [routed(gateway, endpoint) for gateway in group]
    time.sleep(seconds)
    return [routed(gateway, endpoint) for gateway in group] == before


def etcd_call(url: str, work: Callable[[Any], Any]) -> Any:
    """``await work(client)`` with a client of the etcd at ``url``, from synchronous code."""

    async def run() -> Any:
        client = etcd_client(url)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def delete_region(url: str, region: str) -> None:
    """Remove every key of ``region`` (a test's own) from the etcd at ``url``."""

    async def delete(client: Any) -> None:
        await client.delete_prefix(f"{prefix(region).rstrip('/')}/".encode())

    etcd_call(url, delete)


@dataclass
class Sample:
    """One look at the fleet: the registered bridges (instance → otlp_grpc endpoint) as etcd
    listed them at ``listed_at``, and the gateway's routed items per endpoint and primary endpoint
    count as its /metrics answered at ``at`` (monotonic times, taken when the answers arrived)."""

    listed_at: float
    registered: dict[str, str | None]
    at: float
    routed: dict[str, float]
    endpoints: float | None


class FleetWatch:
    """Looks at the region's bridge registrations in etcd and at a gateway's load balancer every
    ``interval`` seconds, in a thread, and answers when something was first seen."""

    def __init__(self, etcd_url: str, region: str, gateway: ServiceProcess, interval: float = 0.05) -> None:
        self._url = etcd_url
        self._prefix = prefix(region, "bridge").encode()
        self._gateway = gateway
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.samples: list[Sample] = []
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> FleetWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        client = etcd_client(self._url)
        try:
            while not self._stop.is_set():
                try:
                    listing = await client.get_prefix(self._prefix)
                    listed_at = time.monotonic()
                    registered = {
                        parse_key(kv.key).instance: decode(kv.value).endpoints.otlp_grpc for kv in listing
                    }
                    samples = await asyncio.to_thread(lambda: list(metric_samples(self._gateway.admin_url)))
                    at = time.monotonic()
                except (httpx.HTTPError, OSError):
                    samples = None  # the gateway not up yet: no sample this time
                except Exception as error:  # reported by the first question asked
                    self._errors.append(error)
                    return
                if samples is not None:
                    routed = {labels["endpoint"]: v for name, labels, v in samples if name == ROUTED}
                    endpoints = next(
                        (
                            v
                            for name, labels, v in samples
                            if name == ENDPOINTS and labels["group"] == "primary"
                        ),
                        None,
                    )
                    with self._lock:
                        self.samples.append(Sample(listed_at, registered, at, routed, endpoints))
                await asyncio.sleep(self._interval)
        finally:
            await client.close()

    def _history(self) -> list[Sample]:
        assert not self._errors, f"watching the fleet failed: {self._errors!r}"
        with self._lock:
            return list(self.samples)

    def first(
        self, condition: Callable[[Sample], bool], since: float = 0.0, etcd: bool = False
    ) -> float | None:
        """When ``condition`` of the gateway's metrics (of etcd's listing, with ``etcd``) first
        held at or after ``since`` (monotonic), if it did."""
        for sample in self._history():
            at = sample.listed_at if etcd else sample.at
            if at >= since and condition(sample):
                return at
        return None

    def await_first(
        self, condition: Callable[[Sample], bool], since: float, timeout: float, what: str, etcd: bool = False
    ) -> float:
        """``first``, waiting up to ``timeout`` seconds for it."""
        found: float = wait_until(lambda: self.first(condition, since, etcd), timeout, what, interval=0.05)
        return found

    def registered_at(self, instance: str, since: float, timeout: float = 60.0) -> float:
        return self.await_first(
            lambda s: instance in s.registered, since, timeout, f"{instance} to register in etcd", etcd=True
        )

    def last_routed(self, endpoint: str) -> float | None:
        """When the gateway last delivered items to ``endpoint`` (its counter last grew), if it did."""
        last, before = None, 0.0
        for sample in self._history():
            value = sample.routed.get(endpoint, 0.0)
            if value > before:
                last, before = sample.at, value
        return last

    def routed_after(self, endpoint: str, since: float, timeout: float = 10.0) -> float:
        """When the gateway first delivered items to ``endpoint`` after ``since`` (its counter
        grew past the value it had then)."""
        before = next((s.routed.get(endpoint, 0.0) for s in reversed(self._history()) if s.at <= since), 0.0)
        return self.await_first(
            lambda s: s.routed.get(endpoint, 0.0) > before, since, timeout, f"items routed to {endpoint}"
        )
