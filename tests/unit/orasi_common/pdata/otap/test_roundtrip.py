"""OTLP → OTAP → OTLP gives back the same message, and the OTAP tables follow the spec."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from orasi_common.errors import MalformedData
from orasi_common.pdata.otap import attributes, cbor, value_scan
from orasi_common.pdata.otap.attributes import decode_attributes
from orasi_common.pdata.otap.logs import decode_logs, encode_logs
from orasi_common.pdata.otap.metrics import decode_metrics, encode_metrics
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.pdata.otap.payload_types import AttributeValueType
from orasi_common.pdata.otap.traces import decode_traces, encode_traces, encode_traces_bytes
from orasi_common.pdata.otlp_json import parse_json
from orasi_common.testing.shared import shared_path

CONFORMANCE = shared_path("conformance", "otlp-json")

EXAMPLES = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Strategies

u32 = st.integers(0, 2**32 - 1)
u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 127, 128, 2**63 - 1, -(2**63)]))
doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, float("nan"), struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]]),
)
texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "GET", "http.method", "é€😀", "x" * 127, "y" * 128, "z" * 300]),
)
blobs = st.one_of(st.binary(max_size=12), st.sampled_from([b"", b"\x00", b"\xff" * 200]))
trace_ids = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16))
span_ids = st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))
keys = st.one_of(st.sampled_from(["", "k", "http.method", "service.name", "n" * 130]), texts)


def _scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        texts.map(lambda v: AnyValue(string_value=v)),
        i64.map(lambda v: AnyValue(int_value=v)),
        doubles.map(lambda v: AnyValue(double_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        blobs.map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )


def _nest(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    arrays = st.lists(children, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs)))
    maps = st.lists(st.tuples(keys, children), max_size=4).map(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
    )
    return st.one_of(arrays, maps)


any_values = st.recursive(_scalar_values(), _nest, max_leaves=8)


@st.composite
def key_values(draw: st.DrawFn) -> KeyValue:
    key = draw(keys)
    if draw(st.integers(0, 15)) == 0:
        return KeyValue(key=key)  # value unset
    return KeyValue(key=key, value=draw(any_values))


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


# Hand-picked attributes covering every value type and edge: drawing from them is much cheaper
# than generating, so requests can be large; key_values() adds the generated variety.
POOL = [
    _kv("http.method", string_value="GET"),
    _kv("http.method", string_value="POST"),
    _kv("http.url", string_value="https://example.com/" + "p" * 150),
    _kv("empty.str", string_value=""),
    _kv("unicode", string_value="é€😀"),
    _kv("http.status_code", int_value=200),
    _kv("neg", int_value=-(2**63)),
    _kv("big", int_value=2**63 - 1),
    _kv("zero", int_value=0),
    _kv("ratio", double_value=0.25),
    _kv("nan", double_value=float("nan")),
    _kv("negzero", double_value=-0.0),
    _kv("poszero", double_value=0.0),
    _kv("inf", double_value=float("-inf")),
    _kv("ok", bool_value=True),
    _kv("ok", bool_value=False),
    _kv("blob", bytes_value=b"\x00\xff"),
    _kv("blob.empty", bytes_value=b""),
    _kv("", string_value="no key"),
    KeyValue(key="unset"),
    KeyValue(),
    _kv("empty"),
    _kv(
        "list", array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(), AnyValue(string_value="x")])
    ),
    _kv("list.empty", array_value=ArrayValue()),
    _kv("map", kvlist_value=KeyValueList(values=[_kv("a", double_value=1.5), _kv("a", bool_value=True)])),
    _kv("map.empty", kvlist_value=KeyValueList()),
    _kv("k" * 130, string_value="long key"),
]
pool_values = st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), st.sampled_from(POOL), key_values())


@st.composite
def attribute_lists(draw: st.DrawFn) -> list[KeyValue]:
    """Usually a few attributes; sometimes many (the vectorized path starts at 48 rows)."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.lists(st.sampled_from(POOL), min_size=48, max_size=70))
    return draw(st.lists(pool_values, max_size=4))


@st.composite
def resources(draw: st.DrawFn) -> Resource | None:
    if draw(st.booleans()):
        return None
    return Resource(attributes=draw(attribute_lists()), dropped_attributes_count=draw(u32))


