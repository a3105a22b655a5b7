"""OTAP in stream mode against OTLP + zstd: wire bytes per item and conversion rates.

Run from the repository root::

    python -m benchmarks.otap_wire            # 100 / 1000 / 5000-item batches, 20 batches each
    python -m benchmarks.otap_wire --quick

For traces, logs and metrics (items: spans, log records, data points) and each batch size, a
sequence of batches (different data, the vocabulary of a realistic service) goes through one
``StreamProducer`` exactly as the `otap` exporter sends it on one gRPC stream: schema once,
dictionary deltas, zstd IPC buffers. The serialized ``BatchArrowRecords`` are compared with the
same batches as OTLP protobuf compressed with zstd (level 3, what a zstd-compressing OTLP
exporter sends), in the same run. It also times the exporter side (OTLP bytes → tables → IPC
payloads) and the receiver side (payloads → tables → OTLP bytes) per core (process CPU time).

Targets (ISSUE 4): at 1,000-item batches OTAP ≤ 0.6x OTLP+zstd for traces, ≤ 0.5x for logs,
≤ 0.3x for metrics; OTLP → OTAP ≥ 200k spans/s per core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard
from google.protobuf.message import Message

from orasi_common.bench.generate import logs_request, metrics_request, traces_request
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamConsumer, StreamProducer

SIZES = (100, 1000, 5000)
TARGETS = {Signal.TRACES: 0.6, Signal.LOGS: 0.5, Signal.METRICS: 0.3}
REQUESTS: dict[Signal, Callable[[int, int], Message]] = {
    Signal.TRACES: traces_request,
    Signal.LOGS: logs_request,
    Signal.METRICS: metrics_request,
}
RESULTS = Path(__file__).resolve().parent / "results" / "otap_wire.json"


def measure(signal: Signal, size: int, batches: int) -> dict[str, Any]:
    data = [
        Batch.from_serialized(signal, REQUESTS[signal](size, seed).SerializeToString())
        for seed in range(1, batches + 1)
    ]
    items = sum(b.items for b in data)
    compressor = zstandard.ZstdCompressor(level=3)
    otlp_zstd = sum(len(compressor.compress(b.raw)) for b in data)
    otlp = sum(len(b.raw) for b in data)

    producer = StreamProducer()
    started = time.process_time()
    records = [
        otap_pb2.BatchArrowRecords(
            batch_id=i, arrow_payloads=producer.encode(codec.encode(b))
        ).SerializeToString()
        for i, b in enumerate(data)
    ]
    encode_s = time.process_time() - started

    consumer = StreamConsumer()
    started = time.process_time()
    for raw in records:
        message = otap_pb2.BatchArrowRecords.FromString(raw)
        codec.decode(signal, consumer.decode(message.arrow_payloads), tenant="t", batch_id="b")
    decode_s = time.process_time() - started

    otap = sum(len(r) for r in records)
    steady = sum(len(r) for r in records[1:]) / max(1, items - data[0].items)
    return {
        "signal": signal.value,
        "batch_size": size,
        "batches": batches,
        "items": items,
        "otlp_bytes_per_item": round(otlp / items, 1),
        "otlp_zstd_bytes_per_item": round(otlp_zstd / items, 1),
        "otap_bytes_per_item": round(otap / items, 1),
        "otap_steady_bytes_per_item": round(steady, 1),
        "ratio_otap_to_otlp_zstd": round(otap / otlp_zstd, 3),
        "encode_items_per_s": round(items / encode_s),
        "decode_items_per_s": round(items / decode_s),
        "schema_resets": producer.schema_resets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 batches per size instead of 20")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write figures ({RESULTS})")
    args = parser.parse_args()
    batches = 5 if args.quick else 20
    rows = []
    header = (
        f"{'signal':8} {'batch':>6} {'OTLP':>7} {'+zstd':>7} {'OTAP':>7} {'steady':>7} "
        f"{'OTAP/zstd':>9} {'target':>6} {'enc/s':>9} {'dec/s':>9}"
    )
    print("bytes per item on the wire; items/s per core of this process\n" + header)
    for signal in (Signal.TRACES, Signal.LOGS, Signal.METRICS):
        for size in SIZES:
            row = measure(signal, size, batches)
            rows.append(row)
            print(
                f"{signal.value:8} {size:>6} {row['otlp_bytes_per_item']:>7} "
                f"{row['otlp_zstd_bytes_per_item']:>7} {row['otap_bytes_per_item']:>7} "
                f"{row['otap_steady_bytes_per_item']:>7} {row['ratio_otap_to_otlp_zstd']:>9} "
                f"{'≤' + str(TARGETS[signal]) if size == 1000 else '':>6} "
                f"{row['encode_items_per_s']:>9,} {row['decode_items_per_s']:>9,}",
                flush=True,
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "otap_wire", "rows": rows}, indent=1) + "\n")
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
