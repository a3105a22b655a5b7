"""Lake rows built straight from OTAP tables equal the rows of the same data ingested as OTLP."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from orasi_bridge.lake.rows import otap, otlp, otlp_rows, rows_of
from orasi_common.errors import MalformedData
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.logs import encode_logs_bytes
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.traces import encode_traces_bytes
from orasi_common.pdata.validate import MAX_TIME
from tests.unit.builders import orphaned_attribute_tables
from tests.unit.orasi_common.pdata.otap.test_roundtrip import log_requests, trace_requests

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _storable(message: Message) -> Message:
    """``message`` with every time below 2^63, as every receiver lets in (``validate``)."""
    for field, value in message.ListFields():
        if field.message_type is not None:
            for child in value if field.is_repeated else [value]:
                _storable(child)
        elif field.name.endswith("time_unix_nano"):
            setattr(message, field.name, value & MAX_TIME)
    return message


def _check_same_rows(signal: Signal, request: Message, encode: Any, from_otap: Any, from_otlp: Any) -> None:
    """The rows ``from_otap`` builds of ``request``'s OTAP tables equal ``from_otlp``'s of its OTLP bytes."""
    tables = encode(request.SerializeToString())
    batch = codec.decode(signal, tables, tenant="t", batch_id="b")
    direct, via_otlp = from_otap(tables, "t", "r"), from_otlp(batch.raw, "t", "r")
    for name in via_otlp.schema.names:
        assert direct.column(name).equals(via_otlp.column(name)), name
    assert direct.schema == via_otlp.schema


@PROPERTY
@given(trace_requests.map(_storable))
def test_spans_from_otap_equal_spans_from_otlp(request: ExportTraceServiceRequest) -> None:
    _check_same_rows(Signal.TRACES, request, encode_traces_bytes, otap.spans_batch, otlp.spans_batch)


@PROPERTY
@given(log_requests.map(_storable))
def test_logs_from_otap_equal_logs_from_otlp(request: ExportLogsServiceRequest) -> None:
    _check_same_rows(Signal.LOGS, request, encode_logs_bytes, otap.logs_batch, otlp.logs_batch)


def test_an_otap_batch_is_decoded_only_when_read_as_otlp() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="work")
    span.trace_id, span.span_id = b"\x01" * 16, b"\x02" * 8
    tables = encode_traces_bytes(request.SerializeToString())
    batch = codec.decode(Signal.TRACES, tables, tenant="t", batch_id="b")
    assert batch.otap is tables and batch.items == 1
    assert batch.raw == request.SerializeToString()  # decoded on demand, exactly
    assert batch.copy().message == request


def test_attributes_pointing_to_no_span_are_refused() -> None:
    tables = orphaned_attribute_tables()
    with pytest.raises(MalformedData, match="points to no row"):
        otap.spans_batch(tables, "t", "r")
    lazy = codec.decode(Signal.TRACES, tables, tenant="t", batch_id="b")
    with pytest.raises(MalformedData):
        _ = lazy.raw


def test_a_batch_without_its_root_table_is_refused_at_once() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="work")
    span.attributes.add(key="k").value.int_value = 3
    tables = encode_traces_bytes(request.SerializeToString())
    with pytest.raises(MalformedData, match="root table"):
        codec.decode(Signal.TRACES, {P.SPAN_ATTRS: tables[P.SPAN_ATTRS]}, tenant="t", batch_id="b")


def _timeless_logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(body=AnyValue(string_value="neither time"))
    records.add(observed_time_unix_nano=7_000, body=AnyValue(string_value="observed only"))
    records.add(time_unix_nano=5_000, body=AnyValue(string_value="time only"))
    return request


@pytest.mark.parametrize("form", ["otlp", "otap"])
def test_a_log_record_without_times_is_observed_when_the_bridge_received_it(form: str) -> None:
    received = 1_717_171_717_123_456_789
    batch = Batch.from_serialized(Signal.LOGS, _timeless_logs().SerializeToString())
    if form == "otap":
        batch = codec.decode(Signal.LOGS, encode_logs_bytes(batch.raw), tenant="t", batch_id="b")
    batch.received_ns = received
    rows = rows_of(batch, "r").to_pydict()
    assert rows["time_unix_nano"] == [None, None, 5_000]  # OTLP's 0, as before
    assert rows["observed_time_unix_nano"] == [received, 7_000, None]
    assert [t.timestamp() * 10**6 for t in rows["time"]] == [received // 1000, 7, 5]


def test_records_converted_together_are_observed_when_their_own_batch_was_received() -> None:
    batches = [Batch.from_serialized(Signal.LOGS, _timeless_logs().SerializeToString()) for _ in range(2)]
    batches[0].received_ns, batches[1].received_ns = 1_000_000, 2_000_000
    rows = otlp_rows(batches, "r").to_pydict()
    assert rows["observed_time_unix_nano"] == [1_000_000, 7_000, None, 2_000_000, 7_000, None]