@st.composite
def scopes(draw: st.DrawFn) -> InstrumentationScope | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    return InstrumentationScope(
        name=draw(texts),
        version=draw(texts),
        attributes=draw(st.lists(pool_values, max_size=3)),
        dropped_attributes_count=draw(st.sampled_from([0, 0, 1, 2**32 - 1])),
    )


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        trace_state=draw(st.sampled_from(["", "", "rojo=00f067aa0ba902b7"])),
        parent_span_id=draw(span_ids),
        flags=draw(st.sampled_from([0, 0, 1, 256, 2**32 - 1])),
        name=draw(texts),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=draw(u64),
        end_time_unix_nano=draw(u64),
        attributes=draw(attribute_lists()),
        dropped_attributes_count=draw(st.sampled_from([0, 0, 3])),
        dropped_events_count=draw(st.sampled_from([0, 0, 4])),
        dropped_links_count=draw(st.sampled_from([0, 0, 5])),
    )
    for _ in range(draw(st.integers(0, 3))):
        span.events.add(
            time_unix_nano=draw(u64),
            name=draw(st.sampled_from(["", "exception", "retry"])),
            attributes=draw(st.lists(pool_values, max_size=3)),
            dropped_attributes_count=draw(st.sampled_from([0, 1])),
        )
    for _ in range(draw(st.integers(0, 2))):
        span.links.add(
            trace_id=draw(trace_ids),
            span_id=draw(span_ids),
            trace_state=draw(st.sampled_from(["", "a=b"])),
            attributes=draw(st.lists(pool_values, max_size=3)),
            dropped_attributes_count=draw(st.sampled_from([0, 2])),
            flags=draw(st.sampled_from([0, 1, 0x301])),
        )
    status = draw(
        st.one_of(st.none(), st.builds(Status, code=st.integers(0, 3), message=st.sampled_from(["", "boom"])))
    )
    if status is not None:
        span.status.CopyFrom(status)
    return span


