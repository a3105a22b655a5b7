"""The rules and dashboards against a running `orasi up` with traffic of all three signals.

1. Every metric a rule or a dashboard uses is declared on the /metrics pages of agent, gateway or
   bridge, and has samples, except the few that only a configuration `orasi up` does not have
   produces (listed with the reason): those of the load balancer and the etcd resolver have
   samples on a gateway that finds orasi up's bridge in the shared test etcd; those of the
   optional receivers and of live settings on a gateway with a syslog receiver and the etcd
   extension, sent a malformed message and given a live setting it refuses. OTAP schema resets
   are sampled on orasi up's gateway once a span of a new shape follows the first ones, schema
   violations on its bridge once spans.checkout has a schema with validation `flag`.
2. A real Prometheus (Debian's, on a free port on 127.0.0.1) scrapes the three admin ports with the
   relabelling of scrape.yaml (the Kubernetes discovery replaced by static targets that carry the
   same ``__meta_kubernetes_*`` labels), loads rules.yaml and evaluates it: every rule healthy, the
   series there with their `region` and `component` labels, every dashboard query accepted by the
   engine, the rules' joins matching real series, and no alert firing on a healthy system.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from integration.discovery.records import registration
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from monitoring.promql import RULES, SCRAPE, every_query, exposed_names, metric_names, rules, substitute, tool
from orasi_common.control.registration import key_of
from orasi_common.control.registry import etcd_client
from orasi_common.control.settings import settings_key
from orasi_common.testing.servers import ETCD, etcd_missing
from orasi_common.testing.service_process import (
    LIVE_LOGS,
    ServiceProcess,
    free_port,
    free_ports,
    metric_value,
    stop_process,
)
from orasi_common.testing.up_process import UpProcess
from orasi_common.topology import service as service_config

SERVICES = ("agent", "gateway", "bridge")
BALANCED = "a gateway whose loadbalancing exporter finds its upstreams in etcd (balanced_gateway)"
RECEIVING = "a gateway with a syslog receiver and live settings in etcd (receiving_gateway)"
ONLY_IN_OTHER_SETUPS = {
    # The loadbalancing exporter and the etcd resolver: orasi up's gateway sends to one bridge with
    # `otap` (these families are declared on its page, without samples); the balanced gateway
    # below has them all.
    "orasi_circuit_breaker_state": BALANCED,
    "orasi_loadbalancer_routed_items_total": BALANCED,
    "orasi_loadbalancer_endpoints": BALANCED,
    "orasi_discovery_up": BALANCED,
    "orasi_discovery_malformed_records_total": BALANCED,
    # An optional receiver (orasi up runs none) and live settings (orasi up has no etcd): the
    # receiving gateway below has both.
    "orasi_receiver_malformed_messages_total": RECEIVING,
    "orasi_config_updates_total": RECEIVING,
    # Failures: counted (with their reason) only when they happen.
    "orasi_exporter_send_failed_items_total": "an exporter giving up on items",
    "orasi_exporter_enqueue_failed_items_total": "a full queue with policy drop_newest",
    "orasi_processor_refused_items_total": "the memory limiter above its soft limit",
    # The lake's stream processors: orasi up's lake has none (tests/integration/bridge/
    # test_lake_stream.py samples the first two, the stream's unit tests the third).
    "orasi_stream_dropped_rows_total": "a lake with a filter or sample processor",
    "orasi_stream_redactions_total": "a lake with a redact processor",
    "orasi_stream_errors_total": "a stream processor failing on a record batch",
    # The tail sampler: tests/integration/bridge/test_lake_stream.py and its unit tests sample them.
    "orasi_stream_tail_decisions_total": "a lake with a tail_sample processor",
    "orasi_stream_tail_early_decisions_total": "a tail_sample processor deciding before decision_wait",
    "orasi_stream_tail_held": "a lake with a tail_sample processor",
    # Rate limits: off in orasi up by default (tests/integration/security/test_rate_limits.py
    # samples it, and the refusals, against a real Redis).
    "orasi_ratelimit_backend_up": "a component with a `ratelimit` extension",
    "orasi_ratelimit_refused_total": "a request over a tenant's rate limit",
}
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.5)


def _otlp_requests() -> dict[str, bytes]:
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="checkout"))])
    now = time.time_ns()
    span = Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name="charge card",
        start_time_unix_nano=now - 2_000_000,
        end_time_unix_nano=now,
    )
    point = NumberDataPoint(as_double=0.75, time_unix_nano=now)
    record = LogRecord(time_unix_nano=now, severity_text="INFO", body=AnyValue(string_value="card charged"))
    return {
        "traces": ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
        ).SerializeToString(),
        "metrics": ExportMetricsServiceRequest(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[
                        ScopeMetrics(metrics=[Metric(name="cpu.load", gauge=Gauge(data_points=[point]))])
                    ],
                )
            ]
        ).SerializeToString(),
        "logs": ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=[record])])]
        ).SerializeToString(),
    }


def _accepted(up: UpProcess, service: str) -> float:
    return up.service_metric(service, "orasi_receiver_accepted_items_total")


def send_traffic(up: UpProcess) -> None:
    """One OTLP/HTTP request of each signal to the agent (and a malformed one, answered 400), a
    query of the lake; returns once the bridge accepted them and committed to the lake."""
    bridge_before, commits_before = (
        _accepted(up, "bridge"),
        up.service_metric("bridge", "orasi_lake_commits_total"),
    )
    url = f"http://127.0.0.1:{up.ports['agent.http']}"
    protobuf = {"content-type": "application/x-protobuf"}
    with httpx.Client(timeout=30) as client:
        for signal, body in _otlp_requests().items():
            response = client.post(f"{url}/v1/{signal}", content=body, headers=protobuf)
            assert response.status_code == 200, response.text
        assert client.post(f"{url}/v1/logs", content=b"\xff\xff", headers=protobuf).status_code == 400
    eventually(
        lambda: True if _accepted(up, "bridge") >= bridge_before + 3 else None, "the bridge got 3 items"
    )
    eventually(
        lambda: True if up.service_metric("bridge", "orasi_lake_commits_total") > commits_before else None,
        "the bridge committed to the lake",
    )
    assert up.post("SELECT count(*) FROM spans").status_code == 200


def send_reshaped_span(up: UpProcess) -> None:
    """A span with columns the first ones had none of (an integer attribute, a status with a
    message, a kind): the gateway's OTAP stream to the bridge resets its spans schema."""
    before = up.service_metric("gateway", "orasi_otap_schema_resets_total", signal="traces")
    now = time.time_ns()
    span = Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name="refund",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        attributes=[KeyValue(key="http.status_code", value=AnyValue(int_value=502))],
        status=Status(code=Status.STATUS_CODE_ERROR, message="upstream failed"),
    )
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()
    response = httpx.post(
        f"http://127.0.0.1:{up.ports['agent.http']}/v1/traces",
        content=body,
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    eventually(
        lambda: (
            True
            if up.service_metric("gateway", "orasi_otap_schema_resets_total", signal="traces") > before
            else None
        ),
        "the gateway's OTAP stream reset its traces schema for the reshaped span",
    )


def flag_a_schema_violation(up: UpProcess) -> None:
    """A schema for spans.checkout requiring attribute http.route, with validation `flag`, then
    checkout spans without it (again until the bridge applied the mode, within a second or two):
    the bridge counts them in orasi_schema_violations_total. They are sent to the bridge's own
    OTLP/HTTP port: what reaches it as OTAP (orasi up's gateway) is not validated yet."""
    schema = {
        "properties": {
            "attributes": {"properties": {"http.route": {"type": "string"}}, "required": ["http.route"]}
        }
    }
    registry = f"{up.query_url}/registry"
    with httpx.Client(timeout=30) as client:
        registered = client.post(
            f"{registry}/subjects/spans.checkout/versions",
            json={"schemaType": "JSON", "schema": json.dumps(schema)},
        )
        assert registered.status_code == 200, registered.text
        flagged = client.put(f"{registry}/config/spans.checkout", json={"validation": "flag"})
        assert flagged.status_code == 200, flagged.text

        def counted() -> bool | None:
            response = client.post(
                f"http://127.0.0.1:{up.ports['bridge.http']}/v1/traces",
                content=_otlp_requests()["traces"],
                headers={"content-type": "application/x-protobuf"},
            )
            assert response.status_code == 200, response.text
            labels = {"signal": "traces", "service": "checkout", "action": "flag"}
            admin = f"http://127.0.0.1:{up.ports['bridge.admin']}"
            violations = metric_value(admin, "orasi_schema_violations_total", **labels)
            return True if violations else None

        eventually(counted, "the bridge to flag a span without http.route")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess.launch(tmp_path_factory.mktemp("up")) as process:
        send_traffic(process)
        send_reshaped_span(process)
        flag_a_schema_violation(process)
        yield process


def _pages(up: UpProcess) -> dict[str, str]:
    pages = {}
    for service in SERVICES:
        response = httpx.get(f"http://127.0.0.1:{up.ports[f'{service}.admin']}/metrics", timeout=10)
        response.raise_for_status()
        pages[service] = response.text
    return pages


def test_every_metric_of_the_rules_and_dashboards_is_exported(up: UpProcess) -> None:
    declared: set[str] = set()
    sampled: set[str] = set()
    for text in _pages(up).values():
        page_declared, page_sampled = exposed_names(text)
        declared |= page_declared
        sampled |= page_sampled
    used: dict[str, list[str]] = {}
    for where, expr in every_query():
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    assert "http_request_duration_seconds_bucket" in used  # histograms map to their family
    undeclared = {name: places for name, places in used.items() if name not in declared}
    assert not undeclared, f"used by rules or dashboards, exported by no service: {undeclared}"
    silent = set(used) - sampled - set(ONLY_IN_OTHER_SETUPS)
    assert not silent, f"no samples after traffic: {silent}"
    assert set(ONLY_IN_OTHER_SETUPS) <= set(used)  # the list names nothing the files do not use


@pytest.fixture(scope="module")
def balanced_gateway(up: UpProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A gateway (OTLP in → `loadbalancing` with `resolver: {etcd: {service: bridge}}` on the shared
    test etcd, in a region of its own) whose one registered bridge is orasi up's, beside a
    malformed record; it has sent one span there."""
    problem = etcd_missing("the metrics of the etcd resolver")
    if problem:
        pytest.fail(problem)
    region = f"monitoring-{uuid.uuid4().hex[:10]}"
    bridge = f"127.0.0.1:{up.ports['bridge.grpc']}"
    etcd_write(
        {
            key_of(region, "bridge", "up-bridge"): registration(bridge),
            key_of(region, "bridge", "broken"): b"{not a record",
        }
    )
    exporter = {
        "resolver": {"etcd": {"service": "bridge", "region": region, "endpoints": [ETCD]}},
        "tls": {"insecure": True},
    }
    config = service_config(free_ports(), "otlp", {}, "loadbalancing", exporter, signals=("traces",))
    gateway = ServiceProcess.from_config("gateway", config, tmp_path_factory.mktemp("gateway"))
    try:
        gateway.start()
        response = httpx.post(
            gateway.http_url + "/v1/traces",
            content=_otlp_requests()["traces"],
            headers={"content-type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        eventually(
            lambda: (
                True if gateway.metric("orasi_loadbalancer_routed_items_total", endpoint=bridge) else None
            ),
            "the balanced gateway to route its span to orasi up's bridge",
        )
        yield gateway
    finally:
        gateway.stop()
        etcd_write({}, delete_prefix=f"/orasi/{region}/")


def etcd_write(records: dict[str, bytes], delete_prefix: str = "") -> None:
    """Put ``records`` in the shared test etcd (after deleting ``delete_prefix``, when given)."""

    async def write() -> None:
        client = etcd_client(ETCD)
        try:
            if delete_prefix:
                await client.delete_prefix(delete_prefix.encode())
            for key, value in records.items():
                await client.put(key.encode(), value)
        finally:
            await client.close()

    asyncio.run(write())


def test_the_load_balancer_and_discovery_metrics_are_sampled_where_they_live(
    balanced_gateway: ServiceProcess,
) -> None:
    """The families ONLY_IN_OTHER_SETUPS names for the balanced gateway have samples there, with
    the values that gateway's state gives them."""
    _, sampled = exposed_names(httpx.get(balanced_gateway.admin_url + "/metrics", timeout=10).text)
    missing = {name for name, setup in ONLY_IN_OTHER_SETUPS.items() if setup == BALANCED} - sampled
    assert not missing, f"no samples on the balanced gateway: {missing}"
    resolver = "loadbalancing/primary"
    assert balanced_gateway.metric("orasi_discovery_up", resolver=resolver) == 1
    assert balanced_gateway.metric("orasi_discovery_malformed_records_total", resolver=resolver) == 1
    assert balanced_gateway.metric("orasi_loadbalancer_endpoints", group="primary") == 1


@pytest.fixture(scope="module")
def receiving_gateway(up: UpProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A gateway (OTLP and syslog over UDP in → otap to orasi up's bridge) with the etcd extension
    in a region of its own, sent one malformed syslog datagram, whose live setting of `batch`
    (send_batch_size 0) it refused."""
    problem = etcd_missing("the metrics of live settings")
    if problem:
        pytest.fail(problem)
    region = f"monitoring-{uuid.uuid4().hex[:10]}"
    exporter = {"endpoint": f"127.0.0.1:{up.ports['bridge.grpc']}", "tls": {"insecure": True}}
    config = service_config(free_ports(), "otlp", {"batch": {"timeout": 0.2}}, "otap", exporter)
    syslog_port = free_port()
    config["receivers"]["syslog"] = {"udp": {"endpoint": f"127.0.0.1:{syslog_port}"}}
    config["service"]["pipelines"]["logs"]["receivers"].append("syslog")
    config["extensions"] = {"etcd": {"endpoints": [ETCD], "region": region, "lease_ttl": 2}}
    config["service"]["extensions"] = ["etcd"]
    gateway = ServiceProcess.from_config("gateway", config, tmp_path_factory.mktemp("receiving"))
    try:
        gateway.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"<999>not syslog at all", ("127.0.0.1", syslog_port))
        eventually(
            lambda: (
                True if gateway.metric("orasi_receiver_malformed_messages_total", receiver="syslog") else None
            ),
            "the gateway's syslog receiver to count the malformed datagram",
        )
        etcd_write({settings_key(region, "gateway", "batch"): b'{"send_batch_size": 0}'})
        eventually(
            lambda: True if gateway.metric("orasi_config_updates_total", outcome="refused") else None,
            "the gateway to refuse the live setting",
        )
        yield gateway
    finally:
        gateway.stop()
        etcd_write({}, delete_prefix=f"/orasi/{region}/")


def test_the_receiver_and_live_settings_metrics_are_sampled_where_they_live(
    receiving_gateway: ServiceProcess,
) -> None:
    """The families ONLY_IN_OTHER_SETUPS names for the receiving gateway have samples there, with
    the labels the rules and dashboards group by."""
    _, sampled = exposed_names(httpx.get(receiving_gateway.admin_url + "/metrics", timeout=10).text)
    missing = {name for name, setup in ONLY_IN_OTHER_SETUPS.items() if setup == RECEIVING} - sampled
    assert not missing, f"no samples on the receiving gateway: {missing}"
    malformed = {
        (labels["receiver"], labels["transport"], labels["reason"])
        for name, labels, value in receiving_gateway.metric_samples()
        if name == "orasi_receiver_malformed_messages_total" and value
    }
    assert malformed == {("syslog", "udp", "malformed")}
    assert receiving_gateway.metric("orasi_config_updates_total", component="batch", outcome="refused") == 1
    assert receiving_gateway.metric("orasi_config_updates_total", outcome="applied") == 0


def test_each_service_reports_the_volumes_it_writes(up: UpProcess) -> None:
    volumes: dict[str, set[str]] = {service: set() for service in SERVICES}
    for service, text in _pages(up).items():
        for line in text.splitlines():
            if line.startswith("orasi_storage_usage_percent{"):
                volumes[service].add(line.split('volume="', 1)[1].split('"', 1)[0])
                assert 0 < float(line.rsplit(" ", 1)[1]) < 100
    # orasi up: the agent's logged queue, the bridge's log, local warehouse and SQLite catalog (all
    # under --data-dir); its gateway writes no directory.
    assert volumes == {
        "agent": {"wal/otlp"},
        "gateway": set(),
        "bridge": {"wal/lake", "warehouse/lake", "catalog/lake"},
    }


# A real Prometheus.


class Prometheus:
    """`prometheus` on a free port on 127.0.0.1 with its data in a temporary directory."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        LIVE_LOGS[f"prometheus-{self.port}"] = self.log_path

    def stop(self) -> None:
        stop_process(self.process, 20)  # by its own PID: SIGTERM, then SIGKILL past the deadline
        LIVE_LOGS.pop(f"prometheus-{self.port}", None)

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        document = response.json()
        assert response.status_code == 200 and document["status"] == "success", (path, params, document)
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def ready(self) -> bool | None:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log_path.read_text()[-4000:]}"
        try:
            return True if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200 else None
        except httpx.TransportError:
            return None


def pod(name: str, component: str, port: int, port_name: str) -> dict[str, Any]:
    """A static target with the ``__meta_kubernetes_*`` labels Kubernetes discovery gives a pod."""
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "orasi" if component else "other",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": component or "web",
            "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_container_port_number": str(port),
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_node_label_topology_kubernetes_io_region": "local",
            "__meta_kubernetes_namespace": "orasi-system",
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_node_name": "node-1",
        },
    }


def prometheus_config(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """scrape.yaml's job with static ``targets`` (see ``pod``) in place of Kubernetes discovery."""
    (job,) = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    del job["kubernetes_sd_configs"]
    job["static_configs"] = targets
    job["scrape_interval"] = job["scrape_timeout"] = "1s"
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [job],
    }


def up_targets(up: UpProcess) -> list[dict[str, Any]]:
    """The three admin ports, plus two targets scrape.yaml's relabelling must drop (another app's
    pod, and an Orasi pod's OTLP port)."""
    return [
        *(pod(f"orasi-{s}-0", s, up.ports[f"{s}.admin"], "admin") for s in SERVICES),
        pod("web-0", "", up.ports["bridge.query"], "admin"),
        pod("orasi-agent-0", "agent", up.ports["agent.http"], "otlp-http"),
    ]


@pytest.fixture(scope="module")
def prometheus(up: UpProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), prometheus_config(up_targets(up)))
    try:
        eventually(server.ready, "prometheus was not ready")

        def scraped_twice() -> bool | None:
            targets = server.api("targets")["activeTargets"]
            up_now = [t for t in targets if t["health"] == "up"]
            return (
                True
                if len(up_now) == len(SERVICES) and server.query("count_over_time(up[1m]) >= 2")
                else None
            )

        eventually(scraped_twice, "prometheus did not scrape the three admin ports")
        send_traffic(up)  # counters that move while Prometheus watches
        time.sleep(3)  # a few more scrapes and rule evaluations
        yield server
    finally:
        server.stop()


