"""`orasi up`: agent → gateway → bridge in one process, on the ports given with --port.

It prints "orasi up: ready" once all three accept data; what the OpenTelemetry SDK sends to the
agent's port is then queryable with `orasi query --url` and with the REST API; SIGTERM stops it
with exit code 0, after committing the lake's buffers to the local warehouse.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from orasi_common.testing.agent_process import free_port, orasi_command
from orasi_common.up import PORTS

READY = "orasi up: ready"


@dataclass
class Up:
    """One `orasi up` process; stdout lines are collected by a thread, stderr goes to a file."""

    data_dir: Path
    ports: dict[str, int]
    log_path: Path
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _log: IO[bytes] | None = None
    _reader: threading.Thread | None = None

    def start(self) -> None:
        overrides = [arg for name, port in self.ports.items() for arg in ("--port", f"{name}={port}")]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*orasi_command(), "up", "--data-dir", str(self.data_dir), *overrides],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self._reader.start()

    def output(self) -> str:
        return "".join(self.lines) + "\n--- stderr ---\n" + self.log_path.read_text(errors="replace")[-8000:]

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not any(line.strip() == READY for line in self.lines):
            if self.process.poll() is not None:
                pytest.fail(
                    f"orasi up exited with {self.process.returncode} before it was ready:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"orasi up did not print {READY!r} within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the exit code (SIGKILL past ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.process.returncode)

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['bridge.query']}"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    ports = {name: free_port() for name in PORTS}
    assert len(set(ports.values())) == len(ports)
    process = Up(tmp_path / "data", ports, tmp_path / "orasi-up.stderr")
    process.start()
    try:
        yield process
    finally:
        if process.process is not None:
            process.terminate()


def post(url: str, sql: str, fmt: str = "json") -> httpx.Response:
    return httpx.post(f"{url}/api/v1/query", json={"sql": sql, "format": fmt}, timeout=30)


def orasi_query(url: str, sql: str, fmt: str) -> str:
    completed = subprocess.run(
        [*orasi_command(), "query", sql, "--url", url, "--format", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def send_telemetry(up: Up, service: str) -> tuple[list[Any], int]:
    """Spans and logs from the SDK to the agent's gRPC port; the spans, and the log count."""
    resource = Resource.create({"service.name": service})
    endpoint = f"127.0.0.1:{up.ports['agent.grpc']}"
    tracer_provider = TracerProvider(resource=resource)
    spans: list[Any] = []
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10))
    )
    tracer = tracer_provider.get_tracer("orasi.e2e.up")
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10))
    )
    logger = logger_provider.get_logger("orasi.e2e.up")
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER, attributes={"cart.items": 3}) as root:
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            logger.emit(severity_number=SeverityNumber.ERROR, severity_text="ERROR", body="card declined")
        spans += [root, child]
    assert tracer_provider.force_flush(10_000) and logger_provider.force_flush(10_000)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return spans, 1


def test_orasi_up_serves_the_pipeline_and_stops_cleanly(up: Up) -> None:
    up.wait_ready()
    banner = "".join(up.lines)
    assert f":{up.ports['agent.grpc']}" in banner and f":{up.ports['bridge.query']}" in banner
    for name in ("agent.admin", "gateway.admin", "bridge.admin"):
        assert httpx.get(f"http://127.0.0.1:{up.ports[name]}/readyz", timeout=5).status_code == 200, name

    service = f"up-{uuid.uuid4().hex[:8]}"
    spans, logs = send_telemetry(up, service)
    sql = (
        "SELECT name, kind, status_code, trace_id, span_id FROM spans "
        f"WHERE service_name = '{service}' ORDER BY name"
    )
    deadline = time.monotonic() + 60
    while True:
        response = post(up.query_url, sql)
        assert response.status_code == 200, response.text
        rows = response.json()["rows"]
        if len(rows) >= len(spans):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the spans never reached the lake: {rows}\n{up.output()}")
        time.sleep(0.1)
    expected = sorted(
        [
            s.name,
            s.kind.name,
            s.status.status_code.name,
            f"{s.context.trace_id:032x}",
            f"{s.context.span_id:016x}",
        ]
        for s in spans
    )
    assert rows == expected

    # `orasi query --url` gives the same answer, in each of its formats.
    answer = json.loads(orasi_query(up.query_url, sql, "json"))
    assert answer["rows"] == expected
    assert [c["name"] for c in answer["columns"]] == ["name", "kind", "status_code", "trace_id", "span_id"]
    table = orasi_query(up.query_url, sql, "table")
    assert table.splitlines()[0].split() == ["name", "kind", "status_code", "trace_id", "span_id"]
    assert all(row[4] in table for row in expected) and "(2 rows" in table
    assert list(csv.reader(io.StringIO(orasi_query(up.query_url, sql, "csv"))))[1:] == expected

    log_sql = f"SELECT body, severity_text, span_id FROM logs WHERE service_name = '{service}'"
    deadline = time.monotonic() + 60
    while len(post(up.query_url, log_sql).json()["rows"]) < logs:
        if time.monotonic() > deadline:
            pytest.fail(f"the log never reached the lake\n{up.output()}")
        time.sleep(0.1)
    assert post(up.query_url, log_sql).json()["rows"] == [["card declined", "ERROR", expected[0][4]]]

    assert up.terminate() == 0, up.output()
    assert "Traceback" not in up.output()
    # Shutting down committed the lake's buffers to the local warehouse.
    assert list((up.data_dir / "warehouse").rglob("*.parquet")), up.output()
    assert (up.data_dir / "catalog.db").is_file()


def test_orasi_up_refuses_an_unknown_port_name(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*orasi_command(), "up", "--data-dir", str(tmp_path), "--port", "bridge.nope=1234"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "--port takes NAME=PORT" in completed.stderr and "bridge.query" in completed.stderr
