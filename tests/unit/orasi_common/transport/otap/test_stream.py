"""OTAP stream mode: StreamProducer → ArrowPayloads → StreamConsumer, batch after batch.

What is checked on the wire is read back from the IPC bytes themselves (message types, the
``isDelta`` flag and length of each dictionary batch), not from the producer's own bookkeeping.
Every decoded batch is compared with its input value by value, and, for real OTLP requests,
through the codec back to the exact request.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.errors import MalformedData
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamConsumer, StreamProducer, gzip_size

from ....builders import logs_request, traces_request

# ---------------------------------------------------------------------------------------------
# Reading IPC messages back: just enough of the flatbuffer metadata to see what was sent.

EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _table(buf: bytes, pos: int) -> tuple[int, int]:
    """(vtable position, vtable size) of the flatbuffer table at ``pos``."""
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    return vtable, struct.unpack_from("<H", buf, vtable)[0]


def _field(buf: bytes, pos: int, index: int) -> int:
    """Offset of field ``index`` inside the table at ``pos`` (0 = absent, the default)."""
    vtable, size = _table(buf, pos)
    slot = 4 + 2 * index
    return struct.unpack_from("<H", buf, vtable + slot)[0] if slot < size else 0


def _deref(buf: bytes, pos: int) -> int:
    return pos + struct.unpack_from("<I", buf, pos)[0]


@dataclass
class Msg:
    kind: str  # schema | dictionary | record batch
    dictionary_id: int = -1
    is_delta: bool = False
    length: int = 0  # rows (record batch) or dictionary values (dictionary batch)
    start: int = 0  # where the message starts in the payload
    body_length_at: int = -1  # where the bodyLength field sits in the payload (-1: absent)


_HEADER_TYPES = {1: "schema", 2: "dictionary", 3: "record batch"}


def messages(record: bytes) -> list[Msg]:
    """The encapsulated IPC messages of one ArrowPayload.record."""
    out = []
    pos = 0
    while pos < len(record):
        marker, meta_len = struct.unpack_from("<Ii", record, pos)
        assert marker == 0xFFFFFFFF, f"no continuation marker at {pos}"
        if meta_len == 0:
            out.append(Msg("eos", start=pos))
            pos += 8
            continue
        base = pos + 8
        meta = record[base : base + meta_len]
        root = _deref(meta, 0)
        header_type = meta[root + _field(meta, root, 1)]
        header = _deref(meta, root + _field(meta, root, 2))
        body_at = _field(meta, root, 3)
        body = struct.unpack_from("<q", meta, root + body_at)[0] if body_at else 0
        msg = Msg(_HEADER_TYPES.get(header_type, f"type {header_type}"), start=pos)
        msg.body_length_at = base + root + body_at if body_at else -1
        if msg.kind == "dictionary":
            id_at, data_at, delta_at = (_field(meta, header, i) for i in range(3))
            msg.dictionary_id = struct.unpack_from("<q", meta, header + id_at)[0] if id_at else 0
            msg.is_delta = bool(meta[header + delta_at]) if delta_at else False
            data = _deref(meta, header + data_at)
            length_at = _field(meta, data, 0)
            msg.length = struct.unpack_from("<q", meta, data + length_at)[0] if length_at else 0
        elif msg.kind == "record batch":
            length_at = _field(meta, header, 0)
            msg.length = struct.unpack_from("<q", meta, header + length_at)[0] if length_at else 0
        out.append(msg)
        pos = base + meta_len + body
    return out


def kinds(record: bytes) -> list[str]:
    return [m.kind for m in messages(record)]


# ---------------------------------------------------------------------------------------------
# Helpers


def _plain_array(arr: pa.Array) -> pa.Array:
    """Dictionaries looked through, large strings as strings, times as integer nanoseconds."""
    if pa.types.is_dictionary(arr.type):
        return _plain_array(arr.dictionary_decode())
    if pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_timestamp(arr.type) or pa.types.is_duration(arr.type):
        return arr.cast(pa.int64())
    if pa.types.is_struct(arr.type):
        children = [_plain_array(arr.field(i)) for i in range(arr.type.num_fields)]
        names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, names=names, mask=mask)
    return arr


def plain(batch: pa.RecordBatch) -> list[dict[str, object]]:
    """A batch's rows as Python values (dictionary-encoded columns read as their values)."""
    columns = [_plain_array(c) for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()


def plain_type(typ: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(typ):
        return plain_type(typ.value_type)
    if pa.types.is_large_string(typ):
        return pa.string()
    if pa.types.is_struct(typ):
        fields = [typ.field(i) for i in range(typ.num_fields)]
        # nullability is compared by its own test (test_field_metadata_and_nullability_...)
        return pa.struct([f.with_type(plain_type(f.type)).with_nullable(True) for f in fields])
    return typ


def _only_sent(decoded: pa.Array, sent_type: pa.DataType) -> pa.Array:
    """A decoded struct column without the children the stream added (all null) for a batch that
    did not send them; MalformedData-free assertion that they are indeed null."""
    if not pa.types.is_struct(sent_type):
        return decoded
    decoded_type = decoded.type
    names = [sent_type.field(i).name for i in range(sent_type.num_fields)]
    for i in range(decoded_type.num_fields):
        if decoded_type.field(i).name not in names:
            assert decoded.field(i).null_count == len(decoded), "a column the batch lacked holds values"
    children = [_only_sent(decoded.field(name), sent_type.field(name).type) for name in names]
    mask = decoded.is_null() if decoded.null_count else None
    fields = [decoded_type.field(name).with_type(c.type) for name, c in zip(names, children, strict=True)]
    return pa.StructArray.from_arrays(children, fields=fields, mask=mask)


def assert_same(decoded: pa.RecordBatch, sent: pa.RecordBatch) -> None:
    """The sent columns with the same value types once dictionaries are looked through and the
    same rows; any other column of the stream's schema (absent from this batch) all null."""
    for name in set(decoded.schema.names) - set(sent.schema.names):
        assert decoded.column(name).null_count == decoded.num_rows, f"{name} was not sent, yet holds values"
    assert set(sent.schema.names) <= set(decoded.schema.names)
    decoded = pa.RecordBatch.from_arrays(
        [_only_sent(decoded.column(f.name), f.type) for f in sent.schema],
        schema=pa.schema(
            [
                decoded.schema.field(f.name).with_type(_only_sent(decoded.column(f.name), f.type).type)
                for f in sent.schema
            ]
        ),
    )
    assert [plain_type(f.type) for f in decoded.schema] == [plain_type(f.type) for f in sent.schema]
    assert decoded.num_rows == sent.num_rows
    assert plain(decoded) == plain(sent)


def roundtrip(
    producer: StreamProducer, consumer: StreamConsumer, tables: Mapping[P, pa.RecordBatch]
) -> tuple[list[otap_pb2.ArrowPayload], dict[P, pa.RecordBatch]]:
    """Encode, put through the protobuf wire format, decode; every table must come back equal."""
    payloads = producer.encode(tables)
    wire = otap_pb2.BatchArrowRecords(batch_id=1, arrow_payloads=payloads).SerializeToString()
    decoded = consumer.decode(otap_pb2.BatchArrowRecords.FromString(wire).arrow_payloads)
    assert set(decoded) == set(tables)
    for kind, sent in tables.items():
        assert_same(decoded[kind], sent)
    return payloads, decoded


def by_type(payloads: list[otap_pb2.ArrowPayload]) -> dict[int, otap_pb2.ArrowPayload]:
    return {p.type: p for p in payloads}


def spans_table(names: list[str], *, with_state: bool = False, offset: int = 0) -> pa.RecordBatch:
    """A small SPANS-like table: an id, a text column, a struct with a text child, numbers."""
    n = len(names)
    columns: dict[str, pa.Array] = {
        "id": pa.array(range(offset, offset + n), pa.uint16()),
        "name": pa.array(names, pa.string()),
        "status": pa.StructArray.from_arrays(
            [pa.array([i % 3 for i in range(n)], pa.int32()), pa.array([f"msg-{x}" for x in names])],
            names=["code", "status_message"],
        ),
        "start_time_unix_nano": pa.array(range(n), pa.timestamp("ns")),
    }
    if with_state:
        columns["trace_state"] = pa.array([f"k=v{i % 2}" for i in range(n)])
    return pa.RecordBatch.from_pydict(columns)


def attrs_table(keys: list[str], values: list[str | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "parent_id": pa.array(range(len(keys)), pa.uint16()),
            "key": pa.array(keys, pa.string()),
            "type": pa.array([1] * len(keys), pa.uint8()),
            "str": pa.array(values, pa.string()),
        }
    )


def otap_tables(request: ExportTraceServiceRequest) -> dict[P, pa.RecordBatch]:
    return codec.encode(Batch.from_message(Signal.TRACES, request))


# ---------------------------------------------------------------------------------------------
# Schema once, then dictionary deltas


def test_the_schema_is_sent_once_then_only_dictionary_deltas() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    batches = [
        spans_table(["GET /a", "GET /b", "GET /a"]),
        spans_table(["GET /a", "GET /c"]),  # one new name, one new status message
        spans_table(["GET /b", "GET /a", "GET /c"]),  # nothing new
        spans_table(["GET /d", "GET /e", "GET /f", "GET /a"]),
    ]
    records = []
    schema_ids = set()
    for batch in batches:
        (payload,) = producer.encode({P.SPANS: batch})
        schema_ids.add(payload.schema_id)
        records.append(payload.record)
        decoded = consumer.decode([payload])
        assert_same(decoded[P.SPANS], batch)

    assert len(schema_ids) == 1
    assert producer.schema_resets == 0
    first, *rest = (messages(r) for r in records)
    # First payload: the schema, one full dictionary per text column (name, status.status_message).
    assert [m.kind for m in first] == ["schema", "dictionary", "dictionary", "record batch"]
    assert [(m.is_delta, m.length) for m in first[1:3]] == [(False, 2), (False, 2)]
    # Later payloads: never a schema again; dictionaries only as deltas of the new values.
    for msgs in rest:
        assert "schema" not in [m.kind for m in msgs]
        assert all(m.is_delta for m in msgs if m.kind == "dictionary")
    assert [(m.dictionary_id, m.length) for m in rest[0] if m.kind == "dictionary"] == [(0, 1), (1, 1)]
    assert [m.kind for m in rest[1]] == ["record batch"]  # no new value: no dictionary message
    assert [(m.dictionary_id, m.length) for m in rest[2] if m.kind == "dictionary"] == [(0, 3), (1, 3)]
    # The consumer's dictionary is the union of everything sent on this IPC stream.
    last = consumer.decode(producer.encode({P.SPANS: spans_table(["GET /a"])}))[P.SPANS]
    assert last.column("name").dictionary.to_pylist() == [f"GET /{c}" for c in "abcdef"]


def test_payloads_shrink_after_the_first_and_decode_to_the_same_request() -> None:
    """Real traces of the same shape: later batches ride on the schema and dictionaries sent."""
    producer, consumer = StreamProducer(), StreamConsumer()
    sizes = []
    for round_ in range(6):
        request = traces_request([[3, 2], [4]], prefix=f"r{round_ % 2}-")
        tables = otap_tables(request)
        payloads, decoded = roundtrip(producer, consumer, tables)
        sizes.append(sum(len(p.record) for p in payloads))
        back = codec.decode(Signal.TRACES, decoded, tenant="t", batch_id="b" * 32)
        assert back.message == request
        if round_ == 0:
            assert all(kinds(p.record)[0] == "schema" for p in payloads)
        else:
            assert all("schema" not in kinds(p.record) for p in payloads)
    assert producer.schema_resets == 0
    assert max(sizes[1:]) < sizes[0] * 0.6, sizes
    # From the third batch on every name has been seen: payloads stop growing.
    assert sizes[2:] == [sizes[2]] * 4, sizes


def test_string_columns_keep_nulls_empties_and_large_strings() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    table = pa.RecordBatch.from_pydict(
        {
            "name": pa.array(["a", None, "", "é€😀", "a"], pa.string()),
            "other": pa.array(["x", "y", None, None, "z"], pa.large_string()),
            "status": pa.StructArray.from_arrays(
                [pa.array([1, 2, 3, 4, 5], pa.int32()), pa.array(["m", None, "", "m", "n"])],
                names=["code", "status_message"],
                mask=pa.array([False, True, False, False, False]),
            ),
        }
    )
    for _ in range(3):
        roundtrip(producer, consumer, {P.LOGS: table})
    empty = table.slice(0, 0)
    roundtrip(producer, consumer, {P.LOGS: empty})


# ---------------------------------------------------------------------------------------------
# Schema resets


def test_a_column_appearing_resets_only_that_payload_type() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    attrs = attrs_table(["k1", "k2"], ["v1", "v2"])
    first = by_type(roundtrip(producer, consumer, {P.SPANS: spans_table(["a", "b"]), P.SPAN_ATTRS: attrs})[0])

    with_state = spans_table(["a", "c"], with_state=True)
    second = by_type(roundtrip(producer, consumer, {P.SPANS: with_state, P.SPAN_ATTRS: attrs})[0])
    assert producer.schema_resets == 1
    assert second[P.SPANS].schema_id != first[P.SPANS].schema_id
    assert kinds(second[P.SPANS].record)[0] == "schema"
    # the new IPC stream starts with fresh, full dictionaries
    assert all(not m.is_delta for m in messages(second[P.SPANS].record) if m.kind == "dictionary")
    # the attribute table's IPC stream goes on untouched
    assert second[P.SPAN_ATTRS].schema_id == first[P.SPAN_ATTRS].schema_id
    assert kinds(second[P.SPAN_ATTRS].record) == ["record batch"]

    # the column going away again keeps the schema: it stays, holding nulls
    third_payloads, third_decoded = roundtrip(
        producer, consumer, {P.SPANS: spans_table(["d"]), P.SPAN_ATTRS: attrs}
    )
    third = by_type(third_payloads)
    assert producer.schema_resets == 1
    assert producer.resets == {P.SPANS: 1}
    assert third[P.SPANS].schema_id == second[P.SPANS].schema_id
    assert "schema" not in kinds(third[P.SPANS].record)
    assert third_decoded[P.SPANS].column("trace_state").to_pylist() == [None]
    # and the stream goes on with deltas against the same IPC stream
    fourth = by_type(roundtrip(producer, consumer, {P.SPANS: spans_table(["d", "e"], with_state=True)})[0])
    assert fourth[P.SPANS].schema_id == second[P.SPANS].schema_id
    assert "schema" not in kinds(fourth[P.SPANS].record)


def test_a_struct_child_appearing_then_missing_keeps_one_schema_after_warm_up() -> None:
    resets: list[P] = []
    producer, consumer = StreamProducer(on_reset=resets.append), StreamConsumer()
    with_message = spans_table(["a", "b"])
    without = with_message.set_column(
        2, "status", pa.StructArray.from_arrays([pa.array([1, 2], pa.int32())], names=["code"])
    )
    no_status = with_message.remove_column(2)
    ids = set()
    for table in (without, with_message, without, no_status, with_message, no_status):
        (payload,), _ = roundtrip(producer, consumer, {P.SPANS: table})
        ids.add(payload.schema_id)
    assert resets == [P.SPANS]  # status_message appeared once; nothing after that
    assert len(ids) == 2


def test_a_column_changing_type_resets_the_schema() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    ints = pa.RecordBatch.from_pydict({"key": ["a"], "int": pa.array([1], pa.int64())})
    doubles = pa.RecordBatch.from_pydict({"key": ["a"], "int": pa.array([1.5], pa.float64())})
    one = roundtrip(producer, consumer, {P.LOG_ATTRS: ints})[0][0]
    two = roundtrip(producer, consumer, {P.LOG_ATTRS: doubles})[0][0]
    assert producer.schema_resets == 1
    assert one.schema_id != two.schema_id


def test_a_dictionary_overflow_resets_the_schema_and_still_decodes() -> None:
    producer, consumer = StreamProducer(max_dictionary=5), StreamConsumer()
    ids = []
    dictionaries = []
    for round_ in range(6):  # two new names per batch: 2, 4, overflow → 2, 4, overflow → 2
        names = [f"n{2 * round_}", f"n{2 * round_ + 1}", f"n{2 * round_}"]
        (payload,), decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(names)})
        ids.append(payload.schema_id)
        dictionaries.append(decoded[P.SPANS].column("name").dictionary.to_pylist())
        if round_ in (2, 4):
            assert kinds(payload.record)[0] == "schema"
    assert producer.schema_resets == 2
    assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4] == ids[5]
    assert len(set(ids)) == 3
    # after a reset the dictionary starts again from the batch's own values; it never passes 5
    assert dictionaries[1] == ["n0", "n1", "n2", "n3"]
    assert dictionaries[2] == ["n4", "n5"]
    assert all(len(d) <= 5 for d in dictionaries)