def test_prometheus_keeps_exactly_the_three_admin_ports(prometheus: Prometheus, up: UpProcess) -> None:
    targets = prometheus.api("targets")
    active = {
        target["labels"]["component"]: target
        for target in targets["activeTargets"]
        if target["health"] == "up"
    }
    assert set(active) == set(SERVICES)
    for service, target in active.items():
        assert target["scrapeUrl"] == f"http://127.0.0.1:{up.ports[f'{service}.admin']}/metrics"
        assert {key: target["labels"][key] for key in ("region", "namespace", "pod", "node")} == {
            "region": "local",
            "namespace": "orasi-system",
            "pod": f"orasi-{service}-0",
            "node": "node-1",
        }
    assert len(targets["droppedTargets"]) == 2


def test_prometheus_loads_and_evaluates_every_rule(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["groups"]
        every = [rule for group in groups for rule in group["rules"]]
        done = all(rule["lastEvaluation"] > "2000" for rule in every)
        return every if done else None

    every = eventually(evaluated, "prometheus did not evaluate every rule", timeout=30)
    assert {rule["name"] for rule in every} == set(rules())
    unhealthy = {rule["name"]: rule.get("lastError") for rule in every if rule["health"] != "ok"}
    assert not unhealthy


def test_the_series_the_rules_and_dashboards_use_are_scraped(prometheus: Prometheus) -> None:
    used = set().union(*(metric_names(expr) for _, expr in every_query())) - set(ONLY_IN_OTHER_SETUPS)
    for name in sorted(used):
        series = prometheus.query(f'group by (region, component) ({{__name__="{name}"}})')
        assert series, f"prometheus has no series {name}"
        assert all(s["metric"]["region"] == "local" and s["metric"]["component"] in SERVICES for s in series)


def test_every_rule_and_dashboard_query_runs(prometheus: Prometheus) -> None:
    for where, expr in every_query():
        assert isinstance(prometheus.query(substitute(expr)), list), where  # PromQL errors fail in api()
    # The dashboards' main panels show data.
    for expr in (
        'sum by (component, signal) (rate(orasi_receiver_accepted_items_total{region=~".*"}[15s]))',
        'sum by (component) (rate(orasi_exporter_sent_items_total{region=~".*"}[15s]))',
        "max by (component, exporter) (orasi_queue_size_bytes / (orasi_queue_capacity_bytes > 0))",
        'rate(process_cpu_seconds_total{region=~".*"}[15s])',
    ):
        assert prometheus.query(expr), expr


def test_the_rules_joins_match_the_real_series(prometheus: Prometheus) -> None:
    # OrasiWalCorruptSegment's join with process_start_time_seconds: one series per log.
    joined = prometheus.query(
        "orasi_wal_corrupt_segments_total >= 0"
        " and on (job, instance) (time() - process_start_time_seconds) < 3600"
    )
    assert {(s["metric"]["component"], s["metric"]["queue"]) for s in joined} == {
        ("agent", "otlp"),
        ("bridge", "lake"),
    }
    # OrasiNoDataReceived: data reached every tier within the window.
    received = prometheus.query(
        "sum by (region, component) (increase(orasi_receiver_accepted_items_total[10m])) > 0"
    )
    assert {s["metric"]["component"] for s in received} == set(SERVICES)
    # OrasiQueueAlmostFull: the agent's logged queue has a capacity, and is far from full.
    (fill,) = prometheus.query("orasi_queue_size_bytes / (orasi_queue_capacity_bytes > 0)")
    assert fill["metric"]["component"] == "agent" and float(fill["value"][1]) < 0.8
    # OrasiHighErrorRate's ratio: the agent answered 5xx to none of its requests.
    every = 'sum by (region, component) (rate(http_request_duration_seconds_count{component="agent"}[5m]))'
    errors = every.replace('component="agent"', 'component="agent", code=~"5.."')
    (ratio,) = prometheus.query(f"{errors} / {every} or {every} * 0")
    assert float(ratio["value"][1]) == 0


def test_no_alert_fires_on_a_healthy_orasi_up(prometheus: Prometheus) -> None:
    def quiet() -> list[dict[str, Any]] | None:
        alerts = prometheus.api("alerts")["alerts"]
        # A slow first request may leave the latency alert pending (it needs 10 minutes to fire).
        loud = [
            a
            for a in alerts
            if a["state"] == "firing" or a["labels"]["alertname"] != "OrasiHighRequestLatency"
        ]
        return alerts if not loud else None

    eventually(quiet, "alerts stayed active: " + str(prometheus.api("alerts")["alerts"]), timeout=20)


def test_the_rules_of_receivers_and_live_settings_see_the_receiving_gateway(
    receiving_gateway: ServiceProcess, tmp_path: Path
) -> None:
    """A Prometheus scraping the receiving gateway as scrape.yaml does: the live setting's
    component id is stored as exported_component (the target's component label wins), which is
    what OrasiLiveSettingRefused and the Component Health panel group by, and both alerts'
    expressions find the gateway's series."""
    port = int(receiving_gateway.admin_url.rpartition(":")[2])
    server = Prometheus(tmp_path, prometheus_config([pod("orasi-gateway-0", "gateway", port, "admin")]))
    try:
        eventually(server.ready, "prometheus was not ready")
        refused = eventually(
            lambda: (
                server.query(
                    "sum by (region, component, exported_component) "
                    '(orasi_config_updates_total{outcome="refused"})'
                )
                or None
            ),
            "prometheus to scrape the refused live setting",
        )
        assert [s["metric"] for s in refused] == [
            {"region": "local", "component": "gateway", "exported_component": "batch"}
        ]
        malformed = server.query(
            "sum by (region, component, receiver, reason) (orasi_receiver_malformed_messages_total > 0)"
        )
        assert [s["metric"] for s in malformed] == [
            {"region": "local", "component": "gateway", "receiver": "syslog", "reason": "malformed"}
        ]
        expressions = {name: rule["expr"] for name, rule in rules().items()}
        fired = eventually(
            lambda: server.query(expressions["OrasiLiveSettingRefused"]) or None,
            "OrasiLiveSettingRefused's expression to find the refusal",
            timeout=20,
        )
        assert fired[0]["metric"]["exported_component"] == "batch"
    finally:
        server.stop()
