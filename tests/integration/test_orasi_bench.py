"""`orasi bench` as users run it: a subprocess against a real `orasi agent` / `orasi gateway`, and
straight against gRPC sinks that acknowledge, refuse, or hold answers back.

    orasi bench ──OTLP gRPC / HTTP──▶ orasi agent (otlp → batch → otlp) ──▶ OtlpSink
    orasi bench ──OTAP──▶ orasi gateway (otap receiver → otlp exporter) ──▶ OtlpSink
    orasi bench ──OTLP gRPC──▶ OtlpSink refusing / GatedSink holding answers
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orasi_common.pdata import Signal
from orasi_common.testing.gated_sink import GatedSink
from orasi_common.testing.service_process import ServiceProcess, free_port, orasi_command
from orasi_common.testing.shared import shared_path
from orasi_common.testing.sink import OtlpSink

HOST = "127.0.0.1"


def bench(endpoint: str, *args: str) -> dict[str, Any]:
    """Run ``orasi bench --json`` and return its report."""
    done = subprocess.run(
        [*orasi_command(), "bench", "--endpoint", endpoint, "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def service_config(receivers: dict[str, Any], sink: OtlpSink, processors: list[str]) -> dict[str, Any]:
    pipeline = {"receivers": list(receivers), "processors": processors, "exporters": ["otlp"]}
    return {
        "receivers": receivers,
        "processors": {"batch": {"timeout": 0.05}},
        "exporters": {"otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}, "compression": "none"}},
        "service": {
            "telemetry": {"admin": {"endpoint": f"{HOST}:{free_port()}"}},
            "pipelines": {signal.value: pipeline for signal in Signal},
        },
    }


@pytest.fixture
def agent(sink: OtlpSink, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An agent exporting to ``sink``: its OTLP gRPC and HTTP endpoints."""
    grpc_endpoint, http_endpoint = f"{HOST}:{free_port()}", f"{HOST}:{free_port()}"
    receivers = {
        "otlp": {"protocols": {"grpc": {"endpoint": grpc_endpoint}, "http": {"endpoint": http_endpoint}}}
    }
    with ServiceProcess.from_config("agent", service_config(receivers, sink, ["batch"]), tmp_path).start():
        yield grpc_endpoint, http_endpoint


def assert_shape(report: dict[str, Any]) -> None:
    assert set(report) >= {
        "endpoint", "protocol", "signal", "source", "rate", "duration_s", "workers",
        "requests", "items", "throughput", "latency_ms", "late_sends", "timeline",
    }  # fmt: skip
    assert set(report["items"]) == {"sent", "acknowledged", "refused", "refused_by_status"}
    assert set(report["requests"]) == {"sent", "acknowledged", "refused", "unanswered"}
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["timeline"] and set(report["timeline"][0]) == {
        "t_s", "items_acknowledged_per_s", "items_refused_per_s", "latency_ms",
    }  # fmt: skip


@pytest.mark.parametrize("protocol", ["otlp-grpc", "otlp-http"])
def test_what_the_agent_acknowledges_reaches_the_sink(
    protocol: str, agent: tuple[str, str], sink: OtlpSink, tmp_path: Path
) -> None:
    endpoint = agent[0] if protocol == "otlp-grpc" else agent[1]
    plot = tmp_path / "bench.png"
    report = bench(
        endpoint, "--protocol", protocol, "--rate", "2000", "--duration", "1.5", "--plot", str(plot)
    )
    assert_shape(report)
    items = report["items"]
    assert items["acknowledged"] == items["sent"] > 0
    assert items["refused"] == 0 and items["refused_by_status"] == {}
    assert report["requests"]["unanswered"] == 0
    sink.wait_for_items(Signal.TRACES, items["acknowledged"])
    assert sink.items(Signal.TRACES) == items["acknowledged"]
    assert 1000 < report["throughput"]["items_per_s"] < 3000  # the fixed rate, roughly
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_corpus_file_of_logs_at_the_maximal_rate(agent: tuple[str, str], sink: OtlpSink) -> None:
    corpus = shared_path("corpus", "loghub-otellogs.zst")
    report = bench(agent[0], "--signal", "logs", "--source", str(corpus), "--duration", "1", "--workers", "2")
    assert report["rate"] is None and report["items_per_request"] == 100
    sink.wait_for_items(Signal.LOGS, report["items"]["acknowledged"])
    assert sink.items(Signal.LOGS) == report["items"]["acknowledged"] == report["items"]["sent"]


def test_otap_through_a_gateway(sink: OtlpSink, tmp_path: Path) -> None:
    endpoint = f"{HOST}:{free_port()}"
    receivers = {"otap": {"protocols": {"grpc": {"endpoint": endpoint}}}}
    with ServiceProcess.from_config("gateway", service_config(receivers, sink, []), tmp_path).start():
        report = bench(
            endpoint, "--protocol", "otap", "--signal", "metrics", "--rate", "2000", "--duration", "1"
        )
        sink.wait_for_items(Signal.METRICS, report["items"]["acknowledged"])
    assert report["items"]["acknowledged"] == report["items"]["sent"] > 0
    assert sink.items(Signal.METRICS) == report["items"]["acknowledged"]


def test_refusals_are_counted_by_status(sink: OtlpSink) -> None:
    sink.fail_next(3, grpc.StatusCode.UNAVAILABLE)
    sink.fail_next(2, grpc.StatusCode.INVALID_ARGUMENT)
    report = bench(sink.endpoint, "--rate", "1000", "--duration", "1", "--workers", "1", "--batch", "50")
    items = report["items"]
    assert items["refused_by_status"] == {"INVALID_ARGUMENT": 100, "UNAVAILABLE": 150}
    assert report["requests"]["refused"] == 5 == sink.refused
    assert items["acknowledged"] == sink.items(Signal.TRACES) == items["sent"] - 250


def test_answers_held_past_the_timeout_count_as_deadline_exceeded() -> None:
    with GatedSink() as held:
        held.close_gate()
        report = bench(held.endpoint, "--duration", "1", "--workers", "2", "--timeout", "0.3")
        held.open_gate()
    assert report["items"]["acknowledged"] == 0
    assert set(report["items"]["refused_by_status"]) == {"DEADLINE_EXCEEDED"}
    assert report["items"]["refused"] == report["items"]["sent"] > 0
