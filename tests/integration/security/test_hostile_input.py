"""Hostile input, as users found it, against a real bridge process: deeply nested OTLP/JSON, log
records without any time, times at or past 2^63 ns, and slow clients on every HTTP port."""

from __future__ import annotations

import json
import socket
import time
import uuid

import grpc
import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from integration.receivers.conftest import Processes
from orasi_common.pdata.otlp_json import MAX_DEPTH
from orasi_common.testing.service_process import ServiceProcess
from orasi_common.transport.http_server import DEFAULT_LIMITS

LOGS = ("logs",)


def bridge(processes: Processes) -> ServiceProcess:
    return processes.bridge_with({}, LOGS)


def nested_json(levels: int, run: str) -> bytes:
    inner = '{"kvlistValue":{"values":[{"key":"k","value":' * levels + '{"stringValue":"x"}' + "}]}}" * levels
    return (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"run","value":{"stringValue":"'
        + run
        + '"}}],"body":'
        + inner
        + "}]}]}]}"
    ).encode()


def query_rows(process: ServiceProcess, sql: str, **time_range: int) -> list[list[object]]:
    """``sql``'s rows over ``time_range`` (``start``, ``end``; none: the API's default, the last hour)."""
    response = httpx.post(process.query_url + "/api/v1/query", json={"sql": sql, **time_range}, timeout=30)
    assert response.status_code == 200, response.text
    rows: list[list[object]] = response.json()["rows"]
    return rows


def poll_rows(process: ServiceProcess, sql: str, count: int, **time_range: int) -> list[list[object]]:
    """``query_rows`` once it finds ``count`` rows (or after 30 s, whatever it finds then)."""
    deadline = time.monotonic() + 30
    rows = query_rows(process, sql, **time_range)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = query_rows(process, sql, **time_range)
    return rows


def post_logs(process: ServiceProcess, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(
        process.http_url + "/v1/logs", content=body, headers={"content-type": content_type}, timeout=30
    )


def test_deeply_nested_json_is_refused_with_400_naming_the_limit(processes: Processes) -> None:
    process = bridge(processes)
    response = post_logs(process, nested_json(5_000, "deep"))
    assert response.status_code == 400, response.text
    assert f"deeper than {MAX_DEPTH} levels" in response.json()["message"]
    ok = post_logs(process, nested_json(5, "shallow"))
    assert ok.status_code == 200, ok.text
    log = process.log_text()
    assert "RecursionError" not in log and "Traceback" not in log, log[-3000:]


def test_log_records_without_any_time_are_visible_to_default_queries(processes: Processes) -> None:
    process = bridge(processes)
    run = uuid.uuid4().hex
    before = time.time_ns()
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"body": {"stringValue": f"untimed {i}"}, "attributes": [attr("run", run)]}
                            for i in range(3)
                        ]
                    }
                ]
            }
        ]
    }
    response = post_logs(process, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    after = time.time_ns()
    sql = (
        "SELECT time_unix_nano, observed_time_unix_nano, epoch_ns(time) FROM logs "
        f"WHERE attributes['run'] = '{run}'"
    )
    rows = poll_rows(process, sql, 3)
    assert len(rows) == 3, rows
    for time_ns, observed, time_column in rows:
        assert time_ns is None
        assert isinstance(observed, int) and before <= observed <= after
        assert isinstance(time_column, int) and abs(time_column - observed) < 1000  # `time` is µs


def attr(key: str, value: str) -> dict[str, object]:
    return {"key": key, "value": {"stringValue": value}}


def test_times_at_or_past_2_63_are_refused_by_http_and_grpc_naming_the_field(processes: Processes) -> None:
    process = bridge(processes)
    run = uuid.uuid4().hex
    for too_late in (2**63, 2**64 - 1):
        body = {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {"logRecords": [{"timeUnixNano": str(too_late), "attributes": [attr("run", run)]}]}
                    ]
                }
            ]
        }
        response = post_logs(process, json.dumps(body).encode())
        assert response.status_code == 400, response.text
        assert "time_unix_nano" in response.json()["message"], response.text

    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.observed_time_unix_nano = 2**63
    record.attributes.append(KeyValue(key="run", value=AnyValue(string_value=run)))
    with grpc.insecure_channel(process.grpc_endpoint) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        try:
            export(request.SerializeToString(), timeout=30)
            raise AssertionError("a time of 2^63 ns was accepted over gRPC")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert "observed_time_unix_nano" in str(error.details())

    # The limit itself (2^63 - 1) is accepted and stored as it is, never wrapped negative.
    latest = ExportLogsServiceRequest()
    kept = latest.resource_logs.add().scope_logs.add().log_records.add()
    kept.CopyFrom(
        LogRecord(
            time_unix_nano=2**63 - 1, attributes=[KeyValue(key="run", value=AnyValue(string_value=run))]
        )
    )
    response = post_logs(process, latest.SerializeToString(), "application/x-protobuf")
    assert response.status_code == 200, response.text
    sql = f"SELECT time_unix_nano, time FROM logs WHERE attributes['run'] = '{run}'"
    rows = poll_rows(process, sql, 1, start=0, end=2**63 - 1)
    assert rows == [[2**63 - 1, "2262-04-11T23:47:16.854775+00:00"]], rows


def slow_head_held_for(url: str, limit: float) -> float:
    """Seconds a client sending a request head byte by byte keeps its connection (at most ``limit``)."""
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=limit) as sock:
        head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 10_000
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if time.monotonic() - started > limit:
                break
            time.sleep(0.05)
            sock.settimeout(0.0)
            try:
                if sock.recv(1) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            finally:
                sock.settimeout(limit)
    return time.monotonic() - started


def test_slow_clients_are_disconnected_on_every_http_port(processes: Processes) -> None:
    process = bridge(processes)
    limit = DEFAULT_LIMITS.header_timeout
    for name, url in (
        ("OTLP/HTTP", process.http_url),
        ("query API", process.query_url),
        ("admin", process.admin_url),
    ):
        held = slow_head_held_for(url, limit * 3)
        assert held < limit + 5, f"{name}: a slow client held its connection {held:.1f} s (limit {limit} s)"
    answer = httpx.get(process.query_url + "/api/v1/tables", headers={"x-big": "b" * 100_000}, timeout=10)
    assert answer.status_code == 431
