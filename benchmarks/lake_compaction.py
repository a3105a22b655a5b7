"""Lake benchmark — compaction: a lake of 1,000 small files of the corpus traces, compacted.

The Hipster Shop corpus (``corpus_lake.corpus_rows``: 86,583 spans through the lake's OTLP
converter), moved into the last hour with fresh trace ids (``corpus_lake.Copies``) and ordered by
time, is cut into ``--files`` chunks, as successive flushes would hold them. Each chunk becomes one
file exactly as the writer writes a flush's (``files.sort_rows`` + ``write_data_files``: sorted,
zstd, trace index), and the files are committed by fast appends of ``--per-commit`` files (a
writer commits once per flush; grouping only shortens the setup). Then, through ``QueryEngine`` on
a fresh writer (the latest snapshot, as a bridge started now reads it): the RED query once cold and
the median of ``--runs``; the compaction job (``orasi lake compact``'s), timed; the same query
again, whose answer must be the same.

Targets: the file count 10x lower at least, the RED query 3x faster at least. SeaweedFS +
PostgreSQL by default (``lake_rig.Lab``; ``--local``: a SQLite catalog and a file warehouse in a
temporary directory).

Run: ``python -m benchmarks.lake_compaction [--files 1000] [--runs 7] [--local]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.corpus_lake import Copies, corpus_rows
from benchmarks.lake_rig import QUERY_TIMEOUT_S, Lab, check_servers, env, lake_config, make_writer
from benchmarks.report import RESULTS, machine, say, verdict, write_json

TARGET_FILE_RATIO = 10.0
TARGET_QUERY_SPEEDUP = 3.0
RED_SQL = """
SELECT service_name, count(*) AS spans, avg(duration_ns) AS avg_duration_ns
FROM spans
GROUP BY service_name
ORDER BY service_name
""".strip()


def build_lake(config: dict[str, Any], files: int, per_commit: int) -> tuple[int, tuple[int, int]]:
    """Write the corpus into ``files`` small files and commit them; the spans and their window (ns)."""
    import pyarrow.compute as pc

    from orasi_bridge.lake.catalog import ensure_table, filesystem, open_catalog
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.files import sort_rows, write_data_files
    from orasi_bridge.lake.schema import TABLES

    validated = Config.model_validate(config)
    first_slot = time.time_ns() - 3600 * 10**9
    rows, _ = Copies(corpus_rows(validated.region), first_slot, seed=7).copy(0)
    rows = rows.take(pc.sort_indices(rows["start_time_unix_nano"]))
    window = (pc.min(rows["start_time_unix_nano"]).as_py(), pc.max(rows["start_time_unix_nano"]).as_py() + 1)
    catalog = open_catalog(validated)
    table = ensure_table(catalog, "spans")
    fs, prefix = filesystem(validated)
    bounds = [k * rows.num_rows // files for k in range(files + 1)]

    def one_file(k: int) -> Any:
        chunk = rows.slice(bounds[k], bounds[k + 1] - bounds[k]).to_batches()
        sorted_rows, partitions = sort_rows(chunk, TABLES["spans"])
        return write_data_files(table, "spans", sorted_rows, partitions, fs, prefix)

    with ThreadPoolExecutor(4) as pool:
        written = [f for made in pool.map(one_file, range(files)) for f in made]
    for at in range(0, len(written), per_commit):
        with table.transaction() as transaction, transaction.update_snapshot().fast_append() as append:
            for data_file in written[at : at + per_commit]:
                append.append_data_file(data_file)
    catalog.close()
    say(f"lake: {rows.num_rows:,} spans in {len(written)} files")
    return rows.num_rows, window


async def red(config: dict[str, Any], window: tuple[int, int], runs: int) -> dict[str, Any]:
    """The RED query through a fresh writer's engine: cold, then the median of ``runs``."""
    from orasi_bridge.query.engine import QueryEngine, QueryLimits

    reader = make_writer(config)
    await reader.start()
    engine = QueryEngine(reader, QueryLimits(timeout=QUERY_TIMEOUT_S))
    try:
        files = len(list(reader.tables["spans"].scan().plan_files()))
        times = []
        answer = None
        for _ in range(runs + 1):
            started = time.perf_counter()
            result = await engine.execute(RED_SQL, "default", start=window[0], end=window[1])
            times.append(time.perf_counter() - started)
            answer = result.rows
        return {
            "files": files,
            "cold_s": times[0],
            "median_s": statistics.median(times[1:]),
            "answer": answer,
        }
    finally:
        engine.close()
        await reader.shutdown()