def test_an_overflow_inside_a_struct_column_resets_too() -> None:
    producer, consumer = StreamProducer(max_dictionary=3), StreamConsumer()
    for round_ in range(4):
        table = spans_table(["same", "same"])  # the name never grows ...
        messages_ = pa.array([f"m{round_}-{i}" for i in range(2)])  # ... status messages do
        status = pa.StructArray.from_arrays(
            [pa.array([1, 2], pa.int32()), messages_], names=["code", "status_message"]
        )
        table = table.set_column(2, "status", status)
        roundtrip(producer, consumer, {P.SPANS: table})
    assert producer.schema_resets >= 1


def test_one_batch_with_more_distinct_strings_than_a_dictionary_holds() -> None:
    """OTAP lets a producer fall back to plain strings (or reset); refusing the batch loses it.

    With the default limit (65535) this is a batch of e.g. 10,000 spans carrying 10 attributes
    with distinct values each: an ordinary batch for a gateway.
    """
    producer, consumer = StreamProducer(max_dictionary=4), StreamConsumer()
    names = [f"unique-{i}" for i in range(10)]
    roundtrip(producer, consumer, {P.SPANS: spans_table(names)})
    roundtrip(producer, consumer, {P.SPANS: spans_table(["a", "b"])})


# ---------------------------------------------------------------------------------------------
# Long streams


