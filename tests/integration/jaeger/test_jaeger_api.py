"""The Jaeger query API on the bridge's REST port (issue 18), against a real bridge process whose
spans arrived over OTLP and live in a real lake.

Expected documents are written by hand from Jaeger's JSON model (``model/json``) and its query
HTTP handler (the envelope, status codes and messages), and from the OTLP → Jaeger mapping of
Jaeger's translator: span.kind, otel.status_code / error, otel.scope.*, events → logs, links →
FOLLOWS_FROM, resource → process. A third-party Jaeger client (jaeger-mcp's ``JaegerClient``)
reads the same API.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from jaeger_mcp import JaegerClient
from jaeger_mcp.client import JaegerHTTPClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from integration.jaeger.conftest import jaeger, send
from integration.otap_data import kv
from orasi_common.testing.service_process import ServiceProcess

NOW_US = time.time_ns() // 1000 // 1000 * 1000  # whole milliseconds, so µs values are exact
T = NOW_US - 10 * 60 * 10**6  # ten minutes ago, in µs
MS = 1000
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
TRACE_B_JAEGER = "af7651916cd43dd8448eb211c80319c"  # model.TraceID.String(): no leading zero
TRACE_A = "00000000000000001122334455667788"
TRACE_A_JAEGER = "1122334455667788"
ROOT, QUERY, BACKEND, NIGHTLY = "00000000000000a1", "00000000000000a2", "00000000000000b3", "00000000000000c4"


def _span(resource: dict[str, Any], scope: tuple[str, str], **fields: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kv(k, v) for k, v in resource.items())
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope
    attributes = fields.pop("attributes", {})
    events = fields.pop("events", [])
    links = fields.pop("links", [])
    span = scope_spans.spans.add(**fields)
    span.attributes.extend(kv(k, v) for k, v in attributes.items())
    for event in events:
        span.events.add(time_unix_nano=event[0], name=event[1]).attributes.extend(
            kv(k, v) for k, v in event[2].items()
        )
    for trace_id, span_id in links:
        span.links.add(trace_id=bytes.fromhex(trace_id), span_id=bytes.fromhex(span_id))
    return request


FRONTEND = {"service.name": "frontend", "host.name": "web-1", "process.pid": 4242}
BACKEND_RESOURCE = {"service.name": "backend"}
SCOPE = ("io.orasi.test", "1.2.3")


def requests() -> list[ExportTraceServiceRequest]:
    def ids(trace_id: str, span_id: str, parent: str = "") -> dict[str, bytes]:
        return {
            "trace_id": bytes.fromhex(trace_id),
            "span_id": bytes.fromhex(span_id),
            "parent_span_id": bytes.fromhex(parent),
        }

    def times(start_us: int, duration_us: int) -> dict[str, int]:
        return {
            "start_time_unix_nano": start_us * 1000,
            "end_time_unix_nano": (start_us + duration_us) * 1000,
        }

    status = trace_pb2.Status
    return [
        _span(
            FRONTEND,
            SCOPE,
            **ids(TRACE_B, ROOT),
            **times(T, 50 * MS),
            name="GET /checkout",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            trace_state="vendor=x",
            flags=1,
            status=status(code=status.STATUS_CODE_OK),
            attributes={"http.method": "GET", "http.status_code": 200, "ratio": 0.5, "cached": False},
        ),
        _span(
            FRONTEND,
            SCOPE,
            **ids(TRACE_B, QUERY, ROOT),
            **times(T + 1 * MS, 10 * MS),
            name="SELECT orders",
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            events=[((T + 2 * MS) * 1000, "retry", {"attempt": 2})],
        ),
        _span(
            BACKEND_RESOURCE,
            ("", ""),
            **ids(TRACE_B, BACKEND, ROOT),
            **times(T + 12 * MS, 30 * MS),
            name="GET /inventory",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            status=status(code=status.STATUS_CODE_ERROR, message="boom"),
            links=[(TRACE_A, NIGHTLY)],
        ),
        # Three days old: outside the default lookback of searches (2 days), found by id.
        _span(
            BACKEND_RESOURCE,
            ("", ""),
            **ids(TRACE_A, NIGHTLY),
            **times(NOW_US - 3 * 86400 * 10**6, 5 * MS),
            name="nightly-job",
            kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        ),
    ]


def tags(*items: tuple[str, str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "type": kind, "value": value} for key, kind, value in items]


# Trace B as Jaeger's query service writes it (tags compared without regard to order).
EXPECTED_B = {
    "traceID": TRACE_B_JAEGER,
    "processes": {
        "p1": {
            "serviceName": "frontend",
            "tags": tags(("host.name", "string", "web-1"), ("process.pid", "int64", 4242)),
        },
        "p2": {"serviceName": "backend", "tags": []},
    },
    "warnings": None,
    "spans": [
        {
            "traceID": TRACE_B_JAEGER,
            "spanID": ROOT,
            "flags": 1,
            "operationName": "GET /checkout",
            "references": [],
            "startTime": T,
            "duration": 50 * MS,
            "tags": tags(
                ("http.method", "string", "GET"),
                ("http.status_code", "int64", 200),
                ("ratio", "float64", 0.5),
                ("cached", "bool", False),
                ("span.kind", "string", "server"),
                ("otel.status_code", "string", "OK"),
                ("otel.scope.name", "string", "io.orasi.test"),
                ("otel.scope.version", "string", "1.2.3"),
                ("w3c.tracestate", "string", "vendor=x"),
            ),
            "logs": [],
            "processID": "p1",
            "warnings": None,
        },
        {
            "traceID": TRACE_B_JAEGER,
            "spanID": QUERY,
            "operationName": "SELECT orders",
            "references": [{"refType": "CHILD_OF", "traceID": TRACE_B_JAEGER, "spanID": ROOT}],
            "startTime": T + 1 * MS,
            "duration": 10 * MS,
            "tags": tags(
                ("span.kind", "string", "client"),
                ("otel.scope.name", "string", "io.orasi.test"),
                ("otel.scope.version", "string", "1.2.3"),
            ),
            "logs": [
                {
                    "timestamp": T + 2 * MS,
                    "fields": tags(("event", "string", "retry"), ("attempt", "int64", 2)),
                }
            ],
            "processID": "p1",
            "warnings": None,
        },
        {
            "traceID": TRACE_B_JAEGER,
            "spanID": BACKEND,
            "operationName": "GET /inventory",
            "references": [
                {"refType": "CHILD_OF", "traceID": TRACE_B_JAEGER, "spanID": ROOT},
                {"refType": "FOLLOWS_FROM", "traceID": TRACE_A_JAEGER, "spanID": NIGHTLY},
            ],
            "startTime": T + 12 * MS,
            "duration": 30 * MS,
            "tags": tags(
                ("span.kind", "string", "server"),
                ("otel.status_code", "string", "ERROR"),
                ("error", "bool", True),
                ("otel.status_description", "string", "boom"),
            ),
            "logs": [],
            "processID": "p2",
            "warnings": None,
        },
    ],
}


def normalised(trace: dict[str, Any]) -> dict[str, Any]:
    """Tag lists sorted by key (their order carries no meaning)."""
    copy = json.loads(json.dumps(trace))
    for span in copy["spans"]:
        span["tags"].sort(key=lambda t: t["key"])
    for process in copy["processes"].values():
        process["tags"].sort(key=lambda t: t["key"])
    return copy


def envelope(data: Any, total: int = 0, errors: Any = None) -> dict[str, Any]:
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


@pytest.fixture
def loaded(bridge: ServiceProcess) -> ServiceProcess:
    for request in requests():
        send(bridge, request)
    send(
        bridge,
        _span(
            {"service.name": "secret-svc"},
            ("", ""),
            trace_id=b"\x77" * 16,
            span_id=b"\x01" * 8,
            start_time_unix_nano=T * 1000,
            end_time_unix_nano=T * 1000 + 1,
            name="hidden",
        ),
        tenant="other",
    )
    return bridge


def get(bridge: ServiceProcess, path: str, key: str = "key-default", **params: Any) -> httpx.Response:
    with jaeger(bridge, key) as client:
        return client.get(path, params=params)


def test_services_and_operations(loaded: ServiceProcess) -> None:
    assert get(loaded, "/api/services").json() == envelope(["backend", "frontend"], 2)
    assert get(loaded, "/api/services", "key-other").json() == envelope(["secret-svc"], 1)
    assert get(loaded, "/api/services/frontend/operations").json() == envelope(
        ["GET /checkout", "SELECT orders"], 2
    )
    # nightly-job is three days old: outside the 2 days the lists cover.
    assert get(loaded, "/api/services/backend/operations").json() == envelope(["GET /inventory"], 1)
    assert get(loaded, "/api/operations", service="frontend").json() == envelope(
        [{"name": "GET /checkout", "spanKind": "server"}, {"name": "SELECT orders", "spanKind": "client"}], 2
    )
    assert get(loaded, "/api/operations", service="frontend", spanKind="client").json() == envelope(
        [{"name": "SELECT orders", "spanKind": "client"}], 1
    )
    missing = get(loaded, "/api/operations")
    assert missing.status_code == 400
    assert missing.json() == envelope(None, errors=[{"code": 400, "msg": "parameter 'service' is required"}])


def test_trace_by_id(loaded: ServiceProcess) -> None:
    for trace_id in (TRACE_B, TRACE_B_JAEGER, TRACE_B.upper()):
        response = get(loaded, f"/api/traces/{trace_id}")
        assert response.status_code == 200, response.text
        document = response.json()
        assert set(document) == {"data", "total", "limit", "offset", "errors"}
        assert (document["total"], document["limit"], document["offset"], document["errors"]) == (
            0,
            0,
            0,
            None,
        )
        [trace] = document["data"]
        assert normalised(trace) == normalised(EXPECTED_B)
    # 16 hex digits (a 64-bit id) and an old trace: the lookup is over all time.
    [old] = get(loaded, f"/api/traces/{TRACE_A_JAEGER}").json()["data"]
    assert (old["traceID"], [s["operationName"] for s in old["spans"]]) == (TRACE_A_JAEGER, ["nightly-job"])
    assert old["spans"][0]["tags"] == tags(("span.kind", "string", "internal"))
    # ... unless start/end (µs) leave it out.
    narrowed = get(loaded, f"/api/traces/{TRACE_A_JAEGER}", start=T, end=NOW_US)
    assert narrowed.status_code == 404
    unknown = get(loaded, "/api/traces/00000000000000000000000000abcdef")
    assert unknown.status_code == 404
    assert unknown.json() == envelope(None, errors=[{"code": 404, "msg": "trace not found"}])
    bad = get(loaded, "/api/traces/not-a-trace-id")
    assert bad.status_code == 400
    assert "cannot parse traceID" in bad.json()["errors"][0]["msg"]
    # Another tenant's trace is not found; a key may not read another tenant.
    assert get(loaded, f"/api/traces/{'77' * 16}").status_code == 404
    assert get(loaded, f"/api/traces/{'77' * 16}", "key-other").status_code == 200
    with httpx.Client(base_url=loaded.query_url, timeout=30) as client:
        assert client.get("/api/services").status_code == 401
        forbidden = client.get(
            "/api/services", headers={"Authorization": "Bearer key-default", "X-Orasi-Tenant": "other"}
        )
    assert forbidden.status_code == 403
    assert forbidden.json()["errors"][0]["code"] == 403


def trace_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["total"], document["limit"], document["offset"], document["errors"]) == (0, 0, 0, None)
    return [trace["traceID"] for trace in document["data"]]


def test_search(loaded: ServiceProcess) -> None:
    # Without start/end (as Grafana searches): the last 2 days, so the old trace is left out.
    assert trace_ids(get(loaded, "/api/traces", service="backend")) == [TRACE_B_JAEGER]
    assert trace_ids(get(loaded, "/api/traces", service="backend", lookback="7d")) == [
        TRACE_B_JAEGER,
        TRACE_A_JAEGER,
    ]
    start = NOW_US - 4 * 86400 * 10**6
    assert trace_ids(
        get(loaded, "/api/traces", service="backend", start=start, end=NOW_US - 86400 * 10**6)
    ) == [TRACE_A_JAEGER]
    [found] = get(loaded, "/api/traces", service="frontend").json()["data"]
    assert normalised(found) == normalised(EXPECTED_B)  # whole traces, every service's spans
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"service": "frontend", "operation": "SELECT orders"}, [TRACE_B_JAEGER]),
        ({"service": "frontend", "operation": "nope"}, []),
        ({"service": "backend", "tags": json.dumps({"error": "true"})}, [TRACE_B_JAEGER]),
        ({"service": "frontend", "tags": json.dumps({"error": "true"})}, []),
        ({"service": "frontend", "tags": json.dumps({"http.status_code": "200"})}, [TRACE_B_JAEGER]),
        ({"service": "frontend", "tags": json.dumps({"http.status_code": "404"})}, []),
        ({"service": "frontend", "tag": "host.name:web-1"}, [TRACE_B_JAEGER]),  # a resource attribute
        ({"service": "frontend", "tag": "span.kind:client"}, [TRACE_B_JAEGER]),
        ({"service": "frontend", "minDuration": "40ms"}, [TRACE_B_JAEGER]),
        ({"service": "frontend", "minDuration": "0.06s"}, []),
        ({"service": "frontend", "maxDuration": "5ms"}, []),
        ({"service": "frontend", "minDuration": "5ms", "maxDuration": "10ms"}, [TRACE_B_JAEGER]),
        ({"service": "nobody"}, []),
        ({"traceID": [TRACE_B_JAEGER]}, [TRACE_B_JAEGER]),
    ]
    problems = []
    for params, expected in cases:
        got = trace_ids(get(loaded, "/api/traces", **params))
        if got != expected:
            problems.append(f"{params}: got {got}, want {expected}")
    assert not problems, "\n".join(problems)
    partly = get(loaded, "/api/traces", traceID=[TRACE_B_JAEGER, "abcdef"]).json()
    assert [t["traceID"] for t in partly["data"]] == [TRACE_B_JAEGER]
    assert partly["errors"] == [{"msg": "trace not found", "traceID": "0000000000abcdef"}]  # %016x


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "parameter 'service' is required"),
        ({"service": "frontend", "minDuration": "fast"}, "unable to parse param 'minDuration'"),
        (
            {"service": "frontend", "minDuration": "2s", "maxDuration": "1s"},
            "'maxDuration' should be greater",
        ),
        ({"service": "frontend", "limit": "ten"}, "unable to parse param 'limit'"),
        ({"service": "frontend", "start": "yesterday"}, "unable to parse param 'start'"),
        ({"service": "frontend", "tag": "no-colon"}, "malformed 'tag' parameter"),
        ({"service": "frontend", "tags": "{not json"}, "malformed 'tags' parameter"),
        ({"service": "frontend", "lookback": "a week"}, "unable to parse param 'lookback'"),
    ],
)
def test_bad_search_parameters_are_400(bridge: ServiceProcess, params: dict[str, Any], message: str) -> None:
    response = get(bridge, "/api/traces", **params)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == 400 and message in error["msg"], error


async def test_a_third_party_jaeger_client_reads_the_api(loaded: ServiceProcess) -> None:
    client = JaegerClient(JaegerHTTPClient(url=loaded.query_url, token="key-default", retry_attempts=1))

    async def read() -> tuple[Any, ...]:
        # Its public methods are sync wrappers that each run a new event loop and leave that
        # loop's connections open; their async bodies on one loop, then closed, read the same.
        try:
            return (
                await client._alist_services(),
                await client._aget_trace(TRACE_B_JAEGER),
                await client._asearch_traces("backend"),
            )
        finally:
            await client._aclose()

    services, trace, summaries = await read()
    assert services == ["backend", "frontend"]
    assert trace.trace_id == TRACE_B_JAEGER
    assert [(s.operation, s.service_name, s.parent_span_id) for s in trace.spans] == [
        ("GET /checkout", "frontend", None),
        ("SELECT orders", "frontend", ROOT),
        ("GET /inventory", "backend", ROOT),
    ]
    assert (trace.root_operation, trace.root_service, trace.service_count, trace.errors_count) == (
        "GET /checkout",
        "frontend",
        2,
        1,
    )
    assert trace.duration_us == 50 * MS
    assert [(s.trace_id, s.span_count) for s in summaries] == [(TRACE_B_JAEGER, 3)]


def test_search_limit_keeps_the_newest_traces_across_the_window(bridge: ServiceProcess) -> None:
    # A search reads its window back from the end in growing slices: traces whose latest matching
    # span lies in different slices still come newest first, and the limit takes the newest.
    ages_min = {"01": [1], "02": [30, 2000], "03": [200], "04": [45], "05": [1500]}  # minutes ago
    for trace, ages in ages_min.items():
        for number, age in enumerate(ages):
            start_ns = (NOW_US - age * 60 * 10**6) * 1000
            send(
                bridge,
                _span(
                    {"service.name": "sliced"},
                    ("", ""),
                    trace_id=bytes.fromhex(trace * 16),
                    span_id=bytes.fromhex(f"{number + 1:016x}"),
                    start_time_unix_nano=start_ns,
                    end_time_unix_nano=start_ns + 1000,
                    name="work",
                    attributes={"job": "batch"},
                ),
            )
    jaeger_id = {trace: (trace * 16).lstrip("0") for trace in ages_min}
    newest = [jaeger_id[t] for t in ("01", "02", "04", "03", "05")]
    for limit in (1, 2, 3, 5, 20):
        got = trace_ids(get(bridge, "/api/traces", service="sliced", tag="job:batch", limit=limit))
        assert got == newest[:limit], f"limit {limit}"
    assert trace_ids(get(bridge, "/api/traces", service="sliced", tag="job:other")) == []