def _envelopes(
    resource_cls: Any, scope_cls: Any, scope_field: str, item_field: str, items: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        rx = resource_cls(schema_url=draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.21.0"])))
        resource = draw(resources())
        if resource is not None:
            rx.resource.CopyFrom(resource)
        for _ in range(draw(st.integers(1, 2))):
            sx = getattr(rx, scope_field).add(schema_url=draw(st.sampled_from(["", "https://s/1"])))
            scope = draw(scopes())
            if scope is not None:
                sx.scope.CopyFrom(scope)
            getattr(sx, item_field).extend(draw(st.lists(items, min_size=1, max_size=3)))
        return rx

    return build()


trace_requests = st.lists(
    _envelopes(ResourceSpans, ScopeSpans, "scope_spans", "spans", spans()), max_size=2
).map(lambda rs: ExportTraceServiceRequest(resource_spans=rs))


@st.composite
def log_records(draw: st.DrawFn) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(u64),
        observed_time_unix_nano=draw(u64),
        severity_number=draw(st.integers(0, 24)),
        severity_text=draw(st.sampled_from(["", "INFO", "ERROR"])),
        attributes=draw(attribute_lists()),
        dropped_attributes_count=draw(st.sampled_from([0, 7])),
        flags=draw(st.sampled_from([0, 1])),
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        event_name=draw(st.sampled_from(["", "browser.page_view"])),
    )
    body = draw(st.one_of(st.none(), any_values))
    if body is not None:
        record.body.CopyFrom(body)
    return record


log_requests = st.lists(
    _envelopes(ResourceLogs, ScopeLogs, "scope_logs", "log_records", log_records()), max_size=2
).map(lambda rs: ExportLogsServiceRequest(resource_logs=rs))


@st.composite
def exemplars(draw: st.DrawFn) -> m.Exemplar:
    exemplar = m.Exemplar(
        filtered_attributes=draw(st.lists(pool_values, max_size=2)),
        time_unix_nano=draw(u64),
        span_id=draw(span_ids),
        trace_id=draw(trace_ids),
    )
    value = draw(st.integers(0, 2))
    if value == 1:
        exemplar.as_int = draw(st.sampled_from([0, 5, -(2**63)]))
    elif value == 2:
        exemplar.as_double = draw(st.sampled_from([0.0, -0.0, 1.5, float("nan")]))
    return exemplar


def _point_common(draw: st.DrawFn, point: Any, with_exemplars: bool = True) -> None:
    point.attributes.extend(draw(st.lists(pool_values, max_size=3)))
    point.start_time_unix_nano = draw(st.sampled_from([0, 0, 1_700_000_000_000_000_000, 2**64 - 1]))
    point.time_unix_nano = draw(u64)
    point.flags = draw(st.sampled_from([0, 0, 1]))
    if with_exemplars:
        point.exemplars.extend(draw(st.lists(exemplars(), max_size=3)))


@st.composite
def number_points(draw: st.DrawFn) -> m.NumberDataPoint:
    point = m.NumberDataPoint()
    _point_common(draw, point)
    value = draw(st.integers(0, 2))
    if value == 1:
        point.as_int = draw(i64)
    elif value == 2:
        point.as_double = draw(doubles)
    return point


@st.composite
def histogram_points(draw: st.DrawFn) -> m.HistogramDataPoint:
    point = m.HistogramDataPoint(
        count=draw(u64),
        bucket_counts=draw(st.lists(u64, max_size=4)),
        explicit_bounds=draw(st.lists(doubles, max_size=3)),
    )
    _point_common(draw, point)
    for field in ("sum", "min", "max"):
        if draw(st.booleans()):
            setattr(point, field, draw(doubles))
    return point


@st.composite
def buckets(draw: st.DrawFn) -> m.ExponentialHistogramDataPoint.Buckets | None:
    if draw(st.booleans()):
        return None
    return m.ExponentialHistogramDataPoint.Buckets(
        offset=draw(i32), bucket_counts=draw(st.lists(u64, max_size=4))
    )


@st.composite
def exp_histogram_points(draw: st.DrawFn) -> m.ExponentialHistogramDataPoint:
    point = m.ExponentialHistogramDataPoint(
        count=draw(u64),
        scale=draw(st.integers(-10, 20)),
        zero_count=draw(u64),
        zero_threshold=draw(st.sampled_from([0.0, -0.0, 1e-9])),
    )
    _point_common(draw, point)
    for field in ("sum", "min", "max"):
        if draw(st.booleans()):
            setattr(point, field, draw(doubles))
    for field in ("positive", "negative"):
        value = draw(buckets())
        if value is not None:
            getattr(point, field).CopyFrom(value)
    return point


@st.composite
def summary_points(draw: st.DrawFn) -> m.SummaryDataPoint:
    point = m.SummaryDataPoint(count=draw(u64), sum=draw(doubles))
    _point_common(draw, point, with_exemplars=False)
    for quantile, value in draw(st.lists(st.tuples(doubles, doubles), max_size=3)):
        point.quantile_values.add(quantile=quantile, value=value)
    return point


@st.composite
def metrics(draw: st.DrawFn) -> m.Metric:
    metric = m.Metric(
        name=draw(texts),
        description=draw(st.sampled_from(["", "a counter"])),
        unit=draw(st.sampled_from(["", "ms", "1"])),
        metadata=draw(st.lists(pool_values, max_size=2)),
    )
    kind = draw(st.sampled_from(["none", "gauge", "sum", "histogram", "exponential_histogram", "summary"]))
    temporality = draw(st.integers(0, 2))
    if kind == "gauge":
        metric.gauge.SetInParent()
        metric.gauge.data_points.extend(draw(st.lists(number_points(), max_size=3)))
    elif kind == "sum":
        metric.sum.SetInParent()
        metric.sum.aggregation_temporality = temporality
        metric.sum.is_monotonic = draw(st.booleans())
        metric.sum.data_points.extend(draw(st.lists(number_points(), max_size=3)))
    elif kind == "histogram":
        metric.histogram.SetInParent()
        metric.histogram.aggregation_temporality = temporality
        metric.histogram.data_points.extend(draw(st.lists(histogram_points(), max_size=3)))
    elif kind == "exponential_histogram":
        metric.exponential_histogram.SetInParent()
        metric.exponential_histogram.aggregation_temporality = temporality
        metric.exponential_histogram.data_points.extend(draw(st.lists(exp_histogram_points(), max_size=3)))
    elif kind == "summary":
        metric.summary.SetInParent()
        metric.summary.data_points.extend(draw(st.lists(summary_points(), max_size=3)))
    return metric


metric_requests = st.lists(
    _envelopes(m.ResourceMetrics, m.ScopeMetrics, "scope_metrics", "metrics", metrics()), max_size=2
).map(lambda rs: ExportMetricsServiceRequest(resource_metrics=rs))


# ---------------------------------------------------------------------------------------------
# Helpers


def _ipc(tables: dict[P, pa.RecordBatch]) -> dict[P, pa.RecordBatch]:
    """Write each table as an Arrow IPC stream (zstd) and read it back, as the wire would."""
    out = {}
    for payload, batch in tables.items():
        sink = io.BytesIO()
        with pa.ipc.new_stream(
            sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")
        ) as writer:
            writer.write_batch(batch)
        out[payload] = pa.ipc.open_stream(sink.getvalue()).read_next_batch()
    return out


def _dictionary_encode(arr: pa.Array, rng: random.Random) -> pa.Array:
    """Dictionary-encode every string/binary column (u8 or u16 indices), recursing into structs."""
    typ = arr.type
    if pa.types.is_struct(typ):
        children = [_dictionary_encode(arr.field(i), rng) for i in range(typ.num_fields)]
        fields = [typ.field(i).with_type(c.type) for i, c in enumerate(children)]
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    plain_ints = pa.types.is_int32(typ) or pa.types.is_int64(typ)
    if plain_ints or pa.types.is_string(typ) or pa.types.is_binary(typ) or pa.types.is_fixed_size_binary(typ):
        encoded = pc.dictionary_encode(arr)
        index_type = rng.choice([pa.uint8(), pa.uint16()]) if len(encoded.dictionary) < 256 else pa.uint16()
        return pa.DictionaryArray.from_arrays(encoded.indices.cast(index_type), encoded.dictionary)
    return arr


def _dictionary_tables(tables: dict[P, pa.RecordBatch], seed: int = 1) -> dict[P, pa.RecordBatch]:
    rng = random.Random(seed)
    out = {}
    for payload, batch in tables.items():
        arrays = [_dictionary_encode(col, rng) for col in batch.columns]
        fields = [f.with_type(a.type) for f, a in zip(batch.schema, arrays, strict=True)]
        out[payload] = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return out


def _without_metadata(tables: dict[P, pa.RecordBatch]) -> dict[P, pa.RecordBatch]:
    """The tables as a producer that declares no ``encoding`` (the Go one) would send them."""

    def strip(field: pa.Field) -> pa.Field:
        typ = field.type
        if pa.types.is_struct(typ):
            typ = pa.struct([strip(typ.field(i)) for i in range(typ.num_fields)])
        return pa.field(field.name, typ, field.nullable)

    return {
        p: pa.RecordBatch.from_arrays(b.columns, schema=pa.schema([strip(f) for f in b.schema]))
        for p, b in tables.items()
    }


def _prune(request: Any, resource_field: str, scope_field: str, item_field: str) -> Any:
    """The request without ResourceX/ScopeX that hold no item (OTAP has no row to carry them)."""
    out = type(request)()
    for rx in getattr(request, resource_field):
        scopes_with_items = [sx for sx in getattr(rx, scope_field) if len(getattr(sx, item_field))]
        if scopes_with_items:
            kept = getattr(out, resource_field).add()
            kept.CopyFrom(rx)
            del getattr(kept, scope_field)[:]
            getattr(kept, scope_field).extend(scopes_with_items)
    return out


def _check(
    request: Any, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> dict[P, pa.RecordBatch]:
    tables = encode(request)
    assert decode(tables) == request
    assert decode(_ipc(tables)) == request
    return tables


# ---------------------------------------------------------------------------------------------
# Property tests


@EXAMPLES
@given(trace_requests)
def test_traces_round_trip(request: ExportTraceServiceRequest) -> None:
    tables = _check(request, encode_traces, decode_traces)
    assert encode_traces_bytes(request.SerializeToString()).keys() == tables.keys()
    assert decode_traces(_dictionary_tables(tables)) == request
    assert decode_traces(_without_metadata(tables)) == request  # the spec's default encodings


@EXAMPLES
@given(log_requests)
def test_logs_round_trip(request: ExportLogsServiceRequest) -> None:
    tables = _check(request, encode_logs, decode_logs)
    assert decode_logs(_dictionary_tables(tables)) == request


@EXAMPLES
@given(metric_requests)
def test_metrics_round_trip(request: ExportMetricsServiceRequest) -> None:
    tables = _check(request, encode_metrics, decode_metrics)
    assert decode_metrics(_dictionary_tables(tables)) == request
    assert decode_metrics(_without_metadata(tables)) == request


@EXAMPLES
@given(
    st.lists(st.one_of(st.sampled_from(POOL), key_values()), min_size=1, max_size=5).flatmap(
        lambda vocabulary: st.lists(
            st.lists(st.sampled_from(vocabulary), max_size=6), min_size=8, max_size=60
        )
    )
)
def test_sorted_attribute_tables_give_back_every_list_in_order(lists: list[list[KeyValue]]) -> None:
    """Few distinct attributes over many spans: the encoder sorts the attribute table's rows
    (by position in their list, key, type, value, parent), and every span still gets its own
    list back exactly, in its order, duplicates and unset values included."""
    request = _request(len(lists))
    for span, attrs in zip(request.resource_spans[0].scope_spans[0].spans, lists, strict=True):
        span.attributes.extend(attrs)
    tables = _check(request, encode_traces, decode_traces)
    assert decode_traces(_dictionary_tables(tables)) == request
    assert decode_traces(_without_metadata(tables)) == request


@pytest.mark.parametrize("kind", [attributes._BY_VALUE, attributes._BY_KEY, attributes._OTLP])
def test_a_remembered_attribute_order_gives_back_every_list(kind: str) -> None:
    """A row order remembered for a payload type and key set (see ``REVIEW_EVERY``) is used for
    the next table with those keys, whatever that table holds, and loses nothing."""
    rng = random.Random(7)
    request = _request(120)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.attributes.append(_kv("http.method", string_value=rng.choice(["GET", "POST"])))
        if i % 12 == 0:  # a key of varied values on a few rows: every candidate order applies
            span.attributes.append(_kv("id", int_value=rng.randrange(10**9)))
    memo = (P.SPAN_ATTRS, (("http.method", False), ("id", True)))
    attributes._CHOICES.pop(memo, None)
    encode_traces(request)  # the first table with these keys estimates the candidates
    assert attributes._CHOICES[memo].left == attributes.REVIEW_EVERY - 1
    attributes._CHOICES[memo].kind = kind
    tables = _check(request, encode_traces, decode_traces)
    assert attributes._CHOICES[memo] == attributes._Choice(kind, attributes.REVIEW_EVERY - 2)
    assert decode_traces(_without_metadata(tables)) == request


def _two_resources(first: list[KeyValue], second: list[KeyValue]) -> ExportTraceServiceRequest:
    request = _request(2)
    request.resource_spans.add().CopyFrom(request.resource_spans[0])
    for rs, attrs in zip(request.resource_spans, (first, second), strict=True):
        rs.resource.ClearField("attributes")
        rs.resource.attributes.extend(attrs)
    return request


def test_a_resource_attribute_table_is_kept_only_for_the_same_lists() -> None:
    """The RESOURCE_ATTRS table of resources seen in an earlier batch is taken from the ones
    kept (see ``REPEATS_KEPT``); resources whose KeyValues are the same bytes split otherwise
    between them, or another parent, get their own table."""
    a, b, c = (_kv(key, string_value=key.upper()) for key in ("region", "pod", "node"))
    first = _two_resources([a, b], [c])
    split_otherwise = _two_resources([a], [b, c])
    attributes._REPEATS.clear()
    tables = _check(first, encode_traces, decode_traces)
    assert encode_traces(first)[P.RESOURCE_ATTRS] is tables[P.RESOURCE_ATTRS]  # kept
    other = _check(split_otherwise, encode_traces, decode_traces)
    assert other[P.RESOURCE_ATTRS] is not tables[P.RESOURCE_ATTRS]
    assert (
        other[P.RESOURCE_ATTRS].column("parent_id").to_pylist()
        != tables[P.RESOURCE_ATTRS].column("parent_id").to_pylist()
    )
    assert decode_traces(encode_traces(first)) == first  # kept tables still decode exactly
    assert decode_traces(encode_traces(split_otherwise)) == split_otherwise
    assert len(attributes._REPEATS) == 2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(POOL), key_values()), min_size=48, max_size=70))