def _random_table(rng: random.Random, round_: int) -> tuple[P, pa.RecordBatch]:
    """One of two payload types; new and repeated strings; sometimes an optional column."""
    n = rng.randint(0, 12)
    vocabulary = [f"word-{rng.randint(0, round_ + 20)}" for _ in range(n)]
    if rng.random() < 0.5:
        values: list[str | None] = [v if rng.random() > 0.1 else None for v in vocabulary]
        table = attrs_table([f"key-{rng.randint(0, 7)}" for _ in range(n)], values)
        if round_ % 97 == 0:  # an optional column now and then
            table = table.append_column("int", pa.array(range(n), pa.int64()))
        return P.SPAN_ATTRS, table
    return P.SPANS, spans_table(vocabulary, with_state=round_ % 50 < 5, offset=round_ % 100)


def test_a_thousand_batches_on_one_stream_decode_correctly() -> None:
    rng = random.Random(20240601)
    producer, consumer = StreamProducer(max_dictionary=400), StreamConsumer()
    sizes_after_warmup = []
    for round_ in range(1000):
        kind, table = _random_table(rng, round_)
        tables = {kind: table}
        if round_ % 10 == 0:  # both types in one batch now and then
            other_kind, other = _random_table(rng, round_ + 1)
            tables[other_kind] = other
        payloads, _ = roundtrip(producer, consumer, tables)
        if round_ > 10:
            sizes_after_warmup.append(sum(len(p.record) for p in payloads))
    # the vocabulary keeps growing past 400 strings: overflows and shape changes both reset
    assert producer.schema_resets > 5
    assert max(sizes_after_warmup) < 4096


