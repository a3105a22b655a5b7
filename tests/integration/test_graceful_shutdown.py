"""SIGTERM (and SIGINT): the agent stops taking data, delivers what it accepted, and exits 0.

Data is accepted while it is still held in the agent — in the batch processor (a long batch
timeout) or in the exporter's queue (a sink that holds or refuses its answers) — and must reach
the sink during the drain, before the process exits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
import httpx
import pytest

from integration.small_requests import log_records, spans
from orasi_common.pdata import SPECS, Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.gated_sink import GatedSink
from orasi_common.testing.otlp_view import items
from orasi_common.testing.sink import OtlpSink

EXIT_TIMEOUT = 30.0


def send_mixed(agent: AgentProcess) -> tuple[list[bytes], int]:
    """Spans over HTTP and gRPC and logs over HTTP; returns (span ids, log count)."""
    over_http, over_grpc = spans(3, "http"), spans(4, "grpc")
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=over_http.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    with grpc.insecure_channel(agent.grpc_endpoint) as channel:
        channel.unary_unary(SPECS[Signal.TRACES].grpc_method)(over_grpc.SerializeToString(), timeout=10)
    response = httpx.post(
        agent.http_url + "/v1/logs",
        content=log_records(5, "drain").SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    ids = [it.item.span_id for it in items(Signal.TRACES, [over_http, over_grpc])]
    return ids, 5


def assert_clean_exit(agent: AgentProcess, sig: signal.Signals) -> None:
    agent.send_signal(sig)
    assert agent.wait(EXIT_TIMEOUT) == 0, agent.log_text()
    log_lines = agent.log_records()
    assert log_lines and all({"ts", "level", "msg"} <= line.keys() for line in log_lines)
    assert "Service stopped." in [line["msg"] for line in log_lines]
    assert not [line for line in log_lines if line["level"] in ("error", "critical")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_batched_data_is_flushed_on_shutdown(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess], sig: signal.Signals
) -> None:
    # A batch timeout far beyond the test: only the shutdown flush can send this data.
    agent = start_agent(sink, batch_timeout=3600)
    span_ids, log_count = send_mixed(agent)
    assert sink.items(Signal.TRACES) == 0 and sink.items(Signal.LOGS) == 0  # still held in the agent

    assert_clean_exit(agent, sig)
    assert sink.items(Signal.TRACES) == len(span_ids)
    assert sink.items(Signal.LOGS) == log_count
    received = [r.request for r in sink.received if r.signal is Signal.TRACES]
    assert sorted(it.item.span_id for it in items(Signal.TRACES, received)) == sorted(span_ids)


def test_queued_data_in_flight_is_delivered_before_exit(
    gated_sink: GatedSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(
        gated_sink,
        overrides={"exporters": {"otlp": {"timeout": 60, "sending_queue": {"num_consumers": 1}}}},
    )
    gated_sink.close_gate()
    span_ids, log_count = send_mixed(agent)
    gated_sink.wait_for_held(1)  # one send is stuck at the sink, the rest waits in the queue

    agent.send_signal(signal.SIGTERM)
    # The agent is draining: no longer ready (or its admin port already closed).
    deadline = time.monotonic() + EXIT_TIMEOUT
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(agent.admin_url + "/readyz").status_code == 503:
                    break
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "the agent stayed ready after SIGTERM"
            time.sleep(0.01)
    assert agent.process is not None and agent.process.poll() is None  # still draining
    gated_sink.open_gate()

    assert agent.wait(EXIT_TIMEOUT) == 0, agent.log_text()
    assert gated_sink.items(Signal.TRACES) == len(span_ids)
    assert gated_sink.items(Signal.LOGS) == log_count


def test_refused_sends_are_retried_during_the_drain(
    sink: OtlpSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(sink, batch_timeout=3600)
    span_ids, log_count = send_mixed(agent)
    sink.fail_next(4, grpc.StatusCode.UNAVAILABLE)

    assert_clean_exit(agent, signal.SIGTERM)
    assert sink.refused == 4
    assert sink.items(Signal.TRACES) == len(span_ids)
    assert sink.items(Signal.LOGS) == log_count


def test_no_data_is_taken_after_shutdown(sink: OtlpSink, start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent(sink)
    assert_clean_exit(agent, signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.post(
            agent.http_url + "/v1/traces",
            content=spans(1, "late").SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )


def test_shutdown_deadline_bounds_the_drain_when_the_next_hop_never_answers(
    gated_sink: GatedSink, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(
        gated_sink,
        overrides={
            "exporters": {
                "otlp": {"timeout": 60, "shutdown_timeout": 0.5, "sending_queue": {"num_consumers": 1}}
            }
        },
    )
    gated_sink.close_gate()  # and never opened while the agent runs
    send_mixed(agent)
    gated_sink.wait_for_held(1)

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(EXIT_TIMEOUT) == 0, agent.log_text()
    log_lines = agent.log_records()
    dropped = [line for line in log_lines if "dropped" in line["msg"]]
    assert dropped and dropped[0]["level"] == "error" and dropped[0]["items"] > 0
    assert log_lines[-1]["msg"] == "Service stopped."
