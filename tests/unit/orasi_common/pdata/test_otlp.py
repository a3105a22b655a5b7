"""OTLP requests: count, merge by concatenation, and split keeping order and context."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2

from orasi_common.errors import MalformedData
from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp import count_items, merge_serialized, parse_request, split_request

from ...builders import (
    METRIC_TYPES,
    add_metric,
    item_keys,
    logs_request,
    metrics_request,
    request_with,
    traces_request,
)

# --- count --------------------------------------------------------------------------------------


def test_count_spans() -> None:
    assert count_items(Signal.TRACES, traces_request([[3, 1], [2], []])) == 6


def test_count_log_records() -> None:
    assert count_items(Signal.LOGS, logs_request([[0, 4], [5]])) == 9


@pytest.mark.parametrize("kind", METRIC_TYPES)
def test_count_data_points_of_each_metric_type(kind: str) -> None:
    request = metrics_request([[[(kind, 3), (kind, 2)]], [[(kind, 4)]]])
    assert count_items(Signal.METRICS, request) == 9


def test_count_mixed_metrics_and_metric_without_data() -> None:
    request = metrics_request([[[(kind, i + 1) for i, kind in enumerate(METRIC_TYPES)]]])
    request.resource_metrics[0].scope_metrics[0].metrics.add(name="no-data")
    assert count_items(Signal.METRICS, request) == 1 + 2 + 3 + 4 + 5


@pytest.mark.parametrize("signal", list(Signal))
def test_count_empty_request(signal: Signal) -> None:
    assert count_items(signal, SPECS[signal].request_type()) == 0


# --- parse --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", list(Signal))
def test_parse_round_trip(signal: Signal) -> None:
    request = request_with(signal, 5, resources=2)
    assert parse_request(signal, request.SerializeToString()) == request


@pytest.mark.parametrize("signal", list(Signal))
def test_parse_garbage_is_malformed(signal: Signal) -> None:
    with pytest.raises(MalformedData) as caught:
        parse_request(signal, b"\xff\xff\xff\xff")
    assert SPECS[signal].request_type.__name__ in caught.value.message


# --- merge --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", list(Signal))
def test_merge_by_concatenation_equals_message_merge(signal: Signal) -> None:
    parts = [request_with(signal, n, resources=r) for n, r in ((3, 1), (4, 2), (1, 1))]
    merged = parse_request(signal, merge_serialized(p.SerializeToString() for p in parts))
    expected = SPECS[signal].request_type()
    for part in parts:
        expected.MergeFrom(part)
    assert merged == expected
    assert count_items(signal, merged) == 8
    assert item_keys(signal, merged) == [k for p in parts for k in item_keys(signal, p)]


def test_merge_of_nothing_is_an_empty_request() -> None:
    assert merge_serialized([]) == b""
    assert count_items(Signal.TRACES, parse_request(Signal.TRACES, b"")) == 0


# --- split --------------------------------------------------------------------------------------


def _check_split(signal: Signal, request: object, max_items: int) -> list[object]:
    total = count_items(signal, request)  # type: ignore[arg-type]
    chunks = split_request(signal, request, max_items)  # type: ignore[arg-type]
    counts = [count_items(signal, c) for c in chunks]
    assert all(0 < n <= max_items for n in counts), counts
    assert sum(counts) == total
    assert len(chunks) == math.ceil(total / max_items)
    joined = [key for chunk in chunks for key in item_keys(signal, chunk)]
    assert joined == item_keys(signal, request)  # type: ignore[arg-type]
    return chunks  # type: ignore[return-value]


SHAPES = {
    Signal.TRACES: traces_request([[3, 1], [4], [2, 2, 1]]),
    Signal.LOGS: logs_request([[1], [5, 2], [3]]),
    Signal.METRICS: metrics_request(
        [
            [[("gauge", 3), ("sum", 1)], [("histogram", 5)]],
            [[("exponential_histogram", 2), ("summary", 4), ("sum", 1)]],
        ]
    ),
}


@pytest.mark.parametrize("signal", list(Signal))
def test_split_at_every_size_keeps_every_item_in_order(signal: Signal) -> None:
    request = SHAPES[signal]
    total = count_items(signal, request)
    for max_items in range(1, total + 2):
        _check_split(signal, request, max_items)


@pytest.mark.parametrize("signal", list(Signal))
def test_split_keeps_resource_scope_and_schema_urls(signal: Signal) -> None:
    spec = SPECS[signal]
    chunks = _check_split(signal, SHAPES[signal], 2)
    for chunk in chunks:
        for resource in getattr(chunk, spec.resource_field):
            assert resource.schema_url.startswith("https://schema/")
            assert resource.resource.attributes[0].key == "service.name"
            for scope in getattr(resource, spec.scope_field):
                assert scope.schema_url.startswith("https://scope-schema/")
                assert scope.scope.name.startswith("scope-")
                assert scope.scope.version == "1.0"


def test_split_does_not_change_the_input() -> None:
    request = SHAPES[Signal.METRICS]
    before = request.SerializeToString()
    split_request(Signal.METRICS, request, 2)
    assert request.SerializeToString() == before


@pytest.mark.parametrize("kind", METRIC_TYPES)
def test_split_big_metric_repeats_its_identity(kind: str) -> None:
    request = metrics_request([[[(kind, 10)]]])
    original = request.resource_metrics[0].scope_metrics[0].metrics[0]
    chunks = _check_split(Signal.METRICS, request, 3)
    assert [count_items(Signal.METRICS, c) for c in chunks] == [3, 3, 3, 1]
    for chunk in chunks:
        (metric,) = chunk.resource_metrics[0].scope_metrics[0].metrics
        assert (metric.name, metric.unit, metric.description) == (original.name, "1", original.description)
        assert metric.WhichOneof("data") == kind
        if kind in ("sum", "histogram", "exponential_histogram"):
            points = getattr(metric, kind)
            assert points.aggregation_temporality == getattr(original, kind).aggregation_temporality
        if kind == "sum":
            assert metric.sum.is_monotonic


def test_split_metric_across_a_partly_filled_chunk() -> None:
    request = metrics_request([[[("gauge", 2), ("sum", 5)]]])
    chunks = _check_split(Signal.METRICS, request, 4)
    first = chunks[0].resource_metrics[0].scope_metrics[0].metrics
    assert [(m.name, len(m.gauge.data_points) + len(m.sum.data_points)) for m in first] == [
        ("metric-0-0-0", 2),
        ("metric-0-0-1", 2),
    ]
    (rest,) = chunks[1].resource_metrics[0].scope_metrics[0].metrics
    assert (rest.name, len(rest.sum.data_points)) == ("metric-0-0-1", 3)


def test_split_keeps_metrics_without_points() -> None:
    request = metrics_request([[[("gauge", 1)]]])
    request.resource_metrics[0].scope_metrics[0].metrics.add(name="empty")
    add_metric(request.resource_metrics[0].scope_metrics[0], "after", "sum", 1)
    chunks = split_request(Signal.METRICS, request, 1)
    names = [
        m.name for c in chunks for rm in c.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    ]
    assert names == ["metric-0-0-0", "empty", "after"]


def test_split_exemplars_and_metadata_travel_with_the_metric() -> None:
    request = metrics_request([[[("gauge", 4)]]])
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    metric.metadata.add(key="k").value.string_value = "v"
    metric.gauge.data_points[3].exemplars.add(span_id=b"\x01" * 8, as_double=1.0)
    chunks = _check_split(Signal.METRICS, request, 3)
    for chunk in chunks:
        assert chunk.resource_metrics[0].scope_metrics[0].metrics[0].metadata[0].key == "k"
    assert chunks[1].resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].exemplars


@pytest.mark.parametrize("signal", list(Signal))
def test_split_empty_request(signal: Signal) -> None:
    assert split_request(signal, SPECS[signal].request_type(), 5) == []


def test_split_rejects_zero() -> None:
    with pytest.raises(ValueError):
        split_request(Signal.TRACES, traces_request(), 0)


# --- property: generated requests ---------------------------------------------------------------

_item_shapes = st.lists(st.lists(st.integers(0, 6), max_size=3), max_size=4)
_metric_shapes = st.lists(
    st.lists(st.lists(st.tuples(st.sampled_from(METRIC_TYPES), st.integers(0, 7)), max_size=3), max_size=3),
    max_size=3,
)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[Signal, object]:
    signal = draw(st.sampled_from(list(Signal)))
    if signal is Signal.TRACES:
        return signal, traces_request(draw(_item_shapes))
    if signal is Signal.LOGS:
        return signal, logs_request(draw(_item_shapes))
    return signal, metrics_request(draw(_metric_shapes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_requests(), max_items=st.integers(1, 12))
def test_split_property(case: tuple[Signal, object], max_items: int) -> None:
    signal, request = case
    chunks = split_request(signal, request, max_items)  # type: ignore[arg-type]
    assert all(count_items(signal, c) <= max_items for c in chunks)
    assert [k for c in chunks for k in item_keys(signal, c)] == item_keys(signal, request)  # type: ignore[arg-type]
    # every chunk is a valid request on its own
    for chunk in chunks:
        assert parse_request(signal, chunk.SerializeToString()) == chunk


def test_metric_types_cover_the_oneof() -> None:
    """The builders exercise every data kind a Metric can hold."""
    oneof = metrics_pb2.Metric.DESCRIPTOR.oneofs_by_name["data"]
    assert {f.name for f in oneof.fields} == set(METRIC_TYPES)
