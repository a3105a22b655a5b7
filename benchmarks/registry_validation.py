"""Schema validation at ingest: the lake writer's ingest of the corpus traces with validation off,
flag, drop_attribute and reject, and the registry's cached lookups (issue 16's targets: ≥ 0.9 of
off, and a cached lookup ≤ 1 ms at p99).

    python -m benchmarks.registry_validation [--runs 3]

In one process, on a local lake (SQLite catalog, file warehouse) and a SQLite registry: every
Hipster Shop request (``shared/corpus``) is consumed by a ``LakeWriter`` attached to the
registry, then converted to rows (``snapshot_view`` forces what the background converter does);
the time from the first ``consume`` to the rows is one run, as wall time and as the process's CPU
time (this machine's other work moves the first far more than the second). Modes alternate run
by run; the median per mode is reported. With a registry attached every mode also records the
observed types, so ``off`` is today's ingest plus that; ``no registry`` is printed beside it.
``reject`` converts and checks each request as it is consumed (its answer depends on it), not
many at a time as the other modes do, and answers the requests with frontend spans with a
partial success.

The conversion alone (what ``consume`` and the converter run in their thread: rows with their
types, then the registry's inspection; ``reject`` as ``consume`` does it) is measured apart, as
the CPU time of that thread, ``--convert-runs`` times per mode, modes interleaved: the figure
the ingest ratio is made of, without the event loop and the other threads.

The schema is the corpus's observed one (``orasi schema observe --as-schema``) with one key
made ``required`` that no span has and one type narrowed: every frontend span violates it
twice, the worst case for flag (a message list per row), for drop_attribute (an attribute
removed per row) and for reject (every frontend span left out). The machine's load average
(1, 5 and 15 minutes) at the start and the end is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import read_requests
from benchmarks.lake_rig import make_writer
from benchmarks.report import say
from orasi_bridge.lake import convert
from orasi_bridge.registry.config import RegistryConfig
from orasi_bridge.registry.ingest import Inspection
from orasi_bridge.registry.registry import Registry
from orasi_common.errors import PartialSuccess
from orasi_common.pdata import Batch, Signal
from orasi_common.schema_cli import as_schema
from orasi_common.telemetry.metrics import Metrics

TENANT = "bench"
SUBJECT = "spans.frontend"
MODES = ("no registry", "off", "flag", "drop_attribute", "reject")
CHECKED = ("flag", "drop_attribute", "reject")


async def ingest(directory: Path, payloads: list[bytes], registry: Registry | None) -> tuple[float, float]:
    """Wall and CPU seconds from the first consume to every row converted (and checked)."""
    lake = {
        "catalog_uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": f"file://{directory / 'warehouse'}",
        "flush_interval": 3600,
        "flush_size_mib": 100_000,
        "max_buffer_mib": 100_000,
    }
    writer = make_writer(lake)
    await writer.start()
    if registry is not None:
        writer.use_registry(registry)
        await registry.warm(TENANT)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for payload in payloads:
            with contextlib.suppress(PartialSuccess):  # reject: the rest of the request is kept
                await writer.consume(Batch.from_serialized(Signal.TRACES, payload, tenant=TENANT))
        view = await writer.snapshot_view("spans", TENANT)
        elapsed = time.perf_counter() - started, time.process_time() - cpu
        assert sum(rows.num_rows for rows in view.hot) > 0
        return elapsed
    finally:
        writer._buffer = type(writer._buffer)()  # nothing to commit: the run measured ingest only
        await writer.shutdown()


def schema_of(observed: dict[str, Any]) -> dict[str, Any]:
    document = as_schema(observed)
    attributes = document["properties"].setdefault("attributes", {"type": "object", "properties": {}})
    attributes["properties"]["bench.never"] = {"type": "string"}
    attributes["required"] = ["bench.never"]
    narrowed = next(key for key, spec in attributes["properties"].items() if spec.get("type") == "string")
    attributes["properties"][narrowed] = {"type": "integer"}
    return document


async def main(args: argparse.Namespace) -> dict[str, Any]:
    payloads = [request.SerializeToString() for request in read_requests()]
    spans = 86_583
    load = [round(value, 1) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        registry = Registry(RegistryConfig(), f"sqlite:///{root / 'registry.db'}", logging.getLogger("bench"))
        await registry.start()
        try:
            # observe the corpus, then register the schema made of it
            observed = await _observed(root / "seen", payloads, registry)
            await registry.register(TENANT, SUBJECT, {"schema": json.dumps(schema_of(observed))})
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
            for run in range(args.runs):
                for mode in MODES:
                    if mode not in ("no registry", "off"):
                        await registry.set_validation(TENANT, SUBJECT, mode)
                    else:
                        await registry.set_validation(TENANT, SUBJECT, "off")
                    used = None if mode == "no registry" else registry
                    seconds, cpu_seconds = await ingest(root / f"{mode}-{run}", payloads, used)
                    times[mode].append(seconds)
                    cpu[mode].append(cpu_seconds)
                    say(f"run {run + 1} {mode}: {spans / seconds:,.0f} spans/s ({cpu_seconds:.2f} s CPU)")
            conversion = await _conversion(payloads, registry, args.convert_runs)
            lookups = await _lookups(registry)
        finally:
            await registry.shutdown()
    median = {mode: statistics.median(values) for mode, values in times.items()}
    median_cpu = {mode: statistics.median(values) for mode, values in cpu.items()}
    result = {
        "spans": spans,
        "spans_per_second": {mode: round(spans / seconds) for mode, seconds in median.items()},
        "ratio_to_off": {mode: round(median["off"] / median[mode], 3) for mode in CHECKED},
        "cpu_seconds": {mode: round(seconds, 3) for mode, seconds in median_cpu.items()},
        "cpu_ratio_to_off": {mode: round(median_cpu["off"] / median_cpu[mode], 3) for mode in CHECKED},
        "conversion_cpu_ms": {mode: round(ms, 1) for mode, ms in conversion.items()},
        "conversion_cpu_ratio_to_off": {
            mode: round(conversion["off"] / conversion[mode], 3) for mode in CHECKED
        },
        "cached_lookup_us": lookups,
        "load_average": {"start": load, "end": [round(value, 1) for value in os.getloadavg()]},
    }
    say(json.dumps(result, indent=2))
    return result


async def _conversion(payloads: list[bytes], registry: Registry, runs: int) -> dict[str, float]:
    """Median CPU milliseconds of the conversion thread's work on the corpus, per mode."""
    violations = Metrics("bench").schema_violations
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(runs):
        for mode in MODES:
            await registry.set_validation(TENANT, SUBJECT, "off" if mode == "no registry" else mode)
            await registry.warm(TENANT)
            inspect = None if mode == "no registry" else Inspection(registry, violations)
            batch = Batch.from_serialized(Signal.TRACES, payloads[0], tenant=TENANT)
            samples[mode].append(await asyncio.to_thread(_convert_cpu, batch, inspect, mode == "reject"))
    return {mode: statistics.median(values) * 1000 for mode, values in samples.items()}


