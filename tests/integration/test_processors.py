"""The agent's processors seen from outside: batching and splitting, enrichment, many senders.

Each test drives a real agent over OTLP and checks what the sink received: every item exactly
once, with its resource and scope, in requests no larger than configured.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp import count_items
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.otlp_view import attributes, data_points, items
from orasi_common.testing.sink import OtlpSink

PROTOBUF = {"content-type": "application/x-protobuf"}


def batch_sizes(size: int, max_size: int) -> dict[str, Any]:
    """Agent overrides: the batch processor's send_batch_size and send_batch_max_size."""
    return {"processors": {"batch": {"send_batch_size": size, "send_batch_max_size": max_size}}}


def multi_resource_spans(per_scope: int) -> ExportTraceServiceRequest:
    """Two resources of two scopes of ``per_scope`` spans; each span is named after its place."""
    request = ExportTraceServiceRequest()
    for r in range(2):
        resource_spans = request.resource_spans.add(schema_url=f"https://example.com/r{r}")
        resource_spans.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s in range(2):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = f"scope-{s}"
            scope_spans.scope.version = f"{r}.{s}"
            for i in range(per_scope):
                scope_spans.spans.add(
                    trace_id=os.urandom(16), span_id=os.urandom(8), name=f"svc-{r}/scope-{s}/{i}"
                )
    return request


def test_large_requests_are_split_keeping_resource_and_scope(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(sink, overrides=batch_sizes(100, 100))
    request = multi_resource_spans(per_scope=130)  # 520 spans
    response = httpx.post(
        agent.http_url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF
    )
    assert response.status_code == 200

    received = sink.wait_for_items(Signal.TRACES, 520)
    assert sink.items(Signal.TRACES) == 520
    assert all(r.items <= 100 for r in received)
    assert len(received) >= 6
    sent_ids = sorted(it.item.span_id for it in items(Signal.TRACES, [request]))
    got = list(items(Signal.TRACES, [r.request for r in received]))
    assert sorted(it.item.span_id for it in got) == sent_ids
    for it in got:
        service, scope, _ = it.item.name.split("/")
        assert it.resource_attributes["service.name"] == service
        assert it.resource.schema_url == f"https://example.com/r{service[-1]}"
        assert it.scope.scope.name == scope
        assert it.scope.scope.version == f"{service[-1]}.{scope[-1]}"


def test_a_metric_with_many_points_is_split_into_metrics_of_the_same_identity(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(sink, overrides=batch_sizes(40, 40))
    request = ExportMetricsServiceRequest()
    metric = (
        request.resource_metrics.add()
        .scope_metrics.add()
        .metrics.add(name="split.me", unit="ms", description="many points")
    )
    metric.sum.aggregation_temporality = 2
    metric.sum.is_monotonic = True
    for index in range(150):
        point = metric.sum.data_points.add(as_int=index, time_unix_nano=1_700_000_000_000_000_000 + index)
        point.attributes.add(key="i").value.int_value = index
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        channel.unary_unary(SPECS[Signal.METRICS].grpc_method)(request.SerializeToString(), timeout=10)

    received = sink.wait_for_items(Signal.METRICS, 150)
    assert all(r.items <= 40 for r in received)
    values = []
    for it in items(Signal.METRICS, [r.request for r in received]):
        out = it.item
        assert (out.name, out.unit, out.description) == ("split.me", "ms", "many points")
        assert out.sum.aggregation_temporality == 2 and out.sum.is_monotonic
        for point in data_points(out):
            assert attributes(point.attributes)["i"] == point.as_int
            values.append(point.as_int)
    assert sorted(values) == list(range(150))


def test_static_resource_attributes_and_override(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    configured = {"deployment.environment": "staging", "team.size": 5, "canary": True, "weight": 0.5}
    for override in (False, True):
        agent = start_agent(
            sink,
            env={"ORASI_AGENT_ID": f"agent-override-{override}"},
            overrides={"processors": {"resource": {"attributes": configured, "override": override}}},
        )
        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.add(key="deployment.environment").value.string_value = "prod"
        resource_logs.resource.attributes.add(key="orasi.agent.id").value.string_value = "the-sender-said"
        resource_logs.scope_logs.add().log_records.add().body.string_value = f"override={override}"
        before = sink.items(Signal.LOGS)
        response = httpx.post(
            agent.http_url + "/v1/logs", content=request.SerializeToString(), headers=PROTOBUF
        )
        assert response.status_code == 200
        received = sink.wait_for_items(Signal.LOGS, before + 1)
        (it,) = [
            it
            for it in items(Signal.LOGS, [r.request for r in received])
            if it.item.body.string_value == f"override={override}"
        ]
        resource = it.resource_attributes
        assert resource["team.size"] == 5 and resource["canary"] is True and resource["weight"] == 0.5
        if override:
            assert resource["deployment.environment"] == "staging"
            assert resource["orasi.agent.id"] == "agent-override-True"
        else:
            assert resource["deployment.environment"] == "prod"
            assert resource["orasi.agent.id"] == "the-sender-said"
        # Each key once: enrichment replaces or keeps, it never duplicates.
        keys = Counter(kv.key for kv in it.resource.resource.attributes)
        assert max(keys.values()) == 1
        agent.stop()


def test_many_concurrent_senders_lose_and_duplicate_nothing(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(sink, batch_timeout=0.02, overrides=batch_sizes(25, 50))
    sink.fail_next(5, grpc.StatusCode.UNAVAILABLE)  # some exports are retried meanwhile

    def sender(worker: int) -> list[bytes]:
        sent: list[bytes] = []
        with httpx.Client(timeout=30) as client, grpc.insecure_channel(agent.grpc_endpoint) as channel:
            export = channel.unary_unary(SPECS[Signal.TRACES].grpc_method)
            for index in range(20):
                request = ExportTraceServiceRequest()
                scope = request.resource_spans.add().scope_spans.add()
                for span in range(1 + (worker + index) % 7):
                    scope.spans.add(
                        trace_id=os.urandom(16), span_id=os.urandom(8), name=f"w{worker}-{index}-{span}"
                    )
                headers = {**PROTOBUF, "x-orasi-tenant": f"tenant-{worker % 3}"}
                if index % 2:
                    export(
                        request.SerializeToString(),
                        timeout=30,
                        metadata=[("x-orasi-tenant", f"tenant-{worker % 3}")],
                    )
                else:
                    response = client.post(
                        agent.http_url + "/v1/traces", content=request.SerializeToString(), headers=headers
                    )
                    assert response.status_code == 200, response.content
                sent.extend(it.item.span_id for it in items(Signal.TRACES, [request]))
        return sent

    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = [span_id for batch in pool.map(sender, range(8)) for span_id in batch]

    received = sink.wait_for_items(Signal.TRACES, len(sent), timeout=30)
    got = [it.item.span_id for it in items(Signal.TRACES, [r.request for r in received])]
    assert len(got) == len(sent)
    assert Counter(got) == Counter(sent)
    assert all(r.items <= 50 for r in received)
    assert sum(count_items(Signal.TRACES, r.request) for r in received) == len(sent)
    assert agent.wait_for_metric("orasi_exporter_sent_items_total", len(sent), signal="traces") == len(sent)
    accepted = agent.metric("orasi_receiver_accepted_items_total", signal="traces")
    assert accepted == len(sent)