# A KeyValue without a value ends where its key ends; the vectorized parser used to read the
# next row's first bytes as its value tag, and ``12 00`` (an empty key with an empty AnyValue)
# passed for "value present and empty", losing the unset flag.
@example([_kv("a", string_value="x")] * 46 + [KeyValue(key="k"), KeyValue(key="", value=AnyValue())])
def test_vectorized_attribute_parser_matches_upb(kvs: list[KeyValue]) -> None:
    raws = [kv.SerializeToString() for kv in kvs]
    fast = value_scan.parse_key_values(pa.array(raws, pa.binary()))
    slow = value_scan._key_values_python(raws)
    assert _kv_view(fast) == _kv_view(slow)


def _kv_view(kv: value_scan.KeyValues) -> list[Any]:
    cols = kv.values
    double = (
        None
        if cols.double is None
        else [None if d is None else struct.pack("<d", d) for d in cols.double.to_pylist()]
    )
    others = [
        None if c is None or c.null_count == len(c) else c.to_pylist()
        for c in (cols.str, cols.int, cols.bool, cols.bytes, cols.ser)
    ]
    return [
        kv.key.to_pylist(),
        cols.type.tolist(),
        others,
        double,
        kv.unset.tolist(),
        _equal_to_previous(kv),
    ]


