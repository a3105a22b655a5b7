"""OTLP export requests that use every field the lake stores, and the rows they must become.

The expected rows are written out by hand from the contract (ARCHITECTURE §5: lowercase hex
ids, enum names without prefix, canonical attribute strings, JSON bodies), never computed with
the code under test.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from integration.otap_data import any_value, kv
from orasi_common.pdata import Batch, Signal

# 2024-05-31T16:08:37.123456789Z: sub-microsecond digits make truncation to `time` visible.
T0 = 1_717_171_717_123_456_789
T0_RFC3339 = "2024-05-31T16:08:37.123456789Z"
HOUR = 3600 * 10**9


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [kv(key, value) for key, value in attributes.items()]


# Attribute values of every OTLP type → the canonical string the lake stores. Arrays and maps
# are JSON (compared after parsing; their element types must survive); the rest are exact.
ATTRIBUTES: dict[str, Any] = {
    "str": 'välue ✓ "quoted"',
    "str.empty": "",
    "int": 42,
    "int.negative": -7,
    "int.max": 2**63 - 1,
    "bool.true": True,
    "bool.false": False,
    "double": 3.25,
    "double.negative": -0.5,
    "double.tenth": 0.1,
    "bytes": b"\x00\x01\xfe\xff",
    "array": ["a", 1, True, 2.5, b"\xff"],
    "array.empty": [],
    "map": {"k": "v", "n": 7, "ok": False, "nested": {"list": [1, "two"]}},
    "empty": None,
}
CANONICAL: dict[str, str | None] = {
    "str": 'välue ✓ "quoted"',
    "str.empty": "",
    "int": "42",
    "int.negative": "-7",
    "int.max": "9223372036854775807",
    "bool.true": "true",
    "bool.false": "false",
    "double": "3.25",
    "double.negative": "-0.5",
    "double.tenth": "0.1",
    "bytes": "AAH+/w==",
    "array": None,  # JSON, see JSON_VALUES
    "array.empty": None,
    "map": None,
    "empty": None,
}
JSON_VALUES: dict[str, Any] = {
    "array": ["a", 1, True, 2.5, "/w=="],
    "array.empty": [],
    "map": {"k": "v", "n": 7, "ok": False, "nested": {"list": [1, "two"]}},
}


def assert_canonical_attributes(stored: dict[str, str | None]) -> None:
    """``stored`` is ATTRIBUTES in canonical form (every key, every type)."""
    assert set(stored) == set(ATTRIBUTES)
    for key, expected in CANONICAL.items():
        if key in JSON_VALUES:
            assert stored[key] is not None, key
            assert json.loads(stored[key]) == JSON_VALUES[key], key
            # JSON keeps the element types: ints stay ints, bools stay bools.
            assert json.dumps(json.loads(stored[key])) == json.dumps(JSON_VALUES[key]), key
        else:
            assert stored[key] == expected, key


RESOURCE = {"service.name": "checkout", "host.name": "node-7", "service.instance.number": 7}
RESOURCE_CANONICAL = {"service.name": "checkout", "host.name": "node-7", "service.instance.number": "7"}

TRACE_ID = bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
TRACE_HEX = "5b8efff798038103d269b633813fc60c"
OTHER_TRACE = bytes.fromhex("ABCDEF0123456789ABCDEF0123456789")
OTHER_TRACE_HEX = "abcdef0123456789abcdef0123456789"


def span_id(n: int) -> bytes:
    return bytes.fromhex(f"EEE19B7EC3C1B1{n:02X}")


def span_hex(n: int) -> str:
    return f"eee19b7ec3c1b1{n:02x}"


# --- traces --------------------------------------------------------------------------------


def _checkout_scope(resources: Any, scope_field: str, name: str, version: str) -> Any:
    """A resource of RESOURCE's attributes added to ``resources``, and its one scope ``name`` ``version``."""
    resource = resources.add()
    resource.resource.attributes.extend(key_values(RESOURCE))
    return getattr(resource, scope_field).add(scope=InstrumentationScope(name=name, version=version))


