"""The lake exporter's `maintenance` section: which jobs run on a schedule, and their settings.

Durations are seconds, or a number with a unit: ``90s``, ``15m``, ``6h``, ``30d``. Every
``*_interval`` unset (the default in a configuration file) leaves that job to ``orasi lake``;
`orasi up` sets them all.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

from orasi_common.config.model import ComponentConfig

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def seconds(value: object) -> object:
    """``value`` in seconds when it is a duration string (``30d``); other values as they are."""
    if not isinstance(value, str):
        return value
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 90s, 15m, 6h, 30d)") from None
    return float(match.group(1)) * _UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(seconds), Field(gt=0)]


class RetentionConfig(ComponentConfig):
    default: Duration | None = Field(
        default=None, description="How long every tenant's rows are kept (unset: forever)."
    )
    tenants: dict[str, Duration] = Field(
        default_factory=dict, description="Per tenant, how long its rows are kept instead of `default`."
    )


class MaintenanceConfig(ComponentConfig):
    compact_interval: Duration | None = Field(
        default=None, description="Seconds between compactions of small files (unset: not scheduled)."
    )
    expire_interval: Duration | None = Field(
        default=None,
        description="Seconds between snapshot expiries and orphan-file removals (unset: not scheduled).",
    )
    retention_interval: Duration | None = Field(
        default=None, description="Seconds between retention runs (unset: not scheduled)."
    )
    target_file_mib: float = Field(
        default=128, gt=0, description="Size compaction aims at for each file it writes (MiB)."
    )
    max_file_rows: int = Field(
        default=131_072,
        ge=1,
        description="Rows per file compaction writes at most: it holds one file's rows in memory as "
        "Arrow while it reads, sorts and writes them (measured: about 5 times the rows' Arrow size at "
        "the peak, and a span takes 1-2 KB as Arrow), so this bounds the job's memory when "
        "`target_file_mib` of zstd would not.",
    )
    min_input_files: int = Field(
        default=2,
        ge=2,
        description="Files under three quarters of `target_file_mib` a partition needs before "
        "compaction merges them.",
    )
    keep_age: Duration = Field(
        default=2 * 3600,
        description="Snapshots younger than this are kept (never less than the lake's dedup_window: "
        "their summaries hold the batch ids replays are checked against). Each snapshot kept costs "
        "every commit CPU, about 0.6 ms (pyiceberg reads and copies the table's whole metadata; "
        "README, Lake maintenance), and a flush every 10 s makes 360 snapshots an hour.",
    )
    keep_snapshots: int = Field(
        default=100, ge=1, description="The newest snapshots kept whatever their age."
    )
    orphan_age: Duration = Field(
        default=3600,
        description="Files no kept snapshot references are removed once older than this (a "
        "writer's files are unreferenced until its commit: keep it well above a flush).",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="How long each tenant's rows are kept."
    )
    election: str = Field(
        default="lake-maintenance",
        pattern=r"^[^/]+$",
        description="Election name (/orasi/<region>/leader/<name>) among the bridges of a region "
        "when the etcd extension is configured; otherwise a lock in this process.",
    )
    commit_retries: int = Field(
        default=10, ge=0, description="Retries of a job's commit that conflicts with other commits."
    )
