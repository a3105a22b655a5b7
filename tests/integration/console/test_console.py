"""The web console (issue 18) in a real headless browser (Debian's chromium through Playwright),
against a real bridge whose spans and logs arrived over OTLP: the page loads without console
errors, a SQL query returns rows (and downloads as CSV), the services overview draws its charts,
a trace renders its spans with attributes and events, and log search finds a record. Every step
leaves a screenshot under the test's tmp dir; failures name it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.trace.v1 import trace_pb2
from playwright.sync_api import Browser, ConsoleMessage, Page

from integration.otap_data import kv
from orasi_common.testing.service_process import ServiceProcess

TRACE = "5b8efff798038103d269b633813fc60c"
ROOT, DB, PAY = "eee19b7ec3c1b174", "aaa19b7ec3c1b175", "bbb19b7ec3c1b176"
NOW = time.time_ns() - 5 * 60 * 10**9  # five minutes ago


def spans() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    plan: list[tuple[str, str, str, str, int, int, dict[str, Any]]] = [
        ("frontend", ROOT, "", "GET /checkout", 0, 120, {"http.route": "/checkout"}),
        ("checkout", DB, ROOT, "SELECT orders", 10, 30, {"db.system": "postgresql"}),
        ("checkout", PAY, ROOT, "charge card", 45, 60, {"payment.provider": "acme"}),
    ]
    for service_name, span_id, parent, name, offset_ms, duration_ms, attributes in plan:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(kv("service.name", service_name))
        span = resource_spans.scope_spans.add().spans.add(
            trace_id=bytes.fromhex(TRACE),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex(parent),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_SERVER if not parent else trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=NOW + offset_ms * 10**6,
            end_time_unix_nano=NOW + (offset_ms + duration_ms) * 10**6,
        )
        span.attributes.extend(kv(k, v) for k, v in attributes.items())
        if span_id == PAY:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            event = span.events.add(time_unix_nano=NOW + 50 * 10**6, name="card declined")
            event.attributes.append(kv("decline.code", "insufficient_funds"))
    return request


def logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", "checkout"))
    records = resource_logs.scope_logs.add().log_records
    for offset, severity, text in [
        (1, 9, "order 41 accepted"),
        (2, 17, "payment declined for order 42"),
        (3, 9, "order 43 accepted"),
    ]:
        record = records.add(time_unix_nano=NOW + offset * 10**9, severity_number=severity, severity_text="")
        record.body.string_value = text
        if "declined" in text:
            record.trace_id, record.span_id = bytes.fromhex(TRACE), bytes.fromhex(PAY)
    return request


def send(bridge: ServiceProcess) -> None:
    with grpc.insecure_channel(bridge.grpc_endpoint) as channel:
        TraceServiceStub(channel).Export(spans(), timeout=30)  # as the tenant "default"
        LogsServiceStub(channel).Export(logs(), timeout=30)


class Shots:
    """Screenshots of one page, numbered in the order taken."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.taken = page, folder, 0

    def __call__(self, name: str) -> str:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return f"(screenshot: {path})"


def test_the_console_reads_the_lake_through_the_public_apis(
    bridge: ServiceProcess, browser: Browser, screenshots: Path
) -> None:
    send(bridge)
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.on("console", lambda message: _keep_error(message, errors))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    shot = Shots(page, screenshots)

    # the page loads, from the bridge alone
    page.goto(bridge.query_url + "/", wait_until="networkidle")
    note = shot("loaded")
    assert page.title() == "Orasi console", note
    assert page.locator("#view-sql").is_visible(), note
    page.fill("#apikey", "key-default")  # the bridge requires a key; the page sends it as a Bearer

    # SQL: rows, timing, CSV
    page.fill("#sql-text", "SELECT name, service_name, duration_ns FROM spans ORDER BY name")
    page.click("#sql-run")
    page.wait_for_function("document.querySelectorAll('#sql-result tbody tr').length === 3")
    cells = page.locator("#sql-result tbody tr td:first-child").all_inner_texts()
    note = shot("sql")
    assert cells == ["GET /checkout", "SELECT orders", "charge card"], note  # byte order
    assert page.inner_text("#sql-status").startswith("3 rows in "), note
    with page.expect_download() as download:
        page.click("#sql-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "name,service_name,duration_ns", note
    assert lines[1:] == [
        "GET /checkout,frontend,120000000",
        "SELECT orders,checkout,30000000",
        "charge card,checkout,60000000",
    ], note

    # a refused query shows its message, not a broken page
    page.fill("#sql-text", "DROP TABLE spans")
    page.click("#sql-run")
    page.wait_for_function("document.querySelector('#sql-status').classList.contains('error')")
    note = shot("sql-refused")
    assert "only SELECT" in page.inner_text("#sql-status"), note
    # the browser logs the refused request (HTTP 400) itself; nothing else may be logged
    assert len(errors) == 1 and "status of 400" in errors[0], f"{errors} {note}"
    errors.clear()

    # services overview: one line per service in each chart, and the summary table
    page.goto(bridge.query_url + "/#services")
    page.wait_for_selector("#chart-p95 svg path[data-service='checkout']", state="attached")
    note = shot("services")
    for chart in ("rate", "errors", "p95"):
        drawn = page.locator(f"#chart-{chart} svg path[data-service]").evaluate_all(
            "paths => paths.map(p => p.dataset.service).sort()"
        )
        assert drawn == ["checkout", "frontend"], (chart, note)
    summary = page.locator("#services-summary tbody tr").all_inner_texts()
    assert [row.split("\t")[:3] for row in summary] == [["checkout", "2", "50"], ["frontend", "1", "0"]], note

    # the trace view: recent traces, then the waterfall with the span's attributes and events
    page.goto(bridge.query_url + "/#trace")
    page.wait_for_selector("#trace-recent tbody tr")
    page.click("#trace-recent tbody tr")
    page.wait_for_function("document.querySelectorAll('.span-row').length === 3")
    note = shot("trace")
    labels = page.locator(".span-row .span-label").all_inner_texts()
    assert labels == ["frontendGET /checkout", "checkoutSELECT orders", "checkoutcharge card"], note
    assert page.url.endswith(f"#trace/{TRACE}"), note
    page.click(f".span-row[data-span-id='{PAY}']")
    details = page.inner_text("#trace-details")
    note = shot("span")
    assert "charge card" in details and "payment.provider" in details and "acme" in details, note
    assert "Events (1)" in details and "card declined" in details and "insufficient_funds" in details, note
    assert page.locator(f".span-row[data-span-id='{PAY}'] .span-bar.error").count() == 1, note

    # log search
    page.goto(bridge.query_url + "/#logs")
    page.fill("#logs-text", "DECLINED")
    page.click("#logs-search")
    page.wait_for_function("document.querySelector('#logs-status').textContent.startsWith('1 records')")
    note = shot("logs")
    rows = page.locator("#logs-result tbody tr").all_inner_texts()
    assert len(rows) == 1 and "payment declined for order 42" in rows[0] and TRACE in rows[0], note
    page.click("#logs-result tbody tr")  # a record with a trace opens it
    page.wait_for_function("document.querySelectorAll('.span-row').length === 3")
    note = shot("log-to-trace")

    assert errors == [], f"console errors: {errors} {note}"
    assert len(list(screenshots.glob("*.png"))) == 8, note


def _keep_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(f"console: {message.text} at {message.location}")
