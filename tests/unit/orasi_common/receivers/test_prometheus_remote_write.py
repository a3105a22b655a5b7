"""The remote-write translation rules (expected points written by hand from the module's table),
and the endpoint's status codes with a real HTTP client."""

from __future__ import annotations

import math
import struct
from typing import Any

import cramjam
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from orasi_common.errors import MalformedData, Unavailable
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import prometheus_remote_write
from orasi_common.receivers.prometheus_remote_write.proto.remote_write_pb2 import (
    MetricMetadata,
    TimeSeries,
    WriteRequest,
)
from orasi_common.receivers.prometheus_remote_write.translate import MetadataCache, Translation, Translator
from orasi_common.telemetry.metrics import Metrics

from ...doubles import RecordingConsumer, make_settings, sample

T = 1_700_000_000_000  # ms


def series(name: str, value: float, t: int = T, **labels: str) -> TimeSeries:
    pairs = sorted({"__name__": name, "job": "ns/api", "instance": "h:1", **labels}.items())
    return TimeSeries(
        labels=[{"name": k, "value": v} for k, v in pairs], samples=[{"value": value, "timestamp": t}]
    )


def translate(request: WriteRequest, translator: Translator | None = None) -> Translation:
    return (translator or Translator(100)).translate(request.SerializeToString())


def otlp(translation: Translation) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(translation.data)


def metrics_of(request: WriteRequest, translator: Translator | None = None) -> dict[str, metrics_pb2.Metric]:
    (rm,) = otlp(translate(request, translator)).resource_metrics
    return {m.name: m for m in rm.scope_metrics[0].metrics}


