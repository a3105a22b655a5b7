"""The original attribute types of rows converted from OTAP tables (the attribute tables' ``type``
column), for the schema registry: written by hand, and equal to those of the same data as OTLP, so
that validation finds the same violations in either form."""

from __future__ import annotations

import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from orasi_bridge.lake.rows import Types, metrics, otap, otlp_rows
from orasi_bridge.registry.schema import Subject, parse
from orasi_bridge.registry.validate import Policy, validate
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap.logs import encode_logs_bytes
from orasi_common.pdata.otap.metrics import encode_metrics_bytes
from orasi_common.pdata.otap.traces import encode_traces_bytes

from .test_validate import RESOURCE, SCHEMA, SPANS, request_of, rows_of, value

# OTAP type codes: 0 empty, 1 str, 2 int, 3 double, 4 bool, 5 map, 6 slice, 7 bytes
SPAN_TYPES = [
    [("code", 2), ("ratio", 2), ("kind", 1), ("blob", 7)],
    [("code", 3), ("ratio", 3), ("kind", 1), ("other", 4)],
    [("code", 0), ("kind", 1)],
]
RESOURCE_TYPES = [("service.name", 1), ("zone", 2)]


def _pairs(types: Types, name: str) -> list[list[tuple[str, int]]]:
    return [sorted(row) for row in types[name].to_pylist()]


def _otap_spans() -> tuple[pa.RecordBatch, Types, pa.RecordBatch, Types]:
    rows, types = rows_of(SPANS, RESOURCE)
    otap_types: Types = {}
    direct = otap.spans_batch(encode_traces_bytes(request_of(SPANS, RESOURCE)), "t", "r", otap_types)
    return rows, types, direct, otap_types


def test_span_types_from_otap_are_the_original_ones_as_from_otlp() -> None:
    _, types, _, otap_types = _otap_spans()
    expected = [sorted(row) for row in SPAN_TYPES]
    assert _pairs(otap_types, "attributes") == expected
    assert _pairs(types, "attributes") == expected
    assert _pairs(otap_types, "resource_attributes") == [sorted(RESOURCE_TYPES)] * 3
    assert _pairs(types, "resource_attributes") == [sorted(RESOURCE_TYPES)] * 3


def test_validation_finds_the_same_violations_in_otap_rows() -> None:
    rows, types, direct, otap_types = _otap_spans()
    policies = {"svc": Policy("flag", parse(SCHEMA, Subject.parse("spans.svc")))}
    via_otlp = validate(rows, types, policies)
    via_otap = validate(direct, otap_types, policies)
    flagged = via_otap.rows.column("schema_violations").to_pylist()
    assert [sorted(f or []) for f in flagged] == [
        sorted(f or []) for f in via_otlp.rows.column("schema_violations").to_pylist()
    ]
    assert any("attributes.code: number, not integer" in (f or []) for f in flagged)
    assert via_otap.counts == via_otlp.counts


def test_log_and_metric_types_from_otap() -> None:
    logs = ExportLogsServiceRequest()
    resource_logs = logs.resource_logs.add()
    resource_logs.resource.attributes.extend([KeyValue(key="service.name", value=value("api"))])
    record = resource_logs.scope_logs.add().log_records.add(time_unix_nano=5)
    record.attributes.extend([KeyValue(key="user", value=value(7)), KeyValue(key="ok", value=value(True))])
    otap_types: Types = {}
    otap.logs_batch(encode_logs_bytes(logs.SerializeToString()), "t", "r", 0, otap_types)
    assert _pairs(otap_types, "attributes") == [[("ok", 4), ("user", 2)]]
    assert _pairs(otap_types, "resource_attributes") == [[("service.name", 1)]]

    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend([KeyValue(key="service.name", value=value("db"))])
    metric = resource_metrics.scope_metrics.add().metrics.add(name="m")
    for attributes in ({"op": "get"}, {"op": 1.5, "n": 2}):
        point = metric.gauge.data_points.add(time_unix_nano=9, as_int=1)
        point.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in attributes.items())
    data = request.SerializeToString()
    otap_types = {}
    metrics.otap_batch(encode_metrics_bytes(data), "t", "r", otap_types)
    otlp_types: Types = {}
    otlp_rows([Batch.from_serialized(Signal.METRICS, data)], "r", otlp_types)
    expected = [[("op", 1)], [("n", 2), ("op", 3)]]
    assert _pairs(otap_types, "attributes") == expected == _pairs(otlp_types, "attributes")
    assert _pairs(otap_types, "resource_attributes") == [[("service.name", 1)]] * 2