def traces_request(base: int = T0) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope_spans = _checkout_scope(request.resource_spans, "scope_spans", "orasi.tests.lake", "1.2.3")

    root = scope_spans.spans.add(
        trace_id=TRACE_ID,
        span_id=span_id(1),
        trace_state="vendor=a:1",
        flags=0x301,
        name="GET /orders/{id}",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=base,
        end_time_unix_nano=base + 1_500_000_123,
        dropped_attributes_count=2,
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
    )
    root.attributes.extend(key_values(ATTRIBUTES))
    root.events.add(
        time_unix_nano=base + 100,
        name="cache.miss",
        attributes=key_values({"cache.key": "k1", "attempt": 2}),
        dropped_attributes_count=1,
    )
    root.events.add(time_unix_nano=base + 200, name="retry")
    root.links.add(
        trace_id=OTHER_TRACE,
        span_id=span_id(9),
        trace_state="l=1",
        attributes=key_values({"link.reason": "caused-by", "link.weight": 3, "link.ok": True}),
        flags=1,
    )

    child = scope_spans.spans.add(
        trace_id=TRACE_ID,
        span_id=span_id(2),
        parent_span_id=span_id(1),
        name="SELECT orders",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=base + 1_000,
        end_time_unix_nano=base + 1_000 + 250_000_000,
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="connection reset"),
    )
    child.attributes.extend(key_values({"db.system": "postgresql", "db.rows": 0}))
    for n, kind in (
        (3, trace_pb2.Span.SPAN_KIND_PRODUCER),
        (4, trace_pb2.Span.SPAN_KIND_CONSUMER),
        (5, trace_pb2.Span.SPAN_KIND_INTERNAL),
        (6, trace_pb2.Span.SPAN_KIND_UNSPECIFIED),
    ):
        scope_spans.spans.add(
            trace_id=TRACE_ID,
            span_id=span_id(n),
            parent_span_id=span_id(1),
            name=f"span-{n}",
            kind=kind,
            start_time_unix_nano=base + n,
            end_time_unix_nano=base + n + 10,
        )

    # A resource without service.name and a scope without a name.
    anonymous = request.resource_spans.add()
    anonymous.resource.attributes.extend(key_values({"k8s.pod.name": "pod-1"}))
    anonymous.scope_spans.add().spans.add(
        trace_id=OTHER_TRACE,
        span_id=span_id(7),
        name="anonymous",
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=base + 7,
        end_time_unix_nano=base + 7,
    )
    return request


