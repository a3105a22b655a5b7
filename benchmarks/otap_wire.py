"""OTAP in stream mode against OTLP + zstd: wire bytes per item and conversion rates.

Run from the repository root::

    python -m benchmarks.otap_wire                 # corpus files and generated data, 100 / 1000 / 5000
    python -m benchmarks.otap_wire --quick         # 100 / 1000 only, generated data 5 batches
    python -m benchmarks.otap_wire --breakdown     # where the bytes go, per payload type and column
    python -m benchmarks.otap_wire --levels        # bytes and encoding rate per zstd level
    python -m benchmarks.otap_wire --floor         # what compression alone could reach

Data: every file of the telemetry corpus (``shared/corpus/``, re-batched in file order into
requests of N items as its README says: spans, log records or data points), and beside it the
generated data of ``orasi_common.bench.generate`` (mostly random values: a stress case, where
OTAP must still not be larger than OTLP+zstd at 1,000 items).

For each source and batch size the batches go through one ``StreamProducer`` exactly as the
`otap` exporter sends them on one gRPC stream with its defaults: schema once, dictionary
deltas, IPC buffers compressed with zstd or not per payload type (``payload_compression:
auto``), each ``BatchArrowRecords`` message gzip-compressed by the gRPC call (``compression:
gzip``; grpcio compresses each message of a stream with zlib's default level, which these
bytes reproduce to within the HTTP/2 framing). They are compared with the same batches as OTLP
protobuf compressed with zstd (level 3, what a zstd-compressing OTLP exporter sends). The
column ``payloads`` gives the stream's IPC payloads alone, zstd-compressed, without the
message compression (what ``--breakdown`` splits). It also times the exporter side (OTLP
bytes → tables → IPC payloads → the compressed message) and the receiver side (message →
payloads → tables → OTLP bytes) per core: items per second of process CPU time, best of
``--rounds``, with the allocators tuned as the services tune them.

``--breakdown`` prints, for 1,000-item batches of each corpus file, the stream's bytes per
payload type, and per column the bytes of that column sent alone on a stream of its own (the
same producer, one column per table): what each column costs compressed, with its
dictionary deltas. The OTLP side is broken down by field the same way: the zstd bytes a
request loses when one field is cleared in every item.

``--levels`` sends the corpus at 1,000 items with each ``arrow.payload_compression_level``
(bytes on the wire, exporter-side rate). ``--floor`` asks how far compression alone could go:
the same messages with plain IPC buffers under gzip 6 (grpcio's), gzip 9, zstd 3 and 19 and
xz; every column of every table, the whole file as one xz stream (more context than any
stream's state); and the columns every item fills (ids and times, log bodies and times, point
values and times) alone, per message, under the strongest of zstd 19 and xz.

Targets (issue 15, corpus, 1,000-item batches): OTAP ≤ 0.55x OTLP+zstd for traces and logs,
≤ 0.45x for metrics, ≤ 1.1x at 100 items; OTLP → OTAP ≥ 250k spans/s per core, OTAP → OTLP
≥ 200k spans/s per core.
"""

from __future__ import annotations

import argparse
import functools
import json
import lzma
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import zstandard
from google.protobuf.message import Message

from benchmarks.corpus import CORPUS, read_requests, rebatch
from orasi_common.allocator import tune_allocators
from orasi_common.bench.generate import logs_request, metrics_request, traces_request
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.payload_types import ArrowPayloadType
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamConsumer, StreamProducer, gzip_message, gzip_size

SIZES = (100, 1000, 5000)
TARGETS = {Signal.TRACES: 0.55, Signal.LOGS: 0.55, Signal.METRICS: 0.45}
SMALL_TARGET = 1.1
CORPUS_FILES = {
    "hipstershop-oteltraces": Signal.TRACES,
    "hipstershop-otelmetrics": Signal.METRICS,
    "loghub-otellogs": Signal.LOGS,
}
GENERATED: dict[Signal, Callable[[int, int], Message]] = {
    Signal.TRACES: traces_request,
    Signal.LOGS: logs_request,
    Signal.METRICS: metrics_request,
}
RESULTS = Path(__file__).resolve().parent / "results" / "otap_wire.json"


@dataclass
class Source:
    name: str
    signal: Signal
    batches: Callable[[int], list[Batch]]  # the data at one batch size


