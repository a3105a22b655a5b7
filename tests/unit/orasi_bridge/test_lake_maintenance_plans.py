"""The pure parts of lake maintenance: durations in its configuration, compaction's bins, and
retention's first kept day (expectations worked out by hand)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.typedef import Record

from orasi_bridge.lake.config import Config as LakeConfig
from orasi_bridge.lake.maintenance.compaction import MIB, plan
from orasi_bridge.lake.maintenance.config import MaintenanceConfig, RetentionConfig
from orasi_bridge.lake.maintenance.retention import first_kept_day

TIME_ID = 21
DAY = 86_400


def data_file(name: str, mib: float, first_micros: int) -> DataFile:
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=f"s3://b/w/data/{name}.parquet",
        file_format=FileFormat.PARQUET,
        partition=Record(19_000, "acme"),
        record_count=10,
        file_size_in_bytes=int(mib * MIB),
        lower_bounds={TIME_ID: first_micros.to_bytes(8, "little", signed=True)},
    )


def test_durations_are_seconds_or_a_number_with_a_unit() -> None:
    config = MaintenanceConfig.model_validate(
        {
            "compact_interval": "15m",
            "expire_interval": 90,
            "keep_age": "7d",
            "orphan_age": "1.5h",
            "retention": {"default": "30d", "tenants": {"acme": "90d", "b": "12h"}},
        }
    )
    assert (config.compact_interval, config.expire_interval, config.retention_interval) == (900, 90, None)
    assert (config.keep_age, config.orphan_age) == (7 * DAY, 5400)
    assert config.retention == RetentionConfig(default=30 * DAY, tenants={"acme": 90 * DAY, "b": 43_200})
    for wrong in ("30 days", "-5m", "0", "5w"):
        with pytest.raises(ValidationError, match="compact_interval"):
            MaintenanceConfig.model_validate({"compact_interval": wrong})
    with pytest.raises(ValidationError, match=r"retention\.bogus"):
        MaintenanceConfig.model_validate({"retention": {"bogus": 1}})


def test_the_lake_exporter_schedules_nothing_unless_told() -> None:
    lake = LakeConfig.model_validate({"catalog_uri": "sqlite:///c.db", "warehouse": "file:///w"})
    assert lake.maintenance == MaintenanceConfig()
    assert (lake.maintenance.compact_interval, lake.maintenance.expire_interval) == (None, None)
    assert lake.maintenance.retention_interval is None


def test_compaction_packs_small_files_in_time_order_into_bins_up_to_the_target() -> None:
    config = MaintenanceConfig(target_file_mib=10)
    files = [
        data_file("d", 4, 400),
        data_file("big", 8, 50),  # over 3/4 of the target: left alone
        data_file("a", 3, 100),
        data_file("c", 5, 300),
        data_file("b", 3, 200),
        data_file("e", 1, 500),
    ]
    bins = plan(files, config, TIME_ID)
    # a+b+c would be 11 MiB: a new bin starts at c; c+d+e is 10 MiB, which fits.
    assert [[f.file_path.rsplit("/", 1)[1] for f in merged] for merged in bins] == [
        ["a.parquet", "b.parquet"],
        ["c.parquet", "d.parquet", "e.parquet"],
    ]


def test_compaction_needs_min_input_files_small_files_and_drops_bins_of_one() -> None:
    assert plan([data_file("a", 1, 1)], MaintenanceConfig(), TIME_ID) == []
    two = [data_file("a", 1, 1), data_file("b", 1, 2)]
    assert plan(two, MaintenanceConfig(min_input_files=3), TIME_ID) == []
    # Each file nearly fills a bin alone: nothing is worth merging.
    assert (
        plan([data_file("a", 7, 1), data_file("b", 7, 2)], MaintenanceConfig(target_file_mib=10), TIME_ID)
        == []
    )


def test_retention_keeps_whole_days_and_each_tenant_its_own_limit() -> None:
    retention = RetentionConfig(default=30 * DAY, tenants={"acme": 90 * DAY})
    now = 20_000 * DAY + 3600  # an hour into day 20,000
    # Day 19,970 ends at 19,971 * DAY, which is 29 days and 1 hour ago: kept; day 19,969 is not.
    assert first_kept_day(retention, "other", now) == 19_970
    assert first_kept_day(retention, "acme", now) == 19_910
    assert first_kept_day(RetentionConfig(), "other", now) is None
    assert first_kept_day(RetentionConfig(tenants={"acme": DAY}), "other", now) is None


def test_compaction_bins_hold_max_file_rows_at_most() -> None:
    files = [data_file(name, 1, at) for at, name in enumerate("abcde")]  # 10 rows each
    bins = plan(files, MaintenanceConfig(max_file_rows=25), TIME_ID)
    assert [[f.file_path.rsplit("/", 1)[1] for f in merged] for merged in bins] == [
        ["a.parquet", "b.parquet"],
        ["c.parquet", "d.parquet"],  # e alone is left
    ]
