"""Odd input through `orasi up` (agent → gateway (OTAP) → bridge): refused at the first hop, or
kept with its values, and never the cause of losing anything else (issue 11, part 1).

Each odd request (one odd span, log record or data point) is sent between two honest requests:
one after the other, and, for the sequence of the report, all in flight at once, so that the
agent's batch processor merges them as it did there. A request whose values no
later hop can carry (an id of another length than OTLP's, a time at or past 2^63 ns) is refused
as a whole — gRPC INVALID_ARGUMENT, HTTP 400 with a google.rpc.Status — naming the first problem
as ``<path>: <problem>``; everything else the OTLP specification allows is acknowledged and
stored as it was sent (unknown enum values as their number, an attribute without a value as a
key with a null value, an end before the start with a negative duration, empty ids as null).
Every honest item reaches the lake exactly once, and no exporter of any service counts a failed
item.

One `orasi up` serves the whole module, on free ports; every item is named after its test (the
span name, the log body, the metric name) under one service name of this run, and the lake is
queried over the whole representable time range, as some odd items have odd times.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.pdata import SPECS, Signal
from orasi_common.testing.up_process import UpProcess

TRACES, LOGS, METRICS = Signal.TRACES, Signal.LOGS, Signal.METRICS
SERVICE = f"odd-input-{uuid.uuid4().hex[:8]}"
T0 = time.time_ns()
MAX_U64 = 2**64 - 1
PAST = 2**63  # the first time no signed 64-bit nanosecond column holds
LATEST = 2**63 - 1
WHOLE_RANGE = {"start": 0, "end": LATEST}
DEADLINE = 60.0
PROTOBUF, JSON = "application/x-protobuf", "application/json"


# --- the one `orasi up` ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess.launch(tmp_path_factory.mktemp("odd-input")) as process:
        yield process


# --- building requests -----------------------------------------------------------------------------


def attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


RESOURCE = Resource(attributes=[attr("service.name", SERVICE)])
SCOPE = InstrumentationScope(name="orasi.e2e.odd_input")


def span(name: str, **fields: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": os.urandom(16),
        "span_id": os.urandom(8),
        "name": name,
        "kind": Span.SPAN_KIND_SERVER,
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 1_000_000,
    }
    values.update(fields)
    return Span(**values)


def record(body: str, **fields: Any) -> LogRecord:
    values: dict[str, Any] = {
        "time_unix_nano": T0,
        "observed_time_unix_nano": T0 + 1,
        "severity_number": 9,
        "severity_text": "INFO",
        "body": AnyValue(string_value=body),
        "trace_id": os.urandom(16),
        "span_id": os.urandom(8),
    }
    values.update(fields)
    return LogRecord(**values)


def gauge(name: str, **point: Any) -> metrics_pb2.Metric:
    values: dict[str, Any] = {"start_time_unix_nano": T0 - 1_000, "time_unix_nano": T0, "as_double": 2.5}
    values.update(point)
    return metrics_pb2.Metric(name=name, unit="1", gauge=metrics_pb2.Gauge(data_points=[values]))


def traces_request(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add(resource=RESOURCE).scope_spans.add(scope=SCOPE).spans.extend(spans)
    return request


def logs_request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    request.resource_logs.add(resource=RESOURCE).scope_logs.add(scope=SCOPE).log_records.extend(records)
    return request


def metrics_request(*metrics: metrics_pb2.Metric) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    request.resource_metrics.add(resource=RESOURCE).scope_metrics.add(scope=SCOPE).metrics.extend(metrics)
    return request


_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def otlp_json(message: Message) -> bytes:
    """OTLP/JSON as the specification writes it: hex ids (of whatever length), integer enums,
    64-bit integers as strings."""

    def hex_ids(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: base64.b64decode(value).hex()
                if key in _ID_KEYS and isinstance(value, str)
                else hex_ids(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [hex_ids(value) for value in node]
        return node

    return json.dumps(hex_ids(json_format.MessageToDict(message, use_integers_for_enums=True))).encode()


# --- sending ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a sender got: ``ok``, or the refusal's gRPC code name / HTTP status and message
    (for HTTP, from the google.rpc.Status body, whose code is in ``rpc_code``)."""

    ok: bool
    code: str
    message: str
    rpc_code: int | None = None