def expected_spans(
    base: int = T0, tenant: str = "default", region: str = "test-region-1"
) -> dict[str, dict[str, Any]]:
    """Every column of every span of traces_request(), by span id (times as Unix ns / µs)."""
    common = {
        "tenant": tenant,
        "region": region,  # produced in: these resources have no cloud.region
        "lake_region": region,
        "service_name": "checkout",
        "schema_violations": None,  # only the registry's validation (flag) fills it
        "trace_id": TRACE_HEX,
        "trace_state": None,
        "flags": 0,
        "status_message": None,
        "resource_attributes": RESOURCE_CANONICAL,
        "scope_name": "orasi.tests.lake",
        "scope_version": "1.2.3",
        "events": [],
        "links": [],
        "dropped_attributes_count": 0,
        "attributes": {},
        "parent_span_id": span_hex(1),
        "status_code": "UNSET",
    }
    spans = {
        span_hex(1): {
            **common,
            "name": "GET /orders/{id}",
            "kind": "SERVER",
            "span_id": span_hex(1),
            "parent_span_id": None,
            "trace_state": "vendor=a:1",
            "flags": 0x301,
            "start_time_unix_nano": base,
            "end_time_unix_nano": base + 1_500_000_123,
            "duration_ns": 1_500_000_123,
            "status_code": "OK",
            "attributes": None,  # checked with assert_canonical_attributes
            "events": [
                {
                    "time_unix_nano": base + 100,
                    "name": "cache.miss",
                    "attributes": {"cache.key": "k1", "attempt": "2"},
                    "dropped_attributes_count": 1,
                },
                {
                    "time_unix_nano": base + 200,
                    "name": "retry",
                    "attributes": {},
                    "dropped_attributes_count": 0,
                },
            ],
            "links": [
                {
                    "trace_id": OTHER_TRACE_HEX,
                    "span_id": span_hex(9),
                    "trace_state": "l=1",
                    "attributes": {"link.reason": "caused-by", "link.weight": "3", "link.ok": "true"},
                    "flags": 1,
                }
            ],
            "dropped_attributes_count": 2,
        },
        span_hex(2): {
            **common,
            "name": "SELECT orders",
            "kind": "CLIENT",
            "span_id": span_hex(2),
            "start_time_unix_nano": base + 1_000,
            "end_time_unix_nano": base + 1_000 + 250_000_000,
            "duration_ns": 250_000_000,
            "status_code": "ERROR",
            "status_message": "connection reset",
            "attributes": {"db.system": "postgresql", "db.rows": "0"},
        },
    }
    for n, kind in ((3, "PRODUCER"), (4, "CONSUMER"), (5, "INTERNAL"), (6, "UNSPECIFIED")):
        spans[span_hex(n)] = {
            **common,
            "name": f"span-{n}",
            "kind": kind,
            "span_id": span_hex(n),
            "start_time_unix_nano": base + n,
            "end_time_unix_nano": base + n + 10,
            "duration_ns": 10,
        }
    spans[span_hex(7)] = {
        **common,
        "service_name": "unknown_service",
        "resource_attributes": {"k8s.pod.name": "pod-1"},
        "scope_name": None,
        "scope_version": None,
        "name": "anonymous",
        "kind": "INTERNAL",
        "trace_id": OTHER_TRACE_HEX,
        "span_id": span_hex(7),
        "parent_span_id": None,
        "start_time_unix_nano": base + 7,
        "end_time_unix_nano": base + 7,
        "duration_ns": 0,
    }
    for span in spans.values():
        span["time_us"] = span["start_time_unix_nano"] // 1000
    return spans


# --- logs ----------------------------------------------------------------------------------

MAP_BODY = {"type": 0, "url": "https://example.com/a?b=c", "nested": {"ok": True, "list": [1, "a"]}}


def logs_request(base: int = T0) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    records = _checkout_scope(request.resource_logs, "scope_logs", "orasi.tests.logs", "0.9").log_records
    first = records.add(
        time_unix_nano=base,
        observed_time_unix_nano=base + 5,
        severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
        severity_text="INFO",
        body=any_value("user logged in"),
        trace_id=TRACE_ID,
        span_id=span_id(1),
        flags=1,
    )
    first.attributes.extend(key_values(ATTRIBUTES))
    records.add(
        time_unix_nano=base + 1,
        observed_time_unix_nano=base + 6,
        severity_number=logs_pb2.SEVERITY_NUMBER_ERROR,
        severity_text="ERROR",
        event_name="browser.page_view",
        body=any_value(MAP_BODY),
        attributes=key_values({"event.attribute": "some event attribute"}),
    )
    # No time: the observed time is the row's `time` (as the OTLP spec advises).
    records.add(
        observed_time_unix_nano=base + 7_000,
        severity_number=logs_pb2.SEVERITY_NUMBER_WARN2,
        body=any_value(42),
    )
    records.add(time_unix_nano=base + 3, body=any_value([1, "two", 3.5, False]))
    records.add(time_unix_nano=base + 4, severity_number=logs_pb2.SEVERITY_NUMBER_FATAL4)
    records.add(time_unix_nano=base + 5, body=any_value(b"\x00\xff"))
    return request