def corpus_sources() -> list[Source]:
    sources = []
    for stem, signal in CORPUS_FILES.items():
        requests = read_requests(CORPUS / f"{stem}.zst", signal.value)

        def batches(size: int, requests: list[Message] = requests, signal: Signal = signal) -> list[Batch]:
            return [
                Batch.from_serialized(signal, r.SerializeToString()) for r in rebatch(requests, size, signal)
            ]

        sources.append(Source(stem, signal, batches))
    return sources


def generated_sources(count: int) -> list[Source]:
    def make(signal: Signal) -> Source:
        def batches(size: int) -> list[Batch]:
            return [
                Batch.from_serialized(signal, GENERATED[signal](size, seed).SerializeToString())
                for seed in range(1, count + 1)
            ]

        return Source(f"generated-{signal.value}", signal, batches)

    return [make(signal) for signal in (Signal.TRACES, Signal.LOGS, Signal.METRICS)]


def encode_stream(
    data: list[Batch], *, sent: bool = True, zstd_level: int | None = None
) -> tuple[list[bytes], StreamProducer]:
    """The batches as ``BatchArrowRecords`` messages of one stream as the exporter's defaults
    send them (``sent``: IPC buffers zstd or not, the message gzip-compressed; ``zstd_level``:
    ``arrow.payload_compression_level``), or as serialized messages of zstd IPC payloads; and
    the stream's producer."""
    producer = (
        StreamProducer("auto", message_compression="gzip", zstd_level=zstd_level)
        if sent
        else StreamProducer()
    )
    records = [
        otap_pb2.BatchArrowRecords(
            batch_id=i, arrow_payloads=producer.encode(codec.encode(b))
        ).SerializeToString()
        for i, b in enumerate(data)
    ]
    return ([gzip_message(record) for record in records] if sent else records), producer


def decode_stream(signal: Signal, records: list[bytes]) -> None:
    consumer = StreamConsumer()
    for sent in records:
        message = otap_pb2.BatchArrowRecords.FromString(zlib.decompress(sent, 31))
        batch = codec.decode(signal, consumer.decode(message.arrow_payloads), tenant="t", batch_id="b")
        codec.decode_tables(signal, batch.otap or {})


def best_cpu(rounds: int, run: Callable[[], Any]) -> float:
    """The least process CPU time of ``rounds`` runs of ``run``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(source: Source, size: int, rounds: int) -> dict[str, Any]:
    data = source.batches(size)
    items = sum(b.items for b in data)
    compressor = zstandard.ZstdCompressor(level=3)
    otlp_zstd = sum(len(compressor.compress(b.raw)) for b in data)
    otlp = sum(len(b.raw) for b in data)
    records, producer = encode_stream(data)
    encode_s = best_cpu(rounds, lambda: encode_stream(data))
    decode_s = best_cpu(rounds, lambda: decode_stream(source.signal, records))
    otap = sum(len(r) for r in records)
    payloads = sum(len(r) for r in encode_stream(data, sent=False)[0])
    return {
        "source": source.name,
        "signal": source.signal.value,
        "batch_size": size,
        "batches": len(data),
        "items": items,
        "otlp_bytes_per_item": round(otlp / items, 1),
        "otlp_zstd_bytes_per_item": round(otlp_zstd / items, 1),
        "otap_bytes_per_item": round(otap / items, 1),
        "ratio_otap_to_otlp_zstd": round(otap / otlp_zstd, 3),
        "otap_payloads_zstd_bytes_per_item": round(payloads / items, 1),
        "ratio_payloads_to_otlp_zstd": round(payloads / otlp_zstd, 3),
        "schema_resets": producer.schema_resets,
        "encode_items_per_s": round(items / encode_s),
        "decode_items_per_s": round(items / decode_s),
    }


# ---------------------------------------------------------------------------------------------
# --breakdown


def _flat_columns(batch: pa.RecordBatch) -> Iterable[tuple[str, pa.Array]]:
    """(dotted name, column) for every leaf column, struct children included."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_struct(column.type):
            for i in range(column.type.num_fields):
                yield f"{name}.{column.type.field(i).name}", column.field(i)
        else:
            yield name, column


def _framing(record: bytes, into: list[int]) -> None:
    """Add a payload's record-batch metadata, record-batch body and schema/dictionary message
    bytes to ``into`` (Arrow IPC compresses bodies only, never the metadata)."""
    reader = pa.BufferReader(record)
    while reader.tell() < len(record):
        message = pa.ipc.read_message(reader)
        body = 0 if message.body is None else message.body.size
        if message.type == "record batch":
            into[0] += reader.tell() - body - into[3]
            into[1] += body
        else:
            into[2] += reader.tell() - into[3]
        into[3] = reader.tell()


