"""`orasi lake verify` and `orasi lake restore` on a real lake (SeaweedFS + PostgreSQL catalog).

verify: a healthy lake passes; a data file removed from the bucket and a batch committed twice
are each reported, with exit status 1. restore: a dry run changes nothing; a rollback to a
snapshot or a time makes it current, a bridge started afterwards sees its rows only, and the
lake verifies clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.servers import LakeSpace
from orasi_bridge.lake.catalog import filesystem, open_catalog
from orasi_bridge.lake.config import Config
from orasi_bridge.lake.restore import RestoreRefused, restore
from orasi_bridge.lake.rows import otlp_rows
from orasi_bridge.lake.schema import NAMESPACE
from orasi_bridge.lake.verify import verify_lake
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common import cli
from orasi_common.pdata import Signal

WINDOW = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}


async def three_commits(make_writer: MakeWriter) -> list[int]:
    """Three flushes of one span each; the spans table's snapshot ids, oldest first."""
    writer = await make_writer()
    for n in range(3):
        await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + n, f"span-{n}")))
        await writer.flush()
    table = writer.tables["spans"]
    table.refresh()
    ids = [entry.snapshot_id for entry in table.history()]
    assert len(ids) == 3
    return ids


def config_file(lake_space: LakeSpace, tmp_path: Path) -> Path:
    """A bridge configuration whose lake exporter is this test's lake."""
    document = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"lake": lake_space.lake_config()},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["lake"]}}},
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_a_healthy_lake_verifies_and_damage_is_reported(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await three_commits(make_writer)
    config = Config.model_validate(lake_space.lake_config())
    [spans] = [report for report in verify_lake(config, deep=True) if report.name == "spans"]
    assert (spans.files, spans.rows, len(spans.snapshots), spans.problems) == (3, 3, 3, [])
    path = config_file(lake_space, tmp_path)
    assert cli.main(["lake", "verify", "--config", str(path)]) == 0
    assert "spans: 3 files, 3 rows, 3 snapshots: ok" in capsys.readouterr().out

    # A batch committed twice (its id in two snapshots) and a data file gone from the bucket.
    catalog = open_catalog(config)
    victim = next(iter(catalog.load_table(f"{NAMESPACE}.spans").scan().plan_files())).file.file_path
    catalog.close()
    writer = await make_writer()
    twice = lake_space.committed_batch_ids()[0]
    rows = otlp_rows([data.batch(Signal.TRACES, data.span_request(data.T0, "again"))], "test-region-1")
    writer._committer.commit("spans", {"default": [rows]}, {"default": [[(twice, rows.num_rows)]]}, [twice])
    fs, prefix = filesystem(config)
    fs.delete_file(victim.removeprefix(prefix))

    assert cli.main(["lake", "verify", "--config", str(path), "--json"]) == 1
    [spans] = [report for report in json.loads(capsys.readouterr().out) if report["name"] == "spans"]
    problems = " | ".join(spans["problems"])
    assert f"1 batch ids were committed twice: {twice}" in problems
    assert "1 data files do not read" in problems and f"{victim}: missing" in problems


async def test_restore_to_a_snapshot_or_a_time(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = await three_commits(make_writer)
    config = Config.model_validate(lake_space.lake_config())
    path = config_file(lake_space, tmp_path)

    args = ["lake", "restore", "--config", str(path), "--table", "spans", "--to-snapshot", str(second)]
    assert cli.main([*args, "--dry-run"]) == 0
    planned = f"spans: would roll back 1 snapshots, {third} (3 rows) -> {second} (2 rows)"
    assert planned in capsys.readouterr().out
    assert [r.snapshots[-1].snapshot_id for r in verify_lake(config) if r.name == "spans"] == [third]

    assert cli.main(args) == 0
    assert "replays its write-ahead log" in capsys.readouterr().out
    writer = await make_writer()  # a bridge started after the restore
    engine = QueryEngine(writer, QueryLimits())
    result = await engine.execute("SELECT name FROM spans ORDER BY name", "default", **WINDOW)
    assert result.rows == [("span-0",), ("span-1",)]
    [spans] = [report for report in verify_lake(config) if report.name == "spans"]
    assert (spans.rows, spans.problems) == (2, [])

    # By time: the last snapshot committed by then (here: the first one).
    first_at = next(
        s.timestamp_ms for s in writer.tables["spans"].metadata.snapshots if s.snapshot_id == first
    )
    [rollback] = restore(config, ["spans"], to_time_ms=first_at)
    assert (rollback.target_id, rollback.target_rows, rollback.snapshots_undone) == (first, 1, 1)
    with pytest.raises(RestoreRefused, match="no snapshot that old"):
        restore(config, ["spans"], to_time_ms=first_at - 3_600_000)
    with pytest.raises(RestoreRefused, match=f"no snapshot {third} in its current history"):
        restore(config, ["spans"], to_snapshot=third)  # rolled back: no longer an ancestor
    assert cli.main(["lake", "restore", "--config", str(path), "--to-snapshot", str(first)]) == 1
    assert "name it with --table" in capsys.readouterr().err


async def test_catalog_backup_and_restore_after_the_catalog_is_lost(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await three_commits(make_writer)
    config = Config.model_validate(lake_space.lake_config())
    path = config_file(lake_space, tmp_path)
    saved = tmp_path / "catalog.json"
    assert cli.main(["catalog", "backup", "--config", str(path), "--output", str(saved)]) == 0
    document = json.loads(saved.read_text())
    assert {table["name"]: table["rows"] for table in document["tables"]}["spans"] == 3

    def lose_the_catalog() -> None:
        catalog = open_catalog(config)
        for identifier in catalog.list_tables(NAMESPACE):
            catalog.drop_table(identifier)  # the catalog's rows only: the warehouse keeps every file
        catalog.close()

    def rows_of_spans() -> int:
        [spans] = [report for report in verify_lake(config) if report.name == "spans"]
        assert spans.problems == []
        return spans.rows

    lose_the_catalog()
    assert verify_lake(config) == []
    assert cli.main(["catalog", "restore", "--config", str(path), str(saved), "--dry-run"]) == 0
    assert "spans: would be registered" in capsys.readouterr().out
    assert verify_lake(config) == []
    assert cli.main(["catalog", "restore", "--config", str(path), str(saved)]) == 0
    assert "spans: registered" in capsys.readouterr().out
    assert rows_of_spans() == 3

    # Without a backup: the newest metadata file of each table, found in the warehouse.
    writer = await make_writer()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0 + 9, "span-9")))
    await writer.flush()
    await writer.shutdown()
    lose_the_catalog()
    assert cli.main(["catalog", "restore", "--config", str(path), "--from-warehouse"]) == 0
    assert rows_of_spans() == 4

    # An older backup over an existing table: kept unless --overwrite (which rolls it back).
    assert cli.main(["catalog", "restore", "--config", str(path), str(saved)]) == 0
    assert "exists at another metadata file" in capsys.readouterr().out
    assert rows_of_spans() == 4
    assert cli.main(["catalog", "restore", "--config", str(path), str(saved), "--overwrite"]) == 0
    assert "spans: replaced" in capsys.readouterr().out
    assert rows_of_spans() == 3
    saved.write_text(json.dumps({"format": "something else"}))
    assert cli.main(["catalog", "restore", "--config", str(path), str(saved)]) == 1
    assert "not a catalog backup" in capsys.readouterr().err