def test_hundreds_of_real_trace_batches_on_one_stream() -> None:
    """The codec's own tables, names drawn from a growing vocabulary, decoded to the request."""
    producer, consumer = StreamProducer(), StreamConsumer()
    templates = [traces_request([[2], [1, 1]], prefix=f"p{i}-") for i in range(40)]
    encoded = [otap_tables(t) for t in templates]
    for round_ in range(400):
        request, tables = templates[(round_ * 7) % 40], encoded[(round_ * 7) % 40]
        _, decoded = roundtrip(producer, consumer, tables)
        if round_ % 50 == 0:
            assert codec.decode(Signal.TRACES, decoded, tenant="t", batch_id="c" * 32).message == request
    assert producer.schema_resets == 0


def test_logs_survive_a_stream_of_changing_shapes() -> None:
    producer, consumer = StreamProducer(max_dictionary=16), StreamConsumer()
    for round_ in range(60):
        request = logs_request([[round_ % 4 + 1]] * (round_ % 3 + 1), prefix=f"g{round_}-")
        tables = codec.encode(Batch.from_message(Signal.LOGS, request))
        _, decoded = roundtrip(producer, consumer, tables)
        assert codec.decode(Signal.LOGS, decoded, tenant="t", batch_id="d" * 32).message == request
    assert producer.schema_resets > 0


