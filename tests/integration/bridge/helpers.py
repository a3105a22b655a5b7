"""Small helpers shared by the lake and query tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from orasi_bridge.query.engine import QueryEngine, QueryResult
from orasi_common.testing.servers import AWS_ENV

# The columns every query may rely on (ARCHITECTURE §5).
CONTRACT_COLUMNS = {
    "spans": [
        "tenant",
        "region",
        "service_name",
        "name",
        "kind",
        "trace_id",
        "span_id",
        "parent_span_id",
        "trace_state",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "duration_ns",
        "status_code",
        "status_message",
        "attributes",
        "resource_attributes",
        "scope_name",
        "scope_version",
        "events",
        "links",
        "time",
    ],
    "logs": [
        "tenant",
        "region",
        "service_name",
        "time_unix_nano",
        "observed_time_unix_nano",
        "severity_number",
        "severity_text",
        "event_name",
        "body",
        "trace_id",
        "span_id",
        "attributes",
        "resource_attributes",
        "scope_name",
        "time",
    ],
    "metric_points": [
        "tenant",
        "region",
        "service_name",
        "metric_name",
        "metric_type",
        "unit",
        "description",
        "is_monotonic",
        "aggregation_temporality",
        "start_time_unix_nano",
        "time_unix_nano",
        "value",
        "count",
        "sum",
        "min",
        "max",
        "bucket_counts",
        "explicit_bounds",
        "quantiles",
        "attributes",
        "resource_attributes",
        "time",
    ],
}

ALL_COLUMNS = "SELECT * EXCLUDE (time), epoch_us(time) AS time_us FROM {table}"


def records(result: QueryResult) -> list[dict[str, Any]]:
    """A JSON-style result as one dict per row."""
    assert result.rows is not None
    names = [name for name, _ in result.columns]
    return [dict(zip(names, row, strict=True)) for row in result.rows]


async def select_all(
    engine: QueryEngine, table: str, order_by: str, tenant: str = "default", **bounds: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    result = await engine.execute(ALL_COLUMNS.format(table=table) + f" ORDER BY {order_by}", tenant, **bounds)
    return records(result), result.stats


async def count(engine: QueryEngine, table: str, tenant: str = "default", **bounds: Any) -> int:
    result = await engine.execute(f"SELECT count(*) FROM {table}", tenant, **bounds)
    assert result.rows is not None
    return int(result.rows[0][0])


def parsed_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def run_crashing(script: str, says: str) -> None:
    """Run ``script`` (a lake writer that acknowledges, then dies with ``os._exit``) in a new
    Python process with the test servers' credentials; it must exit 0 having printed ``says``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **AWS_ENV},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert (process.returncode, stdout.decode().strip()) == (0, says), stderr.decode()[-4000:]
