"""Rich OTLP requests for the OTAP and load-balancing tests, and in-process services to run them.

The requests use every kind of value OTAP carries in its own tables: attributes of each type
(string, int, double, bool, bytes, array, map) on resources, scopes, spans, events, links, log
records and data points; span events and links; log bodies of each type; every metric type with
exemplars. Every item has a distinct name, so what a sink received can be matched to what was
sent item by item. No NaN anywhere: a NaN would make equal messages compare unequal.

``running_service`` runs an `orasi` service (its pipeline graph and admin port) in this event
loop, from the same configuration dict a YAML file would hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.config.model import ServiceConfig
from orasi_common.pdata import SPECS, Signal
from orasi_common.pipeline.component import Factories, Kind, Settings
from orasi_common.service import Service
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.service_process import free_port

T0 = 1_700_000_000_000_000_000


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    raise TypeError(value)


def attributes(rng: random.Random, tag: str) -> list[KeyValue]:
    """Attributes of every value type; ``tag`` makes the string values distinct."""
    out = [
        kv("str", f"{tag}-välue"),
        kv("int", rng.randint(-(2**63), 2**63 - 1)),
        kv("double", rng.uniform(-1e6, 1e6)),
        kv("bool", rng.random() < 0.5),
        kv("bytes", rng.randbytes(rng.randint(0, 12))),
        kv("array", [tag, rng.randint(-5, 5), 2.5, True]),
        kv("map", {"inner": tag, "n": rng.randint(0, 1000), "nested": {"deep": [1, "two"]}}),
        kv("http.method", rng.choice(["GET", "POST", "PUT"])),  # repeated values: dictionary hits
    ]
    if rng.random() < 0.3:
        out.append(kv("empty", None))
    return out


def _resource(target: Any, service: str, rng: random.Random) -> None:
    target.resource.attributes.extend([kv("service.name", service), kv("host.name", f"h-{service}")])
    target.resource.attributes.extend(attributes(rng, f"res-{service}"))
    target.schema_url = "https://opentelemetry.io/schemas/1.21.0"


def _scope(target: Any, name: str, rng: random.Random) -> None:
    target.scope.name = name
    target.scope.version = "1.2.3"
    target.scope.attributes.append(kv("scope.attr", name))
    target.schema_url = "https://scope/1"


def trace_id_of(number: int, salt: str = "") -> bytes:
    return random.Random(f"trace-{salt}-{number}").randbytes(16)


def traces_request(
    trace_numbers: Iterable[int],
    spans_per_trace: int = 3,
    *,
    seed: int = 1,
    prefix: str = "t",
    services: int = 2,
    salt: str = "",
) -> ExportTraceServiceRequest:
    """Spans of the given traces, spread over ``services`` resources; span names are unique."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    by_service: dict[int, Any] = {}
    for number in trace_numbers:
        trace_id = trace_id_of(number, salt)
        parent = b""
        for index in range(spans_per_trace):
            service = (number + index) % services
            rs = by_service.get(service)
            if rs is None:
                rs = by_service[service] = request.resource_spans.add()
                _resource(rs, f"svc-{service}", rng)
                _scope(rs.scope_spans.add(), f"scope-{service}", rng)
            span_id = rng.randbytes(8)
            span = rs.scope_spans[0].spans.add(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                trace_state="rojo=00f067aa0ba902b7" if index == 0 else "",
                name=f"{prefix}-{number}-{index}",
                kind=rng.randint(1, 5),
                start_time_unix_nano=T0 + number * 1000 + index,
                end_time_unix_nano=T0 + number * 1000 + index + rng.randint(1, 10**9),
                flags=0x301 if index % 2 else 0,
                dropped_attributes_count=index % 2,
            )
            span.attributes.extend(attributes(rng, span.name))
            for e in range(index % 3):
                event = span.events.add(time_unix_nano=T0 + e, name=f"event-{e}")
                event.attributes.extend([kv("event.n", e), kv("event.text", f"{span.name}-{e}")])
            if index % 2:
                link = span.links.add(trace_id=trace_id_of(number + 1, salt), span_id=rng.randbytes(8))
                link.attributes.append(kv("link.kind", "follows"))
            if index % 3 == 1:
                span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=f"boom {number}"))
            elif index % 3 == 2:
                span.status.CopyFrom(Status(code=Status.STATUS_CODE_OK))
            parent = span_id
    return request


LOG_BODIES: list[Any] = [
    "a string body",
    42,
    -2.5,
    True,
    b"\x00\x01bin",
    ["x", 1],
    {"k": "v", "n": [1, 2]},
    None,
]


