"""Conformance of every component any service can build: config shape and lifecycle.

For each factory of the agent, the gateway and the bridge, with a minimal valid config: shutdown
without start is safe; create → start → shutdown → shutdown works; and the same again with a new
instance (ports and tasks were released).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from orasi_agent.factories import FACTORIES as AGENT
from orasi_bridge.factories import FACTORIES as BRIDGE
from orasi_bridge.lake import LakeWriter
from orasi_common.config.model import ComponentConfig
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Factory, Kind, Listening
from orasi_common.telemetry.metrics import Metrics
from orasi_gateway.factories import FACTORIES as GATEWAY

from .doubles import RecordingConsumer, make_settings

RECEIVER = {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}
# The lake starts on a SQLite catalog and a local warehouse: {tmp} is the test's directory.
LAKE = {"catalog_uri": "sqlite:///{tmp}/catalog.db", "warehouse": "file://{tmp}/warehouse"}

MINIMAL: dict[tuple[Kind, str], dict[str, Any]] = {
    (Kind.RECEIVER, "otlp"): RECEIVER,
    (Kind.RECEIVER, "otap"): RECEIVER,
    (Kind.RECEIVER, "prometheus_remote_write"): {"endpoint": "127.0.0.1:0"},
    (Kind.RECEIVER, "zipkin"): {"endpoint": "127.0.0.1:0"},
    (Kind.RECEIVER, "filelog"): {"include": ["/nonexistent-orasi/*.log"], "checkpoint_directory": "{tmp}/cp"},
    (Kind.RECEIVER, "syslog"): {"tcp": {"endpoint": "127.0.0.1:0"}, "udp": {"endpoint": "127.0.0.1:0"}},
    (Kind.PROCESSOR, "memory_limiter"): {"limit_mib": 1024 * 1024, "check_interval": 3600},
    (Kind.PROCESSOR, "batch"): {},
    (Kind.PROCESSOR, "resource"): {},
    (Kind.EXPORTER, "otlp"): {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}},
    (Kind.EXPORTER, "otap"): {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}},
    (Kind.EXPORTER, "otlphttp"): {"endpoint": "http://127.0.0.1:1"},
    (Kind.EXPORTER, "loadbalancing"): {"resolver": {"static": {"endpoints": ["127.0.0.1:1", "127.0.0.1:2"]}}},
    (Kind.EXPORTER, "lake"): LAKE,
    (Kind.EXTENSION, "query_api"): {"endpoint": "127.0.0.1:0"},
    (Kind.EXTENSION, "etcd"): {"endpoints": []},  # the in-process registry (etcd: integration tests)
    (Kind.EXTENSION, "auth"): {"store": "sqlite:///{tmp}/tokens.db"},
    (Kind.EXTENSION, "ratelimit"): {},
}


def _all_factories() -> list[Factory]:
    found: dict[tuple[Kind, str], Factory] = {}
    for factories in (AGENT, GATEWAY, BRIDGE):
        for group in (factories.receivers, factories.processors, factories.exporters, factories.extensions):
            for factory in group.values():
                found.setdefault((factory.kind, factory.type), factory)
    return list(found.values())


ALL = _all_factories()
IDS = [f"{f.kind.value}-{f.type}" for f in ALL]


def _config(factory: Factory, tmp: str) -> dict[str, Any]:
    return {
        key: value.format(tmp=tmp) if isinstance(value, str) else value
        for key, value in MINIMAL[(factory.kind, factory.type)].items()
    }


def test_every_factory_has_a_minimal_config_here() -> None:
    assert {(f.kind, f.type) for f in ALL} == set(MINIMAL)


@pytest.mark.parametrize("factories", [AGENT, GATEWAY, BRIDGE], ids=["agent", "gateway", "bridge"])
def test_factories_are_listed_under_their_type(factories: Any) -> None:
    groups: tuple[tuple[Kind, Mapping[str, Factory]], ...] = (
        (Kind.RECEIVER, factories.receivers),
        (Kind.PROCESSOR, factories.processors),
        (Kind.EXPORTER, factories.exporters),
        (Kind.EXTENSION, factories.extensions),
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
        factory.config_type.model_validate({**_config(factory, "/tmp"), "unknown_key_xyz": 1})


def _create(factory: Factory, metrics: Metrics, tmp: str) -> Any:
    config = factory.config_type.model_validate(_config(factory, tmp))
    settings = make_settings(
        factory.type, factory.kind, metrics, pipeline="traces" if factory.kind is Kind.PROCESSOR else None
    )
    if factory.kind is Kind.RECEIVER:
        return factory.create(settings, config, {signal: RecordingConsumer() for signal in Signal})  # type: ignore[call-arg]
    if factory.kind is Kind.PROCESSOR:
        return factory.create(settings, config, RecordingConsumer())  # type: ignore[call-arg]
    if factory.kind is Kind.EXTENSION:
        return factory.create(settings, config, _LakeHost(metrics, tmp))  # type: ignore[call-arg]
    return factory.create(settings, config)  # type: ignore[call-arg]


class _LakeHost:
    """A Host whose only exporter is a (not started) lake writer, for the query API, and that
    listens on one admin port (for the etcd extension)."""

    def listening(self) -> dict[str, str]:
        return {"admin": "0.0.0.0:13133"}

    def __init__(self, metrics: Metrics, tmp: str) -> None:
        self._metrics, self._tmp = metrics, tmp

    def exporter(self, exporter_id: str) -> Any:
        lake = next(f for f in ALL if f.kind is Kind.EXPORTER and f.type == "lake")
        writer = _create(lake, self._metrics, self._tmp)
        assert isinstance(writer, LakeWriter)
        return writer


@pytest.mark.parametrize("factory", ALL, ids=IDS)
async def test_lifecycle_twice(factory: Factory, tmp_path: Any) -> None:
    metrics = Metrics("agent")
    component = _create(factory, metrics, str(tmp_path))
    await component.shutdown()  # safe without start
    await component.start()
    if factory.kind is Kind.RECEIVER and isinstance(component, Listening):
        endpoints = component.listening()  # port 0 resolved to real ports
        assert endpoints and not any(endpoint.endswith(":0") for endpoint in endpoints.values())
    await component.shutdown()
    await component.shutdown()  # safe twice

    again = _create(factory, metrics, str(tmp_path))
    await again.start()
    await again.shutdown()
    await again.shutdown()