# ---------------------------------------------------------------------------------------------
# What the producer should keep


def test_field_metadata_and_nullability_survive_the_stream() -> None:
    """The codec declares ``encoding`` (delta / quasidelta) in field metadata, and the OTAP spec
    lets a producer declare ``plain`` instead; the declaration must reach the consumer, or a
    table written with another encoding than the default is read wrongly."""
    producer, consumer = StreamProducer(), StreamConsumer()
    schema = pa.schema(
        [
            pa.field("parent_id", pa.uint16(), nullable=False, metadata={b"encoding": b"plain"}),
            pa.field("key", pa.string(), nullable=False),
        ]
    )
    table = pa.RecordBatch.from_arrays([pa.array([3, 1], pa.uint16()), pa.array(["k", "k"])], schema=schema)
    decoded = consumer.decode(producer.encode({P.SPAN_ATTRS: table}))[P.SPAN_ATTRS]
    assert decoded.schema.field("parent_id").metadata == {b"encoding": b"plain"}
    assert decoded.schema.field("parent_id").nullable is False


def test_a_sliced_batch_encodes_like_any_other() -> None:
    """A RecordBatch.slice (e.g. a table split to fit a size limit) has struct columns with an
    offset; after the first batch of the stream they must still match the IPC stream's schema."""
    producer, consumer = StreamProducer(), StreamConsumer()
    whole = spans_table(["a", "b", "c", "d"])
    roundtrip(producer, consumer, {P.SPANS: whole.slice(0, 2)})
    roundtrip(producer, consumer, {P.SPANS: whole.slice(2, 2)})


# ---------------------------------------------------------------------------------------------
# Malformed input: MalformedData, and the consumer keeps working


@pytest.fixture
def started() -> tuple[StreamProducer, StreamConsumer]:
    """A stream with SPANS and SPAN_ATTRS IPC streams already running."""
    producer, consumer = StreamProducer(), StreamConsumer()
    roundtrip(producer, consumer, {P.SPANS: spans_table(["a"]), P.SPAN_ATTRS: attrs_table(["k"], ["v"])})
    return producer, consumer


