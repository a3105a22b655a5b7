"""What travels with a batch to the next hop: the tenant, the idempotency key, static headers.

The agent reads the tenant from ``x-orasi-tenant`` (HTTP header or gRPC metadata; absent =
``default``), keeps each tenant's data in its own batches, and forwards both the tenant and the
batch id (``x-orasi-batch-id``, kept when the sender gave a well-formed one) to the next hop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integration.small_requests import spans
from orasi_common.pdata import SPECS, Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.otlp_view import items
from orasi_common.testing.sink import OtlpSink

TENANT = "x-orasi-tenant"
BATCH_ID = "x-orasi-batch-id"
PROTOBUF = {"content-type": "application/x-protobuf"}


def names(request: ExportTraceServiceRequest) -> set[str]:
    return {it.item.name.rsplit("-", 1)[0] for it in items(Signal.TRACES, [request])}


def test_tenants_travel_and_are_batched_apart(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    # A long batch timeout: all three tenants' data waits in the batch processor together.
    agent = start_agent(
        sink,
        batch_timeout=0.5,
        overrides={"exporters": {"otlp": {"headers": {"x-static-header": "from-config"}}}},
    )
    url = agent.http_url + "/v1/traces"

    def post(request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        assert httpx.post(url, content=request.SerializeToString(), headers=headers).status_code == 200

    post(spans(2, "acme"), {**PROTOBUF, TENANT: "acme"})
    post(spans(3, "anonymous"), PROTOBUF)
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        channel.unary_unary(SPECS[Signal.TRACES].grpc_method)(
            spans(4, "globex").SerializeToString(), metadata=[(TENANT, "globex")], timeout=10
        )
    post(spans(1, "acme2"), {**PROTOBUF, TENANT: "acme"})

    received = sink.wait_for_items(Signal.TRACES, 10)
    by_tenant: dict[str, set[str]] = {}
    for forwarded in received:
        by_tenant.setdefault(forwarded.metadata[TENANT], set()).update(names(forwarded.request))
        assert forwarded.metadata["x-static-header"] == "from-config"
        assert re.fullmatch(r"[0-9a-f]{16,64}", forwarded.metadata[BATCH_ID])
    assert by_tenant == {"acme": {"acme", "acme2"}, "default": {"anonymous"}, "globex": {"globex"}}
    batch_ids = [forwarded.metadata[BATCH_ID] for forwarded in received]
    assert len(set(batch_ids)) == len(batch_ids)


def test_a_well_formed_batch_id_is_kept(sink: OtlpSink, start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent(sink)
    url = agent.http_url + "/v1/traces"
    given = os.urandom(16).hex()
    response = httpx.post(
        url, content=spans(1, "keyed").SerializeToString(), headers={**PROTOBUF, BATCH_ID: given}
    )
    assert response.status_code == 200
    (forwarded,) = sink.wait_for_items(Signal.TRACES, 1)
    assert forwarded.metadata[BATCH_ID] == given

    response = httpx.post(
        url, content=spans(1, "bad-key").SerializeToString(), headers={**PROTOBUF, BATCH_ID: "not/a-key"}
    )
    assert response.status_code == 200
    second = sink.wait_for_items(Signal.TRACES, 2)[-1]
    assert second.metadata[BATCH_ID] != "not/a-key"
    assert re.fullmatch(r"[0-9a-f]{16,64}", second.metadata[BATCH_ID])
