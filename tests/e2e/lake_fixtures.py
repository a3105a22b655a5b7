"""Real `orasi agent`, `orasi gateway` and `orasi bridge` processes wired into a pipeline to the lake.

    app ─OTLP─▶ agent ─OTLP/gRPC─▶ gateway ─OTLP/gRPC─▶ bridge ─▶ Iceberg (PostgreSQL catalog,
                                                                  Parquet on SeaweedFS)
                                                         └─ REST query API (POST /api/v1/query)

The configurations come from the topology builder (``orasi_common.topology.chain``) with the
choices of these tests (``stack_configs``); each service is a ``ServiceProcess`` on free loopback
ports, ready once its admin port's ``/readyz`` answers 200 and stopped by its own PID. The
bridge's catalog and warehouse are a LakeSpace of their own (integration/bridge/servers.py): a
PostgreSQL schema and an S3 prefix.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.bridge.servers import AWS_ENV, LakeSpace, apply_aws_env
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from orasi_common.testing.servers import servers_missing
from orasi_common.testing.service_process import ServiceProcess, free_ports
from orasi_common.topology import Ports, chain

AGENT_ENV = {
    "ORASI_AGENT_ID": "e2e-lake-agent",
    "K8S_NODE_NAME": "e2e-lake-node",
    "ORASI_REGION": "e2e-region-1",
}
MEMORY_LIMITER = {"check_interval": 1, "limit_mib": 8192}
BATCH = {"timeout": 0.05}
RETRY = {"initial_interval": 0.05, "max_interval": 0.5, "max_elapsed_time": 120}
FORWARDING = {"timeout": 10, "retry_on_failure": RETRY}


def stack_configs(ports: Mapping[str, Ports], space: LakeSpace, **options: Any) -> dict[str, dict[str, Any]]:
    """agent (memory_limiter, resource, batch) → gateway (memory_limiter, batch) → bridge
    (memory_limiter, `lake` in ``space``), forwarding OTLP/gRPC with gzip; ``options`` go to
    ``chain`` as they are."""
    choices: dict[str, Any] = {
        "processors": {
            "agent": {"memory_limiter": MEMORY_LIMITER, "resource": {"detect": True}, "batch": BATCH},
            "gateway": {"memory_limiter": MEMORY_LIMITER, "batch": BATCH},
            "bridge": {"memory_limiter": MEMORY_LIMITER},
        },
        "forwarding": {"agent": FORWARDING, "gateway": FORWARDING},
        "compression": "gzip",
        "log_level": "info",
    }
    lake = space.lake_config(region="e2e-region-1", flush_interval=2.0)
    return chain(ports["agent"], ports["gateway"], ports["bridge"], lake, **{**choices, **options})


@dataclass
class Stack:
    """agent → gateway → bridge, all running."""

    space: LakeSpace
    agent: ServiceProcess
    gateway: ServiceProcess
    bridge: ServiceProcess

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.agent, self.gateway, self.bridge]

    @property
    def agent_grpc(self) -> str:
        return self.agent.grpc_endpoint

    @property
    def agent_http(self) -> str:
        return self.agent.http_url

    @property
    def query_url(self) -> str:
        return self.bridge.query_url

    def logs(self) -> str:
        return "\n".join(f"--- {p.label} ---\n{p.log_text()[-6000:]}" for p in self.processes)

    def query(self, sql: str, tenant: str, **body: Any) -> dict[str, Any]:
        return query(self.query_url, sql, tenant, **body)

    def wait_rows(
        self,
        sql: str,
        tenant: str,
        ready: Callable[[list[list[Any]]], bool],
        timeout: float = 45.0,
        **body: Any,
    ) -> dict[str, Any]:
        return wait_rows(self.query_url, sql, tenant, ready, timeout, self.logs, **body)


# --- the trace the SDK tests send ----------------------------------------------------------------


def emit_trace_scenario(tracer: Tracer, attributes: Mapping[str, Any]) -> None:
    """Spans of every kind and status, a parent chain, an event and a link: a producer; a server
    root with ``attributes`` and an event, whose client child links to the producer and records
    an exception; a consumer with an internal child."""
    with tracer.start_as_current_span("enqueue", kind=SpanKind.PRODUCER) as producer:
        pass
    with tracer.start_as_current_span(
        "GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes
    ) as root:
        root.add_event(
            "cache.miss", {"cache.key": "orders:1", "attempt": 2, "ratio": 0.5, "tags": ["a", "b"]}
        )
        root.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            links=[Link(producer.get_span_context(), {"link.reason": "caused-by", "link.weight": 3})],
        ) as child:
            child.record_exception(ValueError("connection reset by peer"))
            child.set_status(Status(StatusCode.ERROR, "connection reset"))
        with (
            tracer.start_as_current_span("dequeue", kind=SpanKind.CONSUMER),
            tracer.start_as_current_span("compute") as internal,
        ):
            internal.set_attribute("work.units", 12)


class RecordingMetricExporter(MetricExporter):
    """An SDK metric exporter that keeps what it exported (``exports``) and the results."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.exports: list[MetricsData] = []
        self.results: list[MetricExportResult] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exports.append(metrics_data)
        result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        self.results.append(result)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