def assert_still_works(producer: StreamProducer, consumer: StreamConsumer, broken: P) -> None:
    """Other types continue their IPC streams; the broken type works again after a reset."""
    others = {P.SPAN_ATTRS: attrs_table(["k", "k2"], ["v", "v2"])} if broken != P.SPAN_ATTRS else {}
    if others:
        payloads, _ = roundtrip(producer, consumer, others)
        assert "schema" not in kinds(payloads[0].record)  # a continuation, not a restart
    # the broken type: the sender starts that IPC stream again (new producer → schema message)
    fresh = StreamProducer()
    roundtrip(
        fresh, consumer, {broken: spans_table(["z", "y"]) if broken == P.SPANS else attrs_table(["q"], ["r"])}
    )
    roundtrip(
        fresh, consumer, {broken: spans_table(["y", "x"]) if broken == P.SPANS else attrs_table(["q"], ["s"])}
    )


def test_garbage_bytes_are_malformed(started: tuple[StreamProducer, StreamConsumer]) -> None:
    producer, consumer = started
    for garbage in (b"not arrow at all", b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x00" * 16, b"\x00" * 64):
        with pytest.raises(MalformedData, match="payload type 40"):
            consumer.decode([otap_pb2.ArrowPayload(schema_id="junk", type=P.SPANS, record=garbage)])
    assert_still_works(producer, consumer, P.SPANS)


def test_an_empty_record_is_malformed(started: tuple[StreamProducer, StreamConsumer]) -> None:
    producer, consumer = started
    with pytest.raises(MalformedData):
        consumer.decode([otap_pb2.ArrowPayload(schema_id="empty", type=P.SPANS, record=b"")])
    assert_still_works(producer, consumer, P.SPANS)


def test_unknown_payload_types_are_malformed_and_disturb_nothing(
    started: tuple[StreamProducer, StreamConsumer],
) -> None:
    producer, consumer = started
    valid = producer.encode({P.SPANS: spans_table(["a", "new"])})[0]
    unknown = otap_pb2.ArrowPayload(schema_id=valid.schema_id, type=99, record=valid.record)
    with pytest.raises(MalformedData, match="unknown OTAP payload type 99"):
        consumer.decode([unknown])
    # the real payload was never fed to any reader: it still continues the SPANS stream
    assert_same(consumer.decode([valid])[P.SPANS], spans_table(["a", "new"]))
    roundtrip(
        producer, consumer, {P.SPANS: spans_table(["new", "newer"]), P.SPAN_ATTRS: attrs_table(["k"], ["v"])}
    )


def test_a_truncated_payload_is_malformed(started: tuple[StreamProducer, StreamConsumer]) -> None:
    producer, consumer = started
    payload = producer.encode({P.SPANS: spans_table(["b", "c", "d"])})[0]
    for cut in (len(payload.record) // 2, len(payload.record) - 1, 7):
        with pytest.raises(MalformedData):
            consumer.decode(
                [
                    otap_pb2.ArrowPayload(
                        schema_id=payload.schema_id, type=P.SPANS, record=payload.record[:cut]
                    )
                ]
            )
    assert_still_works(producer, consumer, P.SPANS)


def test_a_payload_cut_at_a_message_boundary_is_malformed() -> None:
    """The schema and dictionaries without their record batch: a valid IPC prefix, no batch."""
    producer, consumer = StreamProducer(), StreamConsumer()
    payload = producer.encode({P.SPANS: spans_table(["a"])})[0]
    last = messages(payload.record)[-1]
    assert last.kind == "record batch"
    with pytest.raises(MalformedData):
        consumer.decode(
            [otap_pb2.ArrowPayload(schema_id="s", type=P.SPANS, record=payload.record[: last.start])]
        )


def test_trailing_bytes_and_end_of_stream_are_malformed(
    started: tuple[StreamProducer, StreamConsumer],
) -> None:
    producer, consumer = started
    payload = producer.encode({P.SPAN_ATTRS: attrs_table(["k"], ["new"])})[0]
    with pytest.raises(MalformedData, match="past its record batch"):
        consumer.decode(
            [
                otap_pb2.ArrowPayload(
                    schema_id=payload.schema_id, type=P.SPAN_ATTRS, record=payload.record + b"junk"
                )
            ]
        )
    assert_still_works(producer, consumer, P.SPAN_ATTRS)
    with pytest.raises(MalformedData):
        consumer.decode([otap_pb2.ArrowPayload(schema_id="fresh", type=P.SPANS, record=EOS)])


def test_a_replayed_schema_mid_stream_is_malformed(started: tuple[StreamProducer, StreamConsumer]) -> None:
    """A payload that restarts the IPC stream without a new schema_id cannot be read."""
    producer, consumer = started
    first = StreamProducer().encode({P.SPANS: spans_table(["a"])})[0]
    live = producer.encode({P.SPANS: spans_table(["a"])})[0]
    assert live.schema_id == first.schema_id  # the same shape, the same generation
    with pytest.raises(MalformedData):
        consumer.decode([first])


def test_a_payload_type_twice_in_one_batch_is_malformed() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    a = producer.encode({P.SPANS: spans_table(["a"])})[0]
    other = StreamProducer().encode({P.SPANS: spans_table(["b"])})[0]
    other.schema_id = "another-" + other.schema_id
    with pytest.raises(MalformedData, match="appears twice"):
        consumer.decode([a, other])


def test_a_huge_declared_message_body_is_malformed() -> None:
    """A few bytes that announce a terabyte-long message body must not be read (or allocated)."""
    producer, consumer = StreamProducer(), StreamConsumer()
    payload = producer.encode({P.SPANS: spans_table(["a"])})[0]
    record = bytearray(payload.record)
    dictionary = next(m for m in messages(payload.record) if m.kind == "dictionary")
    struct.pack_into("<q", record, dictionary.body_length_at, 2**40)
    with pytest.raises(MalformedData):
        consumer.decode([otap_pb2.ArrowPayload(schema_id="big", type=P.SPANS, record=bytes(record))])
    roundtrip(StreamProducer(), consumer, {P.SPANS: spans_table(["b"])})


def _ipc_stream(batch: pa.RecordBatch) -> bytes:
    """One uncompressed IPC stream (schema, dictionaries, batch) without its end marker."""
    sink = io.BytesIO()
    writer = pa.ipc.new_stream(sink, batch.schema)
    writer.write_batch(batch)
    return sink.getvalue()


@pytest.mark.parametrize("corruption", ["string offsets", "dictionary indices"])
def test_arrow_buffers_that_break_the_format_are_malformed(corruption: str) -> None:
    """Buffers are data from the network: an offset past the end of a string column, or a
    dictionary index past its dictionary, must be refused by the consumer — reading such a
    column goes out of bounds (a string offset of 10**9 crashes the process in the codec)."""
    n = 4
    if corruption == "string offsets":
        column = pa.array(["qqqq"] * n)
        pattern = b"".join(struct.pack("<i", 4 * k) for k in range(n + 1))
        replacement = pattern[:-4] + struct.pack("<i", 10**9)
    else:
        indices = [k % 3 for k in range(n)]
        column = pa.DictionaryArray.from_arrays(pa.array(indices, pa.uint16()), pa.array(["a", "b", "c"]))
        pattern = b"".join(struct.pack("<H", k) for k in indices)
        replacement = pattern[:2] + struct.pack("<H", 60000) + pattern[4:]
    batch = pa.RecordBatch.from_pydict({"id": pa.array(range(n), pa.uint16()), "name": column})
    record = _ipc_stream(batch)
    assert record.count(pattern) == 1
    corrupt = record.replace(pattern, replacement)
    consumer = StreamConsumer()
    with pytest.raises(MalformedData):
        consumer.decode([otap_pb2.ArrowPayload(schema_id="corrupt", type=P.SPANS, record=corrupt)])
    roundtrip(StreamProducer(), consumer, {P.SPANS: spans_table(["ok"])})


def test_an_independent_ipc_reader_decodes_each_schema_id_from_its_concatenated_payloads() -> None:
    """pyarrow's own ``open_stream`` over the payloads of one (type, schema_id), concatenated,
    reads the same batches as the consumer: the stream is plain Arrow IPC, deltas included."""
    producer, consumer = StreamProducer(max_dictionary=12), StreamConsumer()
    streams: dict[tuple[int, str], bytearray] = {}
    expected: dict[tuple[int, str], list[pa.RecordBatch]] = {}
    for round_ in range(30):  # shapes change (events, links, new names), dictionaries overflow
        shape = [[round_ % 3 + 1], [1, round_ % 2]] if round_ % 4 else [[2]]
        request = traces_request(shape, prefix=f"r{round_}-")
        for payload in producer.encode(otap_tables(request)):
            key = (payload.type, payload.schema_id)
            streams.setdefault(key, bytearray()).extend(payload.record)
            decoded = consumer.decode([payload])
            expected.setdefault(key, []).append(decoded[P(payload.type)])
    assert producer.schema_resets > 0  # more than one IPC stream per type was exercised
    for key, data in streams.items():
        read = list(pa.ipc.open_stream(bytes(data)))
        assert len(read) == len(expected[key])
        for mine, theirs in zip(read, expected[key], strict=True):
            assert plain(mine) == plain(theirs)


def test_dictionaries_start_with_u8_indices_and_widen_once() -> None:
    producer, consumer = StreamProducer(), StreamConsumer()
    _, decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(["a", "b", "a"])})
    assert decoded[P.SPANS].schema.field("name").type.index_type == pa.uint8()
    # 300 new names (each three times, so not sent plain): past what u8 indices address, one
    # reset to u16 ...
    (payload,), decoded = roundtrip(
        producer, consumer, {P.SPANS: spans_table([f"n{i}" for i in range(300)] * 3)}
    )
    assert producer.schema_resets == 1
    assert kinds(payload.record)[0] == "schema"
    assert decoded[P.SPANS].schema.field("name").type.index_type == pa.uint16()
    # ... and u16 it stays: more growth, no more resets
    for round_ in range(3):
        names = [f"m{round_}-{i}" for i in range(300)] * 3
        _, decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(names)})
        assert decoded[P.SPANS].schema.field("name").type.index_type == pa.uint16()
    assert producer.schema_resets == 1