def _equal_to_previous(kv: value_scan.KeyValues) -> list[bool]:
    """The quasi-delta rule from the parser's canonical rows: same key, type and value."""
    canonical, types = kv.canonical.to_pylist(), kv.values.type
    return [
        i > 0 and bool(value_scan.IS_DELTA_TYPE[types[i]]) and canonical[i] == canonical[i - 1]
        for i in range(len(canonical))
    ]


def _mutated(raw: bytes, how: int, at: int, byte: int) -> bytes:
    """A KeyValue's bytes changed: a byte replaced, cut short, or a byte appended."""
    if not raw:
        return bytes([byte])
    at %= len(raw)
    if how == 0:
        return raw[:at] + bytes([byte]) + raw[at + 1 :]
    if how == 1:
        return raw[:at]
    return raw + bytes([byte])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(POOL), key_values()),
            st.integers(0, 3),
            st.integers(0, 200),
            st.sampled_from([0x00, 0x01, 0x02, 0x0A, 0x10, 0x12, 0x18, 0x21, 0x3A, 0x7F, 0x80, 0xC0, 0xFF]),
        ),
        min_size=48,
        max_size=70,
    )
)
def test_vectorized_attribute_parser_matches_upb_on_mutated_bytes(
    rows: list[tuple[KeyValue, int, int, int]],
) -> None:
    """Bytes that are not canonical (or not protobuf) go the way upb takes them: the same
    columns, or MalformedData from both."""
    raws = [
        kv.SerializeToString() if how == 3 else _mutated(kv.SerializeToString(), how, at, b)
        for kv, how, at, b in rows
    ]
    try:
        slow = _kv_view(value_scan._key_values_python(raws))
    except MalformedData:
        with pytest.raises(MalformedData):
            value_scan.parse_key_values(pa.array(raws, pa.binary()))
        return
    assert _kv_view(value_scan.parse_key_values(pa.array(raws, pa.binary()))) == slow


