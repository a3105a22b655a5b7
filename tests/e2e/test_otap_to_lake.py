"""OTAP on the gateway → bridge hop, in real processes, down to the lake and back through SQL.

    OTLP client ─▶ agent ─OTLP─▶ gateway ─OTAP─▶ bridge (otap receiver) ─▶ Iceberg ─▶ query API

The gateway speaks OTAP upstream in two ways: the `otap` exporter, and the `loadbalancing`
exporter with ``protocol: otap``. Each runs its own stack (catalog schema and warehouse of its
own, like tests/e2e/lake_fixtures.running_stack). The data is built here with exact values (ids,
attributes of every type, events, links, every metric type) and the lake's rows are compared
with it column by column, in the canonical forms of ARCHITECTURE §5. The bridge's own
``/metrics`` prove the batches arrived over OTAP, not OTLP.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import pytest
from integration.bridge.otlp_data import any_value
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from e2e.lake_fixtures import (
    FORWARDING,
    RETRY,
    LakeSpace,
    Stack,
    StackConfigs,
    assert_attributes,
    json_value,
    running_stack,
    stack_configs,
)
from orasi_common.pdata import SPECS, Signal
from orasi_common.topology import Ports

SERVICE = "otap-e2e"
ATTRIBUTES: dict[str, Any] = {
    "str": "välue ✓",
    "int": -(2**40) - 3,
    "double": 2.75,
    "bool": True,
    "bytes": b"\x00\xffbin",
    "array": ["a", 1, 2.5, False],
    "map": {"k": "v", "n": 7, "nested": {"deep": [1, "two"]}},
}


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


# --- the stack ---------------------------------------------------------------------------------


def otap_configs(mode: str) -> StackConfigs:
    """The stack of lake_fixtures with an `otap` receiver on the bridge and, on the gateway, the
    `otap` exporter or the `loadbalancing` exporter with ``protocol: otap`` (``mode``)."""

    def configs(ports: Mapping[str, Ports], space: LakeSpace) -> dict[str, dict[str, Any]]:
        arrow = {"max_stream_lifetime": 3, "fallback_to_otlp": False}
        built = stack_configs(
            ports,
            space,
            receivers={"bridge": "otap"},
            gateway_exporter="otap",
            compression=None,
            forwarding={"agent": FORWARDING, "gateway": {"retry_on_failure": RETRY, "arrow": arrow}},
        )
        if mode == "loadbalancing":
            gateway = built["gateway"]
            gateway["exporters"] = {
                "loadbalancing": {
                    "protocol": "otap",
                    "resolver": {"static": {"endpoints": [ports["bridge"].grpc_endpoint]}},
                    "tls": {"insecure": True},
                    "retry_on_failure": RETRY,
                    "arrow": {"fallback_to_otlp": False},
                }
            }
            for pipeline in gateway["service"]["pipelines"].values():
                pipeline["exporters"] = ["loadbalancing"]
        return built

    return configs


@pytest.fixture(scope="module", params=["otap", "loadbalancing"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"otap-{request.param}")
    with running_stack(workdir, otap_configs(request.param)) as started:
        yield started


def export(stack: Stack, signal: Signal, request: Any, tenant: str) -> None:
    with grpc.insecure_channel(stack.agent_grpc) as channel:
        channel.unary_unary(SPECS[signal].grpc_method)(
            request.SerializeToString(), metadata=[("x-orasi-tenant", tenant)], timeout=10
        )


def rows_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    names = [c["name"] for c in answer["columns"]]
    return [dict(zip(names, r, strict=True)) for r in answer["rows"]]


# --- the data ---------------------------------------------------------------------------------


def resource(target: Any) -> None:
    target.resource.attributes.extend(key_values({"service.name": SERVICE, "deployment.ratio": 0.25}))


def build_traces(now: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    resource(rs)
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "otap.e2e", "9.8.7"
    trace_id = uuid.uuid4().bytes
    root_id, child_id, other_id = (uuid.uuid4().bytes[:8] for _ in range(3))
    ss.spans.add(
        trace_id=trace_id,
        span_id=root_id,
        name="GET /cart",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 5_000_123,
        attributes=key_values(ATTRIBUTES),
        status=Status(code=Status.STATUS_CODE_OK),
    )
    child = ss.spans.add(
        trace_id=trace_id,
        span_id=child_id,
        parent_span_id=root_id,
        name="SELECT cart",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now + 1_000,
        end_time_unix_nano=now + 4_000_000,
        attributes=key_values({"db.system": "postgresql", "rows": 3}),
        status=Status(code=Status.STATUS_CODE_ERROR, message="deadlock detected"),
    )
    child.events.add(
        time_unix_nano=now + 2_000, name="retry", attributes=key_values({"attempt": 2, "ok": False})
    )
    child.events.add(
        time_unix_nano=now + 3_000, name="exception", attributes=key_values({"exception.type": "Deadlock"})
    )
    link = child.links.add(trace_id=uuid.uuid4().bytes, span_id=other_id)
    link.attributes.extend(key_values({"link.reason": "caused-by"}))
    ss.spans.add(
        trace_id=trace_id,
        span_id=other_id,
        parent_span_id=root_id,
        name="publish",
        kind=Span.SPAN_KIND_PRODUCER,
        start_time_unix_nano=now + 10,
        end_time_unix_nano=now + 20,
    )
    return request


def build_logs(now: int) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    resource(rl)
    sl = rl.scope_logs.add()
    sl.scope.name = "otap.e2e.logs"
    sl.log_records.add(
        time_unix_nano=now,
        observed_time_unix_nano=now + 7,
        severity_number=13,
        severity_text="WARN",
        body=AnyValue(string_value="disk almost full"),
        attributes=key_values({"disk": "/dev/sda1", "free": 0.05, "retries": 3}),
        trace_id=uuid.uuid4().bytes,
        span_id=uuid.uuid4().bytes[:8],
    )
    sl.log_records.add(
        time_unix_nano=now + 100,
        observed_time_unix_nano=now + 107,
        severity_number=17,
        severity_text="ERROR",
        event_name="payment.failed",
        body=any_value({"amount": 12, "tags": ["card", "declined"], "ok": False}),
        attributes=key_values(ATTRIBUTES),
    )
    return request


def build_metrics(now: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    resource(rm)
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "otap.e2e.metrics", "1.0"
    gauge = sm.metrics.add(name="e2e.gauge", unit="Cel", description="temperature")
    gauge.gauge.data_points.add(time_unix_nano=now, as_double=21.5, attributes=key_values({"room": "lab"}))
    total = sm.metrics.add(name="e2e.sum", unit="{request}", description="requests")
    total.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    total.sum.is_monotonic = True
    total.sum.data_points.add(
        start_time_unix_nano=now - 10**9,
        time_unix_nano=now,
        as_int=2**40 + 1,
        attributes=key_values({"route": "/a", "ok": True}),
    )
    hist = sm.metrics.add(name="e2e.histogram", unit="ms", description="latency")
    hist.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    hist.histogram.data_points.add(
        start_time_unix_nano=now - 10**9,
        time_unix_nano=now,
        count=5,
        sum=5615.0,
        min=5.0,
        max=5000.0,
        bucket_counts=[1, 2, 1, 1],
        explicit_bounds=[10.0, 100.0, 1000.0],
    )
    exp = sm.metrics.add(name="e2e.exp_histogram", unit="ms", description="latency, exponential")
    exp.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    point = exp.exponential_histogram.data_points.add(
        time_unix_nano=now, count=7, sum=30.5, scale=3, zero_count=1, min=0.0, max=12.0
    )
    point.positive.offset, point.negative.offset = -2, 1
    point.positive.bucket_counts.extend([1, 2, 3])
    point.negative.bucket_counts.extend([0])
    summary = sm.metrics.add(name="e2e.summary", unit="s", description="durations")
    sp = summary.summary.data_points.add(time_unix_nano=now, count=10, sum=55.0)
    for q, v in ((0.0, 1.0), (0.5, 5.5), (1.0, 10.0)):
        sp.quantile_values.add(quantile=q, value=v)
    return request


# --- the test ---------------------------------------------------------------------------------


def test_otap_hop_delivers_exact_values_to_the_lake(stack: Stack) -> None:
    tenant = f"otap-{uuid.uuid4().hex[:12]}"
    now = time.time_ns() - 60 * 10**9
    traces, logs, metrics = build_traces(now), build_logs(now), build_metrics(now)
    export(stack, Signal.TRACES, traces, tenant)
    export(stack, Signal.LOGS, logs, tenant)
    export(stack, Signal.METRICS, metrics, tenant)

    # --- spans
    sent_spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    answer = stack.wait_rows(
        "SELECT * EXCLUDE (time) FROM spans", tenant, lambda rows: len(rows) >= len(sent_spans)
    )
    stored = {row["span_id"]: row for row in rows_of(answer)}
    assert len(stored) == len(answer["rows"]) == len(sent_spans)
    kinds = {2: "SERVER", 3: "CLIENT", 4: "PRODUCER"}
    statuses = {0: "UNSET", 1: "OK", 2: "ERROR"}
    for span in sent_spans:
        row = stored[span.span_id.hex()]
        where = f"span {span.name}"
        assert (row["tenant"], row["service_name"], row["name"]) == (tenant, SERVICE, span.name), where
        assert row["trace_id"] == span.trace_id.hex(), where
        assert row["parent_span_id"] == (span.parent_span_id.hex() or None), where
        assert row["kind"] == kinds[span.kind], where
        assert (row["status_code"], row["status_message"] or "") == (
            statuses[span.status.code],
            span.status.message,
        ), where
        assert (row["start_time_unix_nano"], row["end_time_unix_nano"]) == (
            span.start_time_unix_nano,
            span.end_time_unix_nano,
        )
        assert row["duration_ns"] == span.end_time_unix_nano - span.start_time_unix_nano, where
        assert (row["scope_name"], row["scope_version"]) == ("otap.e2e", "9.8.7"), where
        sent_attrs = {kv.key: python_value(kv.value) for kv in span.attributes}
        assert_attributes(row["attributes"], sent_attrs, where)
        assert row["resource_attributes"]["deployment.ratio"] == "0.25"
        assert [(e["name"], e["time_unix_nano"]) for e in row["events"]] == [
            (e.name, e.time_unix_nano) for e in span.events
        ]
        for got, event in zip(row["events"], span.events, strict=True):
            assert_attributes(
                got["attributes"], {kv.key: python_value(kv.value) for kv in event.attributes}, where
            )
        assert [(lk["trace_id"], lk["span_id"]) for lk in row["links"]] == [
            (lk.trace_id.hex(), lk.span_id.hex()) for lk in span.links
        ]
        for got, link in zip(row["links"], span.links, strict=True):
            assert_attributes(
                got["attributes"], {kv.key: python_value(kv.value) for kv in link.attributes}, where
            )

    # --- logs
    sent_logs = [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    answer = stack.wait_rows(
        "SELECT * EXCLUDE (time) FROM logs ORDER BY time_unix_nano",
        tenant,
        lambda rows: len(rows) >= len(sent_logs),
    )
    stored_logs = rows_of(answer)
    assert len(stored_logs) == len(sent_logs)
    for row, record in zip(stored_logs, sent_logs, strict=True):
        where = f"log {record.severity_text}"
        assert (row["time_unix_nano"], row["observed_time_unix_nano"]) == (
            record.time_unix_nano,
            record.observed_time_unix_nano,
        )
        assert (row["severity_number"], row["severity_text"]) == (
            record.severity_number,
            record.severity_text,
        ), where
        assert row["event_name"] == (record.event_name or None), where
        assert row["trace_id"] == (record.trace_id.hex() or None), where
        assert row["span_id"] == (record.span_id.hex() or None), where
        body = python_value(record.body)
        if isinstance(body, str):
            assert row["body"] == body, where
        else:
            assert json.loads(row["body"]) == json_value(body), where
        assert_attributes(
            row["attributes"], {kv.key: python_value(kv.value) for kv in record.attributes}, where
        )
        assert (row["service_name"], row["scope_name"]) == (SERVICE, "otap.e2e.logs"), where

    # --- metric points, every type
    answer = stack.wait_rows(
        "SELECT * EXCLUDE (time) FROM metric_points", tenant, lambda rows: len(rows) >= 5
    )
    points = {row["metric_name"]: row for row in rows_of(answer)}
    assert set(points) == {"e2e.gauge", "e2e.sum", "e2e.histogram", "e2e.exp_histogram", "e2e.summary"}
    assert {k: v["metric_type"] for k, v in points.items()} == {
        "e2e.gauge": "gauge",
        "e2e.sum": "sum",
        "e2e.histogram": "histogram",
        "e2e.exp_histogram": "exponential_histogram",
        "e2e.summary": "summary",
    }
    gauge, total = points["e2e.gauge"], points["e2e.sum"]
    assert (gauge["value"], gauge["int_value"], gauge["unit"]) == (21.5, None, "Cel")
    assert gauge["attributes"] == {"room": "lab"}
    assert (total["int_value"], total["value"]) == (2**40 + 1, float(2**40 + 1))
    assert (total["is_monotonic"], total["aggregation_temporality"]) == (True, "CUMULATIVE")
    assert total["start_time_unix_nano"] == now - 10**9 and total["time_unix_nano"] == now
    assert total["attributes"] == {"route": "/a", "ok": "true"}
    hist = points["e2e.histogram"]
    assert (hist["count"], hist["sum"], hist["min"], hist["max"]) == (5, 5615.0, 5.0, 5000.0)
    assert (hist["bucket_counts"], hist["explicit_bounds"]) == ([1, 2, 1, 1], [10.0, 100.0, 1000.0])
    assert hist["aggregation_temporality"] == "DELTA"
    exp = points["e2e.exp_histogram"]
    assert (exp["count"], exp["sum"], exp["min"], exp["max"], exp["scale"], exp["zero_count"]) == (
        7,
        30.5,
        0.0,
        12.0,
        3,
        1,
    )
    assert (exp["positive_offset"], exp["positive_bucket_counts"]) == (-2, [1, 2, 3])
    assert (exp["negative_offset"], exp["negative_bucket_counts"]) == (1, [0])
    summary = points["e2e.summary"]
    assert (summary["count"], summary["sum"]) == (10, 55.0)
    assert summary["quantiles"] == [
        {"quantile": 0.0, "value": 1.0},
        {"quantile": 0.5, "value": 5.5},
        {"quantile": 1.0, "value": 10.0},
    ]

    # --- it was OTAP on the last hop
    for signal, count in (("traces", len(sent_spans)), ("logs", len(sent_logs)), ("metrics", 5)):
        assert (
            stack.bridge.metric("orasi_receiver_accepted_items_total", signal=signal, transport="otap")
            >= count
        )
        assert (
            stack.bridge.metric("orasi_receiver_accepted_items_total", signal=signal, transport="grpc") == 0
        )


def python_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [python_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: python_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)