def expected_logs(
    base: int = T0, tenant: str = "default", region: str = "test-region-1"
) -> list[dict[str, Any]]:
    """Every column of every record of logs_request(), ordered by `time_key` (ns)."""
    common = {
        "tenant": tenant,
        "region": region,  # produced in: these resources have no cloud.region
        "lake_region": region,
        "service_name": "checkout",
        "schema_violations": None,  # only the registry's validation (flag) fills it
        "observed_time_unix_nano": None,
        "severity_number": 0,
        "severity_text": None,
        "event_name": None,
        "trace_id": None,
        "span_id": None,
        "flags": 0,
        "attributes": {},
        "resource_attributes": RESOURCE_CANONICAL,
        "scope_name": "orasi.tests.logs",
        "scope_version": "0.9",
    }
    rows = [
        {
            **common,
            "time_unix_nano": base,
            "observed_time_unix_nano": base + 5,
            "severity_number": 9,
            "severity_text": "INFO",
            "body": "user logged in",
            "body_type": "string",
            "trace_id": TRACE_HEX,
            "span_id": span_hex(1),
            "flags": 1,
            "attributes": None,  # assert_canonical_attributes
        },
        {
            **common,
            "time_unix_nano": base + 1,
            "observed_time_unix_nano": base + 6,
            "severity_number": 17,
            "severity_text": "ERROR",
            "event_name": "browser.page_view",
            "body": MAP_BODY,  # JSON, compared parsed
            "body_type": "map",
            "attributes": {"event.attribute": "some event attribute"},
        },
        {**common, "time_unix_nano": base + 3, "body": [1, "two", 3.5, False], "body_type": "array"},
        {**common, "time_unix_nano": base + 4, "severity_number": 24, "body": None, "body_type": "empty"},
        {**common, "time_unix_nano": base + 5, "body": "AP8=", "body_type": "bytes"},
        {
            **common,
            "time_unix_nano": None,
            "observed_time_unix_nano": base + 7_000,
            "severity_number": 14,
            "body": 42,
            "body_type": "int",
        },
    ]
    for row in rows:
        row["time_us"] = (row["time_unix_nano"] or row["observed_time_unix_nano"]) // 1000
    return rows


# --- metrics -------------------------------------------------------------------------------


