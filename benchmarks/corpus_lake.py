"""Lakes of real spans for the query-API benchmark: the Hipster Shop corpus, repeated, written
straight through the lake writer's commit path (``lake_rig.commit_rows``: sort, Parquet files
with trace indexes, one Iceberg append per chunk), no OTLP.

The corpus (86,583 spans, 9,047 traces, ~5 min of time) is converted once by the lake's own OTLP
converter (``orasi_bridge.lake.rows.otlp.spans_batch``). Each copy gets fresh random 128-bit trace
ids (one per corpus trace, taken through the trace id's dictionary indices) and its own 320 s
time slot, slots following each other up to a minute before the build; only Arrow/numpy work per
copy, nothing per span. Event times keep the corpus's own (2022) values.

A lake is a local directory with a SQLite catalog, as ``orasi up`` keeps it (``catalog.db``,
``warehouse/``), so that it can be kept between runs: ``meta.json`` beside it holds what the
benchmark needs (window, trace ids, searches) and is written last; a lake without it is rebuilt.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.lake_rig import commit_rows, make_writer
from benchmarks.lake_spans import SpanFactory
from benchmarks.report import say

SLOT_NS = 320 * 10**9
TENANT = "default"
SEARCH_TAGS = ("http.route", "grpc.method", "http.method", "rpc.method")
"""Tag keys a search may use, first found first (the corpus has no ``http.route``)."""


def lake_config(directory: Path, region: str) -> dict[str, Any]:
    """The ``lake`` exporter of a local lake in ``directory`` (as ``orasi up`` writes it)."""
    return {
        "region": region,
        "catalog_uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": f"file://{directory / 'warehouse'}",
        "flush_interval": 3600,
        "flush_size_mib": 100_000,
        "max_buffer_mib": 100_000,
    }


def corpus_rows(region: str) -> Any:
    """The corpus's spans as lake rows (one pyarrow Table)."""
    import pyarrow as pa

    from benchmarks.corpus import read_requests
    from orasi_bridge.lake.rows import otlp

    batches = [otlp.spans_batch(r.SerializeToString(), TENANT, region) for r in read_requests()]
    return pa.Table.from_batches(batches).combine_chunks()


class Copies:
    """Copies of the corpus rows, each with fresh trace ids and its own time slot."""

    def __init__(self, rows: Any, first_slot_ns: int, seed: int) -> None:
        import pyarrow.compute as pc

        self.rows = rows
        encoded = pc.dictionary_encode(rows["trace_id"]).combine_chunks()
        self.trace_index = encoded.indices
        self.traces = len(encoded.dictionary)
        self.corpus_start = pc.min(rows["start_time_unix_nano"]).as_py()
        self.first_slot_ns = first_slot_ns
        self.ids = SpanFactory(seed=seed, hour_start_ns=0, tenant=TENANT)  # its random hex ids

    def copy(self, k: int) -> tuple[Any, list[str]]:
        """Copy ``k`` and a few of its trace ids."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = self.rows
        fresh = self.ids._hex(self.traces, 16)
        shift = self.first_slot_ns + k * SLOT_NS - self.corpus_start
        names = rows.schema.names
        start = pc.add(rows["start_time_unix_nano"], shift)
        replaced = {
            "trace_id": fresh.take(self.trace_index),
            "start_time_unix_nano": start,
            "end_time_unix_nano": pc.add(rows["end_time_unix_nano"], shift),
            "time": pc.divide(start, 1000).cast(pa.timestamp("us", tz="UTC")),
        }
        for name, column in replaced.items():
            rows = rows.set_column(names.index(name), name, column)
        return rows, fresh.take(pa.array([0, self.traces // 2, self.traces - 1])).to_pylist()


def searches(rows: Any, count: int) -> list[dict[str, str]]:
    """``count`` (service, tag key, value) searches over the corpus: per service, the most common
    value of the first key of ``SEARCH_TAGS`` it has, busiest services first."""
    import pyarrow.compute as pc

    found = []
    for entry in pc.value_counts(rows["service_name"]).to_pylist():
        service = entry["values"]
        attrs = rows.filter(pc.equal(rows["service_name"], service))["attributes"].combine_chunks()
        for key in SEARCH_TAGS:
            values = attrs.items.filter(pc.equal(attrs.keys, key))
            if len(values):
                top = max(pc.value_counts(values).to_pylist(), key=lambda e: e["counts"])
                found.append((entry["counts"], {"service": service, "key": key, "value": top["values"]}))
                break
    return [search for _, search in sorted(found, key=lambda f: -f[0])][:count]


def chunks(copies: Copies, first: int, count: int, per_chunk: int) -> Iterator[tuple[Any, list[str]]]:
    """Copies ``first .. first + count`` as record batches of ``per_chunk`` copies."""
    import pyarrow as pa

    for at in range(first, first + count, per_chunk):
        made = [copies.copy(k) for k in range(at, min(first + count, at + per_chunk))]
        table = pa.concat_tables([rows for rows, _ in made]).combine_chunks()
        yield table.to_batches(max_chunksize=table.num_rows)[0], [i for _, ids in made for i in ids]


def write(
    directory: Path, region: str, rows: Any, copies: Copies, first: int, count: int, per_chunk: int
) -> tuple[list[str], float]:
    """Write copies ``first .. first + count`` into a (new) lake in ``directory``: sample trace ids
    and the seconds the commits took."""
    directory.mkdir(parents=True, exist_ok=True)

    async def run() -> tuple[list[str], float]:
        writer = make_writer(lake_config(directory, region))
        await writer.start()
        samples: list[str] = []
        committing = 0.0
        try:
            for batch, ids in chunks(copies, first, count, per_chunk):
                started = time.perf_counter()
                await asyncio.to_thread(commit_rows, writer, batch)
                committing += time.perf_counter() - started
                samples += ids
                say(f"lake {directory.name}: +{batch.num_rows:,} spans committed")
        finally:
            await writer.shutdown()
        return samples, committing

    return asyncio.run(run())


def cached_lake(cache: Path, spans: int, rebuild: bool) -> dict[str, Any]:
    """The lake of at least ``spans`` corpus spans under ``cache`` (built when missing or when
    ``rebuild``): its ``meta.json`` plus its ``directory``."""
    directory = cache / f"jaeger-{spans}"
    meta_path = directory / "meta.json"
    if meta_path.exists() and not rebuild:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        say(f"lake: the cached {meta['spans']:,}-span lake in {directory} (--rebuild builds it again)")
        return {**meta, "directory": str(directory)}
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    rows = corpus_rows("local")
    n = -(-spans // rows.num_rows)
    first_slot = (time.time_ns() - 60 * 10**9) - n * SLOT_NS
    copies = Copies(rows, first_slot, seed=18)
    samples, commit_s = write(directory, "local", rows, copies, 0, n, per_chunk=6)
    meta = {
        "spans": n * rows.num_rows,
        "copies": n,
        "traces": n * copies.traces,
        "window_unix_nano": [first_slot, first_slot + n * SLOT_NS],
        "trace_ids": samples,
        "searches": searches(rows, 6),
        "build_s": round(time.perf_counter() - started, 1),
        "commit_s": round(commit_s, 1),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    say(f"lake: {meta['spans']:,} spans built in {meta['build_s']} s (commits {commit_s:.1f} s)")
    return {**meta, "directory": str(directory)}
