"""What replication copies in each commit (``replicate._steps``) and when a file's statistics prove
it holds one region (``replicate._one_region``): expectations written by hand."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

from orasi_bridge.lake import replicate
from orasi_bridge.lake.replicate import Pending

REGION_ID = 2


def snapshots(*files: int) -> list[Pending]:
    return [Pending(1000 + i, [cast(DataFile, k) for k in range(n)]) for i, n in enumerate(files)]


def ids(steps: Any) -> list[list[int]]:
    return [[snapshot.snapshot_id - 1000 for snapshot in step] for step in steps]


def test_steps_cut_at_the_file_limit_and_carry_empty_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicate, "FILES_PER_COMMIT", 3)
    # 0: two files; 1: a compaction (none); 2: two files -> over 3: a new step
    assert ids(replicate._steps(snapshots(2, 0, 2, 1))) == [[0, 1], [2, 3]]
    # a snapshot larger than the limit is a step alone
    assert ids(replicate._steps(snapshots(1, 5, 1))) == [[0], [1], [2]]
    # snapshots without files after the last copy ride along; alone they are not committed
    assert ids(replicate._steps(snapshots(1, 0, 0))) == [[0, 1, 2]]
    assert ids(replicate._steps(snapshots(0, 0))) == []
    assert ids(replicate._steps(snapshots(3, 0, 0))) == [[0, 1, 2]]


def data_file(lower: bytes | None, upper: bytes | None, nulls: int | None, rows: int = 10) -> DataFile:
    bounds = {REGION_ID: lower} if lower is not None else {}
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path="s3://b/f.parquet",
        file_format=FileFormat.PARQUET,
        record_count=rows,
        file_size_in_bytes=100,
        null_value_counts={} if nulls is None else {REGION_ID: nulls},
        lower_bounds=bounds,
        upper_bounds={REGION_ID: upper} if upper is not None else {},
    )


@pytest.mark.parametrize(
    ("lower", "upper", "nulls", "region"),
    [
        (b"us-east-1", b"us-east-1", 0, "us-east-1"),
        (None, None, 10, None),  # every row null: the null partition
        (b"us-east-1", b"us-west-2", 0, "mixed"),
        (b"us-east-1", b"us-east-1", 3, "mixed"),  # values and nulls
        (b"us-east-1", b"us-east-1", None, "mixed"),  # no null count: not proven
        (None, None, 0, "mixed"),  # no bounds
        (b"a-very-long-regi", b"a-very-long-regj", 0, "mixed"),  # truncated bounds
    ],
)
def test_a_file_holds_one_region_only_when_its_statistics_prove_it(
    lower: bytes | None, upper: bytes | None, nulls: int | None, region: str | None
) -> None:
    found = replicate._one_region(data_file(lower, upper, nulls), REGION_ID)
    assert (found if found is not replicate._MIXED else "mixed") == region
