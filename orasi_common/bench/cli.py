"""``orasi bench``: load-test an OTLP or OTAP endpoint and report what it acknowledged.

    orasi bench --endpoint 127.0.0.1:4317 --rate 10000 --duration 30
    orasi bench --endpoint 127.0.0.1:4318 --protocol otlp-http --signal logs --source FILE --json
    orasi bench --endpoint gateway:4417 --protocol otap --workers 16 --plot run.png

Requests of ``--batch`` items (from a corpus file, re-batched, or generated) are sent in a cycle
at ``--rate`` items/s (all workers together) or, without it, as fast as they are acknowledged,
with at most ``--workers`` requests in flight, for ``--duration`` seconds. The report counts
items sent, acknowledged and refused (by status), the throughput, and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orasi_common.bench import GENERATED, PROTOCOLS, SIGNALS

if TYPE_CHECKING:
    from orasi_common.bench.engine import Run
    from orasi_common.bench.report import Progress
    from orasi_common.pdata import Signal


def _rate(value: str) -> float:
    number = float(value.removesuffix("/s"))
    if number <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive (leave it out for the maximal rate)")
    return number


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``bench`` subcommand, added to the ``orasi`` command's subparsers."""
    bench: argparse.ArgumentParser = commands.add_parser(
        "bench", help="load-test an OTLP/OTAP endpoint (sent, acknowledged, latency)"
    )
    bench.add_argument("--endpoint", required=True, metavar="HOST:PORT", help="where to send")
    bench.add_argument("--protocol", choices=PROTOCOLS, default="otlp-grpc", help="(default otlp-grpc)")
    bench.add_argument("--signal", choices=SIGNALS, default="traces", help="(default traces)")
    bench.add_argument(
        "--rate", type=_rate, metavar="N/s", help="items per second, all workers together (default: maximal)"
    )
    bench.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds (default 10)")
    bench.add_argument("--workers", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    bench.add_argument(
        "--source",
        default=GENERATED,
        metavar="FILE|generated",
        help="a corpus file (zstd stream of length-prefixed OTLP requests) or 'generated' (default)",
    )
    bench.add_argument("--batch", type=int, default=100, metavar="N", help="items per request (default 100)")
    bench.add_argument(
        "--timeout", type=float, default=10.0, help="seconds one request may take (default 10)"
    )
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument(
        "--plot", type=Path, metavar="FILE", help="write a PNG of throughput and latency over time"
    )
    return bench


async def _run(args: argparse.Namespace, signal: Signal, progress: Progress) -> tuple[Run, list[int]]:
    from orasi_common.bench import source
    from orasi_common.bench.engine import Plan, drive, new_run
    from orasi_common.bench.senders import make_sender

    payloads = source.payloads(args.source, signal, args.batch)
    sender = make_sender(args.protocol, args.endpoint, signal, workers=args.workers, timeout=args.timeout)
    try:
        await sender.ready()
        plan = Plan(duration=args.duration, rate=args.rate, workers=args.workers)
        live = new_run(plan, time.monotonic())
        task = asyncio.ensure_future(drive(sender, itertools.cycle(payloads), plan, run=live))
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            progress.show(
                time.monotonic() - live.started, live.sent_items, live.acked_items, live.refused_items
            )
        return task.result(), [p.items for p in payloads]
    finally:
        await sender.close()


def run(args: argparse.Namespace) -> int:
    """Run ``orasi bench`` as parsed by ``add_parser``'s parser; the exit status."""
    from orasi_common.bench import report
    from orasi_common.pdata import Signal

    signal = Signal(args.signal)
    if args.workers < 1 or args.duration <= 0 or args.batch < 1:
        print("orasi bench: --workers, --duration and --batch must be positive", file=sys.stderr)
        return 2
    progress = report.Progress(args.duration)
    try:
        result_run, sizes = asyncio.run(_run(args, signal, progress))
    except (FileNotFoundError, ValueError) as error:
        print(f"orasi bench: {error}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"orasi bench: {args.endpoint} did not accept a connection within 15 s", file=sys.stderr)
        return 1
    finally:
        progress.close()
    result = result_of(args, result_run, statistics.fmean(sizes))
    if args.plot is not None:
        report.plot(result, args.plot)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(report.text(result))
        if args.plot is not None:
            print(f"  plot       {args.plot}")
    return 0


def result_of(args: argparse.Namespace, run: Run, items_per_request: float) -> dict[str, Any]:
    return {
        "endpoint": args.endpoint,
        "protocol": args.protocol,
        "signal": args.signal,
        "source": args.source,
        "rate": args.rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "items_per_request": round(items_per_request, 1),
        **run.summary(),
        "timeline": run.timeline(),
    }


__all__ = ["add_parser", "result_of", "run"]
