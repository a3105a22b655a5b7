"""Replication of regional lakes into a global lake (lake/replicate.py).

Two regional lakes as `orasi up --regions` makes them (SQLite catalog, file warehouse), written
as the lake writer writes (``replication.append``: one fast append per flush with its batch ids);
the global lake a real one (PostgreSQL catalog schema, SeaweedFS warehouse prefix:
``global_lake``), or a local one where a test counts the files on disk. Expected counts are the
rows each test wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io.pyarrow import _dataframe_to_data_files

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, writer_settings
from integration.bridge.regions import append, global_counts, global_files, regional_lake, rows
from integration.bridge.servers import LakeSpace
from orasi_bridge.lake import replicate as replication
from orasi_bridge.lake.catalog import open_catalog
from orasi_bridge.lake.config import ReplicateConfig
from orasi_bridge.lake.replicate_schedule import ReplicationSchedule
from orasi_bridge.lake.schema import TABLES
from orasi_common.cli import main
from orasi_common.extensions.etcd.config import Config as EtcdConfig
from orasi_common.pdata import Signal
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.servers import ETCD
from orasi_common.testing.service_process import free_port


def test_two_regions_replicate_incrementally(tmp_path: Path, global_lake: ReplicateConfig) -> None:
    east, west = regional_lake(tmp_path, "us-east-1"), regional_lake(tmp_path, "us-west-2")
    for name in TABLES:
        append(east, name, rows(name, {"us-east-1": 30}))
        append(east, name, rows(name, {"us-east-1": 12}))
    append(west, "spans", rows("spans", {"us-west-2": 25}))

    first = {lake.region: replication.replicate(lake, global_lake) for lake in (east, west)}

    assert {r.table: r.rows for r in first["us-east-1"]} == {name: 42 for name in TABLES}
    assert [(r.table, r.rows) for r in first["us-west-2"]] == [("spans", 25)]  # no other table there
    assert all(r.rewritten == 0 for reports in first.values() for r in reports)  # bytes copied
    assert global_counts(global_lake, "spans", east) == {"us-east-1": 42, "us-west-2": 25}
    assert global_counts(global_lake, "logs", east) == {"us-east-1": 42}
    # partitioned by region first, then as the regional table (day(time), tenant)
    files = global_files(global_lake, "spans", east)
    assert sorted({(f.partition[0], f.partition[2]) for f in files}) == [
        ("us-east-1", "acme"),
        ("us-west-2", "acme"),
    ]

    # a second run copies nothing (and commits nothing)
    again = replication.replicate(east, global_lake) + replication.replicate(west, global_lake)
    assert [(r.files, r.commits) for r in again] == [(0, 0)] * len(again)

    # new rows: only they are copied
    append(west, "spans", rows("spans", {"us-west-2": 7}))
    latest = append(east, "spans", rows("spans", {"us-east-1": 5}))
    east_spans = next(r for r in replication.replicate(east, global_lake) if r.table == "spans")
    assert (east_spans.rows, east_spans.snapshots, east_spans.position) == (5, 1, latest)
    assert [r.rows for r in replication.replicate(west, global_lake)] == [7]
    assert global_counts(global_lake, "spans", east) == {"us-east-1": 47, "us-west-2": 32}


def test_dry_run_reports_without_writing(tmp_path: Path, global_lake: ReplicateConfig) -> None:
    east = regional_lake(tmp_path, "us-east-1")
    snapshot = append(east, "spans", rows("spans", {"us-east-1": 9}))
    planned = replication.replicate(east, global_lake, dry_run=True)
    assert [(r.table, r.rows, r.commits, r.position) for r in planned] == [("spans", 9, 0, snapshot)]
    done = replication.replicate(east, global_lake)
    assert [(r.rows, r.commits) for r in done] == [(9, 1)]
    assert global_counts(global_lake, "spans", east) == {"us-east-1": 9}


def test_crash_between_files_and_commit(
    tmp_path: Path, global_lake: ReplicateConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    east = regional_lake(tmp_path, "us-east-1")
    target = ReplicateConfig(to=f"file://{tmp_path / 'global'}", catalog_uri=f"sqlite:///{tmp_path / 'g.db'}")
    append(east, "spans", rows("spans", {"us-east-1": 20}))
    replication.replicate(east, target)
    append(east, "spans", rows("spans", {"us-east-1": 6}))
    append(east, "spans", rows("spans", {"us-east-1": 4}))

    real = replication._append
    calls = []

    def crash_once(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("killed between the files and the commit")
        real(*args)

    monkeypatch.setattr(replication, "_append", crash_once)
    with pytest.raises(RuntimeError, match="killed"):
        replication.replicate(east, target)
    assert global_counts(target, "spans", east) == {"us-east-1": 20}  # nothing of the crashed run

    resumed = replication.replicate(east, target)
    assert [(r.rows, r.snapshots) for r in resumed] == [(10, 2)]
    assert global_counts(target, "spans", east) == {"us-east-1": 30}
    # the resumed run wrote the crashed run's files again, at the same names: no orphans left
    on_disk = sorted(str(p) for p in (tmp_path / "global").rglob("*.parquet"))
    referenced = sorted(f.file_path.removeprefix("file://") for f in global_files(target, "spans", east))
    assert on_disk == referenced


def test_compaction_is_not_copied_again(tmp_path: Path, global_lake: ReplicateConfig) -> None:
    west = regional_lake(tmp_path, "us-west-2")
    append(west, "logs", rows("logs", {"us-west-2": 15}))
    append(west, "logs", rows("logs", {"us-west-2": 10}))
    replication.replicate(west, global_lake)

    # a compaction: one overwrite snapshot deletes every file and adds the same rows in new ones
    catalog = open_catalog(west)
    try:
        table = catalog.load_table("orasi.logs")
        inputs = [task.file for task in table.scan().plan_files()]
        outputs = list(_dataframe_to_data_files(table.metadata, table.scan().to_arrow(), table.io))
        with table.transaction() as transaction, transaction.update_snapshot().overwrite() as overwrite:
            for data_file in inputs:
                overwrite.delete_data_file(data_file)
            for data_file in outputs:
                overwrite.append_data_file(data_file)
        snapshot = table.current_snapshot()
        assert snapshot is not None and snapshot.summary is not None
        assert snapshot.summary.operation.value == "overwrite"
        assert table.scan().to_arrow().num_rows == 25
    finally:
        catalog.close()
    append(west, "logs", rows("logs", {"us-west-2": 3}))

    reports = replication.replicate(west, global_lake)
    assert [(r.snapshots, r.rows) for r in reports] == [(2, 3)]  # the overwrite, and the new append
    assert global_counts(global_lake, "logs", west) == {"us-west-2": 28}


def test_files_of_several_regions_are_rewritten_by_region(tmp_path: Path) -> None:
    """A regional lake holding rows of another region (no single-region statistics): its files'
    rows are copied in Arrow batches, partitioned by each row's region."""
    west = regional_lake(tmp_path, "us-west-2")
    target = ReplicateConfig(to=f"file://{tmp_path / 'global'}", catalog_uri=f"sqlite:///{tmp_path / 'g.db'}")
    append(west, "metric_points", rows("metric_points", {"us-west-2": 11, "us-east-1": 4}, days=1))
    [report] = replication.replicate(west, target)
    assert (report.rows, report.rewritten) == (15, 1)
    assert global_counts(target, "metric_points", west) == {"us-west-2": 11, "us-east-1": 4}
    regions = sorted(f.partition[0] for f in global_files(target, "metric_points", west))
    assert regions == ["us-east-1", "us-west-2"]
    assert replication.replicate(west, target)[0].files == 0


