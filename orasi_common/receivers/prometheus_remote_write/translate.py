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

How, in bulk: the request is scanned at the wire level (``pdata.protoscan``, one native call per
level) into every series' label bytes and every sample's value and timestamp as arrays; a
series' labels are described once (parsed, typed, their attributes encoded) and kept by their
bytes in a bounded cache, since a sender writes the same series again every scrape; counters and
gauges are then encoded straight into OTLP bytes, a few byte joins per sample, and histograms
and summaries (one point from many series) through protobuf messages.

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

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from orasi_common.errors import MalformedData
from orasi_common.pdata.protoscan import I64_WIRE, LEN, VARINT, Buffer, items_at, scan
from orasi_common.receivers.prometheus_remote_write.proto.remote_write_pb2 import (
    MetricMetadata,
    TimeSeries,
)
from orasi_common.receivers.wire import field as _field
from orasi_common.receivers.wire import key_values as _key_values
from orasi_common.receivers.wire import varint as _varint
from orasi_common.version import __version__

SCOPE_NAME = "orasi/receiver/prometheus_remote_write"
STALE_NAN = 0x7FF0000000000002
"""Prometheus's staleness marker: a NaN with these bits."""
_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_T = MetricMetadata.MetricType
_GAUGE, _COUNTER, _HISTOGRAM, _SUMMARY = "gauge", "counter", "histogram", "summary"
_KIND_OF_TYPE = {_T.COUNTER: _COUNTER, _T.HISTOGRAM: _HISTOGRAM, _T.SUMMARY: _SUMMARY}
_SIMPLE, _JOIN, _PART, _TARGET_INFO = range(4)

# OTLP field tags (field number << 3 | wire type) written directly
_POINT_TAIL = struct.Struct("<BQBd")  # time_unix_nano (3, fixed64), as_double (4, double)
_STALE_TAIL = struct.Struct("<BQBB")  # time_unix_nano, flags (8, varint) = NO_RECORDED_VALUE
_SUM_TAIL = bytes((2 << 3, _CUMULATIVE, 3 << 3, 1))  # aggregation_temporality, is_monotonic

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

    def update(self, metadata: Iterable[MetricMetadata]) -> bool:
        """Remember ``metadata``; whether any family's changed (or was new)."""
        changed = False
        for item in metadata:
            family = Family(_KIND_OF_TYPE.get(item.type, _GAUGE), item.help, item.unit)
            name = item.metric_family_name
            changed = changed or self._families.get(name) != family
            self._families[name] = family
            self._families.move_to_end(name)
        while len(self._families) > self._size:
            self._families.popitem(last=False)
        return changed

    def get(self, name: str) -> Family | None:
        return self._families.get(name)

    def __len__(self) -> int:
        return len(self._families)


@dataclass(frozen=True, slots=True)
class _Series:
    """What a series' labels say, worked out once per label set."""

    resource: tuple[str, str]  # job, instance
    role: int
    name: str  # the metric (simple), the family (joined, part)
    kind: str
    labels: Labels  # the point's attributes
    bound: float = 0.0  # le or quantile of a joined series
    suffix: str = ""  # _sum or _count of a part
    point_head: bytes = b""  # a simple series' NumberDataPoint prefix: field tag, length, attributes
    stale_head: bytes = b""  # the same for a staleness marker


@dataclass(slots=True)
class _Joined:
    """One histogram or summary point being assembled from its series."""

    buckets: dict[float, float] = field(default_factory=dict)  # le or quantile → value
    sum: float | None = None
    count: float | None = None


@dataclass(slots=True)
class Translation:
    data: bytes  # a serialized ExportMetricsServiceRequest
    points: int
    native_histograms: int


@dataclass(slots=True)
class _Resource:
    attributes: dict[str, str] = field(default_factory=dict)
    simple: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)  # encoded points
    joined: dict[tuple[str, str], dict[tuple[Labels, int], _Joined]] = field(default_factory=dict)


def _family_of(name: str, suffix: str) -> str | None:
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def _header_sizes(lengths: np.ndarray) -> np.ndarray:
    """Bytes of a one-byte tag plus the varint of each length."""
    size = np.ones(len(lengths), dtype=np.int64) * 2
    for shift in (7, 14, 21, 28):
        size += lengths >= (1 << shift)
    return size


