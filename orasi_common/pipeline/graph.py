"""The pipeline graph: components wired from a ServiceConfig, started and stopped in order.

Receivers are one instance per id, shared by every pipeline that names them (fan-in); each hands
a signal's batches to the heads of all pipelines of that signal that list it (fan-out).
Processors are one instance per (pipeline, id). Exporters are one instance per id, shared by
every pipeline that ends in them (fan-in), and a pipeline with several exporters fans out.

Start: exporters, then processors from the last to the first, then receivers, then extensions.
Shutdown: the reverse — extensions, receivers, processors from the first to the last, exporters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from orasi_common.config.loader import ConfigError, format_validation_error
from orasi_common.config.model import ComponentConfig, ServiceConfig
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import (
    Component,
    Consumer,
    Exporter,
    Factories,
    Kind,
    Listening,
    Processor,
    Settings,
    component_type,
)
from orasi_common.pipeline.fanout import FanOut
from orasi_common.telemetry.metrics import Metrics


def pipeline_signal(pipeline_id: str) -> Signal | None:
    try:
        return Signal(pipeline_id.split("/", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class ResolvedConfig:
    """A ServiceConfig whose every component section was validated by its factory."""

    service: ServiceConfig
    receivers: Mapping[str, ComponentConfig]
    processors: Mapping[str, ComponentConfig]
    exporters: Mapping[str, ComponentConfig]
    extensions: Mapping[str, ComponentConfig]


def resolve(config: ServiceConfig, factories: Factories) -> ResolvedConfig:
    """Validate every component and pipeline (pure: no I/O); raise ConfigError naming paths."""
    problems: list[str] = []
    sections: dict[Kind, tuple[dict[str, Any], Mapping[str, Any]]] = {
        Kind.RECEIVER: (dict(config.receivers), factories.receivers),
        Kind.PROCESSOR: (dict(config.processors), factories.processors),
        Kind.EXPORTER: (dict(config.exporters), factories.exporters),
        Kind.EXTENSION: (dict(config.extensions), factories.extensions),
    }
    resolved: dict[Kind, dict[str, ComponentConfig]] = {kind: {} for kind in sections}
    for kind, (section, kind_factories) in sections.items():
        for component_id, raw in section.items():
            path = f"{kind.value}s.{component_id}"
            factory = kind_factories.get(component_type(component_id))
            if factory is None:
                known = ", ".join(sorted(kind_factories)) or "none"
                problems.append(
                    f"{path}: unknown {kind.value} type {component_type(component_id)!r} "
                    f"(this service has: {known})"
                )
                continue
            try:
                resolved[kind][component_id] = factory.config_type.model_validate(raw or {})
            except pydantic.ValidationError as exc:
                problems.extend(format_validation_error(exc, path, raw or {}))

    for extension_id in config.service.extensions:
        if extension_id not in config.extensions:
            problems.append(f"service.extensions: {extension_id!r} is not defined under extensions")

    for pipeline_id, pipeline in config.service.pipelines.items():
        path = f"service.pipelines.{pipeline_id}"
        signal = pipeline_signal(pipeline_id)
        if signal is None:
            problems.append(
                f"{path}: a pipeline id must start with traces, metrics or logs (e.g. traces/main)"
            )
            continue
        for kind, ids in (
            (Kind.RECEIVER, pipeline.receivers),
            (Kind.PROCESSOR, pipeline.processors),
            (Kind.EXPORTER, pipeline.exporters),
        ):
            section, kind_factories = sections[kind]
            for component_id in ids:
                if component_id not in section:
                    problems.append(
                        f"{path}.{kind.value}s: {component_id!r} is not defined under {kind.value}s"
                    )
                    continue
                factory = kind_factories.get(component_type(component_id))
                if factory is not None and signal not in factory.signals:
                    problems.append(f"{path}.{kind.value}s: {component_id!r} does not support {signal.value}")
            if len(set(ids)) != len(ids):
                problems.append(f"{path}.{kind.value}s: an id is listed twice")
    if not config.service.pipelines:
        problems.append("service.pipelines: at least one pipeline is required")
    if problems:
        raise ConfigError(problems)
    return ResolvedConfig(
        config,
        resolved[Kind.RECEIVER],
        resolved[Kind.PROCESSOR],
        resolved[Kind.EXPORTER],
        resolved[Kind.EXTENSION],
    )


@dataclass
class Pipeline:
    id: str
    signal: Signal
    receivers: list[str]
    processors: list[tuple[str, Processor]]
    exporters: list[str]
    head: Consumer


@dataclass
class Graph:
    """A built, not yet started, set of pipelines."""

    receivers: dict[str, Component]
    pipelines: list[Pipeline]
    exporters: dict[str, Exporter]
    extensions: dict[str, Component] = field(default_factory=dict)
    started: list[Component] = field(default_factory=list)
    listeners: list[Listening] = field(default_factory=list)  # outside the graph: the admin port

    @classmethod
    def build(cls, resolved: ResolvedConfig, factories: Factories, service: str, metrics: Metrics) -> Graph:
        extension_configs = {e: resolved.extensions[e] for e in resolved.service.service.extensions}

        def settings(component_id: str, kind: Kind, pipeline: str | None = None) -> Settings:
            logger = logging.getLogger(f"orasi.{service}.{kind.value}.{component_id}")
            return Settings(component_id, kind, service, metrics, logger, pipeline, extension_configs)

        exporters: dict[str, Exporter] = {}
        for exporter_id, config in resolved.exporters.items():
            if any(exporter_id in p.exporters for p in resolved.service.service.pipelines.values()):
                create_exporter = factories.exporters[component_type(exporter_id)].create
                exporters[exporter_id] = create_exporter(settings(exporter_id, Kind.EXPORTER), config)

        pipelines: list[Pipeline] = []
        for pipeline_id, spec in resolved.service.service.pipelines.items():
            signal = pipeline_signal(pipeline_id)
            assert signal is not None  # resolve() checked
            next_consumer: Consumer = FanOut([exporters[e] for e in spec.exporters])
            processors: list[tuple[str, Processor]] = []
            for processor_id in reversed(spec.processors):
                create_processor = factories.processors[component_type(processor_id)].create
                processor = create_processor(
                    settings(processor_id, Kind.PROCESSOR, pipeline_id),
                    resolved.processors[processor_id],
                    next_consumer,
                )
                processors.insert(0, (processor_id, processor))
                next_consumer = processor
            pipelines.append(
                Pipeline(
                    pipeline_id,
                    signal,
                    list(spec.receivers),
                    processors,
                    list(spec.exporters),
                    next_consumer,
                )
            )

        receivers: dict[str, Component] = {}
        for receiver_id, config in resolved.receivers.items():
            heads: dict[Signal, list[Consumer]] = {}
            for pipeline in pipelines:
                if receiver_id in pipeline.receivers:
                    heads.setdefault(pipeline.signal, []).append(pipeline.head)
            if heads:
                create_receiver = factories.receivers[component_type(receiver_id)].create
                consumers = {signal: FanOut(group) for signal, group in heads.items()}
                receivers[receiver_id] = create_receiver(
                    settings(receiver_id, Kind.RECEIVER), config, consumers
                )
        graph = cls(receivers, pipelines, exporters)
        for extension_id in resolved.service.service.extensions:
            create_extension = factories.extensions[component_type(extension_id)].create
            graph.extensions[extension_id] = create_extension(
                settings(extension_id, Kind.EXTENSION), resolved.extensions[extension_id], graph
            )
        return graph

    def exporter(self, exporter_id: str) -> Exporter:
        """The running exporter ``exporter_id`` (for extensions)."""
        try:
            return self.exporters[exporter_id]
        except KeyError:
            raise LookupError(f"no exporter {exporter_id!r} is in a pipeline") from None

    def components(self, component_id: str) -> list[Component]:
        """Every instance of ``component_id`` (``Host.components``)."""
        found: list[Component] = [
            processor for p in self.pipelines for pid, processor in p.processors if pid == component_id
        ]
        for kind in (self.receivers, self.exporters, self.extensions):
            if component_id in kind:
                found.append(kind[component_id])
        return found

    def listening(self) -> dict[str, str]:
        """Where the service answers so far (``Host.listening``)."""
        endpoints: dict[str, str] = {}
        for component in [*self.listeners, *self.receivers.values(), *self.extensions.values()]:
            if isinstance(component, Listening):
                for protocol, address in component.listening().items():
                    endpoints.setdefault(protocol, address)
        return endpoints

    def _start_order(self) -> list[Component]:
        order: list[Component] = list(self.exporters.values())
        for pipeline in self.pipelines:
            order.extend(processor for _, processor in reversed(pipeline.processors))
        order.extend(self.receivers.values())
        order.extend(self.extensions.values())
        return order

    async def start(self) -> None:
        """Start downstream first; on a failure, shut down what had started and re-raise."""
        for component in self._start_order():
            try:
                await component.start()
            except BaseException:
                await self.shutdown()
                raise
            self.started.append(component)

    async def shutdown(self) -> None:
        """Stop receivers first, then processors in pipeline order, then exporters."""
        while self.started:
            component = self.started.pop()
            try:
                await component.shutdown()
            except Exception:
                logging.getLogger("orasi.graph").exception(
                    "A component failed to shut down cleanly.",
                    extra={"component": type(component).__name__},
                )

    def describe(self) -> dict[str, Any]:
        """The graph as /debug/pipelines shows it."""
        return {
            "receivers": sorted(self.receivers),
            "exporters": sorted(self.exporters),
            "extensions": sorted(self.extensions),
            "pipelines": [
                {
                    "id": p.id,
                    "signal": p.signal.value,
                    "receivers": p.receivers,
                    "processors": [pid for pid, _ in p.processors],
                    "exporters": p.exporters,
                }
                for p in self.pipelines
            ],
            "started": len(self.started) == len(self._start_order()),
        }


__all__ = ["Batch", "Graph", "Pipeline", "ResolvedConfig", "resolve"]
