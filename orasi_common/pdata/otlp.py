"""OTLP export requests: parse, count, merge and split, with the fewest Python steps.

Serialized export requests of one signal concatenate into a valid merged request (their only
top-level field is repeated), so merging never parses; splitting parses once and copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.message import DecodeError, Message

from orasi_common.errors import MalformedData
from orasi_common.pdata.signal import SPECS, Signal, SignalSpec


def parse_request(signal: Signal, data: bytes) -> Message:
    """Decode a binary OTLP export request; raise MalformedData if it is not one."""
    spec = SPECS[signal]
    request = spec.request_type()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedData(f"the body is not a valid protobuf {spec.request_type.__name__}: {exc}") from None
    return request


def metric_points(metric: Message) -> Any:
    """The sub-message that holds a Metric's data points (gauge, sum, ...), or None."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind) if kind else None


def count_items(signal: Signal, request: Message) -> int:
    """Spans, data points or log records in a request."""
    spec = SPECS[signal]
    scopes = (
        scope
        for resource in getattr(request, spec.resource_field)
        for scope in getattr(resource, spec.scope_field)
    )
    if signal is not Signal.METRICS:
        return sum(len(getattr(scope, spec.item_field)) for scope in scopes)
    total = 0
    for scope in scopes:
        for metric in scope.metrics:
            points = metric_points(metric)
            if points is not None:
                total += len(points.data_points)
    return total


def merge_serialized(parts: Iterable[bytes]) -> bytes:
    """Merge serialized export requests of one signal by concatenation."""
    return b"".join(parts)


def shell(message: Message, without: str) -> Message:
    """A copy of ``message`` with every field but ``without``."""
    out = type(message)()
    for field, value in message.ListFields():
        if field.name == without:
            continue
        if field.is_repeated:
            getattr(out, field.name).extend(value)
        elif field.message_type is not None:
            getattr(out, field.name).CopyFrom(value)
        else:
            setattr(out, field.name, value)
    return out


class _Chunker:
    """Fills requests of at most ``max_items`` items, re-creating resource and scope shells."""

    def __init__(self, spec: SignalSpec, max_items: int) -> None:
        self.spec = spec
        self.max_items = max_items
        self.done: list[Message] = []
        self._request = spec.request_type()
        self._room = max_items
        self._resource: Message | None = None
        self._scope: Message | None = None
        self._target: Any = None  # the scope message being filled in _request

    def room(self) -> int:
        return self._room

    def target(self, resource: Message, scope: Message) -> Any:
        """The scope in the current chunk that items of (resource, scope) go into."""
        if self._target is None or self._resource is not resource or self._scope is not scope:
            spec = self.spec
            out_resource = getattr(self._request, spec.resource_field).add()
            out_resource.CopyFrom(shell(resource, spec.scope_field))
            self._target = getattr(out_resource, spec.scope_field).add()
            self._target.CopyFrom(shell(scope, spec.item_field))
            self._resource, self._scope = resource, scope
        return self._target

    def used(self, items: int) -> None:
        self._room -= items
        if self._room <= 0:
            self.flush()

    def flush(self) -> None:
        if self._request.ListFields():
            self.done.append(self._request)
        self._request = self.spec.request_type()
        self._room = self.max_items
        self._target = None


def _items(spec: SignalSpec, request: Message) -> Iterator[tuple[Message, Message, Any]]:
    for resource in getattr(request, spec.resource_field):
        for scope in getattr(resource, spec.scope_field):
            for item in getattr(scope, spec.item_field):
                yield resource, scope, item


def split_request(signal: Signal, request: Message, max_items: int) -> list[Message]:
    """Split a request into requests of at most ``max_items`` items, keeping order.

    Resources and scopes are repeated in every chunk that holds their items; a metric with more
    data points than fit is split into several metrics of the same identity.
    """
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    spec = SPECS[signal]
    chunker = _Chunker(spec, max_items)
    for resource, scope, item in _items(spec, request):
        if signal is not Signal.METRICS:
            getattr(chunker.target(resource, scope), spec.item_field).append(item)
            chunker.used(1)
            continue
        points = metric_points(item)
        total = len(points.data_points) if points is not None else 0
        if total <= chunker.room():
            chunker.target(resource, scope).metrics.append(item)
            chunker.used(total)
            continue
        assert points is not None
        kind = item.WhichOneof("data")
        start = 0
        while start < total:
            take = min(chunker.room(), total - start)
            part = chunker.target(resource, scope).metrics.add()
            part.CopyFrom(shell(item, kind))
            part_points = getattr(part, kind)
            part_points.CopyFrom(shell(points, "data_points"))
            part_points.data_points.extend(points.data_points[start : start + take])
            start += take
            chunker.used(take)
    chunker.flush()
    return chunker.done
