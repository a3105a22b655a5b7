"""Micro-benchmark of the OTAP codec: OTLP ⇄ OTAP conversion rates and single-batch sizes.

Run from the repository root::

    python -m benchmarks.otap_codec            # 100 / 1000 / 5000-item batches, 5 rounds
    python -m benchmarks.otap_codec --quick    # one round, smaller repeat counts

For traces, logs and metrics and each batch size it prints:

* OTLP → OTAP items/s from a parsed request (``encode_*``) and from serialized bytes
  (``encode_*_bytes``, what a receiver holds), and OTAP → OTLP items/s (``decode_*`` to a
  parsed request and ``decode_*_bytes`` to serialized bytes). Items are spans, log records or
  data points.
* For traces, a naive converter (one Python loop over spans and attributes, building Arrow
  columns from lists) measured in the same rounds, and the codec's speed relative to it:
  absolute figures drift with machine load, ratios inside one run do not (PERF-NOTES.md).
* Bytes per item of the same data: OTLP protobuf, OTLP protobuf + zstd, and Arrow IPC of the
  OTAP tables (one IPC stream per table, schema included) with IPC zstd buffer compression,
  with the whole message zstd-compressed, and with string columns dictionary-encoded first
  (what the stream layer does; its deltas across batches are not modelled here).

Timings are CPU time of this process (``time.process_time``), best of the rounds per figure.
The figures also go to ``--json`` (default ``benchmarks/results/otap_codec.json``).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.allocator import tune_allocators
from orasi_common.bench.generate import logs_request, metrics_request, traces_request
from orasi_common.pdata.otap.logs import decode_logs, decode_logs_bytes, encode_logs, encode_logs_bytes
from orasi_common.pdata.otap.metrics import (
    decode_metrics,
    decode_metrics_bytes,
    encode_metrics,
    encode_metrics_bytes,
)
from orasi_common.pdata.otap.traces import (
    decode_traces,
    decode_traces_bytes,
    encode_traces,
    encode_traces_bytes,
)

SIZES = (100, 1000, 5000)

# ---------------------------------------------------------------------------------------------
# The naive converter (the PERF-NOTES baseline: one Python loop over spans and attributes)

_TYPE = {"string_value": 1, "int_value": 2, "double_value": 3, "bool_value": 4, None: 0}


def naive_traces(request: ExportTraceServiceRequest) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("tid", "sid", "psid", "name", "kind", "start", "dur", "code", "msg")
    }
    attrs: dict[str, list[Any]] = {k: [] for k in ("parent", "key", "type", "str", "int", "double", "bool")}
    index = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                cols["tid"].append(span.trace_id)
                cols["sid"].append(span.span_id)
                cols["psid"].append(span.parent_span_id or None)
                cols["name"].append(span.name)
                cols["kind"].append(span.kind)
                cols["start"].append(span.start_time_unix_nano)
                cols["dur"].append(span.end_time_unix_nano - span.start_time_unix_nano)
                cols["code"].append(span.status.code)
                cols["msg"].append(span.status.message)
                for kv in span.attributes:
                    value = kv.value
                    which = value.WhichOneof("value")
                    attrs["parent"].append(index)
                    attrs["key"].append(kv.key)
                    attrs["type"].append(_TYPE.get(which, 5))
                    attrs["str"].append(value.string_value if which == "string_value" else None)
                    attrs["int"].append(value.int_value if which == "int_value" else None)
                    attrs["double"].append(value.double_value if which == "double_value" else None)
                    attrs["bool"].append(value.bool_value if which == "bool_value" else None)
                index += 1
    types = [
        pa.binary(16),
        pa.binary(8),
        pa.binary(8),
        pa.string(),
        pa.int32(),
        pa.uint64(),
        pa.int64(),
        pa.int32(),
        pa.string(),
    ]
    spans = pa.RecordBatch.from_arrays(
        [pa.array(v, t) for v, t in zip(cols.values(), types, strict=True)], names=list(cols)
    )
    attr_types = [pa.uint16(), pa.string(), pa.uint8(), pa.string(), pa.int64(), pa.float64(), pa.bool_()]
    table = pa.RecordBatch.from_arrays(
        [pa.array(v, t) for v, t in zip(attrs.values(), attr_types, strict=True)], names=list(attrs)
    )
    return spans, table


# ---------------------------------------------------------------------------------------------
# Measuring


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """CPU seconds per call: the best of a few blocks of ``repeat`` calls."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - start) / repeat)
    return best


def ipc_bytes(tables: dict[Any, pa.RecordBatch], compression: str | None) -> bytes:
    """All tables as Arrow IPC streams (schema + one record batch each), concatenated."""
    out = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    for batch in tables.values():
        with pa.ipc.new_stream(out, batch.schema, options=options) as writer:
            writer.write_batch(batch)
    return out.getvalue()


