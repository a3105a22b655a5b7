"""Lake benchmark, part 1 — ingest: the converter, pyarrow's raw Parquet write of the same rows,
the commit step alone, the lake exporter in this process, and a running ``orasi bridge`` fed over
OTLP/gRPC by a load generator in another process (``benchmarks.load.counted_main``).

The bridge's rate is measured while it is loaded (``steady_rate``: the commits after the first,
up to the last one before the load ended, read back from the catalog's snapshots); the rate from
the first send to the last commit is reported too. Besides the wall-clock ratio (the target),
CPU seconds per span of the bridge (its workers included) are compared with those of the raw
write: that ratio moves much less when other processes share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.lake_rig import (
    BUCKET,
    S3_REGION,
    Bridge,
    Lab,
    lake_config,
    make_writer,
    open_spans_table,
    py_spy,
    s3_filesystem,
    start_bridge,
)
from benchmarks.load import Counted, counted_main, trace_request
from benchmarks.processes import HOST, log_tail, receive
from benchmarks.report import say
from benchmarks.usage import cpu_seconds

TARGET_INGEST_RATIO = 0.25


def snapshots_after(table: Any, baseline_ids: set[int]) -> list[Any]:
    table.refresh()
    return sorted(
        (s for s in table.snapshots() if s.snapshot_id not in baseline_ids), key=lambda s: s.timestamp_ms
    )


def added_records(snapshot: Any) -> int:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    return int(props.get("added-records", 0))


def bench_ingest(lab: Lab, args: argparse.Namespace, results: dict[str, Any]) -> Bridge | None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from orasi_bridge.lake.convert import CONVERT_ITEMS
    from orasi_bridge.lake.rows import otlp as rows
    from orasi_bridge.lake.schema import SPANS

    out: dict[str, Any] = results.setdefault("ingest", {})
    requests = max(1, args.ingest_spans // 100)
    spans = requests * 100
    pool = min(args.pool or requests, requests)
    say(f"ingest: building {pool:,} distinct 100-span requests")
    with concurrent.futures.ProcessPoolExecutor(
        os.cpu_count(), mp_context=multiprocessing.get_context("spawn")
    ) as builders:
        payloads = list(builders.map(trace_request, range(pool), chunksize=64))
    out["workload"] = {
        "spans": spans,
        "requests": requests,
        "spans_per_request": 100,
        "distinct_payloads": len(payloads),
        "payload_bytes_avg": int(statistics.mean(len(p) for p in payloads)),
        "attributes_per_span": 10,
        "services_per_request": 4,
    }

    # 1a/1b. The converter alone (parsing excluded; timed separately) and pyarrow's raw Parquet
    # (zstd) of the same rows to SeaweedFS and to memory, in alternating rounds so that both see
    # the same machine noise: round 0 converts every request (the rows every later step uses),
    # rounds 1 and 2 re-convert a third of them. Each figure is a median over its rounds; CPU
    # seconds (this process, all threads) are recorded too, as they move less with the noise.
    started = time.perf_counter()
    for payload in payloads:
        ExportTraceServiceRequest.FromString(payload)
    parse_s = (time.perf_counter() - started) * requests / len(payloads)
    s3 = s3_filesystem()
    convert_rates, convert_cpu, memory_rates, s3_rates, s3_cpu = [], [], [], [], []
    batches: list[Any] = []
    table = None
    size = 0
    for round_ in range(3):
        count = requests if round_ == 0 else max(1, requests // 3)
        started, cpu = time.perf_counter(), time.process_time()
        # As the writer does: requests merged (their bytes concatenated) CONVERT_ITEMS at a time.
        per_chunk = max(1, CONVERT_ITEMS // 100)
        converted = [
            rows.spans_batch(
                b"".join(payloads[i % len(payloads)] for i in range(first, min(first + per_chunk, count))),
                "default",
                S3_REGION,
            )
            for first in range(0, count, per_chunk)
        ]
        convert_rates.append(count * 100 / (time.perf_counter() - started))
        convert_cpu.append((time.process_time() - cpu) / (count * 100))
        if round_ == 0:
            batches = converted
            table = pa.Table.from_batches(batches, schema=SPANS)
        del converted
        sink = pa.BufferOutputStream()
        started = time.perf_counter()
        pq.write_table(table, sink, compression="zstd")
        memory_rates.append(spans / (time.perf_counter() - started))
        size = sink.getvalue().size
        del sink
        started, cpu = time.perf_counter(), time.process_time()
        pq.write_table(
            table, f"{BUCKET}/{lab.prefix}/raw/spans-{round_}.parquet", filesystem=s3, compression="zstd"
        )
        s3_rates.append(spans / (time.perf_counter() - started))
        s3_cpu.append((time.process_time() - cpu) / spans)
    assert table is not None
    converter_rate = statistics.median(convert_rates)
    out["converter"] = {
        "spans_per_s": converter_rate,
        "spans_per_s_rounds": convert_rates,
        "us_per_span": 1e6 / converter_rate,
        "cpu_us_per_span": statistics.median(convert_cpu) * 1e6,
        "protobuf_parse_spans_per_s": spans / parse_s,
        "arrow_bytes_per_span": table.nbytes / spans,
        "input_chunks": len(batches),
    }
    say(f"ingest: converter {converter_rate:,.0f} spans/s")
    raw_rate = statistics.median(s3_rates)
    out["raw_parquet"] = {
        "rows_per_s": raw_rate,
        "rows_per_s_rounds": s3_rates,
        "cpu_us_per_row": statistics.median(s3_cpu) * 1e6,
        "memory_rows_per_s": statistics.median(memory_rates),
        "bytes_per_span": size / spans,
        "compression": "zstd (pyarrow default level)",
        "input": "the converter's table as produced: one chunk per request, unsorted",
    }
    say(f"ingest: raw Parquet to S3 {raw_rate:,.0f} rows/s")

    # 1c. the lake's commit step alone, on the same rows: the writer's sort, files and commit
    catalog_uri = lab.database("ingest")
    warehouse = lab.warehouse("ingest")
    flush = {"flush_interval": args.flush_interval, "flush_size_mib": args.flush_size_mib}
    asyncio.run(_commit_alone(make_writer(lake_config(catalog_uri, warehouse)), table, out))
    writer = make_writer(lake_config(catalog_uri, warehouse, **flush))
    del table, batches
    say(f"ingest: commit step alone {out['commit_alone']['rows_per_s']:,.0f} rows/s")

    # 1d. the exporter path in this process
    asyncio.run(_inprocess(writer, payloads, requests, out))
    say(f"ingest: in-process lake exporter {out['lake_inprocess']['spans_per_s']:,.0f} spans/s")

    raw = out["raw_parquet"]["rows_per_s"]
    out["ratio_inprocess_vs_raw_parquet"] = out["lake_inprocess"]["spans_per_s"] / raw
    out["ratio_converter_vs_raw_parquet"] = out["converter"]["spans_per_s"] / raw
    out["target_ratio"] = TARGET_INGEST_RATIO

    # 1e. a running `orasi bridge`, fed over OTLP/gRPC from another process
    if args.no_bridge:
        return None
    bridge = start_bridge(
        lab,
        "ingest-bridge",
        lake_config(catalog_uri, warehouse, **flush),
        receiver_processes=args.receiver_processes,
    )
    bridge_requests = max(1, args.bridge_spans // 100)
    say(
        f"ingest: bridge up (pid {bridge.service.pid}), "
        f"{args.bridge_rounds} rounds of {bridge_requests * 100:,} spans"
    )
    spans_table = open_spans_table(lake_config(catalog_uri, warehouse))
    rounds = []
    for number in range(1, args.bridge_rounds + 1):
        last = number == args.bridge_rounds
        rounds.append(_bridge_round(lab, args, bridge, spans_table, payloads, bridge_requests, profile=last))
        say(
            f"ingest: round {number}: bridge {rounds[-1]['spans_per_s']:,.0f} spans/s committed while "
            f"loaded, {rounds[-1]['burst_spans_per_s']:,.0f} from first send to last commit, "
            f"{rounds[-1]['ack_spans_per_s']:,.0f} acknowledged"
        )
    # The median round (as the raw write's figure is the median of its rounds).
    median = sorted(rounds, key=lambda r: r["spans_per_s"])[len(rounds) // 2]
    out["lake_bridge_grpc"] = {
        **median,
        "rounds": [
            {key: r[key] for key in ("spans_per_s", "burst_spans_per_s", "ack_spans_per_s")} for r in rounds
        ],
        "receiver_processes": args.receiver_processes,
        "concurrency": args.concurrency,
        "flush_interval_s": args.flush_interval,
        "flush_size_mib": args.flush_size_mib,
    }
    out["ratio_bridge_vs_raw_parquet"] = (
        out["lake_bridge_grpc"]["spans_per_s"] / out["raw_parquet"]["rows_per_s"]
    )
    out["ratio_bridge_first_send_to_last_commit_vs_raw_parquet"] = (
        out["lake_bridge_grpc"]["burst_spans_per_s"] / out["raw_parquet"]["rows_per_s"]
    )
    out["cpu_ratio_bridge_vs_raw_parquet"] = (
        out["raw_parquet"]["cpu_us_per_row"] / out["lake_bridge_grpc"]["bridge_cpu_us_per_span"]
    )
    return bridge


def _bridge_round(
    lab: Lab,
    args: argparse.Namespace,
    bridge: Bridge,
    spans_table: Any,
    payloads: list[bytes],
    requests: int,
    profile: bool,
) -> dict[str, Any]:
    """Send ``requests`` requests (cycling ``payloads``) to the bridge from a load generator
    process, wait until the lake holds them all, and measure the rate at which spans are
    committed while the load runs (see ``steady_rate``); py-spy records the round if ``profile``
    and --profile-dir say so."""
    spans = requests * 100
    baseline = {s.snapshot_id for s in spans_table.snapshots()}
    bridge_pid = bridge.service.pid
    parent_conn, child_conn = lab.processes.mp.Pipe()
    options = Counted(f"{HOST}:{bridge.grpc_port}", payloads, requests, args.concurrency, "default")
    loader = lab.processes.spawn(counted_main, child_conn, options, name="lake-bench-load")
    profiler = (
        py_spy(lab, args, bridge_pid, "ingest-bridge", seconds=max(10, spans / 50_000)) if profile else None
    )
    try:
        receive(parent_conn, loader, 60)  # ready
        cpu_before = cpu_seconds(bridge_pid, children=True)
        parent_conn.send("go")
        load = receive(parent_conn, loader, args.ingest_timeout)
        deadline = time.monotonic() + args.ingest_timeout
        committed, last = 0, None
        while time.monotonic() < deadline:
            new = snapshots_after(spans_table, baseline)
            committed = sum(added_records(s) for s in new)
            if committed >= spans:
                last = new[-1]
                break
            if not bridge.service.running():
                raise RuntimeError(f"the bridge exited:\n{log_tail(bridge.service)}")
            time.sleep(0.25)
        if last is None:
            raise RuntimeError(
                f"the bridge committed {committed} of {spans} spans within {args.ingest_timeout} s"
            )
        cpu_after = cpu_seconds(bridge_pid, children=True)
    finally:
        lab.processes.stop(loader)
        if profiler is not None:  # py-spy writes its profile on SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.kill(profiler.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
            lab.processes.stop(profiler)
    total_s = last.timestamp_ms / 1000 - load["started_wall"]
    cpu_s = sum(cpu_after.values()) - sum(cpu_before.values())
    main_cpu_s = cpu_after[bridge_pid] - cpu_before[bridge_pid]
    timeline = [(s.timestamp_ms / 1000 - load["started_wall"], added_records(s)) for s in new]
    return {
        "spans_per_s": steady_rate(timeline, load["elapsed_s"]),
        "burst_spans_per_s": spans / total_s,
        "seconds_first_send_to_last_commit": total_s,
        "ack_spans_per_s": spans / load["elapsed_s"],
        "ack_seconds": load["elapsed_s"],
        "commits": len(new),
        "commit_timeline": [{"at_s": round(at, 3), "spans": count} for at, count in timeline],
        "committed_spans": committed,
        "bridge_cpu_s": cpu_s,
        "receiver_processes_cpu_s": cpu_s - main_cpu_s,
        "bridge_cpu_pct_of_core": 100 * cpu_s / total_s,
        "bridge_cpu_us_per_span": cpu_s / spans * 1e6,
        "load_generator_cpu_s": load["cpu_s"],
        "request_latency_ms": load["latency_ms"],
        "retries": load["retries"],
    }


def steady_rate(timeline: list[tuple[float, int]], load_s: float) -> float:
    """Spans committed per second while the load ran: the spans of the commits after the first,
    up to the last one made before the load ended, over the time between those commits.

    The first commit holds what arrived while nothing was committed yet (start-up), and commits
    after the load ended wait for ``flush_interval`` (the last partial buffer): neither measures
    how fast the lake takes data, so the window leaves them out.
    """
    loaded = [(at, count) for at, count in timeline if at <= load_s]
    if len(loaded) < 3:
        raise RuntimeError(
            f"only {len(loaded)} commits while the load ran (need 3): send more spans (--bridge-spans)"
        )
    return sum(count for _, count in loaded[1:]) / (loaded[-1][0] - loaded[0][0])


async def _commit_alone(writer: Any, table: Any, out: dict[str, Any]) -> None:
    """The writer's commit (``LakeWriter._commit``: sort, Parquet files, one Iceberg commit) of
    the converter's rows, with the sort also timed alone."""
    from orasi_bridge.lake.files import sort_rows
    from orasi_bridge.lake.schema import SPANS

    batches = table.to_batches()
    await writer.start()
    try:
        started = time.perf_counter()
        sort_rows(batches, SPANS)
        sort_s = time.perf_counter() - started
        started = time.perf_counter()
        batch_id = uuid.uuid4().hex
        owners = {"default": [[(batch_id, batch.num_rows)] for batch in batches]}
        await asyncio.to_thread(writer._commit, "spans", {"default": batches}, owners, [batch_id])
        commit_s = time.perf_counter() - started
    finally:
        await writer.shutdown()
    rows = table.num_rows
    out["commit_alone"] = {
        "rows_per_s": rows / commit_s,
        "sort_s": sort_s,
        "sort_rows_per_s": rows / sort_s,
        "commit_s": commit_s,
        "write_and_commit_s": commit_s - sort_s,
        "input_chunks": len(batches),
    }