@pytest.mark.parametrize(
    "bad",
    [b"\x0a\x02\xc0\x80\x12\x03\x0a\x01x", b"\x0a\x01k\x12\x04\x0a\x02\xed\xa0"],  # key, string value
)
def test_vectorized_attribute_parser_refuses_bad_utf8(bad: bytes) -> None:
    raws = [_kv("a", string_value="x").SerializeToString()] * 60 + [bad]
    with pytest.raises(MalformedData, match="UTF-8"):
        value_scan.parse_key_values(pa.array(raws, pa.binary()))


@settings(max_examples=60, deadline=None)
@given(any_values)
def test_cbor_round_trip(value: AnyValue) -> None:
    assert cbor.decode_any_value(cbor.encode_any_value(value)) == value


# ---------------------------------------------------------------------------------------------
# Conformance files


@pytest.mark.parametrize(
    ("name", "request_type", "encode", "decode"),
    [
        ("trace.json", ExportTraceServiceRequest, encode_traces, decode_traces),
        ("logs.json", ExportLogsServiceRequest, encode_logs, decode_logs),
        ("events.json", ExportLogsServiceRequest, encode_logs, decode_logs),
        ("metrics.json", ExportMetricsServiceRequest, encode_metrics, decode_metrics),
    ],
)
def test_conformance_files_round_trip(name: str, request_type: Any, encode: Any, decode: Any) -> None:
    request = parse_json(request_type, (CONFORMANCE / name).read_bytes())
    assert len(request.ListFields()) == 1
    tables = _check(request, encode, decode)
    assert tables  # something was encoded
    assert decode(_dictionary_tables(tables, seed=7)) == request


# ---------------------------------------------------------------------------------------------
# Layout


def _request(n_spans: int = 3, attrs: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="checkout"))
    ss = rs.scope_spans.add()
    ss.scope.name = "lib"
    for i in range(n_spans):
        span = ss.spans.add(
            trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8, name="op", start_time_unix_nano=1000 + i
        )
        span.end_time_unix_nano = span.start_time_unix_nano + 5
        span.attributes.extend(attrs or [])
    return request


def test_id_columns_are_delta_encoded() -> None:
    request = _request(4, [KeyValue(key="a", value=AnyValue(int_value=1))])
    request.resource_spans.add().CopyFrom(request.resource_spans[0])
    tables = encode_traces(request)
    spans_table = tables[P.SPANS]
    assert spans_table.column("id").to_pylist() == [0] + [1] * 7
    assert spans_table.schema.field("id").metadata == {b"encoding": b"delta"}
    resource_ids = spans_table.column("resource").field("id")
    assert resource_ids.to_pylist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert spans_table.schema.field("resource").type.field("id").metadata == {b"encoding": b"delta"}
    assert decode_traces(tables) == request


def test_attribute_parent_ids_are_quasi_delta_encoded() -> None:
    same = KeyValue(key="http.method", value=AnyValue(string_value="GET"))
    tables = encode_traces(_request(4, [same]))
    attrs = tables[P.SPAN_ATTRS]
    assert attrs.schema.field("parent_id").metadata == {b"encoding": b"quasidelta"}
    assert attrs.schema.field("parent_id").type == pa.uint16()
    # same type, key and value as the row before: the delta from its parent id
    assert attrs.column("parent_id").to_pylist() == [0, 1, 1, 1]

    varying = encode_traces(_request(3, [KeyValue(key="k", value=AnyValue(string_value="v"))]))
    request = _request(3)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.attributes.add(key="k", value=AnyValue(int_value=i))
    absolute = encode_traces(request)[P.SPAN_ATTRS]
    assert absolute.column("parent_id").to_pylist() == [0, 1, 2]  # values differ: absolute ids
    assert varying[P.SPAN_ATTRS].column("parent_id").to_pylist() == [0, 1, 1]


def test_attribute_rows_are_grouped_by_position_key_and_value() -> None:
    get, post = _kv("http.method", string_value="GET"), _kv("http.method", string_value="POST")
    code = _kv("http.status_code", int_value=200)
    request = _request(4)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.attributes.extend([post if i % 2 else get, code] if i != 3 else [code, get, get])
    tables = encode_traces(request)
    attrs = tables[P.SPAN_ATTRS]
    # first attributes (GET of spans 0 and 2, POST of span 1, the code of span 3), then the
    # second ones (span 3's GET, the codes of spans 0-2), then span 3's third; a row equal to
    # the one before holds the delta from its parent id
    method, status = "http.method", "http.status_code"
    assert attrs.column("key").to_pylist() == [method] * 3 + [status, method] + [status] * 3 + [method]
    assert attrs.column("str").to_pylist() == ["GET", "GET", "POST", None, "GET", None, None, None, "GET"]
    assert attrs.column("parent_id").to_pylist() == [0, 2, 1, 3, 3, 0, 1, 1, 3]
    assert decode_traces(tables) == request
    assert decode_traces(_without_metadata(tables)) == request


