"""Batch: lazy conversion with caching, merge and split ids, independent copies."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from orasi_common.errors import MalformedData
from orasi_common.pdata import DEFAULT_TENANT, Batch, Signal, new_batch_id
from orasi_common.pdata import batch as batch_module
from orasi_common.pdata.otlp import count_items, parse_request

from ...builders import item_keys, request_with, traces_request


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the parses Batch makes."""
    calls: list[int] = []
    real = batch_module.parse_request

    def counting(signal: Signal, data: bytes):  # type: ignore[no-untyped-def]
        calls.append(len(data))
        return real(signal, data)

    monkeypatch.setattr(batch_module, "parse_request", counting)
    yield calls


def test_new_batch_id_is_unique_hex() -> None:
    ids = {new_batch_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_from_serialized_counts_and_keeps_the_bytes(parses: list[int]) -> None:
    data = traces_request([[2, 1]]).SerializeToString()
    batch = Batch.from_serialized(Signal.TRACES, data, tenant="acme")
    assert (batch.items, batch.tenant, batch.signal) == (3, "acme", Signal.TRACES)
    assert batch.raw is data
    assert batch.size_bytes == len(data)
    assert parses == []  # validated and counted by the native walk, not parsed
    first = batch.message
    assert batch.message is first
    assert len(parses) == 1  # parsed when first read, then cached


def test_from_serialized_rejects_garbage() -> None:
    with pytest.raises(MalformedData):
        Batch.from_serialized(Signal.LOGS, b"\x0a\x05abc")


def test_raw_only_batch_parses_lazily_once(parses: list[int]) -> None:
    data = traces_request([[4]]).SerializeToString()
    batch = Batch(Signal.TRACES, 4, _raw=data)
    assert batch.size_bytes == len(data)
    assert parses == []  # nothing needed the message yet
    message = batch.message
    assert batch.message is message
    assert len(parses) == 1
    assert count_items(Signal.TRACES, message) == 4


def test_message_only_batch_serializes_lazily_once() -> None:
    request = traces_request([[2]])
    batch = Batch.from_message(Signal.TRACES, request)
    assert batch.items == 2
    assert batch.tenant == DEFAULT_TENANT
    assert batch.size_bytes == request.ByteSize()
    raw = batch.raw
    assert batch.raw is raw
    assert raw == request.SerializeToString()


def test_mutable_message_drops_cached_bytes() -> None:
    data = traces_request([[1]]).SerializeToString()
    batch = Batch.from_serialized(Signal.TRACES, data)
    assert batch.raw is data
    message = batch.mutable_message()
    message.resource_spans[0].scope_spans[0].spans[0].name = "renamed"
    assert batch.raw != data
    assert parse_request(Signal.TRACES, batch.raw).resource_spans[0].scope_spans[0].spans[0].name == "renamed"
    assert batch.size_bytes == len(batch.raw)


def test_release_message_keeps_what_cannot_be_remade(parses: list[int]) -> None:
    data = traces_request([[1]]).SerializeToString()
    batch = Batch.from_serialized(Signal.TRACES, data)
    batch.release_message()
    parses.clear()
    assert batch.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0"
    assert len(parses) == 1  # parsed again from the kept bytes

    changed = Batch.from_message(Signal.TRACES, traces_request([[1]]))
    message = changed.mutable_message()
    message.resource_spans[0].scope_spans[0].spans[0].name = "changed"
    changed.release_message()  # no bytes yet: the message must stay
    assert changed.message.resource_spans[0].scope_spans[0].spans[0].name == "changed"


# --- merge --------------------------------------------------------------------------------------


def _batches() -> list[Batch]:
    return [
        Batch.from_serialized(Signal.TRACES, request_with(Signal.TRACES, n).SerializeToString(), tenant="t")
        for n in (1, 2, 3)
    ]


def test_merge_concatenates_without_parsing(parses: list[int]) -> None:
    batches = _batches()
    parses.clear()
    merged = Batch.merge(batches)
    assert merged.raw == b"".join(b.raw for b in batches)
    assert parses == []
    assert merged.items == 6
    assert merged.tenant == "t"
    assert item_keys(Signal.TRACES, merged.message) == [
        k for b in batches for k in item_keys(Signal.TRACES, b.message)
    ]


def test_merge_id_is_deterministic_and_order_sensitive() -> None:
    batches = _batches()
    first = Batch.merge(batches).batch_id
    assert Batch.merge(batches).batch_id == first
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first not in {b.batch_id for b in batches}
    assert Batch.merge(list(reversed(batches))).batch_id != first
    assert Batch.merge(batches[:2]).batch_id != first


def test_merge_of_one_is_that_batch() -> None:
    (batch,) = _batches()[:1]
    assert Batch.merge([batch]) is batch


def test_merge_serializes_message_only_batches() -> None:
    a = Batch.from_message(Signal.LOGS, request_with(Signal.LOGS, 2))
    b = Batch.from_serialized(Signal.LOGS, request_with(Signal.LOGS, 3).SerializeToString())
    merged = Batch.merge([a, b])
    assert merged.items == 5
    assert count_items(Signal.LOGS, merged.message) == 5


# --- split --------------------------------------------------------------------------------------


def test_split_ids_are_derived_and_stable() -> None:
    batch = Batch.from_serialized(
        Signal.METRICS,
        request_with(Signal.METRICS, 7).SerializeToString(),
        tenant="acme",
        batch_id="ab" * 16,
        metadata={"k": "v"},
    )
    parts = batch.split(3)
    assert [p.items for p in parts] == [3, 3, 1]
    ids = [p.batch_id for p in parts]
    assert len(set(ids)) == 3
    assert batch.batch_id not in ids
    assert [p.batch_id for p in batch.split(3)] == ids  # same parent, same ids: safe across retries
    assert all(p.tenant == "acme" and p.metadata == {"k": "v"} for p in parts)
    other = Batch.from_serialized(Signal.METRICS, batch.raw, batch_id="cd" * 16)
    assert not set(ids) & {p.batch_id for p in other.split(3)}


def test_split_that_fits_returns_self() -> None:
    batch = _batches()[2]
    assert batch.split(3) == [batch]
    assert batch.split(100)[0] is batch


# --- copy ---------------------------------------------------------------------------------------


def test_copy_of_serialized_batch_shares_bytes_but_not_changes() -> None:
    batch = Batch.from_serialized(
        Signal.TRACES, traces_request([[2]]).SerializeToString(), tenant="t", metadata={"a": "b"}
    )
    original = batch.raw
    clone = batch.copy()
    assert clone is not batch
    assert clone.raw is original
    assert (clone.items, clone.tenant, clone.batch_id, clone.metadata) == (2, "t", batch.batch_id, {"a": "b"})
    clone.mutable_message().resource_spans[0].scope_spans[0].spans[0].name = "only in the copy"
    assert batch.raw is original
    assert batch.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0"
    assert clone.raw != original


def test_copy_of_message_batch_is_deep() -> None:
    batch = Batch.from_message(Signal.TRACES, traces_request([[1]]))
    batch.mutable_message()
    clone = batch.copy()
    assert clone.message is not batch.message
    clone.mutable_message().resource_spans[0].scope_spans[0].spans[0].name = "copy"
    assert batch.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0-0-0"