def metrics_request(base: int = T0) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metrics = _checkout_scope(
        request.resource_metrics, "scope_metrics", "orasi.tests.metrics", "2.0.0"
    ).metrics
    start = base - 60 * 10**9

    gauge = metrics.add(name="temperature", unit="Cel", description="Room temperature")
    gauge.gauge.data_points.add(time_unix_nano=base, as_double=21.5, attributes=key_values({"room": "lab"}))
    gauge.gauge.data_points.add(
        time_unix_nano=base + 1, as_int=-3, attributes=key_values({"room": "cellar"}), flags=1
    )

    counter = metrics.add(name="requests", unit="{request}", description="Requests served")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    counter.sum.data_points.add(
        start_time_unix_nano=start, time_unix_nano=base + 2, as_int=7, attributes=key_values(ATTRIBUTES)
    )
    updown = metrics.add(name="queue.depth", unit="{item}")
    updown.sum.is_monotonic = False
    updown.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    updown.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=base + 3, as_double=-3.5)

    histogram = metrics.add(name="latency", unit="ms", description="Latency")
    histogram.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    point = histogram.histogram.data_points.add(
        start_time_unix_nano=start,
        time_unix_nano=base + 4,
        count=5,
        sum=5615.0,
        min=5.0,
        max=5000.0,
        bucket_counts=[1, 2, 1, 1],
        explicit_bounds=[10.0, 100.0, 1000.0],
        attributes=key_values({"route": "/a"}),
    )
    point.exemplars.add(
        time_unix_nano=base + 40,
        as_double=60.0,
        trace_id=TRACE_ID,
        span_id=span_id(2),
        filtered_attributes=key_values({"user": "u1", "retry": 1}),
    )
    point.exemplars.add(time_unix_nano=base + 41, as_int=5)
    # A histogram point without sum, min and max.
    histogram.histogram.data_points.add(
        start_time_unix_nano=start,
        time_unix_nano=base + 5,
        count=0,
        bucket_counts=[0],
        attributes=key_values({"route": "/b"}),
    )

    exponential = metrics.add(name="sizes", unit="By", description="Payload sizes")
    exponential.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    point = exponential.exponential_histogram.data_points.add(
        start_time_unix_nano=start,
        time_unix_nano=base + 6,
        count=10,
        sum=12.5,
        min=-3.0,
        max=9.0,
        scale=3,
        zero_count=2,
    )
    point.positive.offset = -2
    point.positive.bucket_counts.extend([1, 0, 3])
    point.negative.offset = 1
    point.negative.bucket_counts.extend([4])
    point.exemplars.add(time_unix_nano=base + 60, as_double=-1.25, span_id=span_id(3))

    summary = metrics.add(name="rpc.duration", unit="s", description="RPC durations")
    point = summary.summary.data_points.add(
        start_time_unix_nano=start, time_unix_nano=base + 7, count=4, sum=10.0
    )
    for quantile, value in ((0.0, 1.0), (0.5, 2.0), (0.99, 4.0), (1.0, 4.0)):
        point.quantile_values.add(quantile=quantile, value=value)

    metrics.add(name="no.data")  # a metric without data is not a row
    return request


class _Absent:
    """An expected value meaning "no value": null, or an empty list for a list column."""

    def __eq__(self, other: object) -> bool:
        return other is None or other == []

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

VALUE_COLUMNS = [
    "value",
    "int_value",
    "count",
    "sum",
    "min",
    "max",
    "bucket_counts",
    "explicit_bounds",
    "scale",
    "zero_count",
    "positive_offset",
    "positive_bucket_counts",
    "negative_offset",
    "negative_bucket_counts",
    "quantiles",
]


