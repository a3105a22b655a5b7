"""Benchmark of the receivers of other protocols: filelog lines/s and remote-write samples/s per core.

Run from the repository root::

    python -m benchmarks.receivers            # 3 rounds, best of each
    python -m benchmarks.receivers --quick    # 1 round, smaller inputs

* filelog: the `filelog` receiver (its factory, format cri, a checkpoint directory) reads
  files of 200-byte CRI lines into batches handed to a counting consumer; lines per CPU-second
  of this process (every thread: the reads and parses run in worker threads). In the same
  rounds, two plain Python loops over the same files: one that only reads 1 MiB blocks and
  splits them into lines (iterating them), one that also splits each line into its four CRI
  fields; the receiver's figure relative to each (ratios inside one run hold up under machine
  load, absolute figures drift). And the parse alone over the same files' 1 MiB blocks, by
  columns (``parse_block``: the common case the receiver takes here) and a line at a time
  (``parse_lines``, the reference reading), each making the same request bytes.
* remote write: snappy-compressed WriteRequests of 2,000 series (counters, gauges and histogram
  buckets with six labels, the same series in every request with new samples, as a scraper
  sends them) decoded, translated and validated as the receiver does (``decode_body`` →
  ``Translator.translate`` → ``Batch.from_serialized``): samples per CPU-second, for the first
  request of each series (described) and for the steady state (series cached); then the same
  bodies POSTed over HTTP to a running receiver by a client in another process: samples per
  CPU-second of the receiver's process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cramjam

from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.receivers import filelog, prometheus_remote_write
from orasi_common.receivers.filelog.parse import Encoder, Rules, parse_block, parse_lines
from orasi_common.receivers.prometheus_remote_write.proto.remote_write_pb2 import WriteRequest
from orasi_common.receivers.prometheus_remote_write.receiver import decode_body
from orasi_common.receivers.prometheus_remote_write.translate import Translator
from orasi_common.receivers.wire import key_values
from orasi_common.telemetry.metrics import Metrics

LINE_BYTES = 200
BLOCK = 1024 * 1024


class Counter:
    """A consumer that accepts everything and counts items; ``done`` is set at ``target``."""

    def __init__(self, target: int = 0) -> None:
        self.items = 0
        self.target = target
        self.done = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.items += batch.items
        if self.target and self.items >= self.target:
            self.done.set()


def settings(component: str) -> Settings:
    return Settings(component, Kind.RECEIVER, "agent", Metrics("agent"), logging.getLogger(component))


# --- filelog ----------------------------------------------------------------------------------


def write_cri_files(directory: Path, files: int, lines: int) -> int:
    rng = random.Random(7)
    for index in range(files):
        with (directory / f"{index}.log").open("wb") as handle:
            chunk = []
            for seq in range(lines):
                head = f"2026-01-02T03:04:{seq % 60:02d}.{rng.randrange(10**9):09d}Z stdout F "
                body = f"level=info msg=request-{seq} user={rng.randrange(10**6)} path=/api/v1/items "
                chunk.append((head + body).ljust(LINE_BYTES - 1, "x")[: LINE_BYTES - 1] + "\n")
                if len(chunk) == 10_000:
                    handle.write("".join(chunk).encode())
                    chunk = []
            handle.write("".join(chunk).encode())
    return files * lines


async def filelog_round(directory: Path, total: int) -> tuple[float, float]:
    """Lines per CPU-second of the receiver reading every file once, and per second of wall time."""
    sink = Counter(total)
    with tempfile.TemporaryDirectory() as checkpoints:
        config = filelog.Config.model_validate(
            {
                "include": [f"{directory}/*.log"],
                "start_at": "beginning",
                "format": "cri",
                "checkpoint_directory": checkpoints,
                "poll_interval": 0.01,
            }
        )
        receiver = filelog.FACTORY.create(settings("filelog"), config, {Signal.LOGS: sink})
        started, wall = time.process_time(), time.perf_counter()
        await receiver.start()
        await sink.done.wait()
        cpu, wall = time.process_time() - started, time.perf_counter() - wall
        await receiver.shutdown()
    return total / cpu, total / wall


def plain_loop(directory: Path, fields: bool) -> float:
    """Lines per CPU-second of reading 1 MiB blocks and splitting them into lines (and fields)."""
    started = time.process_time()
    count = 0
    for path in sorted(directory.glob("*.log")):
        with path.open("rb") as handle:
            rest = b""
            while block := handle.read(BLOCK):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if fields:
                        line.split(b" ", 3)
                    count += 1
    return count / (time.process_time() - started)


def parse_rates(directory: Path) -> tuple[float, float]:
    """Lines per CPU-second of parsing every 1 MiB block into a request: (by columns, per line)."""
    rules = Rules(format="cri")
    encoder = Encoder(rules, key_values([("log.file.name", "0.log")], 6), time.time_ns())
    rates = []
    for parse in (parse_block, parse_lines):
        started, count = time.process_time(), 0
        for path in sorted(directory.glob("*.log")):
            data, offset = path.read_bytes(), 0
            while offset < len(data):
                parsed = parse(data[offset : offset + BLOCK], "cri", rules, encoder, False)
                offset, count = offset + parsed.end, count + parsed.count
                if not parsed.end:
                    break
        rates.append(count / (time.process_time() - started))
    return rates[0], rates[1]


# --- remote write -----------------------------------------------------------------------------


def write_requests(count: int, series: int) -> list[bytes]:
    rng = random.Random(11)
    names = [f"app_requests_{i}_total" for i in range(40)] + [f"app_temperature_{i}" for i in range(40)]
    labelsets = []
    for index in range(series):
        if index % 10 == 0:  # histogram buckets
            name, extra = "app_latency_seconds_bucket", {"le": str([0.01, 0.1, 1, "+Inf"][index % 4])}
        else:
            name, extra = names[index % len(names)], {}
        labels = {
            "__name__": name,
            "job": "api",
            "instance": f"10.0.{index % 8}.1:9100",
            "method": ["GET", "POST"][index % 2],
            "code": str(200 + index % 5),
            "route": f"/api/v1/r{index % 50}",
            "series": str(index),
            **extra,
        }
        labelsets.append(sorted(labels.items()))
    bodies = []
    for request_index in range(count):
        request = WriteRequest()
        timestamp = 1_700_000_000_000 + request_index * 15_000
        for pairs in labelsets:
            ts = request.timeseries.add()
            for key, value in pairs:
                ts.labels.add(name=key, value=value)
            ts.samples.add(value=rng.random() * 1000, timestamp=timestamp)
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


def remote_write_round(bodies: list[bytes], series: int) -> tuple[float, float]:
    """(samples/s per core for the first request — series described —, in the steady state)."""
    translator = Translator(10_000)
    started = time.process_time()
    Batch.from_serialized(
        Signal.METRICS, translator.translate(decode_body(bodies[0], "snappy", 1 << 26)).data
    )
    first = series / (time.process_time() - started)
    started = time.process_time()
    for body in bodies[1:]:
        translation = translator.translate(decode_body(body, "snappy", 1 << 26))
        Batch.from_serialized(Signal.METRICS, translation.data)
    steady = series * (len(bodies) - 1) / (time.process_time() - started)
    return first, steady


_CLIENT = """
import sys, httpx
url, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
bodies, at = [], 0
while at < len(data):
    size = int.from_bytes(data[at:at + 4], "little")
    bodies.append(data[at + 4:at + 4 + size])
    at += 4 + size
