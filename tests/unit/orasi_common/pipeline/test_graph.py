"""The pipeline graph, built from config with recording test components."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import Field

from orasi_common.config import ConfigError, parse_config
from orasi_common.config.model import ComponentConfig
from orasi_common.errors import MalformedData, OrasiError, Throttled, Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import (
    Consumer,
    ExporterFactory,
    ExtensionFactory,
    Factories,
    Host,
    ProcessorFactory,
    ReceiverFactory,
    Settings,
    component_type,
)
from orasi_common.pipeline.fanout import FanOut
from orasi_common.pipeline.graph import Graph, pipeline_signal, resolve
from orasi_common.telemetry.metrics import Metrics

from ...builders import batch_with
from ...doubles import RecordingConsumer


class FakeConfig(ComponentConfig):
    fail_start: bool = Field(default=False, description="Raise from start().")
    fail_shutdown: bool = Field(default=False, description="Raise from shutdown().")
    tag: str = Field(default="", description="Added to span names by processors.")


@dataclass
class World:
    """Everything the fake components did, in order."""

    log: list[tuple[str, str]] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)


class _Fake:
    def __init__(self, world: World, settings: Settings, config: FakeConfig) -> None:
        self.world = world
        self.name = f"{settings.pipeline}:{settings.id}" if settings.pipeline else settings.id
        self.settings = settings
        self.config = config
        world.components[self.name] = self

    async def start(self) -> None:
        self.world.log.append(("start", self.name))
        if self.config.fail_start:
            raise OSError(f"{self.name} cannot start")

    async def shutdown(self) -> None:
        self.world.log.append(("shutdown", self.name))
        if self.config.fail_shutdown:
            raise RuntimeError(f"{self.name} cannot stop")


class FakeReceiver(_Fake):
    def __init__(
        self, world: World, settings: Settings, config: FakeConfig, consumers: Mapping[Signal, Consumer]
    ):
        super().__init__(world, settings, config)
        self.consumers = consumers


class FakeProcessor(_Fake):
    def __init__(self, world: World, settings: Settings, config: FakeConfig, next_consumer: Consumer):
        super().__init__(world, settings, config)
        self.next = next_consumer

    async def consume(self, batch: Batch) -> None:
        self.world.log.append(("consume", self.name))
        if self.config.tag and batch.signal is Signal.TRACES:
            for rs in batch.mutable_message().resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        span.name += self.config.tag
        await self.next.consume(batch)


class FakeExporter(_Fake):
    def __init__(self, world: World, settings: Settings, config: FakeConfig) -> None:
        super().__init__(world, settings, config)
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.world.log.append(("consume", self.name))
        self.batches.append(batch)


class FakeExtension(_Fake):
    def __init__(self, world: World, settings: Settings, config: FakeConfig, host: Host) -> None:
        super().__init__(world, settings, config)
        self.host = host


def fake_factories(world: World) -> Factories:
    return Factories.of(
        ReceiverFactory("in", FakeConfig, lambda s, c, consumers: FakeReceiver(world, s, c, consumers)),
        ProcessorFactory("proc", FakeConfig, lambda s, c, n: FakeProcessor(world, s, c, n)),
        ProcessorFactory(
            "tracesonly",
            FakeConfig,
            lambda s, c, n: FakeProcessor(world, s, c, n),
            signals=frozenset({Signal.TRACES}),
        ),
        ExporterFactory("out", FakeConfig, lambda s, c: FakeExporter(world, s, c)),
        ExtensionFactory("ext", FakeConfig, lambda s, c, host: FakeExtension(world, s, c, host)),
    )


CONFIG = """
receivers:
  in: {}
  in/unused: {}
processors:
  proc/a: {tag: "+a"}
  proc/b: {tag: "+b"}
exporters:
  out/1: {}
  out/2: {}
  out/unused: {}
service:
  pipelines:
    traces:
      receivers: [in]
      processors: [proc/a, proc/b]
      exporters: [out/1, out/2]
    logs:
      receivers: [in]
      processors: [proc/a]
      exporters: [out/2]