def expected_metric_points(
    base: int = T0, tenant: str = "default", region: str = "test-region-1"
) -> list[dict[str, Any]]:
    """Every column of every point of metrics_request(), ordered by time_unix_nano."""
    start = base - 60 * 10**9
    common: dict[str, Any] = {
        "tenant": tenant,
        "region": region,  # produced in: these resources have no cloud.region
        "lake_region": region,
        "service_name": "checkout",
        "schema_violations": None,  # only the registry's validation (flag) fills it
        "unit": None,
        "description": None,
        "is_monotonic": None,
        "aggregation_temporality": None,
        "start_time_unix_nano": start,
        "exemplars": [],
        "flags": 0,
        "attributes": {},
        "resource_attributes": RESOURCE_CANONICAL,
        "scope_name": "orasi.tests.metrics",
        "scope_version": "2.0.0",
        **{name: None for name in VALUE_COLUMNS},
        # The contract does not say whether a point without quantiles holds null or []; a read
        # must give the same either way, hot or committed (hot_then_cold checks that).
        "quantiles": ABSENT,
    }
    gauge = {
        **common,
        "metric_name": "temperature",
        "metric_type": "gauge",
        "unit": "Cel",
        "description": "Room temperature",
        "start_time_unix_nano": None,
    }
    histogram = {
        **common,
        "metric_name": "latency",
        "metric_type": "histogram",
        "unit": "ms",
        "description": "Latency",
        "aggregation_temporality": "DELTA",
    }
    rows = [
        {**gauge, "time_unix_nano": base, "value": 21.5, "attributes": {"room": "lab"}},
        {
            **gauge,
            "time_unix_nano": base + 1,
            "value": -3.0,
            "int_value": -3,
            "flags": 1,
            "attributes": {"room": "cellar"},
        },
        {
            **common,
            "metric_name": "requests",
            "metric_type": "sum",
            "unit": "{request}",
            "description": "Requests served",
            "is_monotonic": True,
            "aggregation_temporality": "CUMULATIVE",
            "time_unix_nano": base + 2,
            "value": 7.0,
            "int_value": 7,
            "attributes": None,
        },
        {
            **common,
            "metric_name": "queue.depth",
            "metric_type": "sum",
            "unit": "{item}",
            "is_monotonic": False,
            "aggregation_temporality": "DELTA",
            "time_unix_nano": base + 3,
            "value": -3.5,
        },
        {
            **histogram,
            "time_unix_nano": base + 4,
            "count": 5,
            "sum": 5615.0,
            "min": 5.0,
            "max": 5000.0,
            "bucket_counts": [1, 2, 1, 1],
            "explicit_bounds": [10.0, 100.0, 1000.0],
            "attributes": {"route": "/a"},
            "exemplars": [
                {
                    "time_unix_nano": base + 40,
                    "value": 60.0,
                    "trace_id": TRACE_HEX,
                    "span_id": span_hex(2),
                    "filtered_attributes": {"user": "u1", "retry": "1"},
                },
                {
                    "time_unix_nano": base + 41,
                    "value": 5.0,
                    "trace_id": None,
                    "span_id": None,
                    "filtered_attributes": {},
                },
            ],
        },
        {
            **histogram,
            "time_unix_nano": base + 5,
            "count": 0,
            "bucket_counts": [0],
            "explicit_bounds": [],
            "attributes": {"route": "/b"},
        },
        {
            **common,
            "metric_name": "sizes",
            "metric_type": "exponential_histogram",
            "unit": "By",
            "description": "Payload sizes",
            "aggregation_temporality": "CUMULATIVE",
            "time_unix_nano": base + 6,
            "count": 10,
            "sum": 12.5,
            "min": -3.0,
            "max": 9.0,
            "scale": 3,
            "zero_count": 2,
            "positive_offset": -2,
            "positive_bucket_counts": [1, 0, 3],
            "negative_offset": 1,
            "negative_bucket_counts": [4],
            "exemplars": [
                {
                    "time_unix_nano": base + 60,
                    "value": -1.25,
                    "trace_id": None,
                    "span_id": span_hex(3),
                    "filtered_attributes": {},
                }
            ],
        },
        {
            **common,
            "metric_name": "rpc.duration",
            "metric_type": "summary",
            "unit": "s",
            "description": "RPC durations",
            "time_unix_nano": base + 7,
            "count": 4,
            "sum": 10.0,
            "quantiles": [
                {"quantile": 0.0, "value": 1.0},
                {"quantile": 0.5, "value": 2.0},
                {"quantile": 0.99, "value": 4.0},
                {"quantile": 1.0, "value": 4.0},
            ],
        },
    ]
    for row in rows:
        row["time_us"] = row["time_unix_nano"] // 1000
    return rows


def batch(signal: Signal, request: Any, *, tenant: str = "default", batch_id: str | None = None) -> Batch:
    extra = {"batch_id": batch_id} if batch_id else {}
    return Batch.from_serialized(signal, request.SerializeToString(), tenant=tenant, **extra)


def span_request(
    start: int, name: str, service: str = "svc", duration: int = 1_000
) -> ExportTraceServiceRequest:
    """One span named ``name`` starting at ``start`` (Unix ns)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": service}))
    resource_spans.scope_spans.add().spans.add(
        trace_id=TRACE_ID,
        span_id=hashlib.blake2b(name.encode(), digest_size=8).digest(),
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
    )
    return request


def log_request(time_unix_nano: int, body: str, service: str = "svc") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(key_values({"service.name": service}))
    resource_logs.scope_logs.add().log_records.add(time_unix_nano=time_unix_nano, body=any_value(body))
    return request