# --- canonical strings, re-derived here from the contract (ARCHITECTURE §5) ---------------------


def json_value(value: Any) -> Any:
    """A Python / SDK value as the JSON value the lake writes inside arrays and maps."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def assert_attributes(stored: dict[str, str | None], sent: Any, where: str, subset: bool = False) -> None:
    """``stored`` (a lake MAP(VARCHAR, VARCHAR)) holds ``sent`` in canonical strings; with
    ``subset``, only the keys of ``sent`` are compared."""
    sent = dict(sent or {})
    if subset:
        stored = {k: v for k, v in stored.items() if k in sent}
    assert set(stored) == set(sent), f"{where}: keys {sorted(stored)} != {sorted(sent)}"
    for key, value in sent.items():
        text = stored[key]
        if isinstance(value, bool):
            assert text == ("true" if value else "false"), (where, key, text)
        elif isinstance(value, int):
            assert text == str(value), (where, key, text)
        elif isinstance(value, float):
            assert text is not None and float(text) == value, (where, key, text)
        elif isinstance(value, str):
            assert text == value, (where, key, text)
        elif isinstance(value, bytes):
            assert text == base64.b64encode(value).decode(), (where, key, text)
        else:
            assert text is not None and json.loads(text) == json_value(value), (where, key, text)


# --- the query API ------------------------------------------------------------------------------


def query(url: str, sql: str, tenant: str | None = None, **body: Any) -> dict[str, Any]:
    """POST /api/v1/query; the JSON answer (raises on a non-200 answer, showing it)."""
    headers = {"X-Orasi-Tenant": tenant} if tenant else {}
    response = httpx.post(f"{url}/api/v1/query", json={"sql": sql, **body}, headers=headers, timeout=30)
    assert response.status_code == 200, f"{sql}: HTTP {response.status_code} {response.text}"
    answer: dict[str, Any] = response.json()
    return answer


def wait_rows(
    url: str,
    sql: str,
    tenant: str | None,
    ready: Callable[[list[list[Any]]], bool],
    timeout: float,
    logs: Callable[[], str],
    **body: Any,
) -> dict[str, Any]:
    """Poll the query until ``ready(rows)``; fail with the services' logs past the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = query(url, sql, tenant, **body)
            if ready(answer["rows"]):
                return answer
            last = f"rows {answer['rows'][:5]}"
        except (httpx.TransportError, AssertionError) as error:
            last = str(error)
        if time.monotonic() > deadline:
            pytest.fail(
                f"{sql!r} for tenant {tenant} never became ready ({last}) within {timeout} s\n{logs()}"
            )
        time.sleep(0.1)


def require_servers() -> None:
    apply_aws_env()
    problem = servers_missing("the lake tests")
    if problem is not None:
        pytest.fail(problem, pytrace=False)


StackConfigs = Callable[[Mapping[str, Ports], LakeSpace], dict[str, dict[str, Any]]]


@contextlib.contextmanager
def running_stack(workdir: Path, configs: StackConfigs = stack_configs) -> Iterator[Stack]:
    """agent → gateway → bridge (``configs``) on their own catalog schema and warehouse, on free
    ports; all stopped at the end, each by its own PID."""
    require_servers()
    with LakeSpace.made() as space:
        built = configs({name: free_ports() for name in ("agent", "gateway", "bridge")}, space)
        processes = {
            name: ServiceProcess.from_config(
                name, config, workdir, env={**AWS_ENV, **(AGENT_ENV if name == "agent" else {})}
            )
            for name, config in built.items()
        }
        try:
            # All three at once: each start is mostly the interpreter's imports, and nothing is
            # sent before every one is ready (a channel connects at its first call).
            with ThreadPoolExecutor(len(processes)) as pool:
                for started in [pool.submit(process.start) for process in processes.values()]:
                    started.result()
            yield Stack(space, processes["agent"], processes["gateway"], processes["bridge"])
        finally:
            for process in reversed(processes.values()):  # safe if never started
                process.stop()
