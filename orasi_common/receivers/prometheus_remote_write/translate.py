"""Prometheus remote write 1.0 ``WriteRequest`` → one OTLP ``ExportMetricsServiceRequest``.

The rules (the OpenTelemetry Prometheus compatibility specification's Prometheus → OTLP
direction, and the Collector's conventions where a sender gives no metadata)::

    series labels            job, instance        → resource: service.name (service.namespace
                                                    when job is "<namespace>/<name>"),
                                                    service.instance.id; one resource per pair
                             target_info{...}     → that resource's other attributes (no metric)
                             __name__             → the metric's name, as sent
                             every other label    → a data point attribute
    type (metadata first)    COUNTER              → Sum, monotonic, cumulative
                             GAUGE, UNKNOWN, INFO,
                             STATESET             → Gauge
                             HISTOGRAM            → `<f>_bucket{le}`, `<f>_sum`, `<f>_count` of one
                                                    label set and timestamp joined into one
                                                    cumulative Histogram point named `<f>`
                             SUMMARY              → `<f>{quantile}`, `<f>_sum`, `<f>_count` joined
                                                    into one Summary point named `<f>`
    without metadata         `*_total`            → counter
                             `*_bucket` with `le` → histogram bucket of `<f>`
                             a `quantile` label   → summary quantile of the series' name
                             `*_sum` / `*_count`  → joined to a histogram or summary of `<f>` with
                                                    the same labels and timestamp in the request,
                                                    else gauges of their own
                             anything else        → gauge
    samples                  ms timestamps → ns; no start time (0: unknown); Prometheus's
                             staleness marker → a point flagged FLAG_NO_RECORDED_VALUE

Metadata arrives in requests of its own (Prometheus sends it every minute, apart from samples),
so the receiver keeps the families' types, help and units it was told in a bounded
``MetadataCache``. Native histograms (remote write 1.0's field 4) are not translated: they are
counted (``native_histograms``) and left out. A series without ``__name__`` or a histogram
bucket whose ``le`` is not a number makes the request MalformedData (400, not retried).
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from orasi_common.errors import MalformedData
from orasi_common.receivers.prometheus_remote_write.proto.remote_write_pb2 import (
    MetricMetadata,
    WriteRequest,
)
from orasi_common.version import __version__

SCOPE_NAME = "orasi/receiver/prometheus_remote_write"
STALE_NAN = struct.pack("<Q", 0x7FF0000000000002)
"""Prometheus's staleness marker: a NaN with this bit pattern."""
_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_T = MetricMetadata.MetricType
_GAUGE, _COUNTER, _HISTOGRAM, _SUMMARY = "gauge", "counter", "histogram", "summary"
_KIND_OF_TYPE = {_T.COUNTER: _COUNTER, _T.HISTOGRAM: _HISTOGRAM, _T.SUMMARY: _SUMMARY}
_RESOURCE_LABELS = ("job", "instance")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    """What a sender's metadata said about a metric family."""

    kind: str
    help: str = ""
    unit: str = ""


