"""check_request: what every receiver refuses before it acknowledges, and what it keeps.

The contract (issue 11): a request that protobuf parsed is refused, as a whole, when an id has
another length than OTLP's (trace ids 16 bytes, span ids 8, or empty) or a time is at or past
2^63 ns (it fits no signed nanosecond column); the MalformedData names the first problem in wire
order as ``<path>: <problem>``, the path in proto field names with indices. Everything else the
OTLP specification allows is kept: unknown enum values, an attribute without a value, an end
before the start, empty ids.

The table below is written by hand from that contract. Two property tests hold check_request
against ``first_problem``, a plain walk over the parsed message written here from the same
contract (protobuf serializes fields in field-number order, so for canonical bytes "first in
wire order" is "first in a depth-first walk by field number"), on generated requests with odd
values in random places, and on mutated bytes: whatever protobuf parses, check_request passes or
raises MalformedData, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from orasi_common.errors import MalformedData
from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.validate import check_request

NOW = 1_700_000_000_000_000_000
LATEST = 2**63 - 1  # the latest time a signed 64-bit nanosecond column holds
PAST = 2**63  # the first one it does not
MAX_U64 = 2**64 - 1

TRACES, LOGS, METRICS = Signal.TRACES, Signal.LOGS, Signal.METRICS
M = TypeVar("M", bound=Message)


# --- builders: every default is valid; a case overrides one value --------------------------------


def tid(n: int = 1, width: int = 16) -> bytes:
    return bytes([n]) * width


def sid(n: int = 1, width: int = 8) -> bytes:
    return bytes([n]) * width


def attr(key: str, value: str = "v") -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(n: int = 1, **fields: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": tid(n),
        "span_id": sid(n),
        "name": f"span-{n}",
        "kind": Span.SPAN_KIND_SERVER,
        "start_time_unix_nano": NOW,
        "end_time_unix_nano": NOW + 1_000,
        "attributes": [attr("http.route", "/cart")],
    }
    values.update(fields)
    return Span(**values)


def event(**fields: Any) -> Span.Event:
    return Span.Event(**{"name": "retry", "time_unix_nano": NOW + 10, **fields})


def link(**fields: Any) -> Span.Link:
    return Span.Link(**{"trace_id": tid(9), "span_id": sid(9), **fields})


def _nest(request: M, resources: tuple[list[list[Any]], ...], fields: tuple[str, str, str]) -> M:
    """``request`` with these resources → scopes → items, under these three repeated fields.

    Resource ``r`` has service.name ``s<r>``; scope ``s`` of each resource is named ``scope-<s>``.
    """
    resource_field, scope_field, items_field = fields
    for r, scopes in enumerate(resources):
        resource = getattr(request, resource_field).add(
            resource=Resource(attributes=[attr("service.name", f"s{r}")])
        )
        for s, items in enumerate(scopes):
            scope = getattr(resource, scope_field).add(scope=InstrumentationScope(name=f"scope-{s}"))
            getattr(scope, items_field).extend(items)
    return request


def traces(*resources: list[list[Span]]) -> ExportTraceServiceRequest:
    """resources → scopes → spans."""
    return _nest(ExportTraceServiceRequest(), resources, ("resource_spans", "scope_spans", "spans"))


def record(n: int = 1, **fields: Any) -> LogRecord:
    values: dict[str, Any] = {
        "time_unix_nano": NOW,
        "observed_time_unix_nano": NOW + 5,
        "severity_number": 9,
        "body": AnyValue(string_value=f"log-{n}"),
        "trace_id": tid(n),
        "span_id": sid(n),
    }
    values.update(fields)
    return LogRecord(**values)


def logs(*resources: list[list[LogRecord]]) -> ExportLogsServiceRequest:
    return _nest(ExportLogsServiceRequest(), resources, ("resource_logs", "scope_logs", "log_records"))


def exemplar(**fields: Any) -> metrics_pb2.Exemplar:
    return metrics_pb2.Exemplar(
        **{"time_unix_nano": NOW, "as_double": 0.5, "trace_id": tid(3), "span_id": sid(3), **fields}
    )


POINT_TYPES: dict[str, Any] = {
    "gauge": metrics_pb2.NumberDataPoint,
    "sum": metrics_pb2.NumberDataPoint,
    "histogram": metrics_pb2.HistogramDataPoint,
    "exponential_histogram": metrics_pb2.ExponentialHistogramDataPoint,
    "summary": metrics_pb2.SummaryDataPoint,
}


def point(kind: str, **fields: Any) -> Any:
    """A valid data point of a metric of ``kind`` (with an exemplar where the type has them)."""
    values: dict[str, Any] = {"start_time_unix_nano": NOW - 60, "time_unix_nano": NOW}
    if kind in ("gauge", "sum"):
        values["as_double"] = 1.5
    elif kind == "histogram":
        values.update(count=2, sum=3.0, bucket_counts=[1, 1], explicit_bounds=[1.0])
    elif kind == "exponential_histogram":
        values.update(
            count=1,
            sum=1.0,
            scale=0,
            positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(bucket_counts=[1]),
        )
    else:
        values.update(
            count=1,
            sum=2.0,
            quantile_values=[metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0)],
        )
    if kind != "summary":
        values["exemplars"] = [exemplar()]
    values.update(fields)
    return POINT_TYPES[kind](**values)


def metric(kind: str, *points: Any, name: str = "m") -> metrics_pb2.Metric:
    result = metrics_pb2.Metric(name=name, unit="1")
    data = getattr(result, kind)
    data.data_points.extend(points or [point(kind)])
    data.SetInParent()
    if kind in ("sum", "histogram", "exponential_histogram"):
        data.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    return result


def metrics(*resources: list[list[metrics_pb2.Metric]]) -> ExportMetricsServiceRequest:
    return _nest(ExportMetricsServiceRequest(), resources, ("resource_metrics", "scope_metrics", "metrics"))


def every_metric_type(**point_fields: Any) -> list[metrics_pb2.Metric]:
    return [metric(kind, point(kind, **point_fields), point(kind), name=kind) for kind in POINT_TYPES]


# --- the table -----------------------------------------------------------------------------------

Build = Callable[[], Message]

VALID: list[Any] = [
    pytest.param(TRACES, ExportTraceServiceRequest, id="traces-empty-request"),
    pytest.param(LOGS, ExportLogsServiceRequest, id="logs-empty-request"),
    pytest.param(METRICS, ExportMetricsServiceRequest, id="metrics-empty-request"),
    pytest.param(
        TRACES,
        lambda: traces(
            [[span(1), span(2, parent_span_id=sid(1))], [span(3)]],
            [[span(4, events=[event(), event()], links=[link(), link(trace_id=tid(5))])], [], [span(5)]],
        ),
        id="traces-nested-resources-scopes-and-several-spans",
    ),
    pytest.param(
        TRACES,
        lambda: traces(
            [
                [
                    span(
                        1,
                        trace_id=b"",
                        span_id=b"",
                        parent_span_id=b"",
                        links=[link(trace_id=b"", span_id=b"")],
                    )
                ]
            ]
        ),
        id="traces-empty-ids",
    ),
    pytest.param(
        TRACES,
        lambda: traces(
            [
                [
                    span(
                        1,
                        start_time_unix_nano=LATEST,
                        end_time_unix_nano=LATEST,
                        events=[event(time_unix_nano=LATEST)],
                    )
                ]
            ]
        ),
        id="traces-latest-storable-times",
    ),
    pytest.param(
        TRACES,
        lambda: traces(
            [[span(1, start_time_unix_nano=0, end_time_unix_nano=0, events=[event(time_unix_nano=0)])]]
        ),
        id="traces-zero-times",
    ),
    pytest.param(TRACES, lambda: traces([[span(1, kind=99)]]), id="traces-unknown-span-kind"),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, status=Status(code=7, message="?"))]]),
        id="traces-unknown-status-code",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, attributes=[KeyValue(key="no.value"), attr("k")])]]),
        id="traces-attribute-without-a-value",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, start_time_unix_nano=NOW, end_time_unix_nano=NOW - 5_000)]]),
        id="traces-end-before-start",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, trace_state="k=v", flags=0x301, dropped_attributes_count=3)]]),
        id="traces-other-fields",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1), record(2)], [record(3)]], [[record(4, trace_id=b"", span_id=b"")]]),
        id="logs-nested-and-empty-ids",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1, time_unix_nano=LATEST, observed_time_unix_nano=LATEST)]]),
        id="logs-latest-storable-times",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1, time_unix_nano=0, observed_time_unix_nano=0, severity_number=99)]]),
        id="logs-no-times-and-unknown-severity",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1, attributes=[KeyValue(key="no.value")], body=AnyValue())]]),
        id="logs-attribute-and-body-without-a-value",
    ),
    pytest.param(
        METRICS,
        lambda: metrics([every_metric_type()], [[], every_metric_type()]),
        id="metrics-every-type-nested",
    ),
    pytest.param(
        METRICS,
        lambda: metrics([every_metric_type(start_time_unix_nano=LATEST, time_unix_nano=LATEST)]),
        id="metrics-latest-storable-times",
    ),
    pytest.param(
        METRICS,
        lambda: metrics(
            [
                [
                    metric(
                        kind,
                        point(
                            kind,
                            exemplars=[
                                exemplar(trace_id=b"", span_id=b"", time_unix_nano=LATEST),
                                exemplar(time_unix_nano=0),
                            ],
                        ),
                    )
                    for kind in ("gauge", "sum", "histogram", "exponential_histogram")
                ]
            ]
        ),
        id="metrics-exemplars-empty-ids-and-edge-times",
    ),
    pytest.param(
        METRICS,
        lambda: metrics([[metric("sum", point("sum", start_time_unix_nano=0, time_unix_nano=0))]]),
        id="metrics-zero-times",
    ),
]


def id_problem(width: int, got: int) -> str:
    # "got 1 byte" is a prefix of both "got 1 byte" and "got 1 bytes".
    return f"must be {width} bytes or empty, got {got} byte"


def time_problem(value: int) -> str:
    return f"{value} is past the latest time"


SPANS = "resource_spans[0].scope_spans[0].spans"
RECORDS = "resource_logs[0].scope_logs[0].log_records"
METRICS_0 = "resource_metrics[0].scope_metrics[0].metrics"


def traces_with(bad: Span, before: int = 0, after: int = 1) -> ExportTraceServiceRequest:
    """One scope: ``before`` valid spans, ``bad``, ``after`` valid spans."""
    return traces([[*(span(10 + i) for i in range(before)), bad, *(span(20 + i) for i in range(after))]])


ODD: list[Any] = [
    # traces
    pytest.param(
        TRACES,
        lambda: traces_with(span(span_id=b"\x01\x02"), before=3),
        f"{SPANS}[3].span_id",
        id_problem(8, 2),
        id="span-id-2-bytes",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(span_id=sid(width=9))),
        f"{SPANS}[0].span_id",
        id_problem(8, 9),
        id="span-id-9-bytes",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(parent_span_id=b"\x07"), before=1),
        f"{SPANS}[1].parent_span_id",
        id_problem(8, 1),
        id="parent-span-id-1-byte",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1)]], [[span(2)], [span(3), span(4), span(5, trace_id=b"\x01")]]),
        "resource_spans[1].scope_spans[1].spans[2].trace_id",
        id_problem(16, 1),
        id="trace-id-1-byte-deep",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(trace_id=tid(width=32))),
        f"{SPANS}[0].trace_id",
        id_problem(16, 32),
        id="trace-id-32-bytes",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1)], [span(2, start_time_unix_nano=MAX_U64)]]),
        "resource_spans[0].scope_spans[1].spans[0].start_time_unix_nano",
        time_problem(MAX_U64),
        id="start-time-2^64-1",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(start_time_unix_nano=PAST)),
        f"{SPANS}[0].start_time_unix_nano",
        time_problem(PAST),
        id="start-time-2^63",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(end_time_unix_nano=PAST), before=2),
        f"{SPANS}[2].end_time_unix_nano",
        time_problem(PAST),
        id="end-time-2^63",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(events=[event(), event(), event(time_unix_nano=MAX_U64)])),
        f"{SPANS}[0].events[2].time_unix_nano",
        time_problem(MAX_U64),
        id="event-time-2^64-1",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(links=[link(), link(trace_id=b"\x01")])),
        f"{SPANS}[0].links[1].trace_id",
        id_problem(16, 1),
        id="link-trace-id-1-byte",
    ),
    pytest.param(
        TRACES,
        lambda: traces_with(span(links=[link(span_id=sid(width=4))]), before=1),
        f"{SPANS}[1].links[0].span_id",
        id_problem(8, 4),
        id="link-span-id-4-bytes",
    ),
    # logs
    pytest.param(
        LOGS,
        lambda: logs([[record(1), record(2), record(3, trace_id=tid(width=15))]]),
        f"{RECORDS}[2].trace_id",
        id_problem(16, 15),
        id="log-trace-id-15-bytes",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1)]], [[record(2, span_id=b"\x01\x02")]]),
        "resource_logs[1].scope_logs[0].log_records[0].span_id",
        id_problem(8, 2),
        id="log-span-id-2-bytes",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1, time_unix_nano=MAX_U64)]]),
        f"{RECORDS}[0].time_unix_nano",
        time_problem(MAX_U64),
        id="log-time-2^64-1",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1), record(2, observed_time_unix_nano=PAST)]]),
        f"{RECORDS}[1].observed_time_unix_nano",
        time_problem(PAST),
        id="log-observed-time-2^63",
    ),
    # metrics: every data point type, both times, and exemplars
    *(
        pytest.param(
            METRICS,
            lambda kind=kind, field=field: metrics(
                [[metric("gauge"), metric(kind, point(kind), point(kind, **{field: PAST}))]]
            ),
            f"{METRICS_0}[1].{kind}.data_points[1].{field}",
            time_problem(PAST),
            id=f"{kind}-{field}-2^63",
        )
        for kind in POINT_TYPES
        for field in ("start_time_unix_nano", "time_unix_nano")
    ),
    pytest.param(
        METRICS,
        lambda: metrics([[metric("sum", point("sum", exemplars=[exemplar(), exemplar(trace_id=b"\x01")]))]]),
        f"{METRICS_0}[0].sum.data_points[0].exemplars[1].trace_id",
        id_problem(16, 1),
        id="exemplar-trace-id-1-byte",
    ),
    pytest.param(
        METRICS,
        lambda: metrics(
            [
                [],
                [
                    metric(
                        "histogram",
                        point("histogram"),
                        point("histogram", exemplars=[exemplar(span_id=b"\x01\x02")]),
                    )
                ],
            ]
        ),
        "resource_metrics[0].scope_metrics[1].metrics[0].histogram.data_points[1].exemplars[0].span_id",
        id_problem(8, 2),
        id="exemplar-span-id-2-bytes",
    ),
    pytest.param(
        METRICS,
        lambda: metrics(
            [
                [
                    metric(
                        "exponential_histogram",
                        point("exponential_histogram", exemplars=[exemplar(time_unix_nano=MAX_U64)]),
                    )
                ]
            ]
        ),
        f"{METRICS_0}[0].exponential_histogram.data_points[0].exemplars[0].time_unix_nano",
        time_problem(MAX_U64),
        id="exemplar-time-2^64-1",
    ),
    pytest.param(
        METRICS,
        lambda: metrics([[metric("gauge", point("gauge", exemplars=[exemplar(span_id=sid(width=16))]))]]),
        f"{METRICS_0}[0].gauge.data_points[0].exemplars[0].span_id",
        id_problem(8, 16),
        id="gauge-exemplar-span-id-16-bytes",
    ),
    # several problems: the first one in wire order (fields in field-number order) is named
    pytest.param(
        TRACES,
        lambda: traces([[span(1), span(2, span_id=b"\x02"), span(3, trace_id=b"\x03")]]),
        f"{SPANS}[1].span_id",
        id_problem(8, 1),
        id="first-of-two-bad-spans",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, trace_id=b"\x01", span_id=b"\x02", start_time_unix_nano=MAX_U64)]]),
        f"{SPANS}[0].trace_id",
        id_problem(16, 1),
        id="trace-id-before-span-id-and-start",
    ),
    pytest.param(
        TRACES,
        lambda: traces(
            [[span(1, parent_span_id=b"\x04", start_time_unix_nano=MAX_U64, links=[link(trace_id=b"")])]]
        ),
        f"{SPANS}[0].parent_span_id",
        id_problem(8, 1),
        id="parent-before-start",
    ),
    pytest.param(
        TRACES,
        lambda: traces(
            [
                [
                    span(
                        1,
                        end_time_unix_nano=PAST,
                        events=[event(time_unix_nano=PAST)],
                        links=[link(span_id=b"\x01")],
                    )
                ]
            ]
        ),
        f"{SPANS}[0].end_time_unix_nano",
        time_problem(PAST),
        id="end-before-events-and-links",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1, events=[event(time_unix_nano=PAST)], links=[link(span_id=b"\x01")])]]),
        f"{SPANS}[0].events[0].time_unix_nano",
        time_problem(PAST),
        id="events-before-links",
    ),
    pytest.param(
        TRACES,
        lambda: traces([[span(1)], [span(2, span_id=b"\x01")]], [[span(3, trace_id=b"\x01")]]),
        "resource_spans[0].scope_spans[1].spans[0].span_id",
        id_problem(8, 1),
        id="first-resource-before-second",
    ),
    pytest.param(
        LOGS,
        lambda: logs([[record(1, time_unix_nano=PAST, trace_id=b"\x01", observed_time_unix_nano=PAST)]]),
        f"{RECORDS}[0].time_unix_nano",
        time_problem(PAST),
        id="log-time-before-trace-id",
    ),
    pytest.param(
        LOGS,
        # LogRecord: trace_id is field 9, span_id 10, observed_time_unix_nano 11.
        lambda: logs([[record(1, observed_time_unix_nano=PAST, span_id=b"\x01", trace_id=b"\x01")]]),
        f"{RECORDS}[0].trace_id",
        id_problem(16, 1),
        id="log-trace-id-before-span-id-before-observed-time",
    ),
    pytest.param(
        METRICS,
        # Exemplar: span_id is field 4, trace_id 5.
        lambda: metrics(
            [[metric("sum", point("sum", exemplars=[exemplar(trace_id=b"\x01", span_id=b"\x02")]))]]
        ),
        f"{METRICS_0}[0].sum.data_points[0].exemplars[0].span_id",
        id_problem(8, 1),
        id="exemplar-span-id-before-trace-id",
    ),
    pytest.param(
        METRICS,
        lambda: metrics(
            [
                [
                    metric("gauge"),
                    metric("sum", point("sum", time_unix_nano=PAST, exemplars=[exemplar(span_id=b"\x01")])),
                    metric("summary", point("summary", start_time_unix_nano=PAST)),
                ]
            ]
        ),
        f"{METRICS_0}[1].sum.data_points[0].time_unix_nano",
        time_problem(PAST),
        id="point-time-before-its-exemplars-and-later-metrics",
    ),
]


def names(message: str, path: str, problem: str) -> bool:
    """``message`` names ``path`` (whole, not as the tail of a longer path) with ``problem``."""
    return re.search(rf"(?<![\w.\]]){re.escape(path)}: [^\n]*{re.escape(problem)}", message) is not None


@pytest.mark.parametrize(("signal", "build"), VALID)
def test_a_valid_request_passes(signal: Signal, build: Build) -> None:
    request = build()
    assert isinstance(request, SPECS[signal].request_type)
    assert first_problem(request) is None  # the case is what it says
    check_request(signal, request.SerializeToString())


@pytest.mark.parametrize(("signal", "build", "path", "problem"), ODD)
def test_an_odd_request_is_refused_naming_the_first_problem(
    signal: Signal, build: Build, path: str, problem: str
) -> None:
    request = build()
    data = request.SerializeToString()
    # The case is what it says: protobuf parses it, and the reference walk finds this problem.
    assert SPECS[signal].request_type.FromString(data) == request
    assert first_problem(request) == (path, problem)
    with pytest.raises(MalformedData) as raised:
        check_request(signal, data)
    assert names(raised.value.message, path, problem), raised.value.message


def test_the_message_says_what_the_latest_storable_time_is() -> None:
    with pytest.raises(MalformedData) as raised:
        check_request(
            TRACES, traces([[span(1)], [span(2, start_time_unix_nano=MAX_U64)]]).SerializeToString()
        )
    assert raised.value.message.endswith(
        "resource_spans[0].scope_spans[1].spans[0].start_time_unix_nano: 18446744073709551615 is past the "
        "latest time that can be stored (2262-04-11T23:47:16.854775807Z)"
    )


def test_a_refusal_is_permanent() -> None:
    with pytest.raises(MalformedData) as raised:
        check_request(TRACES, traces_with(span(span_id=b"\x01\x02")).SerializeToString())
    assert raised.value.retryable is False


# --- the reference walk, and the property tests ------------------------------------------------

_ID_WIDTHS = {
    "opentelemetry.proto.trace.v1.Span": {"trace_id": 16, "span_id": 8, "parent_span_id": 8},
    "opentelemetry.proto.trace.v1.Span.Link": {"trace_id": 16, "span_id": 8},
    "opentelemetry.proto.logs.v1.LogRecord": {"trace_id": 16, "span_id": 8},
    "opentelemetry.proto.metrics.v1.Exemplar": {"trace_id": 16, "span_id": 8},
}
_TIMES = {
    "opentelemetry.proto.trace.v1.Span": {"start_time_unix_nano", "end_time_unix_nano"},
    "opentelemetry.proto.trace.v1.Span.Event": {"time_unix_nano"},
    "opentelemetry.proto.logs.v1.LogRecord": {"time_unix_nano", "observed_time_unix_nano"},
    "opentelemetry.proto.metrics.v1.Exemplar": {"time_unix_nano"},
    **{
        f"opentelemetry.proto.metrics.v1.{name}": {"start_time_unix_nano", "time_unix_nano"}
        for name in (
            "NumberDataPoint",
            "HistogramDataPoint",
            "ExponentialHistogramDataPoint",
            "SummaryDataPoint",
        )
    },
}


def first_problem(message: Message, path: str = "") -> tuple[str, str] | None:
    """The first (path, problem) of the contract in ``message``, depth first by field number."""
    kind = message.DESCRIPTOR.full_name
    for field, value in message.ListFields():  # present fields, in field-number order
        here = f"{path}.{field.name}" if path else field.name
        width = _ID_WIDTHS.get(kind, {}).get(field.name)
        if width is not None and len(value) not in (0, width):
            return here, id_problem(width, len(value))
        if field.name in _TIMES.get(kind, ()) and value >= PAST:
            return here, time_problem(value)
        if field.message_type is None:
            continue
        children = enumerate(value) if field.is_repeated else [(None, value)]
        for index, child in children:
            found = first_problem(child, here if index is None else f"{here}[{index}]")
            if found is not None:
                return found
    return None


def check_against_reference(signal: Signal, request: Message) -> None:
    data = request.SerializeToString()
    expected = first_problem(request)
    if expected is None:
        check_request(signal, data)
        return
    with pytest.raises(MalformedData) as raised:
        check_request(signal, data)
    assert names(raised.value.message, *expected), (expected, raised.value.message)


IDS = st.sampled_from([0, 1, 2, 7, 8, 9, 15, 16, 17, 32])
TIMES = st.one_of(st.sampled_from([0, 1, NOW, LATEST, PAST, MAX_U64]), st.integers(0, MAX_U64))


def _slots(message: Message) -> list[tuple[Message, str, str]]:
    """Every (message, field name, "id" | "time") that the contract constrains, in ``message``."""
    found: list[tuple[Message, str, str]] = []
    kind = message.DESCRIPTOR.full_name
    found += [(message, name, "id") for name in _ID_WIDTHS.get(kind, {})]
    found += [(message, name, "time") for name in sorted(_TIMES.get(kind, ()))]
    for field, value in message.ListFields():
        if field.message_type is not None:
            for child in value if field.is_repeated else [value]:
                found += _slots(child)
    return found


SHAPES: dict[Signal, Callable[[], Message]] = {
    TRACES: lambda: traces(
        [[span(1, events=[event(), event()], links=[link()]), span(2)], [span(3, links=[link(), link()])]],
        [[span(4, events=[event()])]],
    ),
    LOGS: lambda: logs([[record(1), record(2)], [record(3)]], [[record(4)]]),
    METRICS: lambda: metrics([every_metric_type(), []], [[metric("sum", point("sum"), point("sum"))]]),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signal=st.sampled_from(list(SHAPES)), data=st.data())
def test_odd_values_anywhere_are_found_as_the_reference_walk_finds_them(
    signal: Signal, data: st.DataObject
) -> None:
    request = SHAPES[signal]()
    slots = _slots(request)
    for index in data.draw(st.lists(st.integers(0, len(slots) - 1), max_size=4), label="slots"):
        message, name, what = slots[index]
        if what == "id":
            setattr(message, name, bytes([index % 251 + 1]) * data.draw(IDS, label=name))
        else:
            setattr(message, name, data.draw(TIMES, label=name))
    check_against_reference(signal, request)


SEEDS = {
    TRACES: lambda: traces(
        [
            [
                span(
                    1,
                    events=[event()],
                    links=[link()],
                    status=Status(code=2, message="x"),
                    parent_span_id=sid(7),
                )
            ]
        ],
        [[span(2, trace_id=b"", span_id=b"")]],
    ),
    LOGS: lambda: logs([[record(1, attributes=[attr("a"), KeyValue(key="e")]), record(2, trace_id=b"")]]),
    METRICS: lambda: metrics([every_metric_type()]),
}

Mutation = tuple[int, int, int]  # (operation, position, byte)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    """Overwrite a byte, flip a bit, overwrite a run of bytes, or insert a byte (lengths are not
    fixed up: most inserts make bytes protobuf refuses, most overwrites bytes it parses)."""
    buf = bytearray(data)
    for operation, position, byte in mutations:
        at = position % (len(buf) + 1)
        if operation == 3 or at == len(buf):
            buf[at:at] = bytes([byte])
        elif operation == 0:
            buf[at] = byte
        elif operation == 1:
            buf[at] ^= 1 << (byte % 8)
        else:
            run = min(len(buf) - at, 1 + byte % 8)
            buf[at : at + run] = bytes([byte]) * run
    return bytes(buf)


def check_parsed(signal: Signal, data: bytes) -> bool:
    """If protobuf parses ``data``: check_request passes or raises MalformedData (anything else
    fails the test), and the request as protobuf re-serializes it (one occurrence of each field,
    in field-number order) is judged as the reference walk judges it. False if protobuf refuses
    ``data`` (the receivers refuse it before check_request)."""
    try:
        parsed = SPECS[signal].request_type.FromString(data)
    except DecodeError:
        return False
    try:
        check_request(signal, data)
    except MalformedData as exc:
        assert exc.message
    check_against_reference(signal, parsed)
    return True


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    signal=st.sampled_from(list(SEEDS)),
    mutations=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4
    ),
)
def test_mutated_bytes_that_protobuf_parses_pass_or_are_malformed_data(
    signal: Signal, mutations: list[Mutation]
) -> None:
    check_parsed(signal, mutate(SEEDS[signal]().SerializeToString(), mutations))


def test_the_mutations_mostly_make_bytes_protobuf_parses() -> None:
    """So that the fuzz above reaches check_request (fixed seeds: one overwrite or bit flip)."""
    reached = sum(
        check_parsed(signal, mutate(build().SerializeToString(), [(seed % 3, seed * 7919, seed % 256)]))
        for signal, build in SEEDS.items()
        for seed in range(100)
    )
    assert reached >= 120, reached


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    if wire_type == 2:
        payload = _varint(len(payload)) + payload
    return _varint(number << 3 | wire_type) + payload


# Well-formed wire data shaped by the OTLP schema: each message's own fields (messages nested, ids
# of many lengths, times up to 2^64-1, strings that are not UTF-8), repeated and duplicated, in any
# order, mixed with unknown fields and known numbers under another wire type.
TIME_VALUES = st.sampled_from([0, NOW, LATEST, PAST, MAX_U64])
OTHER_FIELDS = st.one_of(
    st.builds(lambda n, v: _field(n, 0, _varint(v)), st.integers(1, 20), st.integers(0, MAX_U64)),
    st.builds(lambda n, v: _field(n, 1, v.to_bytes(8, "little")), st.integers(1, 20), TIME_VALUES),
    st.builds(lambda n, v: _field(n, 5, v), st.integers(1, 20), st.binary(min_size=4, max_size=4)),
    st.builds(lambda n, v: _field(n, 2, v), st.integers(1, 20), st.binary(max_size=17)),
)
_DEPTH = 8  # deep enough for Request → ... → Metric → Sum → NumberDataPoint → Exemplar
_wire_cache: dict[tuple[str, int], st.SearchStrategy[bytes]] = {}


def _payloads(field: FieldDescriptor, depth: int) -> st.SearchStrategy[bytes]:
    """One occurrence of ``field``, encoded with its own wire type."""
    n = field.number
    if field.message_type is not None:
        inner = wire_for(field.message_type, depth + 1) if depth < _DEPTH else st.just(b"")
        return inner.map(lambda v: _field(n, 2, v))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.builds(
            lambda k: _field(n, 2, bytes([k]) * k), st.sampled_from([0, 1, 2, 7, 8, 9, 15, 16, 17])
        )
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from([b"", b"name", b"span", b"\xff\xfe"]).map(lambda v: _field(n, 2, v))
    if field.type in (
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return TIME_VALUES.map(lambda v: _field(n, 1, v.to_bytes(8, "little")))
    if field.type in (
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FLOAT,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return st.binary(min_size=4, max_size=4).map(lambda v: _field(n, 5, v))
    return st.sampled_from([0, 1, 7, 99, 2**31, MAX_U64]).map(lambda v: _field(n, 0, _varint(v)))


def wire_for(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[bytes]:
    """A message of type ``descriptor``; its message fields weigh more, so that generated
    requests reach the items (and their events, links, data points, exemplars) often."""
    key = (descriptor.full_name, depth)
    if key not in _wire_cache:
        own = [
            _payloads(field, depth)
            for field in descriptor.fields
            for _ in range(4 if field.message_type is not None else 1)
        ]
        one = st.one_of(*own, OTHER_FIELDS) if own else OTHER_FIELDS
        _wire_cache[key] = st.lists(one, min_size=1 if depth < 4 else 0, max_size=3).map(b"".join)
    return _wire_cache[key]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_wire_data_that_protobuf_parses_passes_or_is_malformed_data(data: st.DataObject) -> None:
    signal = data.draw(st.sampled_from(list(Signal)), label="signal")
    check_parsed(signal, data.draw(wire_for(SPECS[signal].request_type.DESCRIPTOR), label="request"))