def test_quasi_delta_decoding_follows_the_spec_example() -> None:
    rows = [
        (1, "k1", "v1", 1, 1),
        (1, "k1", "v1", 1, 2),
        (1, "k1", "v1", 1, 3),
        (1, "k1", "v2", 1, 1),
        (1, "k1", "v2", 1, 2),
        (1, "k2", "v2", 1, 1),
        (2, "k2", None, 1, 1),
        (2, "k2", None, 1, 2),
        (0, "k3", None, 1, 1),
        (0, "k3", None, 1, 1),
    ]
    ints = [None] * 6 + [7, 7, None, None]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([r[3] for r in rows], pa.uint32()),
            pa.array([r[1] for r in rows]),
            pa.array([r[0] for r in rows], pa.uint8()),
            pa.array([r[2] if r[0] == 1 else None for r in rows]),
            pa.array(ints, pa.int64()),
        ],
        names=["parent_id", "key", "type", "str", "int"],
    )
    parents, _ = decode_attributes(batch, P.SPAN_EVENT_ATTRS, 3, 32)
    assert parents.tolist() == [r[4] for r in rows]


def test_optional_columns_are_omitted() -> None:
    tables = encode_traces(_request(2))
    spans_table = tables[P.SPANS]
    assert set(spans_table.schema.names) == {
        "resource",
        "scope",
        "start_time_unix_nano",
        "duration_time_unix_nano",
        "trace_id",
        "span_id",
        "name",
    }
    assert spans_table.schema.field("start_time_unix_nano").type == pa.timestamp("ns")
    assert spans_table.schema.field("duration_time_unix_nano").type == pa.duration("ns")
    assert spans_table.schema.field("trace_id").type == pa.binary(16)
    assert set(tables) == {P.SPANS, P.RESOURCE_ATTRS}
    resource = spans_table.schema.field("resource").type
    assert [resource.field(i).name for i in range(resource.num_fields)] == ["id"]
    scope = spans_table.schema.field("scope").type
    assert [scope.field(i).name for i in range(scope.num_fields)] == ["id", "name"]
    attrs = tables[P.RESOURCE_ATTRS]
    assert attrs.schema.names == ["parent_id", "key", "type", "str"]
    assert attrs.column("type").to_pylist() == [AttributeValueType.STR]


def test_missing_optional_columns_decode_as_empty() -> None:
    request = _request(2, [KeyValue(key="a", value=AnyValue(bool_value=True))])
    tables = encode_traces(request)
    spans_table = tables[P.SPANS]
    keep = [n for n in spans_table.schema.names if n not in ("resource", "scope")]
    tables[P.SPANS] = spans_table.select(keep)
    del tables[P.RESOURCE_ATTRS]
    expected = ExportTraceServiceRequest()
    expected.resource_spans.add().scope_spans.add().spans.extend(
        request.resource_spans[0].scope_spans[0].spans
    )
    assert decode_traces(tables) == expected


def test_dictionary_encoded_parent_ids_are_accepted() -> None:
    request = _request(3)
    request.resource_spans[0].scope_spans[0].spans[1].events.add(
        name="e", attributes=[KeyValue(key="x", value=AnyValue(double_value=2.5))]
    )
    tables = encode_traces(request)
    event_attrs = tables[P.SPAN_EVENT_ATTRS]
    parent = event_attrs.column("parent_id")
    encoded = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(parent)), pa.uint8()), parent.unique())
    tables[P.SPAN_EVENT_ATTRS] = event_attrs.set_column(
        0, event_attrs.schema.field(0).with_type(encoded.type), encoded
    )
    assert decode_traces(tables) == request


def test_empty_request_encodes_to_no_table() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add()
    assert encode_traces(request) == {}
    assert decode_traces({}) == ExportTraceServiceRequest()


def test_items_keep_their_grouping_and_order() -> None:
    request = _request(2)
    request.resource_spans.add().CopyFrom(request.resource_spans[0])  # an identical resource stays separate
    request.resource_spans[1].scope_spans.add().CopyFrom(request.resource_spans[1].scope_spans[0])
    request.resource_spans.add()  # no scope: dropped
    decoded = decode_traces(encode_traces(request))
    assert decoded == _prune(request, "resource_spans", "scope_spans", "spans")
    assert [len(rs.scope_spans) for rs in decoded.resource_spans] == [1, 2]


def test_span_fields_set_on_some_spans_only_stay_with_them() -> None:
    request = _request(4)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].parent_span_id = b"\x00" * 8
    spans[1].flags = 257
    spans[2].trace_state = "k=v"
    spans[2].kind = Span.SPAN_KIND_SERVER
    spans[2].dropped_links_count = 3
    spans[0].status.code = Status.STATUS_CODE_ERROR
    spans[3].status.message = "late"
    spans[3].span_id = b""
    tables = encode_traces(request)
    assert tables[P.SPANS].column("parent_span_id").is_valid().to_pylist() == [False, True, False, False]
    assert tables[P.SPANS].column("status").is_valid().to_pylist() == [True, False, False, True]
    assert decode_traces(tables) == request


