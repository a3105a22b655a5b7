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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

from orasi_common.testing.service_process import ServiceStartError, orasi_command
from orasi_common.testing.up_process import READY, UpProcess


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    with UpProcess.launch(tmp_path) as process:
        yield process


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


def send_telemetry(up: UpProcess, service: str) -> tuple[list[Any], int]:
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


def test_orasi_up_serves_the_pipeline_and_stops_cleanly(up: UpProcess) -> None:
    # The banner comes once all three services accept data (the agent, ready, starts last).
    deadline = time.monotonic() + 30
    while READY not in (banner := up.log_of()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert READY in banner, banner
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
        response = up.post(sql)
        assert response.status_code == 200, response.text
        rows = response.json()["rows"]
        if len(rows) >= len(spans):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the spans never reached the lake: {rows}\n{up.log_text()}")
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
    # The derived span_metrics_1m counts them (from the buffered spans, or committed with them).
    metrics_sql = f"SELECT sum(span_count) FROM span_metrics_1m WHERE service_name = '{service}'"
    assert up.post(metrics_sql).json()["rows"] == [[len(spans)]]

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
    while len(up.post(log_sql).json()["rows"]) < logs:
        if time.monotonic() > deadline:
            pytest.fail(f"the log never reached the lake\n{up.log_text()}")
        time.sleep(0.1)
    assert up.post(log_sql).json()["rows"] == [["card declined", "ERROR", expected[0][4]]]

    assert up.terminate() == 0, up.log_text()
    assert "Traceback" not in up.log_text()
    # Shutting down committed the lake's buffers to the local warehouse.
    assert list((up.data_dir / "warehouse").rglob("*.parquet")), up.log_text()
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


def test_a_second_orasi_up_on_the_same_data_directory_is_refused(up: UpProcess, tmp_path: Path) -> None:
    """Two processes appending to one write-ahead log would corrupt it: the data directory is
    locked (a lock the kernel drops when its holder dies, so a killed one leaves none behind)."""
    (tmp_path / "second").mkdir()
    second = UpProcess.on_free_ports(tmp_path / "second", data_dir=up.data_dir)
    with pytest.raises(ServiceStartError):
        second.start()
    assert second.wait(60) == 1, second.log_text()
    second.stop()
    assert "another orasi up is using the data directory" in second.log_text()
    assert httpx.get(f"http://127.0.0.1:{up.ports['agent.admin']}/readyz", timeout=5).status_code == 200