def _convert_cpu(batch: Batch, inspect: Inspection | None, reject: bool) -> float:
    started = time.thread_time()
    if reject:
        convert.batch_rows(batch, "spans", "bench", None, inspect)
    else:
        convert.convert([("spans", TENANT, [(batch, None)])], "bench", inspect)
    return time.thread_time() - started


async def _observed(directory: Path, payloads: list[bytes], registry: Registry) -> dict[str, Any]:
    """What ingest observed of the corpus's frontend spans (through a flush, as a bridge does)."""
    lake = {
        "catalog_uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": f"file://{directory / 'warehouse'}",
        "flush_interval": 3600,
    }
    writer = make_writer(lake)
    await writer.start()
    writer.use_registry(registry)
    for payload in payloads[:200]:
        await writer.consume(Batch.from_serialized(Signal.TRACES, payload, tenant=TENANT))
    await writer.flush()
    await writer.shutdown()
    return await registry.observed(TENANT, SUBJECT)


async def _lookups(registry: Registry, n: int = 100_000) -> dict[str, float]:
    """Microseconds per cached lookup (``policies`` as ingest calls it, and ``cached_latest``)."""
    await registry.latest(TENANT, SUBJECT)
    found: dict[str, float] = {}
    for name, lookup in (
        ("policies", lambda: registry.policies(TENANT)),
        ("cached_latest", lambda: registry.cached_latest(TENANT, SUBJECT)),
    ):
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            assert lookup() is not None
            samples.append(time.perf_counter_ns() - started)
        samples.sort()
        found[f"{name}_p50"] = samples[n // 2] / 1000
        found[f"{name}_p99"] = samples[n * 99 // 100] / 1000
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (median reported)")
    parser.add_argument(
        "--convert-runs", type=int, default=15, help="conversion-only runs per mode (median reported)"
    )
    asyncio.run(main(parser.parse_args()))