def compact_lake(config: dict[str, Any]) -> tuple[float, list[str], float]:
    """Run the compaction job in a child process: its seconds, report and peak RSS (MiB, imports
    included), what a bridge's own process adds to its memory while the job runs."""
    import multiprocessing
    import resource

    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_compact_child, args=(config, answers))
    child.start()
    seconds, lines = answers.get()
    child.join()
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, lines, peak_mib


def _compact_child(config: dict[str, Any], answers: Any) -> None:
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.maintenance.compaction import compact
    from orasi_bridge.lake.maintenance.tables import Lake

    os.environ.update(env())
    validated = Config.model_validate(config)
    lake = Lake(validated)
    try:
        started = time.perf_counter()
        report = compact(lake, validated.maintenance)
        answers.put((time.perf_counter() - started, report.lines()))
    finally:
        lake.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000, help="small files the lake starts with")
    parser.add_argument("--per-commit", type=int, default=50, help="files per setup commit")
    parser.add_argument("--runs", type=int, default=7, help="warm runs of the query (median)")
    parser.add_argument("--local", action="store_true", help="SQLite + file warehouse instead of S3 + PG")
    args = parser.parse_args()
    lab = Lab()
    try:
        if args.local:
            config: dict[str, Any] = {
                "region": "us-east-1",
                "catalog_uri": f"sqlite:///{lab.tmp / 'catalog.db'}",
                "warehouse": f"file://{lab.tmp / 'warehouse'}",
            }
        else:
            os.environ.update(env())  # the in-process lake's S3 credentials (the test servers')
            check_servers()
            config = lake_config(lab.database("compaction"), lab.warehouse("compaction"))
        config.update(flush_interval=3600, flush_size_mib=100_000, max_buffer_mib=100_000)
        spans, window = build_lake(config, args.files, args.per_commit)
        before = asyncio.run(red(config, window, args.runs))
        say(
            f"before: {before['files']} files, "
            f"RED cold {before['cold_s']:.3f} s, warm {before['median_s']:.3f} s"
        )
        compaction_s, lines, compaction_rss_mib = compact_lake(config)
        for line in lines:
            say(f"compaction: {line} in {compaction_s:.1f} s, peak RSS {compaction_rss_mib:.0f} MiB")
        after = asyncio.run(red(config, window, args.runs))
        say(
            f"after: {after['files']} files, RED cold {after['cold_s']:.3f} s, warm {after['median_s']:.3f} s"
        )
        assert after["answer"] == before["answer"], "the RED answer changed with compaction"
        file_ratio = before["files"] / after["files"]
        speedup = before["median_s"] / after["median_s"]
        cold_speedup = before["cold_s"] / after["cold_s"]
        say(f"files {file_ratio:.0f}x fewer {verdict(file_ratio >= TARGET_FILE_RATIO)}")
        say(
            f"RED warm {speedup:.1f}x faster {verdict(speedup >= TARGET_QUERY_SPEEDUP)} "
            f"(cold {cold_speedup:.1f}x)"
        )
        for figures in (before, after):
            figures.pop("answer")
        write_json(
            RESULTS / "lake_compaction.json",
            {
                "machine": machine(),
                "storage": "file warehouse + SQLite" if args.local else "SeaweedFS + PostgreSQL",
                "spans": spans,
                "sql": RED_SQL,
                "before": before,
                "after": after,
                "compaction_s": compaction_s,
                "compaction_peak_rss_mib": compaction_rss_mib,
                "file_ratio": file_ratio,
                "red_speedup_warm": speedup,
                "red_speedup_cold": cold_speedup,
                "targets": {"file_ratio": TARGET_FILE_RATIO, "red_speedup": TARGET_QUERY_SPEEDUP},
            },
        )
    finally:
        lab.close()


if __name__ == "__main__":
    main()