def test_a_plain_column_that_starts_repeating_gets_a_dictionary_once() -> None:
    """Log bodies of one system never repeat, another's mostly do: the column starts plain, and
    the first batch that repeats most of its values moves it to a dictionary (one reset)."""
    producer, consumer = StreamProducer(), StreamConsumer()
    distinct = [f"block {i} received" for i in range(100)]
    repeated = [f"session {i % 5} opened" for i in range(100)]
    _, decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(distinct)})
    assert decoded[P.SPANS].schema.field("name").type == pa.string()
    (payload,), decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(repeated)})
    assert producer.schema_resets == 1
    assert kinds(payload.record)[0] == "schema"
    assert pa.types.is_dictionary(decoded[P.SPANS].schema.field("name").type)
    # distinct again, then repeating again: the dictionary stays, no more resets
    for names in (distinct, repeated, [f"other {i}" for i in range(100)]):
        _, decoded = roundtrip(producer, consumer, {P.SPANS: spans_table(names)})
        assert pa.types.is_dictionary(decoded[P.SPANS].schema.field("name").type)
    assert producer.schema_resets == 1


# ---------------------------------------------------------------------------------------------
# payload_compression: auto


def test_auto_compression_sends_each_ipc_stream_as_it_travels_smallest_after_gzip() -> None:
    """``auto`` compresses a payload type's IPC buffers with zstd or not at all, whichever leaves
    its first batch smaller once gzip compressed the message: here a table of random ids goes
    in zstd (its sequential ``id`` column shrinks) and one of text built from a few words goes
    uncompressed (gzip over the plain text beats zstd per buffer); both decode as sent."""
    rng = random.Random(7)
    n = 1000
    ids = pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(n), pa.uint16()),
            "span_id": pa.array([rng.randbytes(8) for _ in range(n)], pa.binary(8)),
        }
    )
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    bodies = [" ".join(rng.choice(words) for _ in range(40)) + f" {rng.random()}" for _ in range(n)]
    text = pa.RecordBatch.from_pydict({"id": pa.array(range(n), pa.uint16()), "body": pa.array(bodies)})
    chosen = {}
    for name, table in (("ids", ids), ("text", text)):
        sent = {
            compression: StreamProducer(compression, message_compression="gzip")
            .encode({P.LOGS: table})[0]
            .record
            for compression in ("auto", "zstd", None)
        }
        assert gzip_size(sent["auto"]) == min(gzip_size(sent["zstd"]), gzip_size(sent[None]))
        chosen[name] = (
            "none" if sent["auto"] == sent[None] else "zstd" if sent["auto"] == sent["zstd"] else "?"
        )
        payloads, _ = roundtrip(
            StreamProducer("auto", message_compression="gzip"), StreamConsumer(), {P.LOGS: table}
        )
        assert payloads[0].record == sent["auto"]
    assert chosen == {"ids": "zstd", "text": "none"}


