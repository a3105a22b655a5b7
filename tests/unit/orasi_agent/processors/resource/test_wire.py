"""The wire-level resource edit against the message-based one it replaces, on generated and
corpus requests: the edited bytes must parse to what editing the parsed message makes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.message import Message

from orasi_agent.processors.resource import Config, ResourceProcessor
from orasi_agent.processors.resource.wire import (
    ResourceEditor,
    WireEditError,
    encode_varint,
    read_varint,
)
from orasi_common.bench import corpus
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.processors.batch import BatchProcessor
from orasi_common.processors.batch import Config as BatchConfig
from orasi_common.testing.shared import shared_path

from ....builders import request_with
from ....doubles import RecordingConsumer, make_settings

STATIC = {"cloud.region": "static-region", "shard": 3, "ratio": 0.5, "canary": True, "service.name": "mine"}


def _processor(override: bool, attributes: dict[str, Any] | None = None) -> ResourceProcessor:
    config = Config.model_validate(
        {"detect": False, "override": override, "attributes": STATIC if attributes is None else attributes}
    )
    processor = ResourceProcessor(make_settings("resource"), config, RecordingConsumer())
    asyncio.run(processor.start())
    return processor


def _by_message(processor: ResourceProcessor, signal: Signal, data: bytes) -> Message:
    batch = Batch.from_serialized(signal, data)
    processor._enrich_message(batch)
    return batch.message


def _by_wire(processor: ResourceProcessor, signal: Signal, data: bytes) -> tuple[Batch, Message]:
    batch = Batch.from_serialized(signal, data)
    processor.enrich(batch)
    assert batch._message is None or batch.raw is data  # the bytes were edited, or left alone
    return batch, SPECS[signal].request_type.FromString(batch.raw)


def _assert_same(
    signal: Signal, data: bytes, override: bool, attributes: dict[str, Any] | None = None
) -> None:
    processor = _processor(override, attributes)
    expected = _by_message(processor, signal, data)
    batch, edited = _by_wire(processor, signal, data)
    assert edited == expected
    assert batch.items == Batch.from_serialized(signal, data).items


def _resources(request: Message, signal: Signal) -> Any:
    return getattr(request, SPECS[signal].resource_field)


def _shapes(signal: Signal) -> Iterator[tuple[str, bytes]]:
    """Requests of every shape the edit must handle, serialized."""
    for resources in (1, 3):
        yield f"{resources}-resources", request_with(signal, 6, resources=resources).SerializeToString()
    request = request_with(signal, 4, resources=2)
    for group in _resources(request, signal):
        group.ClearField("resource")
    yield "no-resource", request.SerializeToString()
    request = request_with(signal, 4, resources=2)
    attributes = _resources(request, signal)[1].resource.attributes
    attributes.add(key="cloud.region").value.string_value = "sender-region"
    attributes.add(key="shard").value.string_value = "first"
    attributes.add(key="other").value.int_value = 1
    attributes.add(key="shard").value.string_value = "second"  # a repeated key: two attributes
    yield "existing-and-repeated-keys", request.SerializeToString()
    request = request_with(signal, 2)
    _resources(request, signal)[0].resource.dropped_attributes_count = 4
    yield "dropped-count", request.SerializeToString()
    yield "empty-request", b""
    # A group whose resource is split over two occurrences (parsers merge them), and an unknown
    # top-level field: both legal on the wire.
    first = request_with(signal, 2).SerializeToString()
    tag, (length, offset) = first[0], read_varint(first, 1, len(first))
    group = first[offset : offset + length]
    extra_resource = (
        b"\x0a"
        + encode_varint(len(b"\x0a\x0b\x0a\x05shard\x12\x02\x08\x07"))
        + (b"\x0a\x0b\x0a\x05shard\x12\x02\x08\x07")
    )
    group += extra_resource
    yield "resource-twice", bytes([tag]) + encode_varint(len(group)) + group + b"\x98\x06\x2a"


@pytest.mark.parametrize("override", [False, True])
@pytest.mark.parametrize("signal", list(Signal))
def test_wire_edit_parses_as_the_message_edit(signal: Signal, override: bool) -> None:
    for name, data in _shapes(signal):
        try:
            _assert_same(signal, data, override)
        except AssertionError as error:
            raise AssertionError(f"{signal.value} {name}: {error}") from None


@pytest.mark.parametrize("override", [False, True])
def test_keys_the_sender_set_are_kept_or_replaced_in_place(override: bool) -> None:
    request = request_with(Signal.TRACES, 1)
    attributes = request.resource_spans[0].resource.attributes
    attributes.add(key="cloud.region").value.string_value = "sender-region"
    processor = _processor(override, {"cloud.region": "ours", "new": "x"})
    _, edited = _by_wire(processor, Signal.TRACES, request.SerializeToString())
    keys = [kv.key for kv in edited.resource_spans[0].resource.attributes]
    assert keys.count("cloud.region") == 1  # never two attributes of one key
    assert keys[-1] == "new" and keys.index("cloud.region") == len(attributes) - 1  # where it stood
    region = next(kv for kv in edited.resource_spans[0].resource.attributes if kv.key == "cloud.region")
    assert region.value.string_value == ("ours" if override else "sender-region")


def test_the_items_bytes_are_copied_untouched() -> None:
    data = request_with(Signal.TRACES, 50, resources=2).SerializeToString()
    _, edited = _by_wire(_processor(False), Signal.TRACES, data)
    groups = [ss for rs in edited.resource_spans for ss in rs.scope_spans]
    spans = [span.SerializeToString() for ss in groups for span in ss.spans]
    assert all(span in data for span in spans)


def test_unhandled_wire_types_fall_back_to_the_message() -> None:
    # An unknown field of wire type 3/4 (a group) inside a resource group.
    group = request_with(Signal.LOGS, 1).SerializeToString()
    tag, (length, offset) = group[0], read_varint(group, 1, len(group))
    payload = group[offset : offset + length] + b"\xfb\x03\xfc\x03"  # field 63: start, end group
    data = bytes([tag]) + encode_varint(len(payload)) + payload
    with pytest.raises(WireEditError):
        ResourceEditor([("k", b"\x0a\x01k")], override=False).edit(data)
    processor = _processor(False)
    batch = Batch.from_serialized(Signal.LOGS, data)
    processor.enrich(batch)
    keys = [kv.key for kv in batch.message.resource_logs[0].resource.attributes]
    assert "cloud.region" in keys


def test_a_truncated_field_is_not_edited() -> None:
    with pytest.raises(WireEditError):
        ResourceEditor([("k", b"\x0a\x01k")], override=False).edit(b"\x0a\x05\x0a")


def _corpus_requests() -> list[bytes]:
    requests = corpus.read_requests(shared_path("corpus", "hipstershop-oteltraces.zst"))
    return [request.SerializeToString() for request in corpus.rebatch(requests, 100)[::40]]


@pytest.mark.parametrize("override", [False, True])
def test_corpus_requests(override: bool) -> None:
    # host.name and service.name are set by the demo's senders: kept, or replaced with override.
    attributes = {"host.name": "node-1", "service.name": "ours", "cloud.region": "r", "orasi.agent.id": "a"}
    requests = _corpus_requests()
    assert any(b"host.name" in data for data in requests)
    for data in requests:
        _assert_same(Signal.TRACES, data, override, attributes)


async def test_the_agent_path_serialises_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receiver bytes → resource → batch → the exporter's ``raw``: no SerializeToString."""
    calls: list[str] = []
    for spec in SPECS.values():
        original = spec.request_type.SerializeToString

        def counting(self: Message, _original: Any = original, **kwargs: Any) -> bytes:
            calls.append(type(self).__name__)
            return bytes(_original(self, **kwargs))

        monkeypatch.setattr(spec.request_type, "SerializeToString", counting)
    for signal in Signal:
        sink = RecordingConsumer()
        batcher = BatchProcessor(make_settings("batch"), BatchConfig(send_batch_size=10), sink)
        processor = ResourceProcessor(make_settings("resource"), Config(attributes={"env": "prod"}), batcher)
        payloads = [request_with(signal, 5, resources=2, prefix=f"p{n}-") for n in range(2)]
        serialized = [payload.SerializeToString() for payload in payloads]
        calls.clear()
        await batcher.start()
        await processor.start()
        for data in serialized:
            await processor.consume(Batch.from_serialized(signal, data))
        (out,) = sink.batches
        sent = out.raw
        await batcher.shutdown()
        assert calls == [], f"{signal.value}: serialised {calls}"
        request = SPECS[signal].request_type.FromString(sent)
        assert len(_resources(request, signal)) == 4
        assert all(
            any(kv.key == "env" for kv in group.resource.attributes) for group in _resources(request, signal)
        )
