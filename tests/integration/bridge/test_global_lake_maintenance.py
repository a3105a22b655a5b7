"""The global lake's own maintenance (lake/maintenance on the tables `orasi lake replicate` makes,
partitioned by region first): compaction, retention and expiry after replication from two
regional lakes, and replication still incremental after them.

The regional lakes are `orasi up --regions`' (``regions``); the global lake a real one
(PostgreSQL catalog schema, SeaweedFS warehouse prefix: ``global_lake``), maintained as users do:
by `orasi lake compact|retention` on a configuration whose lake exporter names it, and by that
exporter's schedule. Every row has its own ``service_name``, so each check compares the rows
themselves, not only their counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import yaml

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, build_writer, close_writer
from integration.bridge.regions import DAY_US, append, global_files, regional_lake, rows
from integration.bridge.servers import LakeSpace, s3_filesystem
from orasi_bridge.lake import replicate as replication
from orasi_bridge.lake.config import Config, ReplicateConfig
from orasi_bridge.lake.maintenance.compaction import compact
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.expiry import expire
from orasi_bridge.lake.maintenance.tables import JOB_PROPERTY, Lake, PartitionKey, live_files, read_file
from orasi_bridge.lake.replica_tables import POSITION, positions
from orasi_bridge.lake.schema import TABLES
from orasi_common import cli
from orasi_common.pdata import Signal
from orasi_common.up import global_lake as up_global_lake

EAST, WEST = "us-east-1", "us-west-2"


def global_rows(config: Config, name: str) -> Counter[tuple[str, str, int]]:
    """The global table's rows as (region, service_name, time µs), with how often each is there."""
    lake = Lake(config)
    try:
        return written(lake.catalog.load_table(f"orasi.{name}").scan().to_arrow())
    finally:
        lake.close()


def written(*tables: pa.Table) -> Counter[tuple[str, str, int]]:
    """The rows of ``tables`` as (region, service_name, time µs), with how often each is there."""
    found: Counter[tuple[str, str, int]] = Counter()
    for table in tables:
        columns = [table.column(c).to_pylist() for c in ("region", "service_name")]
        found.update(zip(*columns, table.column("time").cast("int64").to_pylist(), strict=True))
    return found


def current(config: Config, name: str) -> tuple[dict[str, str], dict[str, int], int]:
    """The global table's current snapshot summary properties, its positions, and its snapshots."""
    lake = Lake(config)
    try:
        table = lake.catalog.load_table(f"orasi.{name}")
        snapshot = table.current_snapshot()
        assert snapshot is not None and snapshot.summary is not None
        return dict(snapshot.summary.additional_properties), positions(table), len(table.snapshots())
    finally:
        lake.close()