class MetadataCache:
    """The families' metadata from earlier requests: at most ``size`` families, least recently
    told forgotten first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._families: OrderedDict[str, Family] = OrderedDict()

    def update(self, metadata: Iterable[MetricMetadata]) -> None:
        for item in metadata:
            family = Family(_KIND_OF_TYPE.get(item.type, _GAUGE), item.help, item.unit)
            self._families[item.metric_family_name] = family
            self._families.move_to_end(item.metric_family_name)
        while len(self._families) > self._size:
            self._families.popitem(last=False)

    def get(self, name: str) -> Family | None:
        return self._families.get(name)

    def __len__(self) -> int:
        return len(self._families)


@dataclass(slots=True)
class _Joined:
    """One histogram or summary point being assembled from its series."""

    buckets: dict[float, float] = field(default_factory=dict)  # le or quantile → value
    sum: float | None = None
    count: float | None = None


@dataclass(slots=True)
class Translation:
    request: ExportMetricsServiceRequest
    points: int
    native_histograms: int


@dataclass(slots=True)
class _Resource:
    attributes: dict[str, str] = field(default_factory=dict)
    # (metric name, kind) → points: simple ones as (labels, time ns, value), joined ones by key
    simple: dict[tuple[str, str], list[tuple[Labels, int, float]]] = field(default_factory=dict)
    joined: dict[tuple[str, str], dict[tuple[Labels, int], _Joined]] = field(default_factory=dict)


def _family_of(name: str, suffix: str) -> str | None:
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def translate(request: WriteRequest, cache: MetadataCache) -> Translation:
    """The OTLP request holding every sample of ``request`` (see the module's rules)."""
    cache.update(request.metadata)
    resources: dict[tuple[str, str], _Resource] = {}
    pending_parts: list[tuple[_Resource, str, str, Labels, Iterable[tuple[int, float]]]] = []
    native = 0
    for series in request.timeseries:
        native += len(series.histograms)
        if not series.samples:
            continue
        name = ""
        job = instance = ""
        le = quantile = None
        labels: list[tuple[str, str]] = []
        for label in series.labels:
            key = label.name
            if key == "__name__":
                name = label.value
            elif key == "job":
                job = label.value
            elif key == "instance":
                instance = label.value
            elif key == "le":
                le = label.value
            elif key == "quantile":
                quantile = label.value
            else:
                labels.append((key, label.value))
        if not name:
            raise MalformedData(
                "a time series has no __name__ label; every remote-write series needs a metric name"
            )
        resource = resources.get((job, instance))
        if resource is None:
            resource = resources[job, instance] = _Resource()
        samples = [(sample.timestamp * 1_000_000, sample.value) for sample in series.samples]
        if name == "target_info":
            resource.attributes.update(labels)
            continue
        known = cache.get(name)
        if le is not None:
            family = _family_of(name, "_bucket")
            family_meta = cache.get(family) if family else None
            if family and (family_meta is None or family_meta.kind == _HISTOGRAM):
                _join(resource, family, _HISTOGRAM, _bound(le, name), tuple(labels), samples)
                continue
            labels.append(("le", le))
        if quantile is not None:
            if known is None or known.kind == _SUMMARY:
                _join(resource, name, _SUMMARY, _bound(quantile, name), tuple(labels), samples)
                continue
            labels.append(("quantile", quantile))
        if known is None:
            for suffix in ("_sum", "_count"):
                family = _family_of(name, suffix)
                if family is not None:
                    pending_parts.append((resource, family, suffix, tuple(labels), samples))
                    break
            else:
                kind = _COUNTER if name.endswith("_total") else _GAUGE
                resource.simple.setdefault((name, kind), []).extend((tuple(labels), t, v) for t, v in samples)
            continue
        if known.kind in (_HISTOGRAM, _SUMMARY):
            # a family told to be a histogram or summary sends only its parts under other names
            known = Family(_GAUGE, known.help, known.unit)
        resource.simple.setdefault((name, known.kind), []).extend((tuple(labels), t, v) for t, v in samples)
    for resource, family, suffix, labels_key, part in pending_parts:
        _add_part(resource, family, suffix, labels_key, part, cache)
    return _build(resources, cache, native)


def _bound(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise MalformedData(f"{name}: the bucket bound or quantile {value!r} is not a number") from None


def _join(
    resource: _Resource,
    family: str,
    kind: str,
    bound: float,
    labels: Labels,
    samples: Iterable[tuple[int, float]],
) -> None:
    points = resource.joined.setdefault((family, kind), {})
    for t, v in samples:
        point = points.get((labels, t))
        if point is None:
            point = points[labels, t] = _Joined()
        point.buckets[bound] = v


def _add_part(
    resource: _Resource,
    family: str,
    suffix: str,
    labels: Labels,
    samples: Iterable[tuple[int, float]],
    cache: MetadataCache,
) -> None:
    """A ``_sum`` or ``_count`` series: into its histogram's or summary's points when the family
    is one (told by metadata, or with buckets or quantiles in the request), else a gauge."""
    meta = cache.get(family)
    for kind in (_HISTOGRAM, _SUMMARY):
        points = resource.joined.get((family, kind))
        if meta is not None and meta.kind == kind:
            points = resource.joined.setdefault((family, kind), {})
        elif points is None or meta is not None or not all((labels, t) in points for t, _ in samples):
            continue  # a lone part of a family guessed from names is not joined
        for t, v in samples:
            point = points.get((labels, t))
            if point is None:
                point = points[labels, t] = _Joined()
            if suffix == "_sum":
                point.sum = v
            else:
                point.count = v
        return
    name = family + suffix
    resource.simple.setdefault((name, _GAUGE), []).extend((labels, t, v) for t, v in samples)


class _Attributes:
    """KeyValue messages made once per (key, value) within a request."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], KeyValue] = {}

    def of(self, labels: Iterable[tuple[str, str]]) -> list[KeyValue]:
        made = self._made
        out = []
        for pair in labels:
            kv = made.get(pair)
            if kv is None:
                kv = made[pair] = KeyValue(key=pair[0], value=AnyValue(string_value=pair[1]))
            out.append(kv)
        return out


def _resource_attributes(job: str, instance: str, extra: dict[str, str]) -> list[tuple[str, str]]:
    attributes: dict[str, str] = dict(extra)
    if job:
        namespace, slash, service = job.partition("/")
        if slash and namespace and service:
            attributes["service.namespace"] = namespace
            attributes["service.name"] = service
        else:
            attributes["service.name"] = job
    if instance:
        attributes["service.instance.id"] = instance
    return list(attributes.items())


def _build(resources: dict[tuple[str, str], _Resource], cache: MetadataCache, native: int) -> Translation:
    request = ExportMetricsServiceRequest()
    attrs = _Attributes()
    points = 0
    for (job, instance), resource in resources.items():
        if not resource.simple and not resource.joined:
            continue
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(attrs.of(_resource_attributes(job, instance, resource.attributes)))
        sm = rm.scope_metrics.add()
        sm.scope.name = SCOPE_NAME
        sm.scope.version = __version__
        for (name, kind), simple in resource.simple.items():
            metric = _metric(sm, name, cache)
            if kind == _COUNTER:
                metric.sum.is_monotonic = True
                metric.sum.aggregation_temporality = _CUMULATIVE
                container = metric.sum.data_points
            else:
                container = metric.gauge.data_points
            for labels, t, v in simple:
                if v != v and struct.pack("<d", v) == STALE_NAN:
                    container.add(attributes=attrs.of(labels), time_unix_nano=t, flags=_NO_RECORDED_VALUE)
                else:
                    container.add(attributes=attrs.of(labels), time_unix_nano=t, as_double=v)
            points += len(simple)
        for (name, kind), joined in resource.joined.items():
            if not joined:
                continue
            metric = _metric(sm, name, cache)
            if kind == _HISTOGRAM:
                metric.histogram.aggregation_temporality = _CUMULATIVE
                for (labels, t), point in joined.items():
                    _histogram_point(metric.histogram.data_points.add(), attrs.of(labels), t, point)
            else:
                for (labels, t), point in joined.items():
                    dp = metric.summary.data_points.add(attributes=attrs.of(labels), time_unix_nano=t)
                    dp.quantile_values.extend(
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v)
                        for q, v in sorted(point.buckets.items())
                    )
                    if point.sum is not None:
                        dp.sum = point.sum
                    if point.count is not None and math.isfinite(point.count):
                        dp.count = max(0, round(point.count))
            points += len(joined)
    return Translation(request, points, native)


def _metric(sm: metrics_pb2.ScopeMetrics, name: str, cache: MetadataCache) -> metrics_pb2.Metric:
    metric = sm.metrics.add(name=name)
    meta = cache.get(name)
    if meta is not None:
        metric.description = meta.help
        metric.unit = meta.unit
    return metric


def _histogram_point(
    dp: metrics_pb2.HistogramDataPoint, attributes: list[KeyValue], t: int, point: _Joined
) -> None:
    """Cumulative ``le`` buckets → OTLP's explicit bounds and per-bucket counts."""
    dp.attributes.extend(attributes)
    dp.time_unix_nano = t
    bounds = sorted(point.buckets)
    counts: list[int] = []
    previous = 0
    for bound in bounds:
        cumulative = point.buckets[bound]
        cumulative_int = max(previous, round(cumulative)) if math.isfinite(cumulative) else previous
        counts.append(cumulative_int - previous)
        previous = cumulative_int
    if bounds and math.isinf(bounds[-1]) and bounds[-1] > 0:
        dp.explicit_bounds.extend(bounds[:-1])
        dp.bucket_counts.extend(counts)
    elif bounds:  # no +Inf bucket: the rest of the count falls above the last bound
        dp.explicit_bounds.extend(bounds)
        above = round(point.count) if point.count is not None and math.isfinite(point.count) else previous
        dp.bucket_counts.extend([*counts, max(0, above - previous)])
    total = point.count if point.count is not None else (float(previous) if bounds else None)
    if total is not None and math.isfinite(total):
        dp.count = max(0, round(total))
    if point.sum is not None:
        dp.sum = point.sum
