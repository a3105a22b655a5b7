"""Every column of spans, logs and metric_points lands with its exact value, hot and committed.

The `lake` exporter is built as the bridge's graph builds it and fed OTLP requests that use
every field; the QueryEngine reads the rows back first from the writer's memory buffers (hot),
then, after flush(), from the Parquet files on SeaweedFS that the Iceberg commit (PostgreSQL
catalog) points at. Both reads must give the same, exact values: every difference is collected
and reported at once, saying which read (hot or committed) and which column.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.helpers import CONTRACT_COLUMNS, parsed_json, select_all
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal

WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
Check = Callable[[str, dict[str, Any], dict[str, Any]], list[str]]


def plain_check(special: set[str]) -> Check:
    def check(where: str, row: dict[str, Any], want: dict[str, Any]) -> list[str]:
        problems = (
            [f"{where}: columns differ: {sorted(set(row) ^ set(want))}"] if set(row) != set(want) else []
        )
        for column, value in want.items():
            if column not in special and value != row.get(column):
                problems.append(f"{where}.{column}: got {row.get(column)!r}, want {value!r}")
        if "attributes" in special:
            if want["attributes"] is None:
                try:
                    data.assert_canonical_attributes(row["attributes"])
                except AssertionError as error:
                    problems.append(f"{where}.attributes: {error}")
            elif row["attributes"] != want["attributes"]:
                problems.append(f"{where}.attributes: got {row['attributes']!r}, want {want['attributes']!r}")
        return problems

    return check


def check_log(where: str, row: dict[str, Any], want: dict[str, Any]) -> list[str]:
    problems = plain_check({"attributes", "body"})(where, row, want)
    if want["body_type"] == "string":
        body_ok = row["body"] == want["body"]  # the string itself, not JSON
    else:
        body_ok = parsed_json(row["body"]) == want["body"]
    if not body_ok:
        problems.append(f"{where}.body: got {row['body']!r}, want {want['body']!r} ({want['body_type']})")
    return problems


async def hot_then_cold(
    writer: LakeWriter,
    engine: QueryEngine,
    table: str,
    order_by: str,
    expected: list[dict[str, Any]],
    check: Check,
    tenant: str = "default",
) -> list[dict[str, Any]]:
    """Read the rows buffered, flush, read them committed; assert both match ``expected``."""
    problems: list[str] = []
    hot, hot_stats = await select_all(engine, table, order_by, tenant, **WINDOW)
    assert (hot_stats["hot_rows"], hot_stats["files"]) == (len(expected), 0)
    await writer.flush()
    cold, cold_stats = await select_all(engine, table, order_by, tenant, **WINDOW)
    assert cold_stats["hot_rows"] == 0
    assert cold_stats["files"] > 0
    for index, (hot_row, cold_row) in enumerate(zip(hot, cold, strict=True)):
        problems += [
            f"committed[{index}].{column}: got {cold_row[column]!r}, but {hot_row[column]!r} while buffered"
            for column in hot_row
            if cold_row.get(column) != hot_row[column]
        ]
    for where, rows in (("hot", hot), ("committed", cold)):
        assert len(rows) == len(expected), f"{where}: {len(rows)} rows, want {len(expected)}"
        missing = set(CONTRACT_COLUMNS[table]) - {"time"} - set(rows[0])
        assert not missing, f"{table} lacks contract columns {missing}"
        for index, (row, want) in enumerate(zip(rows, expected, strict=True)):
            problems += check(f"{where}[{index}]", row, want)
    assert not problems, "\n".join(problems)
    return cold


async def test_spans_every_column(writer: LakeWriter, engine: QueryEngine) -> None:
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    by_id = data.expected_spans()
    expected = [by_id[key] for key in sorted(by_id)]
    rows = await hot_then_cold(writer, engine, "spans", "span_id", expected, plain_check({"attributes"}))
    assert {row["kind"] for row in rows} == {
        "SERVER",
        "CLIENT",
        "PRODUCER",
        "CONSUMER",
        "INTERNAL",
        "UNSPECIFIED",
    }
    assert {row["status_code"] for row in rows} == {"UNSET", "OK", "ERROR"}
    for row in rows:
        for column in ("trace_id", "span_id", "parent_span_id"):
            assert row[column] is None or row[column] == row[column].lower()


async def test_logs_every_column(writer: LakeWriter, engine: QueryEngine) -> None:
    await writer.consume(data.batch(Signal.LOGS, data.logs_request()))
    expected = data.expected_logs()
    rows = await hot_then_cold(
        writer, engine, "logs", "coalesce(time_unix_nano, observed_time_unix_nano)", expected, check_log
    )
    # A map body is JSON whose value types survive.
    assert json.loads(rows[1]["body"]) == data.MAP_BODY
    # A record without a time is placed at its observed time.
    assert (rows[-1]["time_unix_nano"], rows[-1]["time_us"]) == (None, (data.T0 + 7_000) // 1000)


async def test_metric_points_every_column(writer: LakeWriter, engine: QueryEngine) -> None:
    await writer.consume(data.batch(Signal.METRICS, data.metrics_request()))
    expected = data.expected_metric_points()
    rows = await hot_then_cold(
        writer, engine, "metric_points", "time_unix_nano", expected, plain_check({"attributes"})
    )
    assert {row["metric_type"] for row in rows} == {
        "gauge",
        "sum",
        "histogram",
        "exponential_histogram",
        "summary",
    }


async def test_tenant_and_region_columns(make_writer: MakeWriter) -> None:
    writer = await make_writer(region="eu-west-9")
    engine = QueryEngine(writer, QueryLimits())
    await writer.consume(data.batch(Signal.TRACES, data.traces_request(), tenant="acme"))
    by_id = data.expected_spans(tenant="acme", region="eu-west-9")
    expected = [by_id[key] for key in sorted(by_id)]
    rows = await hot_then_cold(
        writer, engine, "spans", "span_id", expected, plain_check({"attributes"}), tenant="acme"
    )
    assert {(row["tenant"], row["region"]) for row in rows} == {("acme", "eu-west-9")}
