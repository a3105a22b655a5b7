"""Structure-aware inputs for the fuzz targets: valid messages, then mutated.

Each target's strategy draws a valid input of its format (OTLP requests from
``tests/unit/orasi_common/pdata/strategies.py``, their OTLP/JSON and OTAP forms, the example
configuration files) and then, most of the time, breaks it: the byte mutations of
``strategies.mutations`` (truncation, a flipped byte, bytes inserted or cut out), a length
prefix or a varint made to claim far more than follows, nesting thousands of levels deep, and
for OTAP, tables changed before they are encoded (columns dropped or filled with other values).
``seeds`` writes a sample of the valid inputs for a coverage-guided fuzzer's corpus.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message
from hypothesis import strategies as st

from orasi_common.errors import MalformedData
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otlp_json import to_json
from orasi_common.pdata.signal import SPECS
from orasi_common.receivers.wire import varint
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamProducer
from tests.unit.orasi_common.pdata.strategies import mutations, requests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_HUGE = [2**31 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1]


def _signal_of(request: Message) -> Signal:
    return next(s for s in Signal if isinstance(request, SPECS[s].request_type))


def length_corrupted(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a huge varint (a length or a value) written at some offset: a length prefix
    that claims gigabytes, or an over-long varint."""
    return st.tuples(st.integers(0, len(data)), st.integers(0, 10), st.sampled_from([*_HUGE, 2**70])).map(
        lambda p: data[: p[0]] + _long_varint(p[2]) + data[p[0] + p[1] :]
    )


def _long_varint(value: int) -> bytes:
    return varint(value) if value < 2**64 else b"\xff" * 11  # past the 10 bytes a varint may take


def nested_protobuf() -> st.SearchStrategy[bytes]:
    """A LEN field inside a LEN field, thousands deep (field 1 of every OTLP message is one)."""

    def build(p: tuple[int, int]) -> bytes:
        depth, number = p
        data = b""
        for _ in range(depth):
            data = varint(number << 3 | 2) + varint(len(data)) + data
        return data

    return st.tuples(st.integers(90, 3000), st.sampled_from([1, 2, 5])).map(build)