def test_command_replicates_an_up_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`orasi lake replicate` on a region of `orasi up --regions` (its lake under <data-dir>/<region>)."""
    east = regional_lake(tmp_path, "us-east-1")  # where orasi up --regions keeps us-east-1's lake
    append(east, "spans", rows("spans", {"us-east-1": 8}))
    to = ["--to", f"file://{tmp_path / 'global'}", "--catalog", f"sqlite:///{tmp_path / 'global.db'}"]
    command = ["lake", "replicate", "--data-dir", str(tmp_path), "--region", "us-east-1", *to]

    assert main([*command, "--dry-run"]) == 0
    assert "would copy spans: 1 snapshots, 2 files (0 rewritten), 8 rows" in capsys.readouterr().out
    assert main(command) == 0
    assert "spans: 1 snapshots, 2 files (0 rewritten), 8 rows" in capsys.readouterr().out
    assert main(command) == 0
    assert "spans: 0 snapshots, 0 files" in capsys.readouterr().out
    target = ReplicateConfig(to=to[1], catalog_uri=to[3])
    assert global_counts(target, "spans", east) == {"us-east-1": 8}

    assert main(["lake", "replicate", "--data-dir", str(tmp_path), "--region", "us-east-1"]) == 1
    assert "give --to and --catalog" in capsys.readouterr().err


@pytest.fixture
def glue_endpoint() -> Iterator[str]:
    """A Glue API stand-in (moto's server: AWS is not reachable here), on a free port."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_global_lake_in_a_glue_catalog(tmp_path: Path, lake_space: LakeSpace, glue_endpoint: str) -> None:
    """The global lake's catalog is AWS Glue's (glue://REGION?endpoint=…), its warehouse S3's, as
    Athena would read it."""
    east = regional_lake(tmp_path, "us-east-1")
    append_id = append(east, "spans", rows("spans", {"us-east-1": 13}))
    s3 = lake_space.lake_config()["s3"]
    target = ReplicateConfig(
        to=lake_space.warehouse, catalog_uri=f"glue://us-east-1?endpoint={glue_endpoint}", s3=s3
    )
    assert [r.rows for r in replication.replicate(east, target)] == [13]
    catalog = open_catalog(replication.global_config(east, target))
    assert type(catalog).__name__ == "GlueCatalog"
    table = catalog.load_table("orasi.spans")
    assert table.metadata_location.startswith(lake_space.warehouse)
    assert replication.positions(table) == {"us-east-1": append_id}
    assert table.scan().to_arrow().column("region").to_pylist() == ["us-east-1"] * 13


async def test_the_lake_exporter_replicates_on_its_schedule(make_writer: MakeWriter, tmp_path: Path) -> None:
    """A `replicate` section: the lake's new commits reach the global lake without a command, copied
    by one of the lake's two exporters (a lock in this process; the etcd election with etcd)."""
    section = {"to": f"file://{tmp_path / 'global'}", "catalog_uri": f"sqlite:///{tmp_path / 'g.db'}"}
    metrics = [Metrics("bridge"), Metrics("bridge")]
    first = await make_writer(metrics[0], replicate={**section, "interval": 0.2})
    await make_writer(metrics[1], replicate={**section, "interval": 0.2})  # a second bridge of the lake
    await first.consume(data.batch(Signal.TRACES, data.traces_request()))
    await first.flush()
    target = ReplicateConfig.model_validate(section)
    spans = len(data.expected_spans())

    def replicated() -> bool:
        try:
            return global_counts(target, "spans", first.config) == {"test-region-1": spans}
        except NoSuchTableError:
            return False

    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(replicated):
        assert time.monotonic() < deadline, "the spans did not reach the global lake within 30 s"
        await asyncio.sleep(0.1)

    def runs(registry: Metrics, outcome: str) -> float:
        labels = {"exporter": "lake", "action": "replicate", "outcome": outcome}
        return registry.registry.get_sample_value("orasi_lake_maintenance_runs_total", labels) or 0.0

    # counted as a maintenance job (once the run that committed returns), on the one exporter that leads
    while not any(runs(m, "success") for m in metrics):
        assert time.monotonic() < deadline, "no replication run was counted within 30 s"
        await asyncio.sleep(0.05)
    assert sorted(runs(m, "success") > 0 for m in metrics) == [False, True]
    assert sum(runs(m, "failure") for m in metrics) == 0


async def test_the_election_picks_one_replicator_and_a_follower_resumes(tmp_path: Path) -> None:
    """With etcd, the lake's bridges elect one replicator (/orasi/<region>/leader/lake-replicate);
    when it stops, another takes over from the position the global lake records."""
    east = regional_lake(tmp_path, "us-east-1")
    append(east, "logs", rows("logs", {"us-east-1": 21}))
    target = ReplicateConfig(
        to=f"file://{tmp_path / 'global'}", catalog_uri=f"sqlite:///{tmp_path / 'g.db'}", interval=0.2
    )
    config = east.model_copy(update={"replicate": target})
    etcd = {"etcd": EtcdConfig(endpoints=[ETCD], region=f"test-{uuid.uuid4().hex[:8]}")}
    metrics = [Metrics("bridge"), Metrics("bridge")]
    schedules = [
        ReplicationSchedule(dataclasses.replace(writer_settings(m), extensions=etcd), config) for m in metrics
    ]

    def runs(index: int) -> float:
        labels = {"exporter": "lake", "action": "replicate", "outcome": "success"}
        return metrics[index].registry.get_sample_value("orasi_lake_maintenance_runs_total", labels) or 0.0

    async def until(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(condition):
            assert time.monotonic() < deadline, f"{what} did not happen within 30 s"
            await asyncio.sleep(0.1)

    try:
        for schedule in schedules:
            await schedule.start()
        await until(lambda: runs(0) + runs(1) >= 2, "two scheduled replications")
        assert min(runs(0), runs(1)) == 0
        leader = 0 if runs(0) else 1
        assert global_counts(target, "logs", east) == {"us-east-1": 21}
        await schedules[leader].shutdown()  # resigns: the other one leads
        append(east, "logs", rows("logs", {"us-east-1": 4}))
        await until(lambda: global_counts(target, "logs", east) == {"us-east-1": 25}, "the follower's copy")
        assert runs(1 - leader) >= 1
    finally:
        for schedule in schedules:
            await schedule.shutdown()