async def _inprocess(writer: Any, payloads: list[bytes], requests: int, out: dict[str, Any]) -> None:
    from orasi_common.errors import Throttled
    from orasi_common.pdata import Batch, Signal

    await writer.start()
    try:
        throttled = 0
        started, cpu = time.perf_counter(), time.process_time()
        for index in range(requests):
            while True:
                batch = Batch.from_serialized(Signal.TRACES, payloads[index % len(payloads)], tenant="inproc")
                try:
                    await writer.consume(batch)
                    break
                except Throttled:
                    throttled += 1
                    await asyncio.sleep(0.05)
        consumed = time.perf_counter()
        await writer.flush()
        finished, cpu = time.perf_counter(), time.process_time() - cpu
    finally:
        await writer.shutdown()
    spans = requests * 100
    out["lake_inprocess"] = {
        "spans_per_s": spans / (finished - started),
        "seconds": finished - started,
        "consume_s": consumed - started,
        "consume_spans_per_s": spans / (consumed - started),
        "final_flush_s": finished - consumed,
        "cpu_us_per_span": cpu / spans * 1e6,
        "commits": _counter(writer, "_commits"),
        "throttled": throttled,
    }


def _counter(component: Any, name: str) -> int | None:
    """The value of a component's Prometheus counter child (None when it is not there)."""
    with contextlib.suppress(Exception):
        return int(getattr(component, name)._value.get())
    return None