"""


def build(text: str = CONFIG) -> tuple[World, Graph]:
    world = World()
    factories = fake_factories(world)
    graph = Graph.build(
        resolve(parse_config(text, environ={}), factories), factories, "agent", Metrics("agent")
    )
    return world, graph


def names(log: list[tuple[str, str]], action: str) -> list[str]:
    return [name for what, name in log if what == action]


def test_component_type_and_pipeline_signal() -> None:
    assert component_type("otlp/primary") == "otlp"
    assert component_type("otlp") == "otlp"
    assert pipeline_signal("traces/x") is Signal.TRACES
    assert pipeline_signal("metrics") is Signal.METRICS
    assert pipeline_signal("spans") is None


def test_build_creates_what_pipelines_use() -> None:
    world, graph = build()
    assert sorted(graph.receivers) == ["in"]
    assert sorted(graph.exporters) == ["out/1", "out/2"]
    # processors are one instance per (pipeline, id)
    assert sorted(n for n in world.components if ":" in n) == [
        "logs:proc/a",
        "traces:proc/a",
        "traces:proc/b",
    ]
    assert world.components["logs:proc/a"] is not world.components["traces:proc/a"]
    receiver = world.components["in"]
    assert set(receiver.consumers) == {Signal.TRACES, Signal.LOGS}
    assert world.log == []  # building starts nothing


def test_describe() -> None:
    _, graph = build()
    described = graph.describe()
    assert described["receivers"] == ["in"]
    assert described["exporters"] == ["out/1", "out/2"]
    assert described["pipelines"][0] == {
        "id": "traces",
        "signal": "traces",
        "receivers": ["in"],
        "processors": ["proc/a", "proc/b"],
        "exporters": ["out/1", "out/2"],
    }
    assert described["started"] is False


async def test_start_downstream_first_and_shutdown_receivers_first() -> None:
    world, graph = build()
    await graph.start()
    started = names(world.log, "start")
    assert started == ["out/1", "out/2", "traces:proc/b", "traces:proc/a", "logs:proc/a", "in"]
    assert graph.describe()["started"] is True
    world.log.clear()
    await graph.shutdown()
    stopped = names(world.log, "shutdown")
    assert stopped[0] == "in"
    assert set(stopped[-2:]) == {"out/1", "out/2"}
    assert stopped.index("traces:proc/a") < stopped.index("traces:proc/b")  # first to last
    assert sorted(stopped) == sorted(started)
    world.log.clear()
    await graph.shutdown()  # a second shutdown does nothing
    assert world.log == []


async def test_data_flows_through_processors_in_order() -> None:
    world, graph = build()
    await graph.start()
    receiver = world.components["in"]
    await receiver.consumers[Signal.TRACES].consume(batch_with(Signal.TRACES, 2, prefix=""))
    consumed = names(world.log, "consume")
    assert consumed[:2] == ["traces:proc/a", "traces:proc/b"]
    assert sorted(consumed[2:]) == ["out/1", "out/2"]
    batch = world.components["out/1"].batches[0]
    assert batch.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0+a+b"
    await receiver.consumers[Signal.LOGS].consume(batch_with(Signal.LOGS, 1))
    assert len(world.components["out/2"].batches) == 2
    assert len(world.components["out/1"].batches) == 1
    await graph.shutdown()


async def test_fan_out_gives_each_exporter_its_own_copy() -> None:
    world, graph = build()
    await graph.start()
    await world.components["in"].consumers[Signal.TRACES].consume(batch_with(Signal.TRACES, 1, prefix=""))
    (one,) = world.components["out/1"].batches
    (two,) = world.components["out/2"].batches
    assert one is not two
    assert one.batch_id == two.batch_id
    one.mutable_message().resource_spans[0].scope_spans[0].spans[0].name = "changed by out/1"
    assert two.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0+a+b"
    await graph.shutdown()


async def test_receiver_feeding_two_pipelines_of_one_signal() -> None:
    text = """
receivers: {in: {}}
processors: {proc: {tag: "+x"}}
exporters: {out/1: {}, out/2: {}}
service:
  pipelines:
    traces/x: {receivers: [in], processors: [proc], exporters: [out/1]}
    traces/plain: {receivers: [in], exporters: [out/2]}
