"""Reading what a sink received: OTLP values as plain Python, and requests as flat item lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.common.v1 import common_pb2

from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp import metric_points


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as Python: str, int, float, bool, bytes, list, dict, or None (empty)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(key_values: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """A repeated KeyValue as a dict (the last value wins for a repeated key)."""
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass(frozen=True)
class Item:
    """One span, log record or metric (with its data points), with where it sat."""

    resource: Message
    scope: Message
    item: Message

    @property
    def resource_attributes(self) -> dict[str, Any]:
        resource: Any = self.resource
        return attributes(resource.resource.attributes)


def items(signal: Signal, requests: Iterable[Message]) -> Iterator[Item]:
    """Every item of ``requests``, in order (metrics: every Metric, not every data point)."""
    spec = SPECS[signal]
    for request in requests:
        for resource in getattr(request, spec.resource_field):
            for scope in getattr(resource, spec.scope_field):
                for item in getattr(scope, spec.item_field):
                    yield Item(resource, scope, item)


def data_points(metric: Message) -> list[Message]:
    points = metric_points(metric)
    return list(points.data_points) if points is not None else []


__all__ = ["Item", "any_value", "attributes", "data_points", "items"]