def report(
    ingest: dict[str, Any], lines: list[str], row: Callable[..., None], verdict: Callable[[bool], str]
) -> None:
    """The ingest part's lines of the report, added to ``lines`` (``row(name, value, note)`` adds a row)."""
    lines.append(f"Ingest ({ingest['workload']['spans']:,} spans in 100-span requests)")
    row(
        "converter rows.spans_batch alone",
        f"{ingest['converter']['spans_per_s']:,.0f} spans/s",
        f"{ingest['converter']['us_per_span']:.1f} µs/span wall, "
        f"{ingest['converter']['cpu_us_per_span']:.1f} CPU",
    )
    row("protobuf parse alone", f"{ingest['converter']['protobuf_parse_spans_per_s']:,.0f} spans/s")
    row(
        "raw pyarrow Parquet zstd → SeaweedFS (same rows)",
        f"{ingest['raw_parquet']['rows_per_s']:,.0f} rows/s",
        f"{ingest['raw_parquet']['cpu_us_per_row']:.1f} µs CPU/row; "
        f"to memory {ingest['raw_parquet']['memory_rows_per_s']:,.0f} rows/s",
    )
    c = ingest["commit_alone"]
    row(
        "commit step alone: sort + Parquet files + Iceberg commit",
        f"{c['rows_per_s']:,.0f} rows/s",
        f"sort {c['sort_s']:.2f} s of {c['commit_s']:.2f} s",
    )
    i = ingest["lake_inprocess"]
    row(
        "lake exporter in-process (consume → flush → commit)",
        f"{i['spans_per_s']:,.0f} spans/s",
        f"consume {i['consume_spans_per_s']:,.0f}/s, final flush {i['final_flush_s']:.2f} s, "
        f"{i['cpu_us_per_span']:.0f} µs CPU/span",
    )
    b = ingest.get("lake_bridge_grpc")
    if b:
        row(
            f"orasi bridge over OTLP/gRPC, committed while loaded (median of {len(b['rounds'])} rounds)",
            f"{b['spans_per_s']:,.0f} spans/s",
            f"first send → last commit {b['burst_spans_per_s']:,.0f}/s, "
            f"acked {b['ack_spans_per_s']:,.0f}/s, {b['commits']} commits, "
            f"bridge {b['bridge_cpu_pct_of_core']:.0f}% of a core "
            f"({b['receiver_processes']} receiver workers: {b['receiver_processes_cpu_s']:.1f} CPU s), "
            f"{b['bridge_cpu_us_per_span']:.0f} µs CPU/span",
        )
        ratio = ingest["ratio_bridge_vs_raw_parquet"]
        row(
            "ratio bridge (while loaded) / raw Parquet",
            f"{ratio:.3f}",
            f"target ≥ {TARGET_INGEST_RATIO} {verdict(ratio >= TARGET_INGEST_RATIO)}",
        )
        row(
            "CPU-time ratio bridge / raw Parquet (per span)",
            f"{ingest['cpu_ratio_bridge_vs_raw_parquet']:.3f}",
            "raw CPU µs/row ÷ bridge CPU µs/span: less sensitive to the machine's noise",
        )
    row("ratio in-process exporter / raw Parquet", f"{ingest['ratio_inprocess_vs_raw_parquet']:.3f}")
    row("ratio converter alone / raw Parquet", f"{ingest['ratio_converter_vs_raw_parquet']:.3f}")
