"""The resource processor: attributes detected from the environment, and static ones."""

from __future__ import annotations

from typing import Any

import pytest

from orasi_agent.processors.resource import FACTORY, Config, ResourceProcessor
from orasi_agent.processors.resource import processor as resource_module
from orasi_agent.processors.resource.processor import detect_attributes
from orasi_common.pdata import SPECS, Batch, Signal

from ....builders import request_with
from ....doubles import RecordingConsumer, make_settings

K8S_ENV = {
    "K8S_NODE_NAME": "node-1",
    "NODE_NAME": "ignored",
    "K8S_POD_NAME": "agent-xyz",
    "K8S_POD_UID": "uid-1",
    "K8S_POD_NAMESPACE": "orasi-agents",
    "AWS_REGION": "us-west-2",
    "ORASI_AGENT_ID": "agent-7",
}

ENV_NAMES = [
    "NODE_NAME",
    "ORASI_REGION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ORASI_AGENT_ID",
]


def test_factory() -> None:
    assert FACTORY.type == "resource"


def test_node_mode_detects_node_region_and_agent() -> None:
    assert detect_attributes(Config(), K8S_ENV) == {
        "k8s.node.name": "node-1",
        "host.name": "node-1",
        "cloud.region": "us-west-2",
        "orasi.agent.id": "agent-7",
    }


def test_pod_mode_adds_the_pod() -> None:
    found = detect_attributes(Config(kubernetes_mode="pod"), K8S_ENV)
    assert found["k8s.pod.name"] == "agent-xyz"
    assert found["k8s.pod.uid"] == "uid-1"
    assert found["k8s.namespace.name"] == "orasi-agents"
    assert found["k8s.node.name"] == "node-1"


def test_fallbacks_and_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource_module.socket, "gethostname", lambda: "my-host")
    env = {
        "NODE_NAME": "n2",
        "ORASI_REGION": "eu-west-1",
        "AWS_REGION": "us-east-1",
        "K8S_NAMESPACE_NAME": "ns",
    }
    found = detect_attributes(Config(kubernetes_mode="pod"), env)
    assert found == {
        "k8s.node.name": "n2",
        "host.name": "n2",
        "cloud.region": "eu-west-1",
        "orasi.agent.id": "my-host",
        "k8s.namespace.name": "ns",
    }


def test_empty_environment_detects_only_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource_module.socket, "gethostname", lambda: "my-host")
    assert detect_attributes(Config(), {"K8S_NODE_NAME": ""}) == {"orasi.agent.id": "my-host"}


def _attributes(batch: Batch, index: int = 0) -> dict[str, Any]:
    resource = getattr(batch.message, SPECS[batch.signal].resource_field)[index].resource
    out: dict[str, Any] = {}
    for kv in resource.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


@pytest.fixture
def k8s_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in K8S_ENV.items():
        monkeypatch.setenv(name, value)


async def _run(config: Config, batch: Batch) -> Batch:
    consumer = RecordingConsumer()
    processor = ResourceProcessor(make_settings("resource"), config, consumer)
    await processor.start()
    await processor.consume(batch)
    await processor.shutdown()
    await processor.shutdown()
    (out,) = consumer.batches
    return out


@pytest.mark.usefixtures("k8s_environ")
@pytest.mark.parametrize("signal", list(Signal))
async def test_every_resource_is_enriched(signal: Signal) -> None:
    batch = Batch.from_serialized(signal, request_with(signal, 4, resources=2).SerializeToString())
    out = await _run(Config(), batch)
    for index in (0, 1):
        attributes = _attributes(out, index)
        assert attributes["service.name"] == f"svc-{index}"
        assert attributes["k8s.node.name"] == "node-1"
        assert attributes["cloud.region"] == "us-west-2"
        assert "k8s.pod.name" not in attributes  # node mode: the agent's pod is not the sender's
    # the bytes that go on are the enriched ones
    assert SPECS[signal].request_type.FromString(out.raw) == out.message
    assert out.items == 4


@pytest.mark.usefixtures("k8s_environ")
async def test_pod_mode_enriches_with_the_pod() -> None:
    out = await _run(
        Config(kubernetes_mode="pod"), Batch.from_message(Signal.TRACES, request_with(Signal.TRACES, 1))
    )
    assert _attributes(out)["k8s.pod.name"] == "agent-xyz"


@pytest.mark.usefixtures("k8s_environ")
async def test_existing_attributes_are_kept_unless_override() -> None:
    request = request_with(Signal.LOGS, 1)
    request.resource_logs[0].resource.attributes.add(key="cloud.region").value.string_value = "sender-region"
    kept = await _run(Config(), Batch.from_message(Signal.LOGS, request))
    assert _attributes(kept)["cloud.region"] == "sender-region"
    assert [kv.key for kv in kept.message.resource_logs[0].resource.attributes].count("cloud.region") == 1
    replaced = await _run(
        Config(override=True), Batch.from_message(Signal.LOGS, request_with(Signal.LOGS, 1))
    )
    assert _attributes(replaced)["cloud.region"] == "us-west-2"
    request2 = request_with(Signal.LOGS, 1)
    request2.resource_logs[0].resource.attributes.add(key="cloud.region").value.string_value = "sender-region"
    overridden = await _run(Config(override=True), Batch.from_message(Signal.LOGS, request2))
    assert _attributes(overridden)["cloud.region"] == "us-west-2"


@pytest.mark.usefixtures("k8s_environ")
async def test_static_attributes_are_typed_and_win_over_detected() -> None:
    config = Config.model_validate(
        {"attributes": {"env": "prod", "shard": 3, "ratio": 0.5, "canary": True, "cloud.region": "static"}}
    )
    out = await _run(config, Batch.from_message(Signal.TRACES, request_with(Signal.TRACES, 1)))
    attributes = _attributes(out)
    assert attributes["env"] == "prod"
    assert attributes["shard"] == 3 and isinstance(attributes["shard"], int)
    assert attributes["ratio"] == 0.5
    assert attributes["canary"] is True
    assert attributes["cloud.region"] == "static"
    kinds = {kv.key: kv.value.WhichOneof("value") for kv in out.message.resource_spans[0].resource.attributes}
    assert (kinds["env"], kinds["shard"], kinds["ratio"], kinds["canary"]) == (
        "string_value",
        "int_value",
        "double_value",
        "bool_value",
    )


async def test_nothing_to_add_leaves_the_bytes_alone() -> None:
    batch = Batch.from_serialized(Signal.TRACES, request_with(Signal.TRACES, 1).SerializeToString())
    raw = batch.raw
    out = await _run(Config(detect=False), batch)
    assert out.raw is raw


async def test_resource_without_a_resource_message_gets_one(k8s_environ: None) -> None:
    request = SPECS[Signal.TRACES].request_type()
    request.resource_spans.add().scope_spans.add().spans.add(name="s")
    out = await _run(Config(), Batch.from_message(Signal.TRACES, request))
    assert _attributes(out)["k8s.node.name"] == "node-1"
