"""Fixtures of the federation tests: bridge processes, each with a lake of its own (a PostgreSQL
schema + SeaweedFS prefix, ``LakeSpace``) and a region of its own, registered in the shared test
etcd under region names no other test uses, and a tenant of the test's own (bridges of other
regions that happen to be registered answer nothing for it)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.trace.v1 import trace_pb2

from integration.bridge.conftest import lake_servers
from integration.bridge.servers import LakeSpace
from integration.otap_data import kv
from orasi_common.testing.servers import ETCD, etcd_problem
from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import service

__all__ = ["lake_servers"]

NOW_NS = time.time_ns()
SERVICES = ("checkout", "cart", "search")

MakeBridge = Callable[..., ServiceProcess]


@pytest.fixture
def tenant() -> str:
    return f"fed-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def etcd_up() -> None:
    problem = etcd_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def make_bridge(lake_servers: None, etcd_up: None, tmp_path: Path) -> Iterator[MakeBridge]:
    """``make_bridge(region, etcd=True, federation=None, api_keys=None, flight_sql=False)``: a
    running bridge with a lake of its own whose rows carry ``region``; stopped (lake dropped)
    when the test ends. ``federation`` is its section, or a function of the bridge's own query
    endpoint that returns it."""
    made: list[tuple[ServiceProcess, contextlib.ExitStack]] = []

    def make_one(
        region: str,
        *,
        etcd: bool = True,
        federation: dict[str, Any] | Callable[[str], dict[str, Any]] | None = None,
        api_keys: dict[str, str] | None = None,
        flight_sql: bool = False,
    ) -> ServiceProcess:
        stack = contextlib.ExitStack()
        lake = stack.enter_context(LakeSpace.made())

        def make() -> ServiceProcess:
            ports = free_ports()
            if flight_sql:
                ports = dataclasses.replace(ports, flight_sql=free_ports().grpc)
            config = service(
                ports,
                "otlp",
                {},
                "lake",
                lake.lake_config(region=region),
                signals=("traces",),
                query_api=True,
            )
            query_api = config["extensions"]["query_api"]
            own = f"{ports.host}:{ports.query}"
            settings = federation(own) if callable(federation) else federation
            query_api["federation"] = {"timeout": 5, **(settings or {})}
            if api_keys:
                query_api["api_keys"] = api_keys
            if etcd:
                config["extensions"]["etcd"] = {
                    "endpoints": [ETCD],
                    "region": region,
                    "lease_ttl": 60,  # a killed bridge stays registered through the test
                    "live_settings": False,
                    "advertise_host": "127.0.0.1",
                }
                config["service"]["extensions"].append("etcd")
            return ServiceProcess.from_config("bridge", config, tmp_path, label=f"bridge-{region}")

        try:
            process = start_on_free_ports(make)
        except BaseException:
            stack.close()
            raise
        made.append((process, stack))
        return process

    try:
        yield make_one
    finally:
        for process, stack in reversed(made):
            try:
                process.stop()
            finally:
                stack.close()


def spans_request(rows: list[dict[str, Any]]) -> ExportTraceServiceRequest:
    """One request: a resource per service, a span per row (name, duration_ms, seq, error)."""
    request = ExportTraceServiceRequest()
    for name in SERVICES:
        mine = [row for row in rows if row["service"] == name]
        if not mine:
            continue
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(kv("service.name", name))
        scope_spans = resource_spans.scope_spans.add()
        for row in mine:
            start = NOW_NS - (row["seq"] + 60) * 10**9
            span = scope_spans.spans.add(
                trace_id=uuid.UUID(int=row["seq"] + 1).bytes,
                span_id=(row["seq"] + 1).to_bytes(8, "big"),
                name=row["name"],
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + row["duration_ms"] * 10**6,
            )
            span.attributes.append(kv("seq", row["seq"]))
            if row["error"]:
                span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return request


def send(bridge: ServiceProcess, rows: list[dict[str, Any]], tenant: str) -> None:
    """Export ``rows`` as spans to the bridge as ``tenant`` (acknowledged: queryable)."""
    with grpc.insecure_channel(bridge.grpc_endpoint) as channel:
        TraceServiceStub(channel).Export(
            spans_request(rows), metadata=[("x-orasi-tenant", tenant)], timeout=30
        )


def query(
    bridge: ServiceProcess,
    sql: str,
    tenant: str,
    *,
    scope: str = "local",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON answer of ``sql`` over the test's time range (HTTP 200 asserted)."""
    response = httpx.post(
        bridge.query_url + "/api/v1/query",
        json={"sql": sql, "scope": scope, "start": NOW_NS - 3600 * 10**9, "end": NOW_NS + 3600 * 10**9},
        headers={"x-orasi-tenant": tenant, **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text}"
    answer: dict[str, Any] = response.json()
    return answer