class Translator:
    """Translates WriteRequests, remembering metadata and described series between them."""

    def __init__(self, metadata_cache_size: int, series_cache_size: int = 100_000) -> None:
        self.metadata = MetadataCache(metadata_cache_size)
        self._series: dict[bytes, _Series] = {}
        self._series_size = series_cache_size

    def translate(self, data: bytes) -> Translation:
        """The OTLP request holding every sample of the serialized WriteRequest ``data``."""
        buf = Buffer(data)
        top = scan(buf, np.zeros(1, dtype=np.int64), np.full(1, len(data), dtype=np.int64))
        metadata_rows = top.rows(3, LEN)
        if len(metadata_rows) and self.metadata.update(
            MetricMetadata.FromString(data[start:end])
            for start, end in zip(
                top.start[metadata_rows].tolist(), top.end[metadata_rows].tolist(), strict=True
            )
        ):
            self._series.clear()  # their types may have changed
        series_rows = top.rows(1, LEN)
        n = len(series_rows)
        fields = items_at(buf, top, series_rows).fields  # keyed by series
        native = len(fields.rows(4, LEN))
        label_rows = fields.rows(1, LEN)
        first = np.full(n, -1, dtype=np.int64)
        first[fields.msg[label_rows][::-1]] = label_rows[::-1]
        last = fields.last_of(label_rows, n)
        has_labels = first >= 0
        safe_first, safe_last = np.where(has_labels, first, 0), np.where(has_labels, last, 0)
        if len(fields.start):
            lengths = fields.end[safe_first] - fields.start[safe_first]
            key_starts = (fields.start[safe_first] - _header_sizes(lengths)).tolist()
            key_ends = fields.end[safe_last].tolist()
        else:
            key_starts = key_ends = [0] * n
        sample_items = items_at(buf, fields, fields.rows(2, LEN))
        m = len(sample_items)
        counts = np.bincount(sample_items.parent, minlength=n).tolist()
        values = sample_items.fields.last_value(1, I64_WIRE, m).view(np.float64).tolist()
        times = (sample_items.fields.last_value(2, VARINT, m).view(np.int64) * 1_000_000).tolist()

        resources: dict[tuple[str, str], _Resource] = {}
        parts: list[tuple[_Resource, _Series, list[tuple[int, float]]]] = []
        described = self._series
        labelled = has_labels.tolist()
        at = 0
        for index in range(n):
            count = counts[index]
            if not count:
                continue
            if not labelled[index]:
                raise MalformedData("a time series has no labels; every remote-write series needs __name__")
            key = data[key_starts[index] : key_ends[index]]
            info = described.get(key)
            if info is None:
                info = self._describe(key)
                if len(described) >= self._series_size:
                    described.clear()
                described[key] = info
            resource = resources.get(info.resource)
            if resource is None:
                resource = resources[info.resource] = _Resource()
            role = info.role
            end = at + count
            if role == _SIMPLE:
                points = resource.simple.get((info.name, info.kind))
                if points is None:
                    points = resource.simple[info.name, info.kind] = []
                for t, v in zip(times[at:end], values[at:end], strict=True):
                    if v != v and struct.unpack("<Q", struct.pack("<d", v))[0] == STALE_NAN:
                        points.append(info.stale_head + _STALE_TAIL.pack(0x19, t, 0x40, _NO_RECORDED_VALUE))
                    else:
                        points.append(info.point_head + _POINT_TAIL.pack(0x19, t, 0x21, v))
            elif role == _JOIN:
                joined = resource.joined.setdefault((info.name, info.kind), {})
                for t, v in zip(times[at:end], values[at:end], strict=True):
                    point = joined.get((info.labels, t))
                    if point is None:
                        point = joined[info.labels, t] = _Joined()
                    point.buckets[info.bound] = v
            elif role == _PART:
                parts.append((resource, info, list(zip(times[at:end], values[at:end], strict=True))))
            else:  # target_info
                resource.attributes.update(info.labels)
            at = end
        for resource, info, samples in parts:
            self._add_part(resource, info, samples)
        return self._build(resources, native)

    def _describe(self, key: bytes) -> _Series:
        """A series' role from its labels (``key``: its label fields, perhaps with samples between)."""
        name = job = instance = ""
        le = quantile = None
        labels: list[tuple[str, str]] = []
        for label in TimeSeries.FromString(key).labels:
            k = label.name
            if k == "__name__":
                name = label.value
            elif k == "job":
                job = label.value
            elif k == "instance":
                instance = label.value
            elif k == "le":
                le = label.value
            elif k == "quantile":
                quantile = label.value
            else:
                labels.append((k, label.value))
        if not name:
            raise MalformedData(
                "a time series has no __name__ label; every remote-write series needs a metric name"
            )
        resource = (job, instance)
        if name == "target_info":
            return _Series(resource, _TARGET_INFO, name, _GAUGE, tuple(labels))
        cache = self.metadata
        known = cache.get(name)
        if le is not None:
            family = _family_of(name, "_bucket")
            family_meta = cache.get(family) if family else None
            if family and (family_meta is None or family_meta.kind == _HISTOGRAM):
                return _Series(resource, _JOIN, family, _HISTOGRAM, tuple(labels), _bound(le, name))
            labels.append(("le", le))
        if quantile is not None:
            if known is None or known.kind == _SUMMARY:
                return _Series(resource, _JOIN, name, _SUMMARY, tuple(labels), _bound(quantile, name))
            labels.append(("quantile", quantile))
        if known is None:
            for suffix in ("_sum", "_count"):
                family = _family_of(name, suffix)
                if family is not None:
                    return _Series(resource, _PART, family, _GAUGE, tuple(labels), suffix=suffix)
            kind = _COUNTER if name.endswith("_total") else _GAUGE
        else:
            # a family told to be a histogram or summary sends only its parts under other names
            kind = known.kind if known.kind in (_COUNTER, _GAUGE) else _GAUGE
        return _simple(resource, name, kind, tuple(labels))

    def _add_part(self, resource: _Resource, info: _Series, samples: list[tuple[int, float]]) -> None:
        """A ``_sum`` or ``_count`` series: into its histogram's or summary's points when the
        family is one (told by metadata, or with buckets or quantiles in the request), else a
        gauge of its own."""
        family, labels = info.name, info.labels
        meta = self.metadata.get(family)
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
                if info.suffix == "_sum":
                    point.sum = v
                else:
                    point.count = v
            return
        gauge = _simple(info.resource, family + info.suffix, _GAUGE, labels)
        encoded = resource.simple.setdefault((gauge.name, _GAUGE), [])
        encoded.extend(gauge.point_head + _POINT_TAIL.pack(0x19, t, 0x21, v) for t, v in samples)

    def _build(self, resources: dict[tuple[str, str], _Resource], native: int) -> Translation:
        scope = _field(1, SCOPE_NAME.encode()) + _field(2, __version__.encode())
        out: list[bytes] = []
        points = 0
        for (job, instance), resource in resources.items():
            if not resource.simple and not resource.joined:
                continue
            metrics: list[bytes] = []
            for (name, kind), encoded in resource.simple.items():
                body = b"".join(encoded)
                data = _field(7, body + _SUM_TAIL) if kind == _COUNTER else _field(5, body)
                metrics.append(_field(2, self._metric_head(name) + data))
                points += len(encoded)
            for (name, kind), joined in resource.joined.items():
                if joined:
                    metrics.append(_field(2, self._joined_metric(name, kind, joined).SerializeToString()))
                    points += len(joined)
            attributes = _key_values(_resource_attributes(job, instance, resource.attributes), 1)
            scope_metrics = _field(1, scope) + b"".join(metrics)
            out.append(_field(1, _field(1, attributes) + _field(2, scope_metrics)))
        return Translation(b"".join(out), points, native)

    def _metric_head(self, name: str) -> bytes:
        head = _field(1, name.encode())
        meta = self.metadata.get(name)
        if meta is not None:
            head += (_field(2, meta.help.encode()) if meta.help else b"") + (
                _field(3, meta.unit.encode()) if meta.unit else b""
            )
        return head

    def _joined_metric(
        self, name: str, kind: str, joined: dict[tuple[Labels, int], _Joined]
    ) -> metrics_pb2.Metric:
        metric = metrics_pb2.Metric(name=name)
        meta = self.metadata.get(name)
        if meta is not None:
            metric.description = meta.help
            metric.unit = meta.unit
        attrs = _Attributes()
        if kind == _HISTOGRAM:
            metric.histogram.aggregation_temporality = _CUMULATIVE
            for (labels, t), point in joined.items():
                _histogram_point(metric.histogram.data_points.add(), attrs.of(labels), t, point)
            return metric
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
        return metric


def _simple(resource: tuple[str, str], name: str, kind: str, labels: Labels) -> _Series:
    attributes = _key_values(labels, 7)  # NumberDataPoint.attributes
    point_head = _varint(1 << 3 | 2) + _varint(len(attributes) + _POINT_TAIL.size) + attributes
    stale_head = _varint(1 << 3 | 2) + _varint(len(attributes) + _STALE_TAIL.size) + attributes
    return _Series(resource, _SIMPLE, name, kind, labels, point_head=point_head, stale_head=stale_head)


def _bound(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise MalformedData(f"{name}: the bucket bound or quantile {value!r} is not a number") from None


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
