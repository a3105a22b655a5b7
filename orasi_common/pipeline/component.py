"""Component protocols and factories: the contract every receiver, processor and exporter keeps.

Lifecycle (the graph calls these; components never call each other's):

- ``start()`` acquires resources (binds ports, opens files, spawns tasks in its own TaskGroup).
  It is called once, downstream components first, and raises if the component cannot run.
- ``shutdown()`` stops taking new work, flushes what the component holds to its next consumer,
  and releases every resource. It is safe to call twice and safe to call without ``start()``.
  Upstream components are shut down first, so a component can still flush downstream.
- ``consume(batch)`` (processors and exporters) either accepts the batch — from then on the
  component owns it and is responsible for it — or raises an ``OrasiError`` that says whether the
  sender may retry; ``PartialSuccess`` means accepted but its ``rejected`` items (the rest is
  owned as after a return), and passes up unchanged to the receiver, which answers it. It is
  never called before ``start()`` returns or after ``shutdown()``.

Extensions (e.g. the bridge's query API) are not in pipelines: they start after every pipeline
component and shut down before them, and reach pipeline components through a ``Host``.

Factories are plain values; each service lists its factories in one module.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from orasi_common.config.model import ComponentConfig
from orasi_common.pdata import Batch, Signal
from orasi_common.telemetry.metrics import Metrics


@runtime_checkable
class Component(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


class Consumer(Protocol):
    async def consume(self, batch: Batch) -> None: ...


class Processor(Component, Consumer, Protocol):
    pass


class Exporter(Component, Consumer, Protocol):
    pass


class Kind(enum.StrEnum):
    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    EXTENSION = "extension"


@dataclass(frozen=True)
class Settings:
    """What the service injects into a component (as opposed to Config, what users write)."""

    id: str
    kind: Kind
    service: str
    metrics: Metrics
    logger: logging.Logger
    pipeline: str | None = None  # set for processors, which are created once per pipeline
    # The service's started extensions' configurations, by id: what a component may default to
    # (an etcd resolver takes the `etcd` extension's endpoints and region).
    extensions: Mapping[str, ComponentConfig] = field(default_factory=dict)


ALL_SIGNALS = frozenset(Signal)
ConfigType: TypeAlias = type[ComponentConfig]


@dataclass(frozen=True)
class ReceiverFactory:
    type: str
    config_type: ConfigType
    create: Callable[[Settings, Any, Mapping[Signal, Consumer]], Component]
    signals: frozenset[Signal] = ALL_SIGNALS
    kind: Kind = Kind.RECEIVER


@dataclass(frozen=True)
class ProcessorFactory:
    type: str
    config_type: ConfigType
    create: Callable[[Settings, Any, Consumer], Processor]
    signals: frozenset[Signal] = ALL_SIGNALS
    kind: Kind = Kind.PROCESSOR


@dataclass(frozen=True)
class ExporterFactory:
    type: str
    config_type: ConfigType
    create: Callable[[Settings, Any], Exporter]
    signals: frozenset[Signal] = ALL_SIGNALS
    kind: Kind = Kind.EXPORTER


@runtime_checkable
class Listening(Protocol):
    """A component that accepts connections: where, once started, by protocol."""

    def listening(self) -> Mapping[str, str]:
        """Protocol name (``otlp_grpc``, ``otlp_http``, ``otap``, ``query_http``, ``admin``, the
        names of ``control.registration.Endpoints``) → ``host:port`` it is bound to, the host as
        configured (possibly ``0.0.0.0``). Empty before ``start()``."""
        ...


class Host(Protocol):
    """What an extension may ask of the service it runs in."""

    def exporter(self, exporter_id: str) -> Exporter: ...

    def components(self, component_id: str) -> list[Component]:
        """Every instance of the receiver, processor, exporter or extension ``component_id`` (a
        processor has one per pipeline that lists it); empty when the service has none."""
        ...

    def listening(self) -> Mapping[str, str]:
        """Where the service answers so far: every started ``Listening`` component's endpoints
        and the admin port's (the first component to name a protocol keeps it)."""
        ...


@dataclass(frozen=True)
class ExtensionFactory:
    type: str
    config_type: ConfigType
    create: Callable[[Settings, Any, Host], Component]
    signals: frozenset[Signal] = ALL_SIGNALS
    kind: Kind = Kind.EXTENSION


Factory = ReceiverFactory | ProcessorFactory | ExporterFactory | ExtensionFactory


@dataclass(frozen=True)
class Factories:
    """The components one service can build, by type name."""

    receivers: Mapping[str, ReceiverFactory]
    processors: Mapping[str, ProcessorFactory]
    exporters: Mapping[str, ExporterFactory]
    extensions: Mapping[str, ExtensionFactory]

    @classmethod
    def of(cls, *factories: Factory) -> Factories:
        by_kind: dict[Kind, dict[str, Any]] = {kind: {} for kind in Kind}
        for factory in factories:
            by_kind[factory.kind][factory.type] = factory
        return cls(
            by_kind[Kind.RECEIVER],
            by_kind[Kind.PROCESSOR],
            by_kind[Kind.EXPORTER],
            by_kind[Kind.EXTENSION],
        )


def component_type(component_id: str) -> str:
    """``otlp/primary`` → ``otlp``."""
    return component_id.split("/", 1)[0]