def logs_request(
    count: int, *, seed: int = 2, prefix: str = "l", services: int = 2
) -> ExportLogsServiceRequest:
    rng = random.Random(seed)
    request = ExportLogsServiceRequest()
    scopes = []
    for service in range(services):
        rl = request.resource_logs.add()
        _resource(rl, f"svc-{service}", rng)
        sl = rl.scope_logs.add()
        _scope(sl, f"logger-{service}", rng)
        scopes.append(sl)
    for index in range(count):
        record = scopes[index % services].log_records.add(
            time_unix_nano=T0 + index,
            observed_time_unix_nano=T0 + index + 5,
            severity_number=rng.randint(1, 24),
            severity_text=rng.choice(["INFO", "WARN", "ERROR"]),
            trace_id=rng.randbytes(16) if index % 2 else b"",
            span_id=rng.randbytes(8) if index % 2 else b"",
            flags=index % 2,
            event_name="browser.click" if index % 4 == 0 else "",
        )
        body = LOG_BODIES[index % len(LOG_BODIES)]
        if body is not None:
            record.body.CopyFrom(any_value(f"{prefix}-{index}: {body}" if isinstance(body, str) else body))
        record.attributes.extend(attributes(rng, f"{prefix}-{index}"))
        record.attributes.append(kv("log.name", f"{prefix}-{index}"))
    return request


def _exemplar(point: Any, rng: random.Random, as_int: bool) -> None:
    exemplar = point.exemplars.add(
        time_unix_nano=T0 + 7, span_id=rng.randbytes(8), trace_id=rng.randbytes(16)
    )
    exemplar.filtered_attributes.append(kv("exemplar.attr", "x"))
    if as_int:
        exemplar.as_int = rng.randint(-100, 100)
    else:
        exemplar.as_double = rng.uniform(0, 10)


def _point_attributes(point: Any, rng: random.Random, tag: str) -> None:
    point.attributes.extend(
        [kv("point", tag), kv("code", rng.randint(100, 599)), kv("ok", rng.random() < 0.5)]
    )


METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def metrics_request(
    *, seed: int = 3, prefix: str = "m", points: int = 3, services: int = 2
) -> ExportMetricsServiceRequest:
    """Every metric type (gauge and sum with int and double points), each under every service."""
    rng = random.Random(seed)
    request = ExportMetricsServiceRequest()
    for service in range(services):
        rm = request.resource_metrics.add()
        _resource(rm, f"svc-{service}", rng)
        sm = rm.scope_metrics.add()
        _scope(sm, f"meter-{service}", rng)
        for kind in METRIC_KINDS:
            metric = sm.metrics.add(name=f"{prefix}.{service}.{kind}", unit="ms", description=f"a {kind}")
            metric.metadata.append(kv("meta", kind))
            for p in range(points):
                tag = f"{metric.name}-{p}"
                start, time_ = T0 + p, T0 + 1000 + p
                if kind in ("gauge", "sum"):
                    data = metric.gauge if kind == "gauge" else metric.sum
                    point = data.data_points.add(start_time_unix_nano=start, time_unix_nano=time_)
                    if p % 2:
                        point.as_int = rng.randint(-(2**40), 2**40)
                    else:
                        point.as_double = rng.uniform(-1e3, 1e3)
                    _exemplar(point, rng, as_int=bool(p % 2))
                    if kind == "sum":
                        metric.sum.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
                        metric.sum.is_monotonic = True
                elif kind == "histogram":
                    metric.histogram.aggregation_temporality = m.AGGREGATION_TEMPORALITY_DELTA
                    counts = [rng.randint(0, 9) for _ in range(4)]
                    point = metric.histogram.data_points.add(
                        start_time_unix_nano=start,
                        time_unix_nano=time_,
                        count=sum(counts),
                        sum=rng.uniform(0, 100),
                        bucket_counts=counts,
                        explicit_bounds=[1.0, 5.0, 25.0],
                        min=0.5,
                        max=99.5,
                    )
                    _exemplar(point, rng, as_int=False)
                elif kind == "exponential_histogram":
                    metric.exponential_histogram.aggregation_temporality = (
                        m.AGGREGATION_TEMPORALITY_CUMULATIVE
                    )
                    point = metric.exponential_histogram.data_points.add(
                        start_time_unix_nano=start,
                        time_unix_nano=time_,
                        count=12,
                        sum=30.5,
                        scale=rng.randint(-2, 5),
                        zero_count=1,
                        zero_threshold=1e-9,
                        min=0.0,
                        max=20.0,
                    )
                    point.positive.offset = rng.randint(-3, 3)
                    point.positive.bucket_counts.extend([1, 2, 3, 4])
                    point.negative.offset = -1
                    point.negative.bucket_counts.extend([1])
                    _exemplar(point, rng, as_int=True)
                else:
                    point = metric.summary.data_points.add(
                        start_time_unix_nano=start, time_unix_nano=time_, count=10, sum=55.0
                    )
                    point.quantile_values.add(quantile=0.0, value=1.0)
                    point.quantile_values.add(quantile=0.5, value=5.5)
                    point.quantile_values.add(quantile=1.0, value=10.0)
                _point_attributes(point, rng, tag)
    return request