def test_unknown_compressions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown compression"):
        StreamProducer("lz4")
    with pytest.raises(ValueError, match="unknown compression"):
        StreamProducer("auto", message_compression="zstd")
    with pytest.raises(ValueError, match="zstd level 23"):
        StreamProducer("zstd", zstd_level=23)


def test_a_higher_zstd_level_sends_fewer_bytes_and_decodes_the_same() -> None:
    """``zstd_level`` replaces the per-stream choice between levels 1 and 3: on repetitive
    tables a high level writes smaller buffers, and the consumer, which reads the codec from
    the IPC metadata, decodes the same rows."""
    rng = random.Random(11)
    words = ["GET", "POST", "/api/cart", "/api/checkout", "200", "404", "frontend", "redis"]
    table = pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(2000), pa.uint16()),
            "value": pa.array([rng.choice([0.0, 1.5, 3120.0, 82.0]) for _ in range(2000)]),
            "body": pa.array([" ".join(rng.choice(words) for _ in range(12)) for _ in range(2000)]),
        }
    )
    sizes = {}
    for level in (None, 19):
        producer = StreamProducer("zstd", zstd_level=level)
        payloads, decoded = roundtrip(producer, StreamConsumer(), {P.LOGS: table})
        assert decoded[P.LOGS].to_pylist() == table.to_pylist()
        sizes[level] = len(payloads[0].record)
    assert sizes[19] < sizes[None]