def broken(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid inputs, kept a fifth of the time, else mutated or length-corrupted."""
    return st.one_of(
        valid,
        valid.flatmap(mutations),
        valid.flatmap(length_corrupted),
        valid.flatmap(mutations).flatmap(mutations),
    )


def otlp_protobuf() -> st.SearchStrategy[bytes]:
    valid = requests().map(lambda m: m.SerializeToString())
    return st.one_of(broken(valid), nested_protobuf(), st.binary(max_size=64))


# --- OTLP/JSON -------------------------------------------------------------------------------


def _json_mutations(text: bytes) -> st.SearchStrategy[bytes]:
    """Values replaced inside the document (ids of odd lengths, huge numbers, wrong types)."""
    odd = st.one_of(
        st.sampled_from(["", "zz", "00" * 17, "0" * 31, "AAAAAAAAAAAAAAAAAAAAAA==", 2**64, -1, 1e308, None]),
        st.sampled_from([[], {}, True, "NaN", "Infinity", "18446744073709551616", "-5"]),
    )

    def replace(p: tuple[int, object]) -> bytes:
        index, value = p
        document = json.loads(text)
        paths = list(_json_paths(document))
        if not paths:
            return text
        node, key = paths[index % len(paths)]
        node[key] = value
        return json.dumps(document).encode()

    return st.tuples(st.integers(0, 10**6), odd).map(replace)


def _json_paths(node: object):  # type: ignore[no-untyped-def]
    stack = [node]
    while stack:
        current = stack.pop()
        items = (
            current.items()
            if isinstance(current, dict)
            else enumerate(current)
            if isinstance(current, list)
            else ()
        )
        for key, value in items:
            yield current, key
            stack.append(value)


def nested_json() -> st.SearchStrategy[bytes]:
    """Bodies nesting objects, arrays or AnyValues thousands of levels deep."""

    def build(p: tuple[int, int]) -> bytes:
        depth, shape = p
        if shape == 0:
            return b'{"resourceSpans":' + b"[" * depth + b"]" * depth + b"}"
        if shape == 1:
            return b'{"a":' * depth + b"1" + b"}" * depth
        value = '{"intValue":"1"}'
        for _ in range(depth):
            value = '{"kvlistValue":{"values":[{"key":"k","value":' + value + "}]}}"
        record = '{"body":' + value + "}"
        return ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + record + "]}]}]}").encode()

    return st.tuples(st.integers(20, 6000), st.integers(0, 2)).map(build)


def otlp_json() -> st.SearchStrategy[bytes]:
    valid = requests().map(to_json)
    return st.one_of(broken(valid), valid.flatmap(_json_mutations), nested_json(), st.binary(max_size=64))


# --- OTAP ------------------------------------------------------------------------------------


def _changed_table(table: pa.RecordBatch, how: int, column: int, seed: int) -> pa.RecordBatch:
    """The table with one column dropped, reversed, or shifted (ids pointing elsewhere)."""
    if table.num_columns == 0:
        return table
    column %= table.num_columns
    if how == 0:
        return table.drop_columns([table.schema.field(column).name])
    values = table.column(column)
    if how == 1:
        values = values.take(pa.array(range(len(values) - 1, -1, -1)))
    elif pa.types.is_integer(values.type):
        values = pc.add_checked(values.cast(pa.int64()), seed).cast(values.type, safe=False)
    return table.set_column(column, table.schema.field(column), values)


def _otap_records(p: tuple[Message, int, int, int, int, bool]) -> bytes:
    request, which, how, column, seed, compress = p
    try:
        batch = Batch.from_serialized(_signal_of(request), request.SerializeToString())
        tables = codec.encode(batch)
    except MalformedData:  # a request breaking validate.RULES, or with fields OTAP cannot carry
        return b""
    if how < 3 and tables:
        key = sorted(tables)[which % len(tables)]
        tables = {**tables, key: _changed_table(tables[key], how, column, seed)}
    producer = StreamProducer(compression="zstd" if compress else None)
    try:
        payloads = producer.encode(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        payloads = StreamProducer(compression=None).encode(codec.encode(batch))
    return otap_pb2.BatchArrowRecords(batch_id=1, arrow_payloads=payloads).SerializeToString()


def otap_valid() -> st.SearchStrategy[bytes]:
    return st.tuples(requests(), st.integers(0, 20), st.just(3), st.just(0), st.just(0), st.booleans()).map(
        _otap_records
    )


def otap() -> st.SearchStrategy[bytes]:
    changed = st.tuples(
        requests(),
        st.integers(0, 20),
        st.integers(0, 2),
        st.integers(0, 40),
        st.integers(-3, 3),
        st.booleans(),
    ).map(_otap_records)
    return st.one_of(broken(otap_valid()), changed, st.binary(max_size=64))


# --- the native scanner and configuration files ----------------------------------------------


def _cri_stamp(parts: tuple[int, int, int, int, int, int, str, str]) -> str:
    year, month, day, hour, minute, second, fraction, zone = parts
    stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return stamp + (f".{fraction}" if fraction else "") + zone


def cri_blocks() -> st.SearchStrategy[bytes]:
    """Blocks of CRI log lines (the filelog receiver's ``text_lines`` and ``cri_heads``): dates,
    fractions and zones in and out of range, other streams and tags."""
    stamp = st.tuples(
        st.integers(0, 9999),
        *(st.integers(0, top) for top in (13, 32, 24, 60, 61)),
        st.text("0123456789", max_size=11),
        st.sampled_from(["Z", "+02:00", "-23:59", "+24:00", "z", ""]),
    ).map(_cri_stamp)
    streams, tags = st.sampled_from(["stdout", "stderr", "stdin"]), st.sampled_from(["F", "P", "X"])
    line = st.tuples(stamp, streams, tags, st.text(max_size=40)).map(lambda p: " ".join(p).encode())
    newline = st.sampled_from([b"\n", b"\r\n"])
    return st.tuples(st.lists(line, max_size=20), newline).map(lambda p: p[1].join(p[0]))


def wirescan() -> st.SearchStrategy[bytes]:
    return st.one_of(otlp_protobuf(), cri_blocks(), cri_blocks().flatmap(mutations))


@cache
def _example_configs() -> list[bytes]:
    return [path.read_bytes() for path in sorted(EXAMPLES.glob("*.yaml"))]


def nested_yaml() -> st.SearchStrategy[bytes]:
    """Flow collections thousands deep, and anchors whose aliases expand exponentially."""

    def bomb(levels: int) -> bytes:
        lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
        return ("\n".join(lines) + "\nservice: {pipelines: {}}\n").encode()

    deep = st.tuples(st.integers(50, 5000), st.sampled_from(["[", "{a: "])).map(
        lambda p: b"service: " + p[1].encode() * p[0] + b"1" + (b"]" if p[1] == "[" else b"}") * p[0]
    )
    return st.one_of(deep, st.integers(3, 9).map(bomb))


def config() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(_example_configs())
    substitutions = st.sampled_from(
        [
            b"${env:SET}",
            b"${env:UNSET}",
            b"${env:UNSET:-1}",
            b"$$",
            b"${",
            b"&a",
            b"*a",
            b"<<: *a",
            b"!!python/object:os.system",
        ]
    )
    inserted = st.tuples(valid, st.integers(0, 10**6), substitutions).map(
        lambda p: p[0][: p[1] % (len(p[0]) + 1)] + p[2] + p[0][p[1] % (len(p[0]) + 1) :]
    )
    return st.one_of(valid, valid.flatmap(mutations), inserted, nested_yaml(), st.binary(max_size=64))


STRATEGIES = {
    "otlp_protobuf": otlp_protobuf,
    "otlp_json": otlp_json,
    "otap": otap,
    "wirescan": wirescan,
    "config": config,
}
"""Each target's inputs (target name → a function returning its strategy)."""

VALID = {
    "otlp_protobuf": lambda: requests().map(lambda m: m.SerializeToString()),
    "otlp_json": lambda: requests().map(to_json),
    "otap": otap_valid,
    "wirescan": lambda: st.one_of(requests().map(lambda m: m.SerializeToString()), cri_blocks()),
    "config": lambda: st.sampled_from(_example_configs()),
}
"""Each target's valid inputs alone (a coverage-guided fuzzer's seed corpus)."""