"""
    world, graph = build(text)
    await graph.start()
    await world.components["in"].consumers[Signal.TRACES].consume(batch_with(Signal.TRACES, 1, prefix=""))
    (tagged,) = world.components["out/1"].batches
    (plain,) = world.components["out/2"].batches
    assert tagged.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0+x"
    assert plain.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0"
    await graph.shutdown()


async def test_failing_start_shuts_down_what_started() -> None:
    text = CONFIG.replace('proc/b: {tag: "+b"}', "proc/b: {fail_start: true}")
    world, graph = build(text)
    with pytest.raises(OSError, match="cannot start"):
        await graph.start()
    assert names(world.log, "start") == ["out/1", "out/2", "traces:proc/b"]
    assert sorted(names(world.log, "shutdown")) == ["out/1", "out/2"]
    assert "in" not in names(world.log, "start")
    assert graph.started == []


async def test_failing_shutdown_does_not_stop_the_others() -> None:
    text = CONFIG.replace('proc/a: {tag: "+a"}', "proc/a: {fail_shutdown: true}")
    world, graph = build(text)
    await graph.start()
    await graph.shutdown()
    assert sorted(names(world.log, "shutdown")) == sorted(names(world.log, "start"))


async def test_extensions_start_last_stop_first_and_reach_exporters() -> None:
    text = CONFIG.replace("service:\n", "extensions:\n  ext: {}\nservice:\n  extensions: [ext]\n")
    world, graph = build(text)
    extension = world.components["ext"]
    assert extension.host.exporter("out/1") is world.components["out/1"]
    with pytest.raises(LookupError):
        extension.host.exporter("out/unused")  # built only when a pipeline uses it
    await graph.start()
    assert names(world.log, "start")[-2:] == ["in", "ext"]
    await graph.shutdown()
    assert names(world.log, "shutdown")[:2] == ["ext", "in"]


def test_unknown_extension_type() -> None:
    text = CONFIG.replace("service:\n", "extensions:\n  zpages: {}\nservice:\n  extensions: [zpages]\n")
    with pytest.raises(ConfigError) as caught:
        resolve(parse_config(text, environ={}), fake_factories(World()))
    assert caught.value.problems[0].startswith("extensions.zpages: unknown extension type 'zpages'")


def test_processor_without_the_signal_is_refused() -> None:
    world = World()
    text = CONFIG.replace(
        "processors: [proc/a]\n      exporters: [out/2]", "processors: [tracesonly]\n      exporters: [out/2]"
    )
    text = text.replace("processors:\n  proc/a", "processors:\n  tracesonly: {}\n  proc/a")
    with pytest.raises(ConfigError) as caught:
        resolve(parse_config(text, environ={}), fake_factories(world))
    assert caught.value.problems == ["service.pipelines.logs.processors: 'tracesonly' does not support logs"]


# --- FanOut -----------------------------------------------------------------------------------------


async def test_fan_out_of_one_passes_the_batch_itself() -> None:
    sink = RecordingConsumer()
    batch = batch_with(Signal.TRACES, 1)
    await FanOut([sink]).consume(batch)
    assert sink.batches == [batch]
    assert sink.batches[0] is batch


async def test_fan_out_raises_the_retryable_refusal_first() -> None:
    permanent = RecordingConsumer([MalformedData("bad")])
    retryable = RecordingConsumer([Throttled("later", retry_after=1)])
    accepting = RecordingConsumer()
    with pytest.raises(Throttled):
        await FanOut([permanent, retryable, accepting]).consume(batch_with(Signal.TRACES, 1, prefix=""))
    assert permanent.calls == retryable.calls == accepting.calls == 1  # every consumer was tried
    assert accepting.items == 1


async def test_fan_out_raises_the_first_permanent_refusal() -> None:
    first = RecordingConsumer([MalformedData("first")])
    second = RecordingConsumer([OrasiError("second")])
    with pytest.raises(MalformedData, match="first"):
        await FanOut([first, second, RecordingConsumer()]).consume(batch_with(Signal.TRACES, 1, prefix=""))


async def test_fan_out_copies_for_each_consumer() -> None:
    a, b = RecordingConsumer(), RecordingConsumer([Unavailable("x")])
    batch = batch_with(Signal.LOGS, 2)
    with pytest.raises(Unavailable):
        await FanOut([a, b]).consume(batch)
    assert a.batches[0] is not batch
    assert a.batches[0].raw == batch.raw


def test_components_see_the_configs_of_the_started_extensions() -> None:
    text = CONFIG.replace(
        "service:\n", "extensions:\n  ext: {tag: x}\n  ext/off: {}\nservice:\n  extensions: [ext]\n"
    )
    world, _ = build(text)
    extensions = world.components["out/1"].settings.extensions
    assert list(extensions) == ["ext"] and extensions["ext"].tag == "x"  # ext/off is not started
