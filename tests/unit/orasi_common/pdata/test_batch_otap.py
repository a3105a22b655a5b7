"""A batch that arrived as OTAP is sized, merged, logged, replayed and re-sent as OTAP without
being decoded to OTLP; records of every form (and version-1 records) read back."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pyarrow as pa
import pytest

from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P

from ...builders import request_with


def _otap(signal: Signal, n: int, batch_id: str = "b" * 32) -> Batch:
    tables = codec.encode(Batch.from_message(signal, request_with(signal, n)))
    return codec.decode(signal, tables, tenant="acme", batch_id=batch_id)


@pytest.fixture
def never_decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def decoded(*_: object) -> bytes:
        raise AssertionError("an OTAP batch was decoded to OTLP")

    monkeypatch.setattr(codec, "decode_tables", decoded)
    yield


@pytest.mark.parametrize("signal", list(Signal))
def test_size_merge_and_record_leave_the_tables_as_they_are(signal: Signal, never_decoded: None) -> None:
    first, second = _otap(signal, 2, "1" * 32), _otap(signal, 3, "2" * 32)
    first.received_ns = 1_700_000_000_000_000_001
    assert first.size_bytes == sum(t.get_total_buffer_size() for t in first.otap.values())  # type: ignore[union-attr]
    merged = Batch.merge([first, second])
    assert merged.items == 5 and merged.size_bytes == first.size_bytes + second.size_bytes
    assert [part.otap for part in merged.parts] == [first.otap, second.otap]
    assert merged.received_ns == first.received_ns

    for batch in (first, merged):
        again = Batch.from_record(batch.to_record())
        assert (again.signal, again.items, again.tenant, again.batch_id) == (
            signal,
            batch.items,
            "acme",
            batch.batch_id,
        )
        assert again.received_ns == batch.received_ns
        assert len(again.parts) == len(batch.parts)
        for read, written in zip(again.parts, batch.parts, strict=True):
            assert read.items == written.items
            assert read.otap is not None and written.otap is not None
            assert {int(k): t for k, t in read.otap.items()} == {int(k): t for k, t in written.otap.items()}


def test_replayed_tables_decode_to_the_same_request() -> None:
    batch = _otap(Signal.TRACES, 4)
    again = Batch.from_record(batch.to_record())
    assert again.raw == batch.raw
    assert again.message == batch.message


def test_a_merge_of_otap_and_otlp_keeps_both_forms_and_decodes_only_when_read_as_otlp() -> None:
    otlp = Batch.from_serialized(Signal.LOGS, request_with(Signal.LOGS, 2).SerializeToString(), tenant="acme")
    otap = _otap(Signal.LOGS, 3)
    merged = Batch.merge([otlp, otap])
    assert [part.otap is None for part in merged.parts] == [True, False]
    assert merged.raw == otlp.raw + otap.raw
    again = Batch.from_record(merged.to_record())
    assert [part.otap is None for part in again.parts] == [True, False]
    assert again.raw == merged.raw


def test_the_otap_exporter_sends_the_tables_a_batch_arrived_with(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = _otap(Signal.METRICS, 3)
    monkeypatch.setattr(codec, "_ENCODERS", {})  # no encoding from OTLP allowed
    tables = codec.encode(batch)
    assert tables.keys() == {P(int(k)) for k in batch.otap}  # type: ignore[union-attr]
    for key, table in tables.items():
        assert table.equals(batch.otap[key])  # type: ignore[index]


def test_tables_sent_on_keep_no_dictionary_of_the_stream_they_came_on() -> None:
    batch = _otap(Signal.LOGS, 3)
    assert batch.otap is not None
    logs = batch.otap[P.LOGS]
    name = next(f.name for f in logs.schema if pa.types.is_string(f.type))
    index = logs.schema.get_field_index(name)
    encoded = logs.set_column(index, name, logs.column(index).dictionary_encode())
    received = codec.decode(Signal.LOGS, {**batch.otap, P.LOGS: encoded}, tenant="acme", batch_id="c" * 32)
    sent = codec.encode(received)[P.LOGS]
    assert sent.schema.field(name).type == pa.string()
    assert sent.column(index).equals(logs.column(index))
    replayed = Batch.from_record(received.to_record())
    assert replayed.otap is not None and replayed.otap[P.LOGS].column(index).equals(logs.column(index))


def test_version_1_records_still_read() -> None:
    data = request_with(Signal.TRACES, 3).SerializeToString()
    head = struct.pack("<BBIB", 1, 1, 3, 32) + b"a" * 32 + struct.pack("<H", 4) + b"acme"
    batch = Batch.from_record(head + data)
    assert (batch.signal, batch.items, batch.tenant, batch.batch_id, batch.received_ns) == (
        Signal.TRACES,
        3,
        "acme",
        "a" * 32,
        0,
    )
    assert batch.raw == data and batch.otap is None


def test_an_otlp_record_keeps_its_receive_time_and_bytes() -> None:
    data = request_with(Signal.LOGS, 2).SerializeToString()
    batch = Batch.from_serialized(Signal.LOGS, data, tenant="t")
    batch.received_ns = 42
    again = Batch.from_record(batch.to_record())
    assert (again.raw, again.received_ns, again.items, again.tenant) == (data, 42, 2, "t")


def test_a_record_of_an_unknown_form_or_version_is_refused() -> None:
    record = Batch.from_serialized(Signal.LOGS, b"").to_record()
    with pytest.raises(ValueError, match="version 9"):
        Batch.from_record(b"\x09" + record[1:])
    head = len(record) - 1  # the form byte of an empty OTLP payload is the last one
    with pytest.raises(ValueError, match="payload form 7"):
        Batch.from_record(record[:head] + b"\x07")
