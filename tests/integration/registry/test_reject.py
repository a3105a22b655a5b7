"""Validation ``reject`` and OTAP ingest validated, against a real bridge process (OTLP gRPC, HTTP
and OTAP on its `otap` receiver, a SQLite registry, a write-ahead log): violating spans are refused
with an OTLP partial success (OTAP: an OK BatchStatus saying so) naming the subject, the key and
the rule, the valid spans of the same request are stored, and after a crash only they come back.

The schema, spans and violations are ``test_validation``'s, written by hand from the schema."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from integration.registry.test_shared_cache import Client
from integration.registry.test_validation import (
    DROPPED_KEYS,
    DROPPED_VIOLATIONS,
    SCHEMA,
    SPANS,
    VIOLATIONS,
    now_ns,
    spans_request,
)
from orasi_common.errors import PartialSuccess
from orasi_common.exporters.otap.client import OtapClient
from orasi_common.exporters.otap.config import ArrowClientConfig
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pdata.otlp_json import to_json
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import service

VALID = "GET ok"
FIRST = [  # the first violations, in row order, as the answer names them
    "spans.checkout: attributes.http.status: string, not integer",
    "spans.checkout: attributes.http.route: required key missing",
]


class Bridge:
    def __init__(self, process: ServiceProcess, config: dict[str, Any]) -> None:
        self.process = process
        receiver = config["receivers"]["otap"]["protocols"]
        self.grpc = receiver["grpc"]["endpoint"]
        self.http = "http://" + receiver["http"]["endpoint"]
        self.query = "http://" + config["extensions"]["query_api"]["endpoint"]

    def tenant(self, mode: str) -> tuple[str, Client]:
        """A new tenant whose ``spans.checkout`` has ``SCHEMA`` in ``mode`` (set before its first
        batch, which loads its policies)."""
        tenant = f"t{uuid.uuid4().hex[:10]}"
        client = Client(self.query + "/registry", tenant)
        assert client.register("spans.checkout", SCHEMA).status_code == 200
        assert client.put("/config/spans.checkout", {"validation": mode}).status_code == 200
        return tenant, client

    def export(self, body: bytes, tenant: str) -> trace_service_pb2.ExportTraceServiceResponse:
        """An OTLP/gRPC Export call (the serialized request as a client sends it)."""
        spec = SPECS[Signal.TRACES]
        with grpc.insecure_channel(self.grpc) as channel:
            export = channel.unary_unary(
                spec.grpc_method, response_deserializer=spec.response_type.FromString
            )
            answer: trace_service_pb2.ExportTraceServiceResponse = export(
                body, metadata=[("x-orasi-tenant", tenant)], timeout=30
            )
        return answer

    def stored(self, tenant: str, start: int, column: str = "name") -> dict[str, Any]:
        answer = httpx.post(
            self.query + "/api/v1/query",
            json={"sql": f"SELECT name, {column} FROM spans ORDER BY name", "start": start - 10**9},
            headers={"x-orasi-tenant": tenant},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return {name: value for name, value in answer.json()["rows"]}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    tmp = tmp_path_factory.mktemp("reject")
    configs: list[dict[str, Any]] = []

    def make() -> ServiceProcess:
        lake = {
            "catalog_uri": f"sqlite:///{tmp / 'catalog.db'}",
            "warehouse": f"file://{tmp / 'warehouse'}",
            "flush_interval": 300,  # rows stay buffered (queries see them): the crash test replays them
            "wal": {"directory": str(tmp / "wal")},
        }
        config = service(free_ports(), "otap", {}, "lake", lake, query_api=True)
        config["extensions"]["query_api"]["registry"] = {"store": f"sqlite:///{tmp / 'registry.db'}"}
        configs.append(config)
        return ServiceProcess.from_config("bridge", config, tmp, label="bridge")

    process = start_on_free_ports(make)
    try:
        yield Bridge(process, configs[-1])
    finally:
        process.stop()


def _assert_refusal(message: str, rejected: int = 3) -> None:
    assert message.startswith(f"{rejected} of 4 items violate their subject's schema (validation reject)")
    for violation in FIRST:
        assert violation in message


def test_otlp_grpc_gets_a_partial_success_and_only_valid_spans_are_stored(bridge: Bridge) -> None:
    tenant, _ = bridge.tenant("reject")
    start = now_ns()
    answer = bridge.export(spans_request(start, SPANS), tenant)
    assert answer.partial_success.rejected_spans == 3
    _assert_refusal(answer.partial_success.error_message)
    assert bridge.stored(tenant, start) == {VALID: VALID}
    labels = {"signal": "traces", "service": "checkout", "action": "reject"}
    assert bridge.process.metric("orasi_schema_violations_total", **labels) >= 3
    assert bridge.process.metric("orasi_receiver_refused_items_total", transport="grpc", signal="traces") >= 3


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_otlp_http_gets_a_partial_success(bridge: Bridge, content_type: str) -> None:
    tenant, _ = bridge.tenant("reject")
    start = now_ns()
    body = spans_request(start, SPANS)
    if content_type == "application/json":
        body = to_json(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
    answer = httpx.post(
        bridge.http + "/v1/traces",
        content=body,
        headers={"content-type": content_type, "x-orasi-tenant": tenant},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    response = trace_service_pb2.ExportTraceServiceResponse()
    if content_type == "application/json":
        json_format.Parse(answer.text, response)
    else:
        response.ParseFromString(answer.content)
    assert response.partial_success.rejected_spans == 3
    _assert_refusal(response.partial_success.error_message)
    assert bridge.stored(tenant, start) == {VALID: VALID}


def _otap_send(endpoint: str, batch: Batch) -> PartialSuccess | None:
    """``batch`` through the `otap` exporter's client (the project's OTAP producer)."""

    async def send() -> PartialSuccess | None:
        config = ArrowClientConfig.model_validate(
            {"endpoint": endpoint, "tls": {"insecure": True}, "arrow": {"fallback_to_otlp": False}}
        )
        settings = Settings("test", Kind.EXPORTER, "test", Metrics("test"), logging.getLogger("test.otap"))
        async with grpc.aio.insecure_channel(endpoint) as channel:
            client = OtapClient(settings, config, channel)
            try:
                await client.send(batch)
            except PartialSuccess as outcome:
                return outcome
            finally:
                await client.close()
        return None

    return asyncio.run(send())


@pytest.mark.parametrize("mode", ["flag", "drop_attribute", "reject"])
def test_otap_batches_are_validated_as_otlp_ones(bridge: Bridge, mode: str) -> None:
    tenant, _ = bridge.tenant(mode)
    start = now_ns()
    batch = Batch.from_serialized(Signal.TRACES, spans_request(start, SPANS), tenant=tenant)
    outcome = _otap_send(bridge.grpc, batch)
    violations = bridge.stored(tenant, start, "schema_violations")
    keys = bridge.stored(tenant, start, "map_keys(attributes)")
    if mode == "reject":
        assert outcome is not None and outcome.rejected == 3
        _assert_refusal(outcome.message)
        assert violations == {VALID: None}
        return
    assert outcome is None
    if mode == "flag":
        assert {name: sorted(v or []) for name, v in violations.items()} == VIOLATIONS
        assert {name: sorted(k) for name, k in keys.items()} == {n: sorted(a) for n, a in SPANS.items()}
        return
    assert {name: sorted(v or []) for name, v in violations.items()} == DROPPED_VIOLATIONS
    assert {name: sorted(k) for name, k in keys.items()} == DROPPED_KEYS


def test_a_request_rejected_whole_stores_nothing(bridge: Bridge) -> None:
    tenant, _ = bridge.tenant("reject")
    start = now_ns()
    bad = {name: SPANS[name] for name in ("GET bad type", "GET missing")}
    response = trace_service_pb2.ExportTraceServiceResponse.FromString(
        httpx.post(
            bridge.http + "/v1/traces",
            content=spans_request(start, bad),
            headers={"content-type": "application/x-protobuf", "x-orasi-tenant": tenant},
            timeout=30,
        ).content
    )
    assert response.partial_success.rejected_spans == 2
    assert bridge.stored(tenant, start) == {}


def test_a_gateway_forwarding_to_the_bridge_passes_its_partial_success_back(
    bridge: Bridge, tmp_path: Path
) -> None:
    """app ─OTLP/HTTP─▶ gateway (loadbalancing over OTAP, no sending queue) ─▶ bridge."""
    tenant, _ = bridge.tenant("reject")
    configs: list[dict[str, Any]] = []

    def make() -> ServiceProcess:
        exporter = {
            "protocol": "otap",
            "resolver": {"static": {"endpoints": [bridge.grpc]}},
            "tls": {"insecure": True},
            "retry_on_failure": {"enabled": False},
            "sending_queue": {"enabled": False},
        }
        config = service(free_ports(), "otlp", {}, "loadbalancing", exporter, signals=["traces"])
        configs.append(config)
        return ServiceProcess.from_config("gateway", config, tmp_path, label="gateway")

    gateway = start_on_free_ports(make)
    try:
        start = now_ns()
        http = "http://" + configs[-1]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        answer = httpx.post(
            http + "/v1/traces",
            content=spans_request(start, SPANS),
            headers={"content-type": "application/x-protobuf", "x-orasi-tenant": tenant},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer.content)
        assert response.partial_success.rejected_spans == 3
        _assert_refusal(response.partial_success.error_message)
        assert bridge.stored(tenant, start) == {VALID: VALID}
        labels = {"signal": "traces", "reason": "partial_success"}
        assert gateway.metric("orasi_exporter_send_failed_items_total", **labels) == 3
    finally:
        gateway.stop()


def test_after_a_crash_the_log_gives_back_the_accepted_spans_only(bridge: Bridge) -> None:
    """Last in this module: it kills the bridge (nothing was committed: flush_interval 300) and
    starts it again on the same write-ahead log, whose records say which rows were kept. The
    contract is relaxed first, so a replay that checked again would store every span."""
    tenant, client = bridge.tenant("reject")
    start = now_ns()
    answer = bridge.export(spans_request(start, SPANS), tenant)
    assert answer.partial_success.rejected_spans == 3
    assert client.put("/config/spans.checkout", {"validation": "off"}).status_code == 200
    bridge.process.kill9()
    bridge.process.start()
    assert bridge.stored(tenant, start) == {VALID: VALID}
