"""``sort_rows`` cuts a month-partitioned table's rows (``schema.MONTHLY``) into runs per tenant and
month, numbered as Iceberg's month transform numbers them; ``write_data_files`` refuses runs cut
by another partitioning than the table's (a day run in a month partition would be misfiled)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.transforms import MonthTransform
from pyiceberg.types import TimestamptzType

from orasi_bridge.lake.catalog import ensure_table
from orasi_bridge.lake.files import MICROS_PER_DAY, Partition, sort_rows, write_data_files
from orasi_bridge.lake.schema import MONTHLY, SPAN_METRICS_1H

MONTH = cast(Callable[[int], int], MonthTransform().transform(TimestamptzType()))  # Iceberg's month number
MAY_31 = 19_874 * MICROS_PER_DAY  # 2024-05-31T00:00Z
TIMES = [
    MAY_31 + MICROS_PER_DAY + 5,
    MAY_31 + 3600 * 10**6,
    MAY_31 - 30 * MICROS_PER_DAY,
    MAY_31 + 40 * MICROS_PER_DAY,
]


def rows(times: list[int], tenant: str = "t") -> list[pa.RecordBatch]:
    columns = {
        "tenant": pa.array([tenant] * len(times)),
        "time": pa.array(times, pa.int64()).cast(SPAN_METRICS_1H.field("time").type),
    }
    return [
        pa.RecordBatch.from_arrays(
            [columns.get(f.name, pa.nulls(len(times), f.type)) for f in SPAN_METRICS_1H],
            schema=SPAN_METRICS_1H,
        )
    ]


def test_monthly_runs_are_iceberg_months() -> None:
    sorted_rows, runs = sort_rows(rows(TIMES), SPAN_METRICS_1H, monthly=True)
    months = sorted({MONTH(t) for t in TIMES})
    assert [(run.tenant, run.day) for run in runs] == [("t", m) for m in months]  # April, May, June, July
    assert [MONTH(t) for t in sorted_rows.column("time").cast(pa.int64()).to_pylist()] == sorted(
        MONTH(t) for t in TIMES
    )
    _, days = sort_rows(rows(TIMES), SPAN_METRICS_1H)
    assert len(days) == 4 and days[0].day == 19_874 - 30


def test_a_day_run_is_refused_by_a_month_partitioned_table(tmp_path: Path) -> None:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/w")
    assert "span_metrics_1h" in MONTHLY
    table = ensure_table(catalog, "span_metrics_1h")
    fs = pafs.LocalFileSystem()
    ordered, days = sort_rows(rows(TIMES[:1]), SPAN_METRICS_1H)
    with pytest.raises(ValueError, match="another partitioning"):
        write_data_files(table, "span_metrics_1h", ordered, days, fs, "file://")
    ordered, months = sort_rows(rows(TIMES[:1]), SPAN_METRICS_1H, monthly=True)
    (written,) = write_data_files(table, "span_metrics_1h", ordered, months, fs, "file://")
    assert "/time_month=2024-06/" in written.file_path and months == [Partition("t", MONTH(TIMES[0]), 0, 1)]