def dictionary_encoded(tables: dict[Any, pa.RecordBatch]) -> dict[Any, pa.RecordBatch]:
    """String/binary columns (top level and in structs) dictionary-encoded, as the stream layer does."""

    def encode(arr: pa.Array) -> pa.Array:
        if pa.types.is_struct(arr.type):
            children = [encode(arr.field(i)) for i in range(arr.type.num_fields)]
            fields = [arr.type.field(i).with_type(c.type) for i, c in enumerate(children)]
            return pa.StructArray.from_arrays(
                children, fields=fields, mask=arr.is_null() if arr.null_count else None
            )
        if (
            pa.types.is_string(arr.type)
            or pa.types.is_binary(arr.type)
            or pa.types.is_fixed_size_binary(arr.type)
        ):
            dictionary = pc.dictionary_encode(arr)
            if len(dictionary.dictionary) >= len(arr) // 2:  # high cardinality: keep plain
                return arr
            index_type = pa.uint8() if len(dictionary.dictionary) < 256 else pa.uint16()
            return pa.DictionaryArray.from_arrays(dictionary.indices.cast(index_type), dictionary.dictionary)
        return arr

    out = {}
    for key, batch in tables.items():
        arrays = [encode(c) for c in batch.columns]
        fields = [f.with_type(a.type) for f, a in zip(batch.schema, arrays, strict=True)]
        out[key] = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return out


SIGNALS: dict[str, dict[str, Any]] = {
    "traces": {
        "make": traces_request,
        "encode": encode_traces,
        "encode_bytes": encode_traces_bytes,
        "decode": decode_traces,
        "decode_bytes": decode_traces_bytes,
        "unit": "spans",
        "count": lambda r: sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans),
    },
    "logs": {
        "make": logs_request,
        "encode": encode_logs,
        "encode_bytes": encode_logs_bytes,
        "decode": decode_logs,
        "decode_bytes": decode_logs_bytes,
        "unit": "logs",
        "count": lambda r: sum(len(sl.log_records) for rl in r.resource_logs for sl in rl.scope_logs),
    },
    "metrics": {
        "make": metrics_request,
        "encode": encode_metrics,
        "encode_bytes": encode_metrics_bytes,
        "decode": decode_metrics,
        "decode_bytes": decode_metrics_bytes,
        "unit": "points",
        "count": lambda r: sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for rm in r.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        ),
    },
}


def run(rounds: int, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    compressor = zstandard.ZstdCompressor(level=3)
    for signal, spec in SIGNALS.items():
        for size in SIZES:
            request = spec["make"](size)
            items = spec["count"](request)
            raw = request.SerializeToString()
            tables = spec["encode"](request)
            assert spec["decode"](tables) == request, f"{signal} round trip failed"
            repeat = max(1, (300 if quick else 1500) // size)
            samples: dict[str, list[float]] = {}
            measured: dict[str, Callable[[], object]] = {
                "encode": functools.partial(spec["encode"], request),
                "encode_bytes": functools.partial(spec["encode_bytes"], raw),
                "decode": functools.partial(spec["decode"], tables),
                "decode_bytes": functools.partial(spec["decode_bytes"], tables),
            }
            if signal == "traces":
                measured["naive"] = functools.partial(naive_traces, request)
            for _ in range(rounds):  # alternate so that every figure sees the same machine noise
                for name, fn in measured.items():
                    samples.setdefault(name, []).append(items / best_time(fn, repeat))
            rates = {name: max(values) for name, values in samples.items()}
            sizes = {
                "otlp": len(raw) / items,
                "otlp_zstd": len(compressor.compress(raw)) / items,
                "ipc": len(ipc_bytes(tables, None)) / items,
                "ipc_zstd_buffers": len(ipc_bytes(tables, "zstd")) / items,
                "ipc_zstd_whole": len(compressor.compress(ipc_bytes(tables, None))) / items,
                "ipc_dict_zstd_whole": len(compressor.compress(ipc_bytes(dictionary_encoded(tables), None)))
                / items,
            }
            results[f"{signal}/{size}"] = {"items": items, "rates": rates, "bytes_per_item": sizes}
            report(signal, spec["unit"], items, rates, sizes)
    return results


def report(signal: str, unit: str, items: int, rates: dict[str, float], sizes: dict[str, float]) -> None:
    line = (
        f"{signal:7s} {items:5d} {unit:6s} | OTLP→OTAP {rates['encode']:9,.0f}/s"
        f" (bytes in: {rates['encode_bytes']:9,.0f}/s)"
        f" | OTAP→OTLP {rates['decode']:9,.0f}/s (bytes out: {rates['decode_bytes']:9,.0f}/s)"
    )
    if "naive" in rates:
        line += f" | naive {rates['naive']:9,.0f}/s, x{rates['encode'] / rates['naive']:.2f}"
    print(line)
    print(
        f"{'':21s}bytes/{unit[:-1]}: OTLP {sizes['otlp']:6.1f}, +zstd {sizes['otlp_zstd']:6.1f} | "
        f"IPC {sizes['ipc']:6.1f}, zstd buffers {sizes['ipc_zstd_buffers']:6.1f}, "
        f"zstd whole {sizes['ipc_zstd_whole']:6.1f}, "
        f"dictionaries + zstd whole {sizes['ipc_dict_zstd_whole']:6.1f}"
    )


def main() -> None:
    tune_allocators()  # as `orasi` services do
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="one round, fewer repetitions")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).parent / "results" / "otap_codec.json",
        help="where to write figures",
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    print(f"OTAP codec, {os.cpu_count()} CPUs, best of {rounds} rounds (CPU time of this process)")
    results = run(rounds, args.quick)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    medians = [
        r["rates"]["encode"] / r["rates"]["naive"] for k, r in results.items() if k.startswith("traces/")
    ]
    print(f"codec / naive (traces OTLP→OTAP), median over batch sizes: x{statistics.median(medians):.2f}")


if __name__ == "__main__":
    main()
