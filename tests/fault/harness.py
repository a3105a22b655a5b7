"""What the fault tests share: real `orasi` processes, one isolated lake each, a counting sender.

The services run as separate OS processes (``orasi agent|gateway|bridge --config FILE``) and are
stopped, killed or signalled by their own PID. Data goes in as raw OTLP/gRPC ``Export`` calls,
one request = one batch of spans whose ``seq`` attributes are unique within a test run, so the
sender knows exactly which spans were acknowledged; the lake is read back through the bridge's
query API (``POST /api/v1/query``).

Each test gets its own PostgreSQL database for the Iceberg SQL catalog (pyiceberg keys tables by
catalog name + namespace, which the bridge fixes) and its own warehouse prefix
``s3://orasi-telemetry-us-east-1/fault-<uuid>/warehouse`` on SeaweedFS. Addresses come from the
environment with the defaults of scripts/test-servers.sh:

    ORASI_TEST_S3_ENDPOINT   http://127.0.0.1:8333
    ORASI_TEST_CATALOG_URI   postgresql+psycopg://postgres@127.0.0.1:5432/orasi_test
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION   testkey / testsecret / us-east-1
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
import psycopg
import pyarrow.fs as pafs
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from prometheus_client.parser import text_string_to_metric_families
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy.engine import make_url

from orasi_common.testing.agent_process import free_port, orasi_command
from orasi_common.testing.servers import (
    AWS_ENV,
    BUCKET,
    CATALOG_URI,
    S3_ENDPOINT,
    postgres_conninfo,
    s3_filesystem,
    server_problems,
)

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BATCH_ID_KEY = "x-orasi-batch-id"
BATCH_IDS_PROPERTY = "orasi.batch-ids"  # the lake writer's snapshot summary key


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


# --- the real servers and one lake per test -------------------------------------------------


def check_servers() -> list[str]:
    """Problems with the real servers the fault tests need (empty when both answer)."""
    return server_problems()


@dataclass
class LakeSpace:
    """One test's catalog (a fresh PostgreSQL database) and warehouse prefix (on SeaweedFS)."""

    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def database(self) -> str:
        return f"orasi_fault_{self.key[:20]}"

    @property
    def catalog_uri(self) -> str:
        return make_url(CATALOG_URI).set(database=self.database).render_as_string(hide_password=False)

    @property
    def prefix(self) -> str:
        return f"{BUCKET}/fault-{self.key}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.prefix}/warehouse"

    def committed_batch_ids(self, table: str = "spans") -> list[str]:
        """Batch ids recorded in the table's Iceberg snapshot summaries (one per commit of each)."""
        catalog = SqlCatalog(
            "orasi",
            uri=self.catalog_uri,
            warehouse=self.warehouse,
            **{
                "s3.endpoint": S3_ENDPOINT,
                "s3.region": AWS_ENV["AWS_REGION"],
                "s3.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
                "s3.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            },
        )
        try:
            ids: list[str] = []
            for snapshot in catalog.load_table(f"orasi.{table}").snapshots():
                summary = snapshot.summary.additional_properties if snapshot.summary else {}
                if summary.get(BATCH_IDS_PROPERTY):
                    ids.extend(summary[BATCH_IDS_PROPERTY].split(","))
            return ids
        finally:
            catalog.close()

    def create(self) -> None:
        with psycopg.connect(postgres_conninfo("postgres"), autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def drop(self) -> None:
        with psycopg.connect(postgres_conninfo("postgres"), autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        fs = s3_filesystem()
        if fs.get_file_info(self.prefix).type != pafs.FileType.NotFound:
            fs.delete_dir(self.prefix)


# --- configurations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int
    admin: int
    query: int

    @classmethod
    def fresh(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc}"


def _receiver(ports: Ports) -> dict[str, Any]:
    return {
        "otlp": {
            "protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{ports.grpc}"},
                "http": {"endpoint": f"127.0.0.1:{ports.http}"},
            }
        }
    }


def _service(ports: Ports, exporter: str, processors: list[str]) -> dict[str, Any]:
    return {
        "telemetry": {"logs": {"level": "info"}, "admin": {"endpoint": f"127.0.0.1:{ports.admin}"}},
        "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": processors, "exporters": [exporter]},
        },
    }


MEMORY_LIMITER = {"memory_limiter": {"check_interval": 1, "limit_mib": 8192}}


