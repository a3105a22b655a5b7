"""Lake benchmark — replication: a 1M-span snapshot copied into the global lake, against writing it.

The Hipster Shop corpus (``corpus_lake.corpus_rows``: 86,583 spans through the lake's OTLP
converter), copied with fresh trace ids into successive time slots (``corpus_lake.Copies``) until
``--spans`` spans, is written as one flush of the writer writes it (``files.sort_rows`` +
``write_data_files``: sorted, zstd, trace index) and committed in one fast append: the time to
write the snapshot. Then ``orasi lake replicate``'s code copies that snapshot into a global lake
(``replicate.replicate``), timed, and the global table's rows are counted.

Target (issue 19): replication of a 1M-span snapshot ≤ 2x the time to write it. SeaweedFS +
PostgreSQL for both lakes by default (``lake_rig.Lab``; ``--local``: SQLite catalogs and file
warehouses in a temporary directory).

With ``--mixed-regions`` every other copy says another region (``MIXED``), so each file holds two
and its rows are read and written again by region instead of its bytes copied
(``replicate._rewrite``); the run checks that they were.

Run: ``python -m benchmarks.lake_replicate [--spans 1000000] [--local] [--mixed-regions]``
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks.corpus_lake import Copies, corpus_rows
from benchmarks.lake_rig import Lab, check_servers, env, lake_config
from benchmarks.report import RESULTS, machine, say, verdict, write_json

TARGET_RATIO = 2.0
MIXED = ("us-east-1", "us-west-2")
"""The regions of the copies with ``--mixed-regions``, every other copy the other one."""


Seconds = tuple[float, float]
"""Wall-clock and this process's CPU seconds (its threads' together) of one step."""


def _since(started: Seconds) -> Seconds:
    return time.perf_counter() - started[0], time.process_time() - started[1]


def _now() -> Seconds:
    return time.perf_counter(), time.process_time()


def write_snapshot(config: dict[str, Any], spans: int, mixed: bool) -> tuple[int, Seconds, int]:
    """Write about ``spans`` corpus spans as one snapshot; the spans, the seconds it took, its files.
    With ``mixed``, every other copy says another region (files of two regions: rewritten)."""
    import pyarrow as pa

    from orasi_bridge.lake.catalog import ensure_table, filesystem, open_catalog
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.files import sort_rows, write_data_files
    from orasi_bridge.lake.schema import TABLES

    validated = Config.model_validate(config)
    base = corpus_rows(validated.region)
    copies = Copies(base, time.time_ns() - 3600 * 10**9, seed=11)
    parts = [copies.copy(k)[0] for k in range(-(-spans // base.num_rows))]
    if mixed:  # the copies' own region is the corpus's cloud.region (one for all): set, not kept
        at = parts[0].schema.get_field_index("region")
        regions = [pa.array([name] * base.num_rows, parts[0].schema.field(at).type) for name in MIXED]
        parts = [part.set_column(at, "region", regions[k % 2]) for k, part in enumerate(parts)]
    rows = pa.concat_tables(parts)
    catalog = open_catalog(validated)
    try:
        table = ensure_table(catalog, "spans")
        fs, prefix = filesystem(validated)
        started = _now()
        ordered, partitions = sort_rows(rows.to_batches(), TABLES["spans"])
        written = write_data_files(table, "spans", ordered, partitions, fs, prefix)
        with table.transaction() as transaction, transaction.update_snapshot().fast_append() as append:
            for data_file in written:
                append.append_data_file(data_file)
        return rows.num_rows, _since(started), len(written)
    finally:
        catalog.close()


def replicate_lake(config: dict[str, Any], target: dict[str, Any]) -> tuple[Seconds, int, int]:
    """Replicate the lake into ``target``; the seconds it took, the global spans counted and the
    files whose rows were rewritten rather than their bytes copied."""
    from orasi_bridge.lake.catalog import open_catalog
    from orasi_bridge.lake.config import Config, ReplicateConfig
    from orasi_bridge.lake.replicate import global_config, replicate

    validated, replica = Config.model_validate(config), ReplicateConfig.model_validate(target)
    started = _now()
    reports = replicate(validated, replica)
    seconds = _since(started)
    for report in reports:
        say(f"replicated {report.line()}")
    catalog = open_catalog(global_config(validated, replica))
    try:
        files = catalog.load_table("orasi.spans").inspect.files()
        return seconds, sum(files["record_count"].to_pylist()), sum(r.rewritten for r in reports)
    finally:
        catalog.close()


def lakes(lab: Lab, local: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The regional lake's configuration and the global lake's `replicate` section: both in the
    run's temporary directory (``local``), or each in a PostgreSQL database and S3 prefix."""
    if not local:
        os.environ.update(env())  # the in-process lakes' S3 credentials (the test servers')
        check_servers()
        global_uri = lab.database("replicate_global")
        region = lake_config(lab.database("replicate_region"), lab.warehouse("region"))
        return region, {"to": lab.warehouse("global"), "catalog_uri": global_uri}
    where = {name: lab.tmp / name for name in ("region", "global")}
    for directory in where.values():
        directory.mkdir()
    region = {"region": "us-east-1", "catalog_uri": f"sqlite:///{where['region'] / 'c.db'}"}
    region["warehouse"] = f"file://{where['region']}"
    return region, {"to": f"file://{where['global']}", "catalog_uri": f"sqlite:///{where['global'] / 'c.db'}"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the snapshot (about)")
    parser.add_argument("--local", action="store_true", help="SQLite + file warehouses instead of S3 + PG")
    parser.add_argument(
        "--mixed-regions", action="store_true", help="files of two regions: rows rewritten, not bytes copied"
    )
    args = parser.parse_args()
    lab = Lab()
    try:
        config, target = lakes(lab, args.local)
        spans, (write_s, write_cpu_s), files = write_snapshot(config, args.spans, args.mixed_regions)
        say(f"write: {spans:,} spans in {files} files, {write_s:.2f} s ({write_cpu_s:.2f} s CPU)")
        (replicate_s, replicate_cpu_s), copied, rewritten = replicate_lake(config, target)
        assert copied == spans, f"the global lake holds {copied} spans, not {spans}"
        assert rewritten == (files if args.mixed_regions else 0), f"{rewritten} of {files} files rewritten"
        ratio = replicate_s / write_s
        say(
            f"replicate: {replicate_s:.2f} s ({replicate_cpu_s:.2f} s CPU), {ratio:.2f}x the write "
            f"({replicate_cpu_s / write_cpu_s:.2f}x its CPU) {verdict(ratio <= TARGET_RATIO)}"
        )
        write_json(
            RESULTS / f"lake_replicate{'_mixed' if args.mixed_regions else ''}.json",
            {
                "machine": machine(),
                "storage": "file warehouse + SQLite" if args.local else "SeaweedFS + PostgreSQL",
                "spans": spans,
                "files": files,
                "copy": "rows rewritten (files of two regions)" if args.mixed_regions else "bytes",
                "write_s": write_s,
                "replicate_s": replicate_s,
                "write_cpu_s": write_cpu_s,
                "replicate_cpu_s": replicate_cpu_s,
                "ratio": ratio,
                "target_ratio": TARGET_RATIO,
            },
        )
    finally:
        lab.close()


if __name__ == "__main__":
    main()