def send_grpc(up: UpProcess, service: str, signal: Signal, request: Message) -> Answer:
    with grpc.insecure_channel(f"127.0.0.1:{up.ports[f'{service}.grpc']}") as channel:
        try:
            channel.unary_unary(SPECS[signal].grpc_method)(request.SerializeToString(), timeout=30)
        except grpc.RpcError as exc:
            return Answer(False, exc.code().name, exc.details() or "")  # type: ignore[attr-defined]
    return Answer(True, "OK", "")


def send_http(up: UpProcess, service: str, signal: Signal, request: Message, content_type: str) -> Answer:
    body = request.SerializeToString() if content_type == PROTOBUF else otlp_json(request)
    response = httpx.post(
        f"http://127.0.0.1:{up.ports[f'{service}.http']}{SPECS[signal].http_path}",
        content=body,
        headers={"Content-Type": content_type},
        timeout=30,
    )
    if response.status_code == 200:
        return Answer(True, "200", "")
    # An error body is a google.rpc.Status in the request's content type.
    assert response.headers["content-type"].startswith(content_type), response.headers
    if content_type == PROTOBUF:
        rpc = status_pb2.Status.FromString(response.content)
    else:
        rpc = json_format.Parse(response.content, status_pb2.Status(), ignore_unknown_fields=True)
    return Answer(False, str(response.status_code), rpc.message, rpc.code)


Sender = Callable[[UpProcess, Signal, Message], Answer]

SENDERS: dict[str, Sender] = {
    "agent-grpc": lambda up, signal, request: send_grpc(up, "agent", signal, request),
    "agent-http-protobuf": lambda up, signal, request: send_http(up, "agent", signal, request, PROTOBUF),
    "agent-http-json": lambda up, signal, request: send_http(up, "agent", signal, request, JSON),
    "gateway-grpc": lambda up, signal, request: send_grpc(up, "gateway", signal, request),
    "gateway-http-protobuf": lambda up, signal, request: send_http(up, "gateway", signal, request, PROTOBUF),
    "bridge-grpc": lambda up, signal, request: send_grpc(up, "bridge", signal, request),
    "bridge-http-json": lambda up, signal, request: send_http(up, "bridge", signal, request, JSON),
}
REFUSED = {
    "grpc": Answer(False, "INVALID_ARGUMENT", ""),
    "http": Answer(False, "400", "", code_pb2.INVALID_ARGUMENT),
}


