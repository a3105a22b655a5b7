"""Metric point rows, from either form, equal the per-object conversion they replaced.

`reference_metric_points` is the previous implementation (7de445a:
orasi_bridge/lake/rows.py, ``metric_points_batch``), shortened: it walks the upb-parsed request
point by point. Rows read from serialized OTLP (the native field scan) must equal it on generated
requests and on re-encodings of them that upb reads the same way; rows read straight from OTAP
tables must equal the OTLP rows of the same data.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from orasi_bridge.lake import schema
from orasi_bridge.lake.rows import metrics
from orasi_common.errors import MalformedData
from orasi_common.pdata.otap.metrics import encode_metrics_bytes
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from tests.unit.orasi_bridge.test_rows_from_wire import _hex, _time, as_pairs, check_reencoded
from tests.unit.orasi_common.pdata.otap.test_roundtrip import metric_requests

# --- the reference: the per-object conversion ------------------------------------------------

_TEMPORALITY = {v: k.removeprefix("AGGREGATION_TEMPORALITY_") for k, v in m.AggregationTemporality.items()}
_NAMES = schema.METRIC_POINTS.names
_VALUES = _NAMES[_NAMES.index("value") : _NAMES.index("quantiles")]  # value ... negative_bucket_counts


def _optional(point: Any, name: str) -> float | None:
    return getattr(point, name) if point.HasField(name) else None


def _point_values(metric_type: str, point: Any) -> dict[str, Any]:
    if metric_type in ("gauge", "sum"):
        if point.HasField("as_int"):
            return {"value": float(point.as_int), "int_value": point.as_int}
        return {"value": point.as_double}
    if metric_type == "histogram":
        return {
            "count": point.count,
            **{name: _optional(point, name) for name in ("sum", "min", "max")},
            "bucket_counts": list(point.bucket_counts),
            "explicit_bounds": list(point.explicit_bounds),
        }
    if metric_type == "exponential_histogram":
        return {
            "count": point.count,
            **{name: _optional(point, name) for name in ("sum", "min", "max")},
            "scale": point.scale,
            "zero_count": point.zero_count,
            "positive_offset": point.positive.offset,
            "positive_bucket_counts": list(point.positive.bucket_counts),
            "negative_offset": point.negative.offset,
            "negative_bucket_counts": list(point.negative.bucket_counts),
        }
    return {
        "count": point.count,
        "sum": point.sum,
        "quantiles": [{"quantile": q.quantile, "value": q.value} for q in point.quantile_values],
    }


def _exemplars(point: Any) -> list[dict[str, Any]]:
    return [
        {
            "time_unix_nano": e.time_unix_nano,
            "value": e.as_double if e.HasField("as_double") else float(e.as_int),
            "trace_id": _hex(e.trace_id),
            "span_id": _hex(e.span_id),
            "filtered_attributes": as_pairs(e.filtered_attributes),
        }
        for e in point.exemplars
    ]


def reference_metric_points(request: ExportMetricsServiceRequest, tenant: str, region: str) -> pa.RecordBatch:
    c: dict[str, list[Any]] = {name: [] for name in schema.METRIC_POINTS.names}
    for resource_metrics in request.resource_metrics:
        pairs = as_pairs(resource_metrics.resource.attributes)
        service = next((v for k, v in pairs if k == "service.name" and v), None) or "unknown_service"
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                metric_type = metric.WhichOneof("data")
                if metric_type is None:
                    continue
                data = getattr(metric, metric_type)
                temporal = metric_type in ("sum", "histogram", "exponential_histogram")
                for point in data.data_points:
                    row = {
                        "tenant": tenant,
                        "region": next((v for k, v in reversed(pairs) if k == "cloud.region"), region),
                        "lake_region": region,
                        "service_name": service,
                        "metric_name": metric.name,
                        "metric_type": metric_type,
                        "unit": metric.unit or None,
                        "description": metric.description or None,
                        "is_monotonic": data.is_monotonic if metric_type == "sum" else None,
                        "aggregation_temporality": _TEMPORALITY.get(data.aggregation_temporality)
                        if temporal
                        else None,
                        "scope_name": scope_metrics.scope.name or None,
                        "scope_version": scope_metrics.scope.version or None,
                        "resource_attributes": pairs,
                        "start_time_unix_nano": point.start_time_unix_nano or None,
                        "time_unix_nano": point.time_unix_nano,
                        "flags": point.flags,
                        "exemplars": _exemplars(point) if metric_type != "summary" else [],
                        "attributes": as_pairs(point.attributes),
                        "quantiles": [],
                        "schema_violations": None,
                        **dict.fromkeys(_VALUES),
                        **_point_values(metric_type, point),
                    }
                    for name, value in row.items():
                        c[name].append(value)
    arrays = [
        _time(c["time_unix_nano"]) if f.name == "time" else pa.array(c[f.name], f.type)
        for f in schema.METRIC_POINTS
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema.METRIC_POINTS)


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (Arrow's ``equals`` never takes two NaNs as equal)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b) and type(a) is type(b)


def assert_same_points(actual: pa.RecordBatch, expected: pa.RecordBatch) -> None:
    assert actual.schema == expected.schema
    for name in expected.schema.names:
        got, want = actual.column(name), expected.column(name)
        assert got.equals(want) or _same(got.to_pylist(), want.to_pylist()), (
            name,
            got.to_pylist(),
            want.to_pylist(),
        )


def check_metric_points(data: bytes) -> None:
    expected = reference_metric_points(ExportMetricsServiceRequest.FromString(data), "acme", "eu-1")
    assert_same_points(metrics.otlp_batch(data, "acme", "eu-1"), expected)


# --- generated requests -----------------------------------------------------------------------


def storable(message: Message) -> Message:
    """``message`` with every unsigned 64-bit number below 2^63 (times, as receivers let in; counts,
    which the lake's int64 columns hold)."""
    for field, value in message.ListFields():
        if field.message_type is not None:
            for child in value if field.is_repeated else [value]:
                storable(child)
        elif field.type in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_UINT64):
            if field.is_repeated:
                value[:] = [v & (2**63 - 1) for v in value]
            else:
                setattr(message, field.name, value & (2**63 - 1))
    return message


SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@SETTINGS
@given(metric_requests.map(storable))
def test_metric_points_equal_the_per_object_conversion(request: ExportMetricsServiceRequest) -> None:
    check_metric_points(request.SerializeToString())


@SETTINGS
@given(metric_requests.map(storable), st.data())
def test_metric_points_of_reencoded_requests(
    request: ExportMetricsServiceRequest, data: st.DataObject
) -> None:
    check_reencoded(request, data, check_metric_points)


@SETTINGS
@given(metric_requests.map(storable))
def test_metric_points_from_otap_equal_metric_points_from_otlp(request: ExportMetricsServiceRequest) -> None:
    data = request.SerializeToString()
    tables = encode_metrics_bytes(data)
    assert_same_points(metrics.otap_batch(tables, "t", "r"), metrics.otlp_batch(data, "t", "r"))


# --- explicit cases -------------------------------------------------------------------------


def _request(*metrics_: m.Metric) -> bytes:
    request = ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.extend(metrics_)
    return request.SerializeToString()


def test_unpacked_and_split_repeated_numbers_are_read_in_wire_order() -> None:
    # HistogramDataPoint.bucket_counts (6, fixed64) and explicit_bounds (7, double): one packed
    # run, then a single unpacked value; Buckets.bucket_counts (2, uint64 varints) likewise.
    point = (
        b"\x32\x10"
        + (1).to_bytes(8, "little")
        + (2).to_bytes(8, "little")
        + b"\x31"
        + (3).to_bytes(8, "little")
        + b"\x3a\x08"
        + pa.array([0.5]).to_numpy().tobytes()
        + b"\x39"
        + pa.array([1.5]).to_numpy().tobytes()
    )
    histogram = b"\x0a" + bytes([len(point)]) + point
    metric = b"\x0a\x01h" + b"\x4a" + bytes([len(histogram)]) + histogram
    buckets = b"\x08\x03" + b"\x12\x03\x01\xac\x02" + b"\x10\x05"  # offset -2; 1, 300, then 5
    exp_point = b"\x42" + bytes([len(buckets)]) + buckets
    exp = b"\x0a" + bytes([len(exp_point)]) + exp_point
    metric_exp = b"\x0a\x01e" + b"\x52" + bytes([len(exp)]) + exp
    scope = b"\x12" + bytes([len(metric)]) + metric + b"\x12" + bytes([len(metric_exp)]) + metric_exp
    data = b"\x0a" + bytes([len(scope) + 2]) + b"\x12" + bytes([len(scope)]) + scope
    parsed = ExportMetricsServiceRequest.FromString(data)
    assert list(
        parsed.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0].bucket_counts
    ) == [
        1,
        2,
        3,
    ]
    check_metric_points(data)
    rows = metrics.otlp_batch(data, "t", "r").to_pylist()
    assert rows[0]["bucket_counts"] == [1, 2, 3] and rows[0]["explicit_bounds"] == [0.5, 1.5]
    assert (rows[1]["positive_offset"], rows[1]["positive_bucket_counts"]) == (-2, [1, 300, 5])


def test_a_metric_without_data_and_an_empty_request_have_no_rows() -> None:
    check_metric_points(b"")
    check_metric_points(_request(m.Metric(name="nothing")))
    assert metrics.otap_batch({}, "t", "r").num_rows == 0


@pytest.mark.parametrize(
    ("payload", "column", "value", "problem"),
    [
        (P.NUMBER_DATA_POINTS, "parent_id", pa.array([7], pa.uint16()), "points to no row"),
        (P.UNIVARIATE_METRICS, "metric_type", pa.array([5], pa.uint8()), "another type"),
        (P.UNIVARIATE_METRICS, "metric_type", pa.array([9], pa.uint8()), "unknown metric_type 9"),
    ],
)
def test_tables_that_do_not_make_a_request_are_refused(
    payload: P, column: str, value: pa.Array, problem: str
) -> None:
    metric = m.Metric(name="g")
    metric.gauge.data_points.add(as_int=1, time_unix_nano=5)
    tables = encode_metrics_bytes(_request(metric))
    table = tables[payload]
    index = table.schema.get_field_index(column)
    changed = {**tables, payload: table.set_column(index, table.schema.field(column), value)}
    with pytest.raises(MalformedData, match=problem):
        metrics.otap_batch(changed, "t", "r")