def test_unset_and_empty_attribute_values_stay_distinct() -> None:
    request = _request(1, [KeyValue(key="unset"), KeyValue(key="empty", value=AnyValue())])
    tables = encode_traces(request)
    assert tables[P.SPAN_ATTRS].column("ser").to_pylist() == [b"\xf7", None]
    assert decode_traces(tables) == request


def test_many_attributes_take_the_vectorized_path() -> None:
    rng = random.Random(3)
    attrs = [
        KeyValue(key=f"k{i % 13}", value=AnyValue(string_value="v" * rng.randrange(300)))
        if i % 3
        else KeyValue(key="n", value=AnyValue(int_value=rng.randrange(-(2**40), 2**40)))
        for i in range(200)
    ]
    attrs.append(KeyValue(key="m", value=AnyValue(kvlist_value=KeyValueList(values=attrs[:3]))))
    request = _request(5, attrs)
    assert decode_traces(_ipc(encode_traces(request))) == request


# ---------------------------------------------------------------------------------------------
# Malformed input


def test_unknown_payload_type_is_rejected() -> None:
    tables: dict[Any, pa.RecordBatch] = dict(encode_traces(_request(1)))
    tables[99] = tables[P.SPANS]
    with pytest.raises(MalformedData, match="unknown OTAP payload type 99"):
        decode_traces(tables)
    with pytest.raises(MalformedData, match="LOG_ATTRS does not belong to traces"):
        decode_traces({**encode_traces(_request(1)), P.LOG_ATTRS: tables[P.SPANS]})


def test_missing_root_table_is_rejected() -> None:
    tables = encode_traces(_request(1))
    del tables[P.SPANS]
    with pytest.raises(MalformedData, match="root table SPANS is missing"):
        decode_traces(tables)


def test_wrong_column_type_is_rejected() -> None:
    tables = encode_traces(_request(2))
    spans_table = tables[P.SPANS]
    index = spans_table.schema.get_field_index("name")
    tables[P.SPANS] = spans_table.set_column(index, "name", pa.array([1, 2], pa.int64()))
    with pytest.raises(MalformedData, match="column 'name' has type int64, expected utf8"):
        decode_traces(tables)


def test_missing_required_column_is_rejected() -> None:
    tables = encode_logs(parse_json(ExportLogsServiceRequest, (CONFORMANCE / "logs.json").read_bytes()))
    attrs = tables[P.LOG_ATTRS]
    tables[P.LOG_ATTRS] = attrs.drop_columns(["key"])
    with pytest.raises(MalformedData, match="required column 'key' is missing"):
        decode_logs(tables)


def test_parent_ids_pointing_nowhere_are_rejected() -> None:
    tables = encode_traces(_request(2, [KeyValue(key="a", value=AnyValue(int_value=1))]))
    attrs = tables[P.SPAN_ATTRS]
    tables[P.SPAN_ATTRS] = attrs.set_column(0, attrs.schema.field(0), pa.array([0, 500], pa.uint16()))
    with pytest.raises(MalformedData, match="parent_id 500 points to no row"):
        decode_traces(tables)


def test_data_points_of_the_wrong_metric_type_are_rejected() -> None:
    request = parse_json(ExportMetricsServiceRequest, (CONFORMANCE / "metrics.json").read_bytes())
    tables = encode_metrics(request)
    metrics_table = tables[P.UNIVARIATE_METRICS]
    index = metrics_table.schema.get_field_index("metric_type")
    wrong = pa.array([5] * metrics_table.num_rows, pa.uint8())
    tables[P.UNIVARIATE_METRICS] = metrics_table.set_column(index, metrics_table.schema.field(index), wrong)
    with pytest.raises(MalformedData, match="belongs to a metric of another type"):
        decode_metrics(tables)


def test_bad_attribute_values_are_rejected() -> None:
    base = encode_traces(_request(1, [KeyValue(key="m", value=AnyValue(array_value=ArrayValue()))]))
    attrs = base[P.SPAN_ATTRS]
    broken = attrs.set_column(
        attrs.schema.get_field_index("ser"), "ser", pa.array([b"\x9f\x01"], pa.binary())
    )
    with pytest.raises(MalformedData, match="invalid CBOR"):
        decode_traces({**base, P.SPAN_ATTRS: broken})
    bad_type = attrs.set_column(attrs.schema.get_field_index("type"), "type", pa.array([9], pa.uint8()))
    with pytest.raises(MalformedData, match="attribute type 9"):
        decode_traces({**base, P.SPAN_ATTRS: bad_type})


def test_invalid_ids_are_rejected_on_encode() -> None:
    request = _request(1)
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"short"
    with pytest.raises(MalformedData, match="trace_id must be 16 bytes"):
        encode_traces(request)
    with pytest.raises(MalformedData, match="not a valid ExportTraceServiceRequest"):
        encode_traces_bytes(b"\x0a\xff")