def otap_breakdown(data: list[Batch]) -> tuple[dict[str, int], dict[str, int], dict[str, list[int]]]:
    """Bytes per payload type on the stream, per column sent alone on its own stream, and per
    payload type split into record-batch metadata, record-batch bodies and schema/dictionary
    messages."""
    per_type: dict[str, int] = defaultdict(int)
    framing: dict[str, list[int]] = {}
    tables = [codec.encode(b) for b in data]
    producer = StreamProducer()
    for batch_tables in tables:
        for payload in producer.encode(batch_tables):
            name = ArrowPayloadType(payload.type).name
            per_type[name] += len(payload.record)
            split = framing.setdefault(name, [0, 0, 0, 0])
            split[3] = 0  # where the payload's previous message ended
            _framing(payload.record, split)
    per_column: dict[str, int] = defaultdict(int)
    alone: dict[str, StreamProducer] = {}  # a stream of its own for each column
    for batch_tables in tables:
        for kind, table in batch_tables.items():
            for name, column in _flat_columns(table):
                label = f"{kind.name}.{name}"
                single = pa.RecordBatch.from_arrays([column], [name])
                for payload in alone.setdefault(label, StreamProducer()).encode({kind: single}):
                    per_column[label] += len(payload.record)
    return per_type, per_column, {name: split[:3] for name, split in framing.items()}


def _cleared(signal: Signal, request: Message, path: str) -> Message:
    """A copy of the request with field ``path`` (dotted, below the item) cleared in every item."""
    copy = type(request)()
    copy.CopyFrom(request)
    for item in _items(signal, copy):
        *parents, last = path.split(".")
        target = item
        for part in parents:
            target = getattr(target, part)
        target.ClearField(last)
    return copy


def _items(signal: Signal, request: Message) -> Iterable[Message]:
    spec = SPECS[signal]
    for rx in getattr(request, spec.resource_field):
        for sx in getattr(rx, spec.scope_field):
            yield from getattr(sx, spec.item_field)


def otlp_breakdown(signal: Signal, data: list[Batch]) -> dict[str, int]:
    """OTLP+zstd bytes each item field costs: the bytes saved when it is cleared everywhere."""
    compressor = zstandard.ZstdCompressor(level=3)
    parsed = [SPECS[signal].request_type.FromString(b.raw) for b in data]
    whole = sum(len(compressor.compress(r.SerializeToString())) for r in parsed)
    out = {"(whole request)": whole}
    items = next(iter(_items(signal, parsed[0])))
    for path in [field.name for field in items.DESCRIPTOR.fields]:
        without = sum(len(compressor.compress(_cleared(signal, r, path).SerializeToString())) for r in parsed)
        out[path] = whole - without
    return out