def _snake(text: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


def names(message: str, path: str, problems: tuple[str, ...]) -> bool:
    """``message`` names ``path`` (whole, in proto field names; OTLP/JSON's camelCase names count
    too) followed by one of ``problems``."""
    readings = [(message, problems), (_snake(message), tuple(problem.lower() for problem in problems))]
    return any(
        re.search(rf"(?<![\w.\]]){re.escape(path)}\W[^\n]*{re.escape(problem)}", text) is not None
        for text, alternatives in readings
        for problem in alternatives
    )


# --- the lake and the metrics ----------------------------------------------------------------------


def query(up: UpProcess, sql: str) -> list[list[Any]]:
    response = httpx.post(
        f"{up.query_url}/api/v1/query", json={"sql": sql, "format": "json", **WHOLE_RANGE}, timeout=30
    )
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


KEY_COLUMN = {TRACES: ("spans", "name"), LOGS: ("logs", "body"), METRICS: ("metric_points", "metric_name")}


def stored(up: UpProcess, signal: Signal, prefix: str, expected: set[str]) -> dict[str, int]:
    """How many rows of this service each item key under ``prefix`` has, once every key of
    ``expected`` is there (polled, with a deadline)."""
    table, key = KEY_COLUMN[signal]
    sql = (
        f"SELECT {key}, count(*) FROM {table} WHERE service_name = '{SERVICE}' "
        f"AND starts_with({key}, '{prefix}/') GROUP BY {key}"
    )
    deadline = time.monotonic() + DEADLINE
    while True:
        counts = {row[0]: row[1] for row in query(up, sql)}
        if expected <= counts.keys():
            return counts
        if time.monotonic() > deadline:
            pytest.fail(
                f"never reached the lake: {sorted(expected - counts.keys())} (found {counts})\n"
                + up.log_text()[-8000:]
            )
        time.sleep(0.1)


def row(up: UpProcess, signal: Signal, key_value: str, columns: list[str]) -> dict[str, Any]:
    table, key = KEY_COLUMN[signal]
    where = f"service_name = '{SERVICE}' AND {key} = '{key_value}'"
    rows = query(up, f"SELECT {', '.join(columns)} FROM {table} WHERE {where}")
    assert len(rows) == 1, rows
    return dict(zip(columns, rows[0], strict=True))


def metric_families(up: UpProcess, service: str) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{up.ports[f'{service}.admin']}/metrics", timeout=10)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def failed_items(up: UpProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``orasi_exporter_send_failed_items_total`` of every service, by (service, labels)."""
    failed = {}
    for service in ("agent", "gateway", "bridge"):
        families = metric_families(up, service)
        assert "orasi_exporter_send_failed_items" in families, (service, sorted(families))
        for sample in families["orasi_exporter_send_failed_items"].samples:
            if sample.name.endswith("_total"):
                failed[service, tuple(sorted(sample.labels.items()))] = sample.value
    return failed


def increase(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {
        key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)
    }


# --- the cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Odd:
    """One odd item: its fields, and either the refusal (path below the item, problems any of
    which may name it) or the columns the lake keeps for it."""

    fields: dict[str, Any]
    refused: tuple[str, tuple[str, ...]] | None = None
    kept: dict[str, Any] = field(default_factory=dict)


def id_problem(width: int, got: int) -> tuple[str, ...]:
    # OTLP/JSON's decoder may name a hex id of the wrong length in hex digits.
    return (f"must be {width} bytes or empty, got {got} byte", f"must be {width * 2} hex digits")


def time_problem(value: int) -> tuple[str, ...]:
    return (f"{value} is past the latest time",)


SPANS = "resource_spans[0].scope_spans[0].spans[0]"
RECORDS = "resource_logs[0].scope_logs[0].log_records[0]"
METRIC = "resource_metrics[0].scope_metrics[0].metrics[0]"

# The seven of the report, and a link with a 1-byte trace id (issue 11).
REPORTED_SPANS: dict[str, Odd] = {
    "kind-99": Odd({"kind": 99}, kept={"kind": "99"}),
    "status-code-7": Odd(
        {"status": Status(code=7, message="seven")}, kept={"status_code": "7", "status_message": "seven"}
    ),
    "attribute-without-a-value": Odd(
        {"attributes": [KeyValue(key="no.value"), attr("http.route", "/cart")]},
        kept={"attributes": {"no.value": None, "http.route": "/cart"}},
    ),
    "span-id-2-bytes": Odd({"span_id": b"\x01\x02"}, refused=(f"{SPANS}.span_id", id_problem(8, 2))),
    "parent-span-id-1-byte": Odd(
        {"parent_span_id": b"\x07"}, refused=(f"{SPANS}.parent_span_id", id_problem(8, 1))
    ),
    "end-before-start": Odd(
        {"end_time_unix_nano": T0 - 5_000},
        kept={"start_time_unix_nano": T0, "end_time_unix_nano": T0 - 5_000, "duration_ns": -5_000},
    ),
    "start-time-2^64-1": Odd(
        {"start_time_unix_nano": MAX_U64}, refused=(f"{SPANS}.start_time_unix_nano", time_problem(MAX_U64))
    ),
    "link-trace-id-1-byte": Odd(
        {"links": [Span.Link(trace_id=b"\x01", span_id=os.urandom(8))]},
        refused=(f"{SPANS}.links[0].trace_id", id_problem(16, 1)),
    ),
}
SPAN_CASES: dict[str, Odd] = {
    **REPORTED_SPANS,
    "empty-ids": Odd(
        {"trace_id": b"", "span_id": b"", "parent_span_id": b""},
        kept={"trace_id": None, "span_id": None, "parent_span_id": None},
    ),
    "latest-storable-times": Odd(
        {"start_time_unix_nano": LATEST, "end_time_unix_nano": LATEST},
        kept={"start_time_unix_nano": LATEST, "end_time_unix_nano": LATEST, "duration_ns": 0},
    ),
    "event-time-2^63": Odd(
        {"events": [Span.Event(name="e", time_unix_nano=T0), Span.Event(name="late", time_unix_nano=PAST)]},
        refused=(f"{SPANS}.events[1].time_unix_nano", time_problem(PAST)),
    ),
}
LOG_CASES: dict[str, Odd] = {
    "severity-99": Odd({"severity_number": 99}, kept={"severity_number": 99}),
    "empty-ids": Odd({"trace_id": b"", "span_id": b""}, kept={"trace_id": None, "span_id": None}),
    "attribute-without-a-value": Odd(
        {"attributes": [KeyValue(key="no.value")]}, kept={"attributes": {"no.value": None}}
    ),
    "trace-id-1-byte": Odd({"trace_id": b"\x01"}, refused=(f"{RECORDS}.trace_id", id_problem(16, 1))),
    "span-id-2-bytes": Odd({"span_id": b"\x01\x02"}, refused=(f"{RECORDS}.span_id", id_problem(8, 2))),
    "time-2^64-1": Odd(
        {"time_unix_nano": MAX_U64}, refused=(f"{RECORDS}.time_unix_nano", time_problem(MAX_U64))
    ),
    "observed-time-2^63": Odd(
        {"observed_time_unix_nano": PAST}, refused=(f"{RECORDS}.observed_time_unix_nano", time_problem(PAST))
    ),
}
METRIC_CASES: dict[str, Odd] = {
    "exemplar-empty-ids": Odd(
        {"exemplars": [metrics_pb2.Exemplar(time_unix_nano=T0, as_double=1.0)]},
        kept={
            "value": 2.5,
            "exemplars[1].time_unix_nano": T0,
            "exemplars[1].value": 1.0,
            "exemplars[1].trace_id": None,
            "exemplars[1].span_id": None,
        },
    ),
    "time-2^63": Odd(
        {"time_unix_nano": PAST},
        refused=(f"{METRIC}.gauge.data_points[0].time_unix_nano", time_problem(PAST)),
    ),
    "start-time-2^64-1": Odd(
        {"start_time_unix_nano": MAX_U64},
        refused=(f"{METRIC}.gauge.data_points[0].start_time_unix_nano", time_problem(MAX_U64)),
    ),
    "exemplar-span-id-2-bytes": Odd(
        {
            "exemplars": [
                metrics_pb2.Exemplar(time_unix_nano=T0, span_id=b"\x01\x02", trace_id=os.urandom(16))
            ]
        },
        refused=(f"{METRIC}.gauge.data_points[0].exemplars[0].span_id", id_problem(8, 2)),
    ),
    "exemplar-trace-id-1-byte": Odd(
        {"exemplars": [metrics_pb2.Exemplar(time_unix_nano=T0, trace_id=b"\x01")]},
        refused=(f"{METRIC}.gauge.data_points[0].exemplars[0].trace_id", id_problem(16, 1)),
    ),
}
CASES = {TRACES: SPAN_CASES, LOGS: LOG_CASES, METRICS: METRIC_CASES}


def item(signal: Signal, key: str, odd: Odd | None = None) -> Any:
    fields = odd.fields if odd is not None else {}
    if signal is TRACES:
        return span(key, **fields)
    if signal is LOGS:
        return record(key, **fields)
    return gauge(key, **fields)


def request(signal: Signal, *items: Any) -> Message:
    build = {TRACES: traces_request, LOGS: logs_request, METRICS: metrics_request}[signal]
    return build(*items)


@dataclass
class Sent:
    """Keys sent under one prefix: the honest ones, the odd ones the lake must hold, and the odd
    ones refused (never to be stored)."""

    signal: Signal
    prefix: str
    honest: list[str] = field(default_factory=list)
    kept: dict[str, Odd] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def send_all_at_once(up: UpProcess, service: str, signal: Signal, requests: list[Message]) -> list[Answer]:
    """Every request in flight at once over one gRPC channel (so that the agent's batch processor
    merges them, as it merged the requests of the report), in this order."""
    with grpc.insecure_channel(f"127.0.0.1:{up.ports[f'{service}.grpc']}") as channel:
        call = channel.unary_unary(SPECS[signal].grpc_method)
        futures = [call.future(message.SerializeToString(), timeout=30) for message in requests]
        answers = []
        for future in futures:
            try:
                future.result()
            except grpc.RpcError as exc:
                answers.append(Answer(False, exc.code().name, exc.details() or ""))  # type: ignore[attr-defined]
            else:
                answers.append(Answer(True, "OK", ""))
        return answers


def send_between_honest(
    up: UpProcess, sender: str, signal: Signal, cases: dict[str, Odd], sent: Sent, at_once: bool = False
) -> None:
    """For each case: an honest request, the odd one, an honest one (one after the other, or
    ``at_once``); checks each answer."""
    keys = {
        case_id: tuple(f"{sent.prefix}/{case_id}/{what}" for what in ("honest-before", "odd", "honest-after"))
        for case_id in cases
    }
    requests = [
        request(signal, item(signal, key, odd if key.endswith("/odd") else None))
        for case_id, odd in cases.items()
        for key in keys[case_id]
    ]
    if at_once:
        service, transport = sender.split("-")
        assert transport == "grpc", sender
        answers = iter(send_all_at_once(up, service, signal, requests))
    else:
        answers = iter([SENDERS[sender](up, signal, message) for message in requests])
    transport = "grpc" if sender.endswith("grpc") else "http"
    for case_id, odd in cases.items():
        before, key, after = keys[case_id]
        answer_before, answer, answer_after = next(answers), next(answers), next(answers)
        assert answer_before.ok and answer_after.ok, (case_id, answer_before, answer_after)
        sent.honest += [before, after]
        if odd.refused is None:
            assert answer.ok, f"{case_id}: {answer}"
            sent.kept[key] = odd
        else:
            path, problems = odd.refused
            expected = REFUSED[transport]
            assert (answer.ok, answer.code, answer.rpc_code) == (False, expected.code, expected.rpc_code), (
                f"{case_id}: {answer}"
            )
            assert names(answer.message, path, problems), (
                f"{case_id}: {answer.message!r} names no {path}: {problems}"
            )
            sent.refused.append(key)


def check_lake(up: UpProcess, sent: Sent) -> None:
    """Every honest and kept item exactly once, the kept ones with their values; no refused one."""
    counts = stored(up, sent.signal, sent.prefix, {*sent.honest, *sent.kept})
    assert counts == {key: 1 for key in [*sent.honest, *sent.kept]}, counts
    for key, odd in sent.kept.items():
        values = row(up, sent.signal, key, list(odd.kept))
        assert values == odd.kept, key


def run(up: UpProcess, sender: str, signal: Signal, cases: dict[str, Odd], at_once: bool = False) -> Sent:
    """Send ``cases`` between honest requests, check the answers and the lake, and that no
    exporter of any service gave up on an item meanwhile."""
    failed_before = failed_items(up)
    sent = Sent(signal, f"{sender}-{signal.value}-{uuid.uuid4().hex[:6]}")
    send_between_honest(up, sender, signal, cases, sent, at_once)
    check_lake(up, sent)
    gave_up = increase(failed_before, failed_items(up))
    assert gave_up == {}, f"exporters gave up on items: {gave_up}\n{up.log_text()[-8000:]}"
    return sent


# --- the tests -------------------------------------------------------------------------------------


def test_the_reported_sequence_loses_nothing_honest(up: UpProcess) -> None:
    """The report: each odd span over OTLP/gRPC to the agent, followed by an honest request, all
    in flight together. It had lost every span, honest or odd, after acknowledging them all."""
    sent = run(up, "agent-grpc", TRACES, REPORTED_SPANS, at_once=True)
    assert len(sent.honest) == 16 and len(sent.kept) == 4 and len(sent.refused) == 4


@pytest.mark.parametrize("case_id", list(SPAN_CASES))
def test_an_odd_span_over_grpc(up: UpProcess, case_id: str) -> None:
    run(up, "agent-grpc", TRACES, {case_id: SPAN_CASES[case_id]})


@pytest.mark.parametrize("case_id", list(LOG_CASES))
def test_an_odd_log_record_over_grpc(up: UpProcess, case_id: str) -> None:
    run(up, "agent-grpc", LOGS, {case_id: LOG_CASES[case_id]})


@pytest.mark.parametrize("case_id", list(METRIC_CASES))
def test_an_odd_data_point_over_grpc(up: UpProcess, case_id: str) -> None:
    run(up, "agent-grpc", METRICS, {case_id: METRIC_CASES[case_id]})


HTTP_CASES = [
    "kind-99",
    "span-id-2-bytes",
    "parent-span-id-1-byte",
    "start-time-2^64-1",
    "link-trace-id-1-byte",
    "end-before-start",
]


@pytest.mark.parametrize("sender", ["agent-http-protobuf", "agent-http-json"])
def test_odd_spans_over_http(up: UpProcess, sender: str) -> None:
    run(up, sender, TRACES, {case_id: SPAN_CASES[case_id] for case_id in HTTP_CASES})


@pytest.mark.parametrize(
    ("sender", "signal", "case_id"),
    [
        ("agent-http-json", LOGS, "time-2^64-1"),
        ("agent-http-json", LOGS, "severity-99"),
        ("agent-http-protobuf", METRICS, "exemplar-trace-id-1-byte"),
        ("agent-http-json", METRICS, "exemplar-span-id-2-bytes"),
    ],
)
def test_odd_logs_and_metrics_over_http(up: UpProcess, sender: str, signal: Signal, case_id: str) -> None:
    run(up, sender, signal, {case_id: CASES[signal][case_id]})


@pytest.mark.parametrize(
    "sender", ["gateway-grpc", "gateway-http-protobuf", "bridge-grpc", "bridge-http-json"]
)
def test_every_receiver_validates(up: UpProcess, sender: str) -> None:
    """Straight to the gateway's and the bridge's ports, past the agent: each receiver refuses
    what no later hop can carry, and keeps the rest."""
    cases = {case_id: SPAN_CASES[case_id] for case_id in ("span-id-2-bytes", "start-time-2^64-1", "kind-99")}
    run(up, sender, TRACES, cases)


def test_no_exporter_of_any_service_gave_up_on_an_item(up: UpProcess) -> None:
    """After every test above (pytest runs them in file order): the counter is 0 everywhere,
    on admin ports whose services did receive items."""
    run(up, "agent-grpc", TRACES, {"kind-99": SPAN_CASES["kind-99"]})
    gave_up = {key: value for key, value in failed_items(up).items() if value}
    assert gave_up == {}, f"exporters gave up on items: {gave_up}\n{up.log_text()[-8000:]}"
    for service in ("agent", "gateway", "bridge"):
        accepted = metric_families(up, service)["orasi_receiver_accepted_items"].samples
        assert sum(sample.value for sample in accepted if sample.name.endswith("_total")) > 0, service