def attributes(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def test_resource_from_job_and_instance_and_target_info() -> None:
    request = WriteRequest(timeseries=[series("up", 1), series("target_info", 1, region="eu")])
    translation = translate(request)
    (rm,) = otlp(translation).resource_metrics
    resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
    assert resource == {
        "service.namespace": "ns",
        "service.name": "api",
        "service.instance.id": "h:1",
        "region": "eu",
    }
    assert [m.name for m in rm.scope_metrics[0].metrics] == ["up"]
    assert translation.points == 1


def test_counter_gauge_and_staleness_without_metadata() -> None:
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    request = WriteRequest(
        timeseries=[
            series("http_requests_total", 7, code="200"),
            series("temperature", 21.5),
            series("temperature", stale, t=T + 1000),
        ]
    )
    found = metrics_of(request)
    counter = found["http_requests_total"]
    assert counter.sum.is_monotonic
    assert counter.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    (point,) = counter.sum.data_points
    assert (point.as_double, point.time_unix_nano, attributes(point)) == (7, T * 1_000_000, {"code": "200"})
    fresh, gone = found["temperature"].gauge.data_points
    assert fresh.as_double == 21.5
    assert gone.flags == metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    assert not gone.HasField("as_double")


def test_classic_histogram_joined_into_one_point() -> None:
    request = WriteRequest(
        timeseries=[
            series("rpc_seconds_bucket", 2, le="0.1", method="get"),
            series("rpc_seconds_bucket", 5, le="1", method="get"),
            series("rpc_seconds_bucket", 6, le="+Inf", method="get"),
            series("rpc_seconds_sum", 3.5, method="get"),
            series("rpc_seconds_count", 6, method="get"),
            series("other_count", 4),  # no family in the request: a gauge of its own
        ]
    )
    found = metrics_of(request)
    (point,) = found["rpc_seconds"].histogram.data_points
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [2, 3, 1]
    assert (point.count, point.sum, attributes(point)) == (6, 3.5, {"method": "get"})
    assert found["rpc_seconds"].histogram.aggregation_temporality == 2
    assert found["other_count"].gauge.data_points[0].as_double == 4
    assert "rpc_seconds_sum" not in found


def test_summary_quantiles_and_metadata_types() -> None:
    translator = Translator(10)
    jobs = MetricMetadata(type=MetricMetadata.COUNTER, metric_family_name="jobs", help="Jobs.", unit="1")
    translate(WriteRequest(metadata=[jobs]), translator)  # metadata comes in requests of its own
    request = WriteRequest(
        timeseries=[
            series("latency", 0.2, quantile="0.5"),
            series("latency", 0.9, quantile="0.99"),
            series("latency_sum", 12.0),
            series("latency_count", 30),
            series("jobs", 3),  # a counter by metadata, though not named *_total
        ]
    )
    found = metrics_of(request, translator)
    (point,) = found["latency"].summary.data_points
    assert [(q.quantile, q.value) for q in point.quantile_values] == [(0.5, 0.2), (0.99, 0.9)]
    assert (point.sum, point.count) == (12.0, 30)
    assert found["jobs"].sum.is_monotonic
    assert (found["jobs"].description, found["jobs"].unit) == ("Jobs.", "1")


def test_a_series_described_once_is_typed_again_when_its_metadata_changes() -> None:
    translator = Translator(10)
    assert metrics_of(WriteRequest(timeseries=[series("jobs", 1)]), translator)["jobs"].HasField("gauge")
    counter = MetricMetadata(type=MetricMetadata.COUNTER, metric_family_name="jobs")
    translate(WriteRequest(metadata=[counter]), translator)
    assert metrics_of(WriteRequest(timeseries=[series("jobs", 2)]), translator)["jobs"].HasField("sum")


def test_metadata_cache_is_bounded() -> None:
    cache = MetadataCache(2)
    cache.update([MetricMetadata(type=MetricMetadata.GAUGE, metric_family_name=f"m{i}") for i in range(3)])
    assert len(cache) == 2
    assert cache.get("m0") is None
    assert cache.get("m2") is not None


def test_series_without_name_or_with_a_bad_bound_is_malformed() -> None:
    nameless = TimeSeries(labels=[{"name": "job", "value": "x"}], samples=[{"value": 1, "timestamp": T}])
    with pytest.raises(MalformedData, match="__name__"):
        translate(WriteRequest(timeseries=[nameless]))
    with pytest.raises(MalformedData, match="not a number"):
        translate(WriteRequest(timeseries=[series("h_bucket", 1, le="wide")]))


# --- the endpoint -----------------------------------------------------------------------------


async def start(consumer: RecordingConsumer, metrics: Metrics, **config: Any) -> Any:
    validated = prometheus_remote_write.Config.model_validate({"endpoint": "127.0.0.1:0", **config})
    settings = make_settings("prometheus_remote_write", Kind.RECEIVER, metrics)
    receiver = prometheus_remote_write.FACTORY.create(settings, validated, {Signal.METRICS: consumer})
    await receiver.start()
    return receiver


def body(request: WriteRequest) -> bytes:
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


HEADERS = {"content-encoding": "snappy", "content-type": "application/x-protobuf"}


async def test_endpoint_status_codes(metrics: Metrics) -> None:
    consumer = RecordingConsumer()
    receiver = await start(consumer, metrics, max_decompressed_body_size_mib=0.001)
    url = f"http://127.0.0.1:{receiver.port}/api/v1/write"
    good = body(WriteRequest(timeseries=[series("up", 1)]))
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(url, content=good, headers=HEADERS)
            assert response.status_code == 204
            (batch,) = consumer.batches
            assert batch.items == 1
            # the same body again is the same batch (a retry is kept once in the lake)
            await client.post(url, content=good, headers=HEADERS)
            assert consumer.batches[1].batch_id == batch.batch_id
            not_snappy = await client.post(url, content=b"\x05garbage", headers=HEADERS)
            assert not_snappy.status_code == 400
            assert "snappy" in not_snappy.text
            garbage = bytes(cramjam.snappy.compress_raw(b"\xff\xff"))
            not_proto = await client.post(url, content=garbage, headers=HEADERS)
            assert not_proto.status_code == 400
            gzip = await client.post(url, content=good, headers={**HEADERS, "content-encoding": "gzip"})
            assert gzip.status_code == 415
            big = body(WriteRequest(timeseries=[series("up", 1, pad="x" * 2000)]))
            assert (await client.post(url, content=big, headers=HEADERS)).status_code == 413
            assert (await client.get(url)).status_code == 405
            consumer.refuse.append(Unavailable("the queue is full", retry_after=2))
            busy = await client.post(url, content=good, headers=HEADERS)
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "2"
            # it keeps serving
            assert (await client.post(url, content=good, headers=HEADERS)).status_code == 204
    finally:
        await receiver.shutdown()
    assert sample(metrics, "orasi_receiver_accepted_items_total", receiver="prometheus_remote_write") == 3
    assert math.isclose(sample(metrics, "orasi_receiver_refused_items_total", transport="http"), 1)
