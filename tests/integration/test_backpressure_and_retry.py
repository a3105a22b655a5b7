"""Retries, permanent refusals, pressure (memory limiter, full queue) and the admin endpoints.

The agent runs as a real process in front of a real gRPC sink that can refuse (fail_next) or
hold back (GatedSink) its answers; outcomes are read from the sink and from /metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integration.small_requests import log_records, spans
from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp_json import to_json
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.gated_sink import GatedSink
from orasi_common.testing.otlp_view import items
from orasi_common.testing.sink import OtlpSink

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def gauge_points(count: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="backpressure.gauge")
    for index in range(count):
        metric.gauge.data_points.add(as_int=index, time_unix_nano=1_700_000_000_000_000_000 + index)
    return request


def post(
    agent: AgentProcess, request: object, content_type: str = PROTOBUF, path: str = "/v1/traces"
) -> httpx.Response:
    body = request.SerializeToString() if content_type == PROTOBUF else to_json(request)  # type: ignore[attr-defined]
    return httpx.post(agent.http_url + path, content=body, headers={"content-type": content_type}, timeout=30)


def grpc_export(agent: AgentProcess, signal: Signal, request: object) -> grpc.Call:
    """Export over gRPC; returns the call (raises grpc.RpcError on failure)."""
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        export = channel.unary_unary(SPECS[signal].grpc_method)
        _, call = export.with_call(request.SerializeToString(), timeout=30)  # type: ignore[attr-defined]
        return call


def span_ids(requests: list[ExportTraceServiceRequest]) -> list[bytes]:
    return [it.item.span_id for it in items(Signal.TRACES, requests)]


class Counted:
    """The shared agent's /metrics counted from this test's start: the tests that send to an
    agent of the default configuration share one per module, so each reads its own increments."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self._start = list(agent.metric_samples())

    def _before(self, name: str, labels: dict[str, str]) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in self._start
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.agent.metric(name, **labels) - self._before(name, labels)

    def wait_for_metric(self, name: str, expected: float, **labels: str) -> float:
        before = self._before(name, labels)
        return self.agent.wait_for_metric(name, before + expected, **labels) - before


@pytest.fixture(scope="module")
def shared_agent(module_sink: OtlpSink, module_start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    return module_start_agent(module_sink)


@pytest.fixture
def shared_sink(module_sink: OtlpSink, shared_agent: AgentProcess) -> OtlpSink:
    """The shared agent's sink, emptied (nothing arrived, no refusal pending)."""
    module_sink.reset()
    return module_sink


@pytest.fixture
def counted(shared_agent: AgentProcess, shared_sink: OtlpSink) -> Counted:
    assert shared_agent.running(), f"the shared agent exited ({shared_agent.returncode})"
    return Counted(shared_agent)


def retry_delay(status: status_pb2.Status) -> float:
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError(f"no RetryInfo in {status}")


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retry_after"),
    [
        (grpc.StatusCode.UNAVAILABLE, None),
        (grpc.StatusCode.UNAVAILABLE, 0.05),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 0.05),  # retryable only with RetryInfo (OTLP spec)
        (grpc.StatusCode.DEADLINE_EXCEEDED, None),
    ],
    ids=["unavailable", "unavailable-retryinfo", "resource-exhausted-retryinfo", "deadline-exceeded"],
)
def test_retryable_refusals_are_retried_until_delivered(
    shared_sink: OtlpSink, counted: Counted, code: grpc.StatusCode, retry_after: float | None
) -> None:
    sink, agent = shared_sink, counted.agent
    sink.fail_next(3, code, retry_after)
    sent = [spans(2, "http-pb"), spans(3, "http-json"), spans(4, "grpc")]
    assert post(agent, sent[0]).status_code == 200
    assert post(agent, sent[1], JSON).status_code == 200
    grpc_export(agent, Signal.TRACES, sent[2])

    received = sink.wait_for_items(Signal.TRACES, 9)
    assert sink.refused == 3
    assert sorted(span_ids([r.request for r in received])) == sorted(span_ids(sent))
    assert (
        counted.wait_for_metric("orasi_exporter_sent_items_total", 9, signal="traces", exporter="otlp") == 9
    )
    assert counted.metric("orasi_exporter_retries_total", exporter="otlp") == 3
    assert counted.metric("orasi_exporter_send_failed_items_total") == 0


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED],
    ids=["invalid-argument", "resource-exhausted-without-retryinfo", "permission-denied"],
)
def test_permanent_refusal_is_dropped_and_counted(
    shared_sink: OtlpSink, counted: Counted, code: grpc.StatusCode
) -> None:
    sink, agent = shared_sink, counted.agent
    # A batch refused as invalid is sent again in halves to isolate the refused items: refused
    # every time, its 3 spans cost 5 sends (3, then 2 and 1, then the 2 as 1 and 1).
    refusals = 5 if code is grpc.StatusCode.INVALID_ARGUMENT else 1
    sink.fail_next(refusals, code)
    dropped = spans(3, "dropped")
    assert post(agent, dropped).status_code == 200  # accepted into the queue, then refused upstream
    assert (
        counted.wait_for_metric("orasi_exporter_send_failed_items_total", 3, signal="traces", exporter="otlp")
        == 3
    )
    assert sink.refused == refusals

    delivered = spans(2, "delivered")
    assert post(agent, delivered).status_code == 200
    received = sink.wait_for_items(Signal.TRACES, 2)
    assert span_ids([r.request for r in received]) == span_ids([delivered])
    assert (
        counted.wait_for_metric("orasi_exporter_sent_items_total", 2, signal="traces", exporter="otlp") == 2
    )
    assert counted.metric("orasi_exporter_send_failed_items_total", signal="traces", exporter="otlp") == 3
    assert counted.metric("orasi_exporter_retries_total") == 0  # never retried