def bridge_config(
    lake: LakeSpace,
    ports: Ports,
    *,
    wal_dir: Path | None,
    flush_interval: float = 0.5,
    wal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OTLP in → `lake` exporter (with its write-ahead log when ``wal_dir``) + the query API."""
    lake_exporter: dict[str, Any] = {
        "region": AWS_ENV["AWS_REGION"],
        "catalog_uri": lake.catalog_uri,
        "warehouse": lake.warehouse,
        "s3": {"endpoint": S3_ENDPOINT, "region": AWS_ENV["AWS_REGION"]},
        "flush_interval": flush_interval,
    }
    if wal_dir is not None:
        lake_exporter["wal"] = {"directory": str(wal_dir), **(wal or {})}
    return {
        "receivers": _receiver(ports),
        "processors": dict(MEMORY_LIMITER),
        "exporters": {"lake": lake_exporter},
        "extensions": {"query_api": {"endpoint": f"127.0.0.1:{ports.query}", "lake": "lake"}},
        "service": {"extensions": ["query_api"], **_service(ports, "lake", ["memory_limiter"])},
    }


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
    processors = dict(MEMORY_LIMITER)
    pipeline = ["memory_limiter"]
    if batch is not None:
        processors["batch"] = dict(batch)
        pipeline.append("batch")
    return {
        "receivers": _receiver(ports),
        "processors": processors,
        "exporters": {
            "otlp": {
                "endpoint": upstream,
                "tls": {"insecure": True},
                "compression": "gzip",
                "timeout": 5,
                "retry_on_failure": {
                    "initial_interval": 0.05,
                    "max_interval": 0.5,
                    "max_elapsed_time": 0,
                },
                "sending_queue": sending_queue,
                "shutdown_timeout": shutdown_timeout,
            }
        },
        "service": _service(ports, "otlp", pipeline),
    }


# --- processes ------------------------------------------------------------------------------

_names = itertools.count(1)


class ProcessError(AssertionError):
    """A service exited or did not become ready; the message carries its log."""


@dataclass
class OrasiProcess:
    """One `orasi <kind>` subprocess; ``start()`` may be called again after it exited (restart)."""

    kind: str
    config: dict[str, Any]
    ports: Ports
    workdir: Path
    label: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or f"{self.kind}-{next(_names)}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.label}.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.label}.yaml"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def grpc_endpoint(self) -> str:
        return self.ports.grpc_endpoint

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.query}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_records(self, start: int | None = None) -> list[dict[str, Any]]:
        """The JSON log records of one start (default: the latest), in order."""
        runs = self.log_text().split("===== start #")
        text = next((run for run in runs if run.startswith(f"{start or self.starts} =====")), "")
        records = []
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records

    def logged(self, message: str, start: int | None = None) -> list[dict[str, Any]]:
        """The records of one start whose message is ``message``."""
        return [record for record in self.log_records(start) if record.get("msg") == message]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, ready_timeout: float = 60.0) -> OrasiProcess:
        """Start (or restart, with the same configuration and ports) and wait until ready."""
        assert not self.running(), f"{self.label} is already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._close_log()
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [*orasi_command(), self.kind, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **AWS_ENV},
        )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise ProcessError(
                        f"{self.label} exited with {self.process.returncode} before it was ready:\n"
                        + self.log_text()[-8000:]
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.admin_url + "/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ProcessError(
                        f"{self.label} was not ready within {timeout} s:\n" + self.log_text()[-8000:]
                    )
                time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL this process by its PID and reap it."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def sigterm(self, timeout: float = 60.0) -> int:
        """SIGTERM by PID; wait for the exit and return its code."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """For cleanup: SIGTERM, then SIGKILL past a deadline; safe when not running."""
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- admin port ---

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.admin_url + path, timeout=5.0)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        response = self.get("/metrics")
        response.raise_for_status()
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    # --- query API (bridge) ---

    def query(self, sql: str) -> list[list[Any]]:
        """Rows of ``sql`` over the whole of the test's time range."""
        now = time.time_ns()
        response = httpx.post(
            self.query_url + "/api/v1/query",
            json={"sql": sql, "start": now - 6 * 3600 * 10**9, "end": now + 3600 * 10**9},
            timeout=60.0,
        )
        assert response.status_code == 200, f"query failed: HTTP {response.status_code}: {response.text}"
        rows: list[list[Any]] = response.json()["rows"]
        return rows


# --- the sender -------------------------------------------------------------------------------


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
            span_id=(seq + 1).to_bytes(8, "big"),
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


def lake_count(bridge: OrasiProcess, sender: SpanSender) -> LakeCount:
    """Spans of the sender's run in the lake (committed + buffered), counted per request.

    A request's spans have consecutive seqs, so the query groups by request number and the answer
    stays small (one row per request) however many spans the run sent.
    """
    k = sender.spans_per_request
    rows = bridge.query(
        f"SELECT CAST(attributes['seq'] AS BIGINT) // {k} AS request, count(*), "
        "count(DISTINCT attributes['seq']), min(CAST(attributes['seq'] AS BIGINT)) "
        f"FROM spans WHERE attributes['run'] = '{sender.run}' GROUP BY 1"
    )
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


def wait_for_lake(bridge: OrasiProcess, sender: SpanSender, timeout: float) -> LakeCount:
    """Wait until every acknowledged span is queryable (or fail with what is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        count = lake_count(bridge, sender)
        if sender.acked <= count.seqs or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def query_stats(bridge: OrasiProcess, run: str) -> dict[str, Any]:
    """The ``stats`` of a count over ``run`` (``hot_rows``: rows still in the bridge's buffers)."""
    now = time.time_ns()
    response = httpx.post(
        bridge.query_url + "/api/v1/query",
        json={
            "sql": f"SELECT count(*) FROM spans WHERE attributes['run'] = '{run}'",
            "start": now - 6 * 3600 * 10**9,
            "end": now + 3600 * 10**9,
        },
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()["stats"]
    return stats


def wait_for_commits(bridge: OrasiProcess, run: str, timeout: float) -> None:
    """Wait until nothing is left in the bridge's memory buffers (everything committed)."""
    wait_until(
        lambda: query_stats(bridge, run).get("hot_rows") == 0, timeout, "the bridge to commit its buffers"
    )
