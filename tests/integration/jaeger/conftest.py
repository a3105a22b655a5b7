"""Fixtures of the Jaeger API tests: a real bridge process (`otlp` receiver, `lake` exporter on the
real SeaweedFS + PostgreSQL of the bridge tests, the query API) and OTLP spans sent to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from integration.bridge.conftest import lake_servers, lake_space
from integration.bridge.servers import LakeSpace
from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import service

__all__ = ["lake_servers", "lake_space"]  # the bridge tests' fixtures, used here too


@pytest.fixture
def bridge(lake_space: LakeSpace, tmp_path: Path) -> Iterator[ServiceProcess]:
    def make() -> ServiceProcess:
        config = service(free_ports(), "otlp", {}, "lake", lake_space.lake_config(), query_api=True)
        config["extensions"]["query_api"]["api_keys"] = {"key-default": "default", "key-other": "other"}
        return ServiceProcess.from_config("bridge", config, tmp_path, label="bridge-jaeger")

    process = start_on_free_ports(make)
    try:
        yield process
    finally:
        process.stop()


def send(bridge: ServiceProcess, request: ExportTraceServiceRequest, tenant: str = "default") -> None:
    """Export ``request`` to the bridge over OTLP gRPC as ``tenant`` (acknowledged: in the lake)."""
    with grpc.insecure_channel(bridge.grpc_endpoint) as channel:
        TraceServiceStub(channel).Export(request, metadata=[("x-orasi-tenant", tenant)], timeout=30)


def jaeger(bridge: ServiceProcess, key: str = "key-default") -> httpx.Client:
    return httpx.Client(base_url=bridge.query_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
