"""span_metrics_1h is partitioned by month(time) and tenant (``schema.MONTHLY``): a query spanning
two months reads each month's file, compaction merges a month's files (and moves in those of the
day partitions a lake made before the table was monthly), retention deletes a month whose days are
all expired and rewrites a partly expired month without its expired days' rows, so that the rollup
keeps what span_metrics_1m keeps. Real SeaweedFS and PostgreSQL (the lake tests' fixtures)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.test_lake_maintenance import run
from orasi_bridge.lake import LakeWriter, catalog
from orasi_bridge.lake import commits as commits_module
from orasi_bridge.lake.maintenance.compaction import compact
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.retention import apply_retention
from orasi_bridge.lake.maintenance.tables import Lake, PartitionKey, live_files
from orasi_bridge.lake.spanmetrics import RED_SQL, red_sql
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal

HOUR = data.HOUR
DAY = 24 * HOUR
MAY_31 = data.T0 - data.T0 % DAY  # 2024-05-31T00:00Z
JUNE = MAY_31 + DAY  # 2024-06-01T00:00Z
MAY, JUNE_MONTH = (2024 - 1970) * 12 + 4, (2024 - 1970) * 12 + 5  # months since 1970-01
EVERYTHING = {"start": MAY_31 - 60 * DAY, "end": JUNE + 10 * DAY}
HOURLY = (
    "SELECT service_name, name, kind, status_code, date_trunc('hour', time) AS hour, sum(span_count), "
    "sum(error_count), sum(duration_sum_ns), min(duration_min_ns), max(duration_max_ns) "
    "FROM {table} GROUP BY ALL ORDER BY ALL"
)


async def ingest(writer: LakeWriter, *flushes: tuple[int, ...]) -> None:
    """One flush per tuple, of the test spans at each of its times."""
    for times in flushes:
        for at in times:
            await writer.consume(data.batch(Signal.TRACES, data.traces_request(at)))
        await writer.flush()


async def hourly(engine: QueryEngine, table: str, **bounds: Any) -> list[tuple[Any, ...]]:
    result = await engine.execute(HOURLY.format(table=table), "default", **(bounds or EVERYTHING))
    assert result.rows is not None
    return result.rows


def rollup_files(writer: LakeWriter) -> dict[PartitionKey, int]:
    lake = Lake(writer.config)
    try:
        return {key: len(files) for key, files in live_files(lake.tables()["span_metrics_1h"]).items()}
    finally:
        lake.close()


async def test_a_window_spanning_two_months_reads_each_months_file(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    # Two flushes, each with spans of both months.
    await ingest(writer, (MAY_31 + 22 * HOUR, JUNE + HOUR), (MAY_31 + 23 * HOUR, JUNE + 2 * HOUR))

    table = writer.tables["span_metrics_1h"]
    assert {(f.name, type(f.transform)) for f in table.spec().fields} == {
        ("time_month", MonthTransform),
        ("tenant", IdentityTransform),
    }
    assert rollup_files(writer) == {
        PartitionKey("default", MAY, monthly=True): 2,
        PartitionKey("default", JUNE_MONTH, monthly=True): 2,
    }
    paths = sorted(task.file.file_path for task in table.scan().plan_files())
    assert (
        sum("/time_month=2024-05/" in p for p in paths)
        == sum("/time_month=2024-06/" in p for p in paths)
        == 2
    )
    assert await hourly(engine, "span_metrics_1h") == await hourly(engine, "span_metrics_1m")
    # RED over 12 h across the months' edge (not on the hour): the rollup answers as the minutes.
    window: dict[str, Any] = {"start": MAY_31 + 18 * HOUR + 7 * 10**9, "end": JUNE + 6 * HOUR + 7 * 10**9}
    minutes = await engine.execute(RED_SQL.format(seconds=12 * 3600), "default", **window)
    rolled_up = await engine.execute(red_sql(window["start"], window["end"]), "default", **window)
    assert minutes.rows and rolled_up.rows == minutes.rows
    assert rolled_up.stats["tables"] == ["span_metrics_1h", "span_metrics_1m"]
    # Both months' files of the rollup; none of the minutes' (their spans are in neither edge,
    # though all are between the edges: each edge is a window of its own).
    assert rolled_up.stats["files"] == 4
    # A window inside June reads June's files only.
    june = await engine.execute("SELECT count(*) FROM span_metrics_1h", "default", start=JUNE, end=JUNE + DAY)
    assert june.stats["files"] == 2


async def test_compaction_merges_a_months_files(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    await ingest(writer, (MAY_31 - 20 * DAY,), (MAY_31 - 3 * DAY,), (data.T0,), (JUNE + HOUR,))
    before = await hourly(engine, "span_metrics_1h")
    assert rollup_files(writer) == {
        PartitionKey("default", MAY, monthly=True): 3,
        PartitionKey("default", JUNE_MONTH, monthly=True): 1,
    }

    report = await asyncio.to_thread(run, compact, writer.config, MaintenanceConfig())

    merged = [(str(p.partition), p.files_before, p.files_after, p.committed) for p in report.partitions]
    assert ("tenant=default/month=2024-05", 3, 1, True) in merged
    assert not any(name.endswith("2024-06") for name, *_ in merged)  # one file: left alone
    assert rollup_files(writer) == {
        PartitionKey("default", MAY, monthly=True): 1,
        PartitionKey("default", JUNE_MONTH, monthly=True): 1,
    }
    await ingest(writer, (JUNE + 2 * HOUR,))  # the writer publishes the compaction's snapshot with its own
    after = await hourly(engine, "span_metrics_1h", start=EVERYTHING["start"], end=JUNE + HOUR + HOUR // 2)
    assert (
        after
        == before
        == await hourly(engine, "span_metrics_1m", start=EVERYTHING["start"], end=JUNE + HOUR + HOUR // 2)
    )


async def test_retention_deletes_expired_months_and_the_expired_days_of_a_month(writer: LakeWriter) -> None:
    engine = QueryEngine(writer, QueryLimits())
    april, may_10, may_25 = MAY_31 - 40 * DAY, MAY_31 - 21 * DAY, MAY_31 - 6 * DAY
    # April: a month all expired; May 10's and 25th's spans in one file; May 10 alone; the 31st.
    await ingest(writer, (april,), (may_10, may_25), (may_10 + HOUR,), (data.T0,))
    assert rollup_files(writer) == {
        PartitionKey("default", MAY - 1, monthly=True): 1,
        PartitionKey("default", MAY, monthly=True): 3,
    }
    maintenance = MaintenanceConfig.model_validate({"retention": {"default": "10d"}})  # kept: from May 21

    report = await asyncio.to_thread(run, apply_retention, writer.config, maintenance, now=data.T0 / 1e9)

    spans = len(data.expected_spans())
    rollup = sorted(
        (str(p.partition), p.files, p.rewritten) for p in report.partitions if p.table == "span_metrics_1h"
    )
    # April deleted; May: the file of May 10 and 25 rewritten with the 25th's rows, May 10's file gone.
    assert rollup == [("tenant=default/month=2024-04", 1, 0), ("tenant=default/month=2024-05", 2, 1)]
    removed = {str(p.partition): p.rows for p in report.partitions if p.table == "span_metrics_1h"}
    assert removed["tenant=default/month=2024-05"] > 0
    assert rollup_files(writer) == {PartitionKey("default", MAY, monthly=True): 2}
    await ingest(writer, (JUNE + HOUR,))  # the writer publishes the retention's snapshot with its own
    kept_1h, kept_1m = await hourly(engine, "span_metrics_1h"), await hourly(engine, "span_metrics_1m")
    assert kept_1h == kept_1m  # the minutes' day partitions went by the same days
    assert {row[4].day for row in kept_1h} == {25, 31, 1}
    assert sum(row[5] for row in kept_1h) == 3 * spans
    again = await asyncio.to_thread(run, apply_retention, writer.config, maintenance, now=data.T0 / 1e9)
    assert again.partitions == []


async def test_a_day_partitioned_rollup_is_evolved_to_months_and_compaction_moves_its_files(
    make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lake made before the rollup was monthly: its table partitioned by day, with day files.
    with monkeypatch.context() as patched:
        patched.setattr(catalog, "MONTHLY", frozenset())
        patched.setattr(commits_module, "MONTHLY", frozenset())
        old = await make_writer()
        await ingest(old, (MAY_31 - 3 * DAY,), (MAY_31 - 2 * DAY,))
        assert isinstance(old.tables["span_metrics_1h"].spec().fields[0].transform, DayTransform)
        await old.shutdown()

    writer = await make_writer()
    engine = QueryEngine(writer, QueryLimits())
    table = writer.tables["span_metrics_1h"]
    assert [f.name for f in table.spec().fields] == ["tenant", "time_month"]
    await ingest(writer, (data.T0,))
    assert rollup_files(writer) == {
        PartitionKey("default", 19_871): 1,  # 2024-05-28 and 29: the day spec's files
        PartitionKey("default", 19_872): 1,
        PartitionKey("default", MAY, monthly=True): 1,
    }
    before = await hourly(engine, "span_metrics_1h")
    assert before == await hourly(engine, "span_metrics_1m") and len({row[4] for row in before}) == 3

    report = await asyncio.to_thread(run, compact, writer.config, MaintenanceConfig())

    assert [
        (str(p.partition), p.files_before, p.committed)
        for p in report.partitions
        if p.table == "span_metrics_1h"
    ] == [("tenant=default/month=2024-05", 3, True)]
    assert rollup_files(writer) == {PartitionKey("default", MAY, monthly=True): 1}
    await ingest(writer, (JUNE + HOUR,))
    assert await hourly(engine, "span_metrics_1h", start=EVERYTHING["start"], end=JUNE) == before