# --- the memory limiter --------------------------------------------------------------------

MEMORY_LIMITED = {"processors": {"memory_limiter": {"limit_mib": 1, "retry_after": 2}}}


def test_memory_limiter_refuses_with_retry_advice(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(sink, overrides=MEMORY_LIMITED)

    response = post(agent, spans(2))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"] == PROTOBUF
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.UNAVAILABLE
    assert "memory" in status.message
    assert retry_delay(status) == 2

    response = post(agent, spans(3), JSON)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"] == JSON
    status = json_format.Parse(response.text, status_pb2.Status())
    assert status.code == code_pb2.UNAVAILABLE and retry_delay(status) == 2

    response = post(agent, log_records(4), path="/v1/logs")
    assert response.status_code == 503

    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(agent, Signal.METRICS, gauge_points(5))
    error = raised.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    rich = status_pb2.Status.FromString(details)
    assert rich.code == code_pb2.UNAVAILABLE and retry_delay(rich) == 2

    def refused(signal: str, transport: str) -> float:
        return agent.metric(
            "orasi_receiver_refused_items_total", signal=signal, receiver="otlp", transport=transport
        )

    assert refused("traces", "http") == 5
    assert refused("logs", "http") == 4
    assert refused("metrics", "grpc") == 5
    assert refused("traces", "grpc") == 0
    assert agent.metric("orasi_receiver_accepted_items_total") == 0
    assert (
        agent.metric("orasi_processor_refused_items_total", signal="traces", processor="memory_limiter") == 5
    )
    assert agent.metric("orasi_process_memory_rss_bytes") > 1024 * 1024
    assert sink.items(Signal.TRACES) + sink.items(Signal.METRICS) + sink.items(Signal.LOGS) == 0
    # Refusing data is not being unhealthy: the agent stays live and ready.
    assert agent.get("/healthz").status_code == 200
    assert agent.get("/readyz").status_code == 200


# --- a full sending queue --------------------------------------------------------------------


def _queue_config(on_full: str) -> dict[str, object]:
    return {
        # Every request is sent on by the batch processor inside its consume (send_batch_size 1),
        # so a refusal of the queue reaches the sender.
        "processors": {"batch": {"send_batch_size": 1, "timeout": 10}},
        "exporters": {
            "otlp": {
                "timeout": 60,
                "sending_queue": {
                    "num_consumers": 1,
                    "max_size_mib": 0.0001,  # ~100 bytes: one batch fills it
                    "on_full": on_full,
                    "block_timeout": 0.2,
                },
            }
        },
    }


def _agent_with_a_full_queue(
    gated_sink: GatedSink, start_agent: Callable[..., AgentProcess], on_full: str
) -> tuple[AgentProcess, ExportTraceServiceRequest]:
    """An agent whose only sender waits on the (closed) sink while its queue holds the batch
    of ``first`` (two spans), returned with it."""
    agent = start_agent(gated_sink, overrides=_queue_config(on_full))
    gated_sink.close_gate()
    first = spans(2, "first")
    assert post(agent, first).status_code == 200
    gated_sink.wait_for_held(1)
    return agent, first


def test_full_queue_blocks_then_refuses_with_retry_advice(
    gated_sink: GatedSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent, first = _agent_with_a_full_queue(gated_sink, start_agent, "block")

    second = spans(3, "second")
    response = post(agent, second)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED and "queue" in status.message
    assert retry_delay(status) >= 0.2

    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(agent, Signal.TRACES, second)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    rich = status_pb2.Status.FromString(dict(raised.value.trailing_metadata())["grpc-status-details-bin"])
    assert retry_delay(rich) >= 0.2  # RetryInfo makes RESOURCE_EXHAUSTED retryable for OTLP clients

    assert agent.metric("orasi_receiver_refused_items_total", signal="traces", transport="http") == 3
    assert agent.metric("orasi_receiver_refused_items_total", signal="traces", transport="grpc") == 3
    assert agent.metric("orasi_queue_size_bytes", exporter="otlp") > 0  # held until its send ends

    gated_sink.open_gate()
    gated_sink.wait_for_items(Signal.TRACES, 2)
    # The sender retries as told, and now the data gets through.
    assert post(agent, second).status_code == 200
    received = gated_sink.wait_for_items(Signal.TRACES, 5)
    assert sorted(span_ids([r.request for r in received])) == sorted(span_ids([first, second]))
    assert agent.wait_for_metric("orasi_exporter_sent_items_total", 5, signal="traces") == 5


def test_full_queue_drop_newest_drops_and_counts(
    gated_sink: GatedSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent, first = _agent_with_a_full_queue(gated_sink, start_agent, "drop_newest")

    assert post(agent, spans(3, "dropped")).status_code == 200  # accepted, then dropped by policy
    assert agent.metric("orasi_exporter_enqueue_failed_items_total", signal="traces", exporter="otlp") == 3

    gated_sink.open_gate()
    received = gated_sink.wait_for_items(Signal.TRACES, 2)
    third = spans(1, "third")
    assert post(agent, third).status_code == 200
    received = gated_sink.wait_for_items(Signal.TRACES, 3)
    assert sorted(span_ids([r.request for r in received])) == sorted(span_ids([first, third]))


# --- what /metrics counts, and the admin endpoints -------------------------------------------


def test_accepted_items_are_counted_per_signal_and_transport(shared_sink: OtlpSink, counted: Counted) -> None:
    sink, agent = shared_sink, counted.agent
    assert post(agent, spans(2)).status_code == 200
    assert post(agent, spans(3), JSON).status_code == 200
    grpc_export(agent, Signal.TRACES, spans(4))
    assert post(agent, gauge_points(5), path="/v1/metrics").status_code == 200
    grpc_export(agent, Signal.METRICS, gauge_points(6))
    assert post(agent, log_records(7), JSON, path="/v1/logs").status_code == 200
    grpc_export(agent, Signal.LOGS, log_records(8))

    def accepted(signal: str, transport: str) -> float:
        return counted.metric(
            "orasi_receiver_accepted_items_total", signal=signal, receiver="otlp", transport=transport
        )

    assert (accepted("traces", "http"), accepted("traces", "grpc")) == (5, 4)
    assert (accepted("metrics", "http"), accepted("metrics", "grpc")) == (5, 6)
    assert (accepted("logs", "http"), accepted("logs", "grpc")) == (7, 8)
    assert counted.metric("orasi_receiver_refused_items_total") == 0

    sink.wait_for_items(Signal.TRACES, 9)
    sink.wait_for_items(Signal.METRICS, 11)
    sink.wait_for_items(Signal.LOGS, 15)
    for signal, count in (("traces", 9), ("metrics", 11), ("logs", 15)):
        assert (
            counted.wait_for_metric("orasi_exporter_sent_items_total", count, signal=signal, exporter="otlp")
            == count
        )
    # Request durations are recorded by handler and status code.
    bad = httpx.post(
        agent.http_url + "/v1/traces", content=b"garbage\xff", headers={"content-type": PROTOBUF}
    )
    assert bad.status_code == 400
    assert (
        counted.metric(
            "http_request_duration_seconds_count",
            server="otlp",
            handler="/v1/traces",
            method="POST",
            code="200",
        )
        == 2
    )
    assert counted.metric("http_request_duration_seconds_count", handler="/v1/traces", code="400") == 1


def test_admin_endpoints(counted: Counted) -> None:
    agent = counted.agent

    health = agent.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    ready = agent.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True

    pipelines = agent.get("/debug/pipelines")
    assert pipelines.status_code == 200
    described = pipelines.json()
    assert described["ready"] is True and described["started"] is True
    assert described["receivers"] == ["otlp"] and described["exporters"] == ["otlp"]
    by_id = {p["id"]: p for p in described["pipelines"]}
    configured = agent.config["service"]["pipelines"]
    assert set(by_id) == set(configured)
    for pipeline_id, pipeline in configured.items():
        assert by_id[pipeline_id]["signal"] == pipeline_id
        for part in ("receivers", "processors", "exporters"):
            assert by_id[pipeline_id][part] == pipeline[part]

    metrics = agent.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert agent.metric("orasi_build_info", service="agent") == 1
    capacity = agent.config["exporters"]["otlp"]["sending_queue"]["max_size_mib"] * 1024 * 1024
    assert agent.metric("orasi_queue_capacity_bytes", exporter="otlp") == capacity

    assert agent.get("/nope").status_code == 404
    assert httpx.post(agent.admin_url + "/healthz").status_code == 405
