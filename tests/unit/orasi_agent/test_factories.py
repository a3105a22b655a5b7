"""Conformance of every component the agent can build: config shape and lifecycle.

For each factory in orasi_agent.factories.FACTORIES, with a minimal valid config: shutdown
without start is safe; create → start → shutdown → shutdown works; and the same again with a new
instance (ports and tasks were released).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from orasi_agent.factories import FACTORIES
from orasi_common.config.model import ComponentConfig
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Factory, Kind
from orasi_common.telemetry.metrics import Metrics

from ..doubles import RecordingConsumer, make_settings

MINIMAL: dict[tuple[Kind, str], dict[str, Any]] = {
    (Kind.RECEIVER, "otlp"): {
        "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    },
    (Kind.PROCESSOR, "memory_limiter"): {"limit_mib": 1024 * 1024, "check_interval": 3600},
    (Kind.PROCESSOR, "batch"): {},
    (Kind.PROCESSOR, "resource"): {},
    (Kind.EXPORTER, "otlp"): {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}},
    (Kind.EXPORTER, "otlphttp"): {"endpoint": "http://127.0.0.1:1"},
}

ALL: list[Factory] = [
    *FACTORIES.receivers.values(),
    *FACTORIES.processors.values(),
    *FACTORIES.exporters.values(),
]
IDS = [f"{f.kind.value}-{f.type}" for f in ALL]


def test_every_factory_has_a_minimal_config_here() -> None:
    assert {(f.kind, f.type) for f in ALL} == set(MINIMAL)


def test_factories_are_listed_under_their_type() -> None:
    groups: tuple[tuple[Kind, Mapping[str, Factory]], ...] = (
        (Kind.RECEIVER, FACTORIES.receivers),
        (Kind.PROCESSOR, FACTORIES.processors),
        (Kind.EXPORTER, FACTORIES.exporters),
        (Kind.EXTENSION, FACTORIES.extensions),
    )
    for kind, group in groups:
        for type_name, factory in group.items():
            assert factory.type == type_name
            assert factory.kind is kind


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in found:
                found.extend(m for m in _models(candidate) if m not in found)
    return found


@pytest.mark.parametrize("factory", ALL, ids=IDS)
def test_config_is_strict_frozen_and_described(factory: Factory) -> None:
    for model in _models(factory.config_type):
        assert issubclass(model, ComponentConfig), model
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
    with pytest.raises(ValueError, match=r"unknown_key_xyz|extra"):
        factory.config_type.model_validate({**MINIMAL[(factory.kind, factory.type)], "unknown_key_xyz": 1})


def _create(factory: Factory, metrics: Metrics) -> Any:
    config = factory.config_type.model_validate(MINIMAL[(factory.kind, factory.type)])
    settings = make_settings(
        factory.type, factory.kind, metrics, pipeline="traces" if factory.kind is Kind.PROCESSOR else None
    )
    if factory.kind is Kind.RECEIVER:
        return factory.create(settings, config, {signal: RecordingConsumer() for signal in Signal})  # type: ignore[call-arg]
    if factory.kind is Kind.PROCESSOR:
        return factory.create(settings, config, RecordingConsumer())  # type: ignore[call-arg]
    if factory.kind is Kind.EXTENSION:
        return factory.create(settings, config, _NoExporters())  # type: ignore[call-arg]
    return factory.create(settings, config)  # type: ignore[call-arg]


class _NoExporters:
    """A Host without exporters, for extensions created on their own."""

    def exporter(self, exporter_id: str) -> Any:
        raise LookupError(exporter_id)


@pytest.mark.parametrize("factory", ALL, ids=IDS)
async def test_lifecycle_twice(factory: Factory) -> None:
    metrics = Metrics("agent")
    component = _create(factory, metrics)
    await component.shutdown()  # safe without start
    await component.start()
    if factory.kind is Kind.RECEIVER:
        assert component.grpc_port and component.http_port  # port 0 resolved to real ports
    await component.shutdown()
    await component.shutdown()  # safe twice

    again = _create(factory, metrics)
    await again.start()
    await again.shutdown()
    await again.shutdown()
