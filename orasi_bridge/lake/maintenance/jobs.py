"""The maintenance jobs by action name, as the scheduler and `orasi lake` run them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeAlias

from orasi_bridge.lake.maintenance.compaction import CompactionReport, compact
from orasi_bridge.lake.maintenance.config import MaintenanceConfig
from orasi_bridge.lake.maintenance.expiry import ExpiryReport, expire
from orasi_bridge.lake.maintenance.retention import RetentionReport, apply_retention
from orasi_bridge.lake.maintenance.tables import Lake

Report: TypeAlias = CompactionReport | ExpiryReport | RetentionReport
Job: TypeAlias = Callable[[Lake, MaintenanceConfig, bool, "threading.Event | None"], Report]

JOBS: dict[str, Job] = {"compact": compact, "expire": expire, "retention": apply_retention}
"""Each job: ``job(lake, config, dry_run, stop)``, blocking; its report says what it did."""