def breakdown(sources: list[Source], size: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for source in sources:
        data = source.batches(size)
        items = sum(b.items for b in data)
        compressor = zstandard.ZstdCompressor(level=3)
        otlp_zstd = sum(len(compressor.compress(b.raw)) for b in data)
        per_type, per_column, framing = otap_breakdown(data)
        per_field = otlp_breakdown(source.signal, data)
        print(f"\n{source.name}, {size}-item batches: OTLP+zstd {otlp_zstd / items:.1f} B/item")
        print(f"  OTAP per payload type (B/item): total {sum(per_type.values()) / items:.1f}")
        print(f"    {'':28} {'':7} {'batch metadata':>14} {'batch bodies':>12} {'schema+dicts':>12}")
        for name, size_ in sorted(per_type.items(), key=lambda kv: -kv[1]):
            meta, body, other = (part / items for part in framing[name])
            print(f"    {name:28} {size_ / items:7.2f} {meta:14.2f} {body:12.2f} {other:12.2f}")
        print("  OTAP per column, each alone on a stream (B/item)")
        for name, size_ in sorted(per_column.items(), key=lambda kv: -kv[1]):
            if size_ / items >= 0.05:
                print(f"    {name:40} {size_ / items:7.2f}")
        print("  OTLP+zstd per item field: bytes saved when cleared (B/item)")
        for name, size_ in sorted(per_field.items(), key=lambda kv: -kv[1]):
            print(f"    {name:28} {size_ / items:7.2f}")
        report[source.name] = {
            "items": items,
            "otlp_zstd": otlp_zstd,
            "otap_per_payload_type": per_type,
            "otap_framing_per_payload_type": framing,
            "otap_per_column": per_column,
            "otlp_per_field": per_field,
        }
    return report


# ---------------------------------------------------------------------------------------------
# --levels: bytes against CPU with arrow.payload_compression_level

LEVELS = (None, 6, 9, 12, 15, 19)


def levels(sources: list[Source], size: int, rounds: int) -> dict[str, Any]:
    """Bytes per item on the wire and the exporter side's rate, per zstd level of the IPC
    buffers (None: the default choice of 1 or 3 per IPC stream)."""
    report: dict[str, Any] = {}
    print(f"\n{size}-item batches: bytes per item on the wire and encoding rate per zstd level")
    for source in sources:
        data = source.batches(size)
        items = sum(b.items for b in data)
        otlp_zstd = sum(len(zstandard.ZstdCompressor(level=3).compress(b.raw)) for b in data)
        rows = []
        for level in LEVELS:
            sent = sum(len(r) for r in encode_stream(data, zstd_level=level)[0])
            encode_s = best_cpu(rounds, functools.partial(encode_stream, data, zstd_level=level))
            rows.append(
                {
                    "level": level,
                    "otap_bytes_per_item": round(sent / items, 2),
                    "ratio_otap_to_otlp_zstd": round(sent / otlp_zstd, 3),
                    "encode_items_per_s": round(items / encode_s),
                }
            )
            print(
                f"  {source.name:24} level {level or 'default':>7} {sent / items:7.2f} B "
                f"{sent / otlp_zstd:6.3f}x (target {TARGETS[source.signal]}) "
                f"{items / encode_s:>9,.0f} items/s",
                flush=True,
            )
        report[source.name] = rows
    return report


# ---------------------------------------------------------------------------------------------
# --floor: what no choice of compression removes

# The columns every item fills, in the types the OTAP specification gives them: identities,
# times, values, log bodies
FIXED_COLUMNS = {
    Signal.TRACES: (
        ArrowPayloadType.SPANS,
        ("trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "duration_time_unix_nano"),
    ),
    Signal.LOGS: (ArrowPayloadType.LOGS, ("body.str", "time_unix_nano", "observed_time_unix_nano")),
    Signal.METRICS: (
        ArrowPayloadType.NUMBER_DATA_POINTS,
        ("time_unix_nano", "start_time_unix_nano", "int_value", "double_value"),
    ),
}
CODECS: dict[str, Callable[[bytes], int]] = {
    "gzip 6 (grpcio)": gzip_size,
    "gzip 9": lambda data: len(zlib.compress(data, 9)),
    "zstd 3": lambda data: len(zstandard.ZstdCompressor(level=3).compress(data)),
    "zstd 19": lambda data: len(zstandard.ZstdCompressor(level=19).compress(data)),
    "xz 9e": lambda data: len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
}


def _values(column: pa.Array) -> bytes:
    """A column's values as its IPC buffers hold them: fixed-width little-endian (nulls as 0),
    text and binary as their bytes, NUL-separated."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return b"\0".join((value or "").encode() for value in column.to_pylist())
    if pa.types.is_fixed_size_binary(column.type):
        return b"".join(value or b"" for value in column.to_pylist())
    if pa.types.is_timestamp(column.type) or pa.types.is_duration(column.type):
        column = column.cast(pa.int64())
    elif pa.types.is_boolean(column.type):
        column = column.cast(pa.uint8())
    return bytes(column.fill_null(0).to_numpy(zero_copy_only=False).tobytes())


def _column(batch: pa.RecordBatch, path: str) -> pa.Array:
    head, _, child = path.partition(".")
    column = batch.column(head)
    return column.field(child) if child else column


def floor(sources: list[Source], size: int) -> dict[str, Any]:
    """How small the OTAP of each corpus file could get by compression alone: its messages
    with plain IPC buffers under each codec (grpcio's gzip is the only one a Python gRPC call
    has); every column of every table, all batches as one xz stream (unbounded context, so no
    stream encoding's state could see more); and the columns every item fills alone, per
    message, under the strongest codec."""
    report: dict[str, Any] = {}
    for source in sources:
        data = source.batches(size)
        items = sum(b.items for b in data)
        otlp_zstd = sum(len(zstandard.ZstdCompressor(level=3).compress(b.raw)) for b in data)
        target = TARGETS[source.signal] * otlp_zstd / items
        sent = sum(len(r) for r in encode_stream(data)[0])
        tables = [codec.encode(b) for b in data]
        producer = StreamProducer(None)
        plain = [
            otap_pb2.BatchArrowRecords(batch_id=i, arrow_payloads=producer.encode(t)).SerializeToString()
            for i, t in enumerate(tables)
        ]
        per_codec = {name: sum(map(size_of, plain)) / items for name, size_of in CODECS.items()}
        everything = b"".join(
            _values(column) for t in tables for kind in sorted(t) for _, column in _flat_columns(t[kind])
        )
        unbounded = CODECS["xz 9e"](everything) / items
        kind, paths = FIXED_COLUMNS[source.signal]
        fixed = [b"".join(_values(_column(t[kind], path)) for path in paths) for t in tables if kind in t]
        fixed_floor = sum(min(CODECS["zstd 19"](b), CODECS["xz 9e"](b)) for b in fixed) / items
        print(
            f"\n{source.name}, {size}-item batches: OTLP+zstd {otlp_zstd / items:.2f} B/item, target "
            f"{target:.2f} ({TARGETS[source.signal]}x), sent with the defaults {sent / items:.2f}"
        )
        print(
            "  plain-buffer messages under each codec: "
            + ", ".join(f"{n} {b:.2f}" for n, b in per_codec.items())
        )
        print(f"  every column, the whole file as one xz stream: {unbounded:.2f}")
        print(f"  {', '.join(paths)} alone, per message, strongest codec: {fixed_floor:.2f}")
        report[source.name] = {
            "otlp_zstd_bytes_per_item": round(otlp_zstd / items, 2),
            "target_bytes_per_item": round(target, 2),
            "sent_bytes_per_item": round(sent / items, 2),
            "plain_messages_bytes_per_item": {n: round(b, 2) for n, b in per_codec.items()},
            "all_columns_one_xz_stream_bytes_per_item": round(unbounded, 2),
            "fixed_columns": list(paths),
            "fixed_columns_bytes_per_item": round(fixed_floor, 2),
        }
    return report


def main() -> None:
    tune_allocators()  # as `orasi` services do
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 items; generated data: 5 batches")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per figure (best is kept)")
    parser.add_argument("--breakdown", action="store_true", help="where the bytes go (corpus files)")
    parser.add_argument(
        "--breakdown-size",
        type=int,
        default=1000,
        help="items per batch for --breakdown, --levels and --floor",
    )
    parser.add_argument(
        "--levels", action="store_true", help="bytes and encoding rate per zstd level (corpus)"
    )
    parser.add_argument("--floor", action="store_true", help="what compression alone could reach (corpus)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write figures ({RESULTS})")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(corpus_sources(), args.breakdown_size)
        return
    if args.levels or args.floor:
        report = (
            levels(corpus_sources(), args.breakdown_size, args.rounds)
            if args.levels
            else floor(corpus_sources(), args.breakdown_size)
        )
        out = (
            args.json
            if args.json != RESULTS
            else RESULTS.with_name(f"otap_wire_{'levels' if args.levels else 'floor'}.json")
        )
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nfigures written to {out}")
        return
    sizes = SIZES[:2] if args.quick else SIZES
    sources = corpus_sources() + generated_sources(5 if args.quick else 20)
    header = (
        f"{'source':24} {'batch':>6} {'OTLP':>7} {'+zstd':>7} {'OTAP':>7} {'OTAP/zstd':>9} "
        f"{'target':>6} {'payloads':>8} {'resets':>6} {'enc/s':>9} {'dec/s':>9}"
    )
    print(
        "bytes per item on the wire (OTAP with the exporter's defaults; payloads: the IPC payloads "
        "alone, zstd, as a ratio); items/s per core (process CPU time)\n" + header
    )
    rows = []
    for source in sources:
        for size in sizes:
            row = measure(source, size, args.rounds)
            rows.append(row)
            corpus = not source.name.startswith("generated")
            target = ""
            if corpus and size == 1000:
                target = f"≤{TARGETS[source.signal]}"
            elif corpus and size == 100:
                target = f"≤{SMALL_TARGET}"
            elif size == 1000:
                target = "≤1.0"
            print(
                f"{source.name:24} {size:>6} {row['otlp_bytes_per_item']:>7} "
                f"{row['otlp_zstd_bytes_per_item']:>7} {row['otap_bytes_per_item']:>7} "
                f"{row['ratio_otap_to_otlp_zstd']:>9} {target:>6} {row['ratio_payloads_to_otlp_zstd']:>8} "
                f"{row['schema_resets']:>6} "
                f"{row['encode_items_per_s']:>9,} {row['decode_items_per_s']:>9,}",
                flush=True,
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "otap_wire", "rows": rows}, indent=1) + "\n")
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