def layout(config: Config, name: str) -> dict[PartitionKey, int]:
    """Files per partition of the global table, each checked to be in the table's own layout: its
    spec, a path named after its partition, rows of that region, day and tenant only, sorted by
    service_name, time as the writer sorts them."""
    lake = Lake(config)
    try:
        table = lake.catalog.load_table(f"orasi.{name}")
        found = live_files(table)
        for partition, files in found.items():
            for data_file in files:
                assert data_file.spec_id == table.spec().spec_id
                assert partition.region is not None and partition.day is not None
                assert [data_file.partition[i] for i in range(3)] == [
                    partition.region,
                    partition.day,
                    partition.tenant,
                ]
                day = time.strftime("%Y-%m-%d", time.gmtime(partition.day * 86_400))
                path = f"/data/region={partition.region}/time_day={day}/tenant={partition.tenant}/"
                assert path in data_file.file_path
                content = read_file(lake, data_file.file_path, TABLES[name])
                assert set(content.column("region").to_pylist()) == {partition.region}
                days = {m // DAY_US for m in content.column("time").cast("int64").to_pylist()}
                assert days == {partition.day}
                keys = content.select(["service_name", "time"]).to_pylist()
                assert keys == sorted(keys, key=lambda key: (key["service_name"], key["time"]))
        return {partition: len(files) for partition, files in found.items()}
    finally:
        lake.close()


def run(job: Any, config: Config, maintenance: MaintenanceConfig, **kw: Any) -> Any:
    lake = Lake(config)
    try:
        return job(lake, maintenance, False, None, **kw)
    finally:
        lake.close()


def test_compaction_merges_each_region_s_partitions_and_keeps_the_replication_positions(
    tmp_path: Path, global_lake: ReplicateConfig
) -> None:
    east, west = regional_lake(tmp_path, EAST), regional_lake(tmp_path, WEST)
    config = replication.global_config(east, global_lake)
    made = {name: Counter[tuple[str, str, int]]() for name in ("spans", "logs")}
    for lake in (east, west):
        for count in (10, 7, 5):  # three flushes, each a file per day (two days)
            for name in made:
                made[name] += written(table := rows(name, {lake.region: count}))
                append(lake, name, table)
    # A file of us-west-2's lake holding rows of us-east-1 too: copied row by row, a file per region.
    mixed = rows("spans", {WEST: 4, EAST: 3})
    made["spans"] += written(mixed)
    append(west, "spans", mixed)
    for lake in (east, west):
        replication.replicate(lake, global_lake)
    assert {name: global_rows(config, name) for name in made} == made
    before = {name: current(config, name)[1] for name in made}
    assert all(set(found) == {EAST, WEST} for found in before.values())

    report = run(compact, config, MaintenanceConfig())

    merged = sorted(
        (p.table, p.partition.region, p.files_before, p.files_after, p.committed) for p in report.partitions
    )
    assert merged == sorted(
        [("spans", region, 4, 1, True) for region in (EAST, WEST) for _ in range(2)]
        + [("logs", region, 3, 1, True) for region in (EAST, WEST) for _ in range(2)]
    )
    assert all(
        line.startswith(f"{p.table} region={p.partition.region}/tenant=acme/day=")
        for p, line in zip(report.partitions, report.lines(), strict=True)
    )
    for name in made:
        assert set(layout(config, name).values()) == {1}  # one file per region, day and tenant
        assert global_rows(config, name) == made[name]  # every row once
        properties, found, _ = current(config, name)
        assert properties[JOB_PROPERTY] == "compact"
        # carried by the compaction's own snapshot, not found further back
        assert {
            key.removeprefix(POSITION): int(value)
            for key, value in properties.items()
            if key.startswith(POSITION)
        } == before[name]
        assert found == before[name]

    # Replication after it copies the new snapshots only.
    fresh = rows("spans", {EAST: 6})
    latest = append(east, "spans", fresh)
    late = rows("logs", {WEST: 2})
    append(west, "logs", late)
    copied = {
        lake.region: {r.table: r.rows for r in replication.replicate(lake, global_lake)}
        for lake in (east, west)
    }
    assert copied == {EAST: {"spans": 6, "logs": 0}, WEST: {"spans": 0, "logs": 2}}
    assert global_rows(config, "spans") == made["spans"] + written(fresh)
    assert global_rows(config, "logs") == made["logs"] + written(late)
    assert current(config, "spans")[1] == {**before["spans"], EAST: latest}

    # A second compaction merges the new files into the compacted ones, positions carried again.
    again = run(compact, config, MaintenanceConfig())
    assert sorted((p.table, p.partition.region, p.files_before) for p in again.partitions) == sorted(
        [("spans", EAST, 2)] * 2 + [("logs", WEST, 2)] * 2
    )
    assert global_rows(config, "spans") == made["spans"] + written(fresh)
    assert current(config, "spans")[1] == {**before["spans"], EAST: latest}
    assert [r.files for lake in (east, west) for r in replication.replicate(lake, global_lake)] == [0] * 4


def stored_data_files(space: LakeSpace) -> set[str]:
    selector = pafs.FileSelector(space.prefix, recursive=True, allow_not_found=True)
    return {
        info.path
        for info in s3_filesystem().get_file_info(selector)
        if info.type == pafs.FileType.File and info.path.endswith(".parquet") and "/data/" in info.path
    }


def test_retention_and_expiry_by_command_then_replication_stays_incremental(
    tmp_path: Path, lake_space: LakeSpace, global_lake: ReplicateConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orasi lake compact|retention --config` on a configuration whose lake exporter names the
    global lake; expiry then leaves the files the current snapshot needs, and the positions."""
    east, west = regional_lake(tmp_path, EAST), regional_lake(tmp_path, WEST)
    config = replication.global_config(east, global_lake)
    today_us = int(time.time() * 1e6) // DAY_US * DAY_US
    old_us, recent_us = today_us - 40 * DAY_US, today_us - DAY_US
    kept: Counter[tuple[str, str, int]] = Counter()
    for lake in (east, west):
        for _ in range(2):
            append(lake, "spans", rows("spans", {lake.region: 5}, days=1, start_us=old_us))
            kept += written(recent := rows("spans", {lake.region: 4}, days=1, start_us=recent_us))
            append(lake, "spans", recent)
        replication.replicate(lake, global_lake)
    path = tmp_path / "global.yaml"
    exporter = lake_space.lake_config(region="global", maintenance={"retention": {"default": "30d"}})
    path.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": {"lake": exporter},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["lake"]}}},
            }
        )
    )

    def orasi_lake(action: str) -> list[str]:
        assert cli.main(["lake", action, "--config", str(path)]) == 0
        return sorted(line for line in capsys.readouterr().out.splitlines() if line.startswith("spans "))

    old_day = time.strftime("%Y-%m-%d", time.gmtime(old_us / 1e6))
    recent_day = time.strftime("%Y-%m-%d", time.gmtime(recent_us / 1e6))

    merged = orasi_lake("compact")
    assert [line.split(" (", 1)[0] for line in merged] == [
        f"spans region={region}/tenant=acme/day={day}: merged 2 files"
        for region in (EAST, WEST)
        for day in (old_day, recent_day)
    ]
    assert all(line.endswith(("into 1 (10 rows)", "into 1 (8 rows)")) for line in merged)
    assert orasi_lake("retention") == [
        f"spans region={region}/tenant=acme/day={old_day}: deleted (1 files, 10 rows)"
        for region in (EAST, WEST)
    ]
    assert global_rows(config, "spans") == kept
    properties, before, snapshots = current(config, "spans")
    assert properties[JOB_PROPERTY] == "retention" and set(before) == {EAST, WEST}
    assert snapshots == 2 + 4 + 1  # the replications, the compaction's (one per partition), the retention

    # Two hours on: every snapshot but the current one expires, and every file only they needed.
    maintenance = MaintenanceConfig(keep_snapshots=1, keep_age=1, orphan_age=3600)
    report = run(expire, config, maintenance, now=time.time() + 2 * 3600)
    assert (report.expired["spans"], report.kept["spans"]) == (6, 1)
    live = {f.file_path.removeprefix("s3://") for f in global_files(global_lake, "spans", east)}
    assert stored_data_files(lake_space) == live and len(live) == 2
    assert current(config, "spans")[1:] == (before, 1)
    assert global_rows(config, "spans") == kept

    # Replication goes on from the positions: the new rows only, the deleted days not again.
    new: Counter[tuple[str, str, int]] = Counter()
    for lake in (east, west):
        new += written(table := rows("spans", {lake.region: 3}, days=1, start_us=recent_us))
        append(lake, "spans", table)
        assert [(r.snapshots, r.rows) for r in replication.replicate(lake, global_lake)] == [(1, 3)]
    assert global_rows(config, "spans") == kept + new
    # and the next retention finds nothing more to delete
    assert orasi_lake("retention") == []


async def test_the_global_lake_s_exporter_compacts_on_its_schedule_while_replication_commits(
    tmp_path: Path, global_lake: ReplicateConfig, make_writer: MakeWriter
) -> None:
    """A lake exporter naming the global lake, with a `maintenance` schedule: the tables it makes at
    its start (in the regional layout, empty) are partitioned by region by the first replication;
    its compaction and the regions' replications commit to the same tables at the same time,
    conflicts retried on both sides; every row stays once and the positions are the last
    replicated snapshots."""
    east, west = regional_lake(tmp_path, EAST), regional_lake(tmp_path, WEST)
    config = replication.global_config(east, global_lake)
    made: Counter[tuple[str, str, int]] = Counter()
    latest: dict[str, int] = {}

    def flush_and_replicate() -> None:
        for lake in (east, west):
            made.update(written(table := rows("spans", {lake.region: 3})))
            latest[lake.region] = append(lake, "spans", table)
            replication.replicate(lake, global_lake)

    writer = await make_writer(region="global", maintenance={"compact_interval": 0.2})
    assert writer.config.catalog_uri == config.catalog_uri and writer.config.warehouse == config.warehouse
    assert [f.name for f in writer.tables["spans"].spec().fields] == ["time_day", "tenant"]
    for _ in range(6):
        await asyncio.to_thread(flush_and_replicate)

    def compacted() -> bool:
        return (
            set(layout(config, "spans").values()) == {1}
            and current(config, "spans")[0].get(JOB_PROPERTY) == "compact"
        )

    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(compacted):
        assert time.monotonic() < deadline, "the schedule did not compact the global lake within 60 s"
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(global_rows, config, "spans") == made
    assert (await asyncio.to_thread(current, config, "spans"))[1] == latest
    copied = [
        r.files
        for lake in (east, west)
        for r in await asyncio.to_thread(replication.replicate, lake, global_lake)
    ]
    assert copied == [0, 0]


def red(config: Config, name: str) -> dict[str, tuple[int, int, int, int]]:
    """Per region of a span_metrics table: its rows, and its span, error and duration totals."""
    lake = Lake(config)
    try:
        scanned = lake.catalog.load_table(f"orasi.{name}").scan().to_arrow()
    finally:
        lake.close()
    totals = scanned.group_by("region").aggregate(
        [([], "count_all"), ("span_count", "sum"), ("error_count", "sum"), ("duration_sum_ns", "sum")]
    )
    return {
        row["region"]: (
            row["count_all"],
            row["span_count_sum"],
            row["error_count_sum"],
            row["duration_sum_ns_sum"],
        )
        for row in totals.to_pylist()
    }


async def test_compaction_merges_each_region_s_span_metrics_with_the_same_totals(
    tmp_path: Path, global_lake: ReplicateConfig
) -> None:
    """Regional lakes written by lake writers (spans, and the derived span_metrics_1m and its
    monthly rollup span_metrics_1h): in the global lake, compaction merges each region's partial
    rows (region is one of their group keys) into one row per group and minute or hour, in each
    region's day or month partition, with the same totals."""
    east, west = regional_lake(tmp_path, EAST), regional_lake(tmp_path, WEST)
    for lake in (east, west):
        writer = build_writer({**lake.model_dump(exclude_defaults=True), "flush_interval": 3600})
        await writer.start()
        try:
            for _ in range(3):  # the same minute's spans in three flushes: three partial rows per group
                await writer.consume(data.batch(Signal.TRACES, data.traces_request(data.T0)))
                await writer.flush()
        finally:
            await close_writer(writer)
        await asyncio.to_thread(replication.replicate, lake, global_lake)
    config = replication.global_config(east, global_lake)
    derived = ("span_metrics_1m", "span_metrics_1h")
    before = {name: await asyncio.to_thread(red, config, name) for name in derived}
    spans = len(data.expected_spans())
    assert {region: totals[1] for region, totals in before["span_metrics_1m"].items()} == {
        EAST: 3 * spans,
        WEST: 3 * spans,
    }

    report = await asyncio.to_thread(run, compact, config, MaintenanceConfig())

    merged = sorted(
        (p.table, p.partition.region, p.partition.monthly, p.files_before, p.files_after)
        for p in report.partitions
    )
    assert merged == sorted(
        (name, region, name == "span_metrics_1h", 3, 1)
        for name in ("spans", *derived)
        for region in (EAST, WEST)
    )
    for name in derived:
        after = await asyncio.to_thread(red, config, name)
        # a third of the rows (three flushes' partial rows of each group merged), the same totals
        assert after == {region: (rows // 3, *totals) for region, (rows, *totals) in before[name].items()}
    assert set((await asyncio.to_thread(layout, config, "span_metrics_1m")).values()) == {1}


def test_the_global_lake_of_orasi_up_is_maintained_by_its_directory_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orasi up --regions` keeps its global lake under <data-dir>/global as it keeps a region's
    lake under <data-dir>/<region>: `orasi lake compact --data-dir D --region global` compacts it."""
    east = regional_lake(tmp_path, EAST)
    target = ReplicateConfig.model_validate(up_global_lake(tmp_path))
    made: Counter[tuple[str, str, int]] = Counter()
    for count in (4, 6):
        made += written(table := rows("logs", {EAST: count}, days=1))
        append(east, "logs", table)
    replication.replicate(east, target)
    command = ["lake", "compact", "--data-dir", str(tmp_path), "--region", "global"]

    assert cli.main(command) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("logs ")]
    assert line.startswith(f"logs region={EAST}/tenant=acme/day=") and line.endswith("into 1 (10 rows)")
    config = replication.global_config(east, target)
    assert global_rows(config, "logs") == made
    made += written(table := rows("logs", {EAST: 2}, days=1))
    append(east, "logs", table)
    assert [r.rows for r in replication.replicate(east, target)] == [2]
    assert global_rows(config, "logs") == made