def request_for(signal: Signal, number: int, *, size: int = 4, prefix: str = "x") -> Message:
    """A small distinct request of ``signal`` (``number`` makes its item names unique)."""
    if signal is Signal.TRACES:
        return traces_request(range(number * size, number * size + size), 2, seed=number, prefix=prefix)
    if signal is Signal.LOGS:
        return logs_request(size, seed=number, prefix=f"{prefix}{number}")
    return metrics_request(seed=number, prefix=f"{prefix}{number}", points=1)


def item_names(signal: Signal, request: Message) -> list[str]:
    """The name of every span / log record (its ``log.name``) / data point (metric name + index)."""
    spec = SPECS[signal]
    names: list[str] = []
    for resource in getattr(request, spec.resource_field):
        for scope in getattr(resource, spec.scope_field):
            for item in getattr(scope, spec.item_field):
                if signal is Signal.TRACES:
                    names.append(item.name)
                elif signal is Signal.LOGS:
                    names.append(next(a.value.string_value for a in item.attributes if a.key == "log.name"))
                else:
                    kind = item.WhichOneof("data")
                    count = len(getattr(item, kind).data_points) if kind else 0
                    names.extend(f"{item.name}#{i}" for i in range(count))
    return names


def new_batch_id() -> str:
    return os.urandom(16).hex()


# --- in-process services --------------------------------------------------------------------


def receiver_part(grpc_port: int, http_port: int | None = None) -> dict[str, Any]:
    protocols: dict[str, Any] = {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}
    if http_port is not None:
        protocols["http"] = {"endpoint": f"127.0.0.1:{http_port}"}
    return {"protocols": protocols}


def otlp_exporter_part(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "tls": {"insecure": True},
        "timeout": 5,
        "retry_on_failure": {"initial_interval": 0.02, "max_interval": 0.2, "max_elapsed_time": 30},
        **extra,
    }


def service_config(
    receiver: tuple[str, dict[str, Any]],
    exporter: tuple[str, dict[str, Any]],
    admin_port: int,
    signals: Iterable[str] = ("traces", "metrics", "logs"),
) -> dict[str, Any]:
    """One receiver → one exporter for each signal, no processor (batch ids pass unchanged)."""
    (receiver_id, receiver_config), (exporter_id, exporter_config) = receiver, exporter
    return {
        "receivers": {receiver_id: receiver_config},
        "exporters": {exporter_id: exporter_config},
        "service": {
            "telemetry": {"logs": {"level": "warning"}, "admin": {"endpoint": f"127.0.0.1:{admin_port}"}},
            "pipelines": {
                signal: {"receivers": [receiver_id], "processors": [], "exporters": [exporter_id]}
                for signal in signals
            },
        },
    }


class RunningService:
    def __init__(self, service: Service, config: dict[str, Any]) -> None:
        self.service = service
        self.config = config

    @property
    def admin_url(self) -> str:
        return "http://" + self.config["service"]["telemetry"]["admin"]["endpoint"]

    async def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(self.admin_url + "/metrics")
        response.raise_for_status()
        return [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        ]

    async def metric(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in await self.metric_samples()
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )


@contextlib.asynccontextmanager
async def running_service(
    name: str, config: dict[str, Any], factories: Factories
) -> AsyncIterator[RunningService]:
    service = Service(name, ServiceConfig.model_validate(config), factories)
    await service.start()
    try:
        yield RunningService(service, config)
    finally:
        await service.shutdown()


def client_settings(name: str = "otap/test") -> Settings:
    return Settings(name, Kind.EXPORTER, "gateway", Metrics("gateway"), logging.getLogger(f"test.{name}"))


async def eventually(check: Callable[[], bool], within: float, what: str, interval: float = 0.02) -> None:
    """Wait (without blocking the loop) until ``check()`` is true; fail with ``what`` past ``within`` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


__all__ = [
    "METRIC_KINDS",
    "RunningService",
    "client_settings",
    "eventually",
    "free_port",
    "item_names",
    "logs_request",
    "metrics_request",
    "new_batch_id",
    "otlp_exporter_part",
    "receiver_part",
    "request_for",
    "running_service",
    "service_config",
    "traces_request",
]