headers = {"content-encoding": "snappy", "content-type": "application/x-protobuf"}
with httpx.Client() as client:
    for _ in range(rounds):
        for body in bodies:
            assert client.post(url, content=body, headers=headers).status_code == 204
"""


async def remote_write_http(bodies: list[bytes], series: int, rounds: int) -> float:
    """Samples per CPU-second of this process serving the bodies POSTed by another process."""
    sink = Counter()
    config = prometheus_remote_write.Config.model_validate({"endpoint": "127.0.0.1:0"})
    receiver = prometheus_remote_write.PrometheusRemoteWriteReceiver(
        settings("prometheus_remote_write"), config, {Signal.METRICS: sink}
    )
    await receiver.start()
    with tempfile.NamedTemporaryFile(delete=False) as handle:
        for body in bodies:
            handle.write(len(body).to_bytes(4, "little") + body)
    try:
        url = f"http://127.0.0.1:{receiver.port}/api/v1/write"
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENT, url, handle.name, str(rounds), stdout=subprocess.DEVNULL
        )
        started = time.process_time()
        await client.wait()
        cpu = time.process_time() - started
        assert client.returncode == 0, "the HTTP client failed"
    finally:
        os.unlink(handle.name)
        await receiver.shutdown()
    assert sink.items == series * len(bodies) * rounds
    return sink.items / cpu


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round, smaller inputs")
    parser.add_argument("--only", choices=["filelog", "remote_write"], help="one receiver's figures")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    if args.only != "remote_write":
        await filelog_figures(rounds, *((2, 50_000) if args.quick else (4, 100_000)))
    if args.only != "filelog":
        await remote_write_figures(rounds, args.quick)


async def filelog_figures(rounds: int, files: int, lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        total = write_cri_files(directory, files, lines)
        receiver_rates, read_split, read_split_fields, parses = [], [], [], []
        for _ in range(rounds):
            receiver_rates.append(await filelog_round(directory, total))
            read_split.append(plain_loop(directory, fields=False))
            read_split_fields.append(plain_loop(directory, fields=True))
            parses.append(parse_rates(directory))
        best, wall = max(receiver_rates)
        print(f"filelog: {total:,} CRI lines of {LINE_BYTES} bytes in {files} files")
        print(
            f"  receiver                         {best:>12,.0f} lines/s per core  ({wall:,.0f} lines/s wall)"
        )
        for label, rates in (
            ("read + split lines", read_split),
            ("read + split lines + fields", read_split_fields),
        ):
            ratio = best / max(rates)
            print(
                f"  plain loop: {label:<28} {max(rates):>12,.0f} lines/s per core  (receiver: {ratio:.3f}x)"
            )
        columns, per_line = max(rate for rate, _ in parses), max(rate for _, rate in parses)
        print(f"  parse only, by columns                {columns:>12,.0f} lines/s per core")
        print(f"  parse only, a line at a time          {per_line:>12,.0f} lines/s per core")


async def remote_write_figures(rounds: int, quick: bool) -> None:
    series = 2000
    bodies = write_requests(11 if quick else 51, series)
    first, steady = max(remote_write_round(bodies, series) for _ in range(rounds))
    over_http = max([await remote_write_http(bodies, series, 1) for _ in range(rounds)])
    print(f"remote write: requests of {series:,} series, snappy")
    print(f"  decode + translate + validate, first request     {first:>12,.0f} samples/s per core")
    print(f"  decode + translate + validate, steady state      {steady:>12,.0f} samples/s per core")
    print(f"  over HTTP (receiver process)                     {over_http:>12,.0f} samples/s per core")


if __name__ == "__main__":
    asyncio.run(main())
