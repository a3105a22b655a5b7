"""Every column of spans, logs and metric_points lands with its exact value, hot and committed.

The `lake` exporter is built as the bridge's graph builds it and fed OTLP requests that use
every field; the QueryEngine reads the rows back first from the writer's memory buffers (hot),
then, after flush(), from the Parquet files on SeaweedFS that the Iceberg commit (PostgreSQL
catalog) points at. Both reads must give the same, exact values: every difference is collected
and reported at once, saying which read (hot or committed) and which column.

Each signal's rows arrive in every form the writer takes (``ARRIVALS``): OTLP and OTAP batches
consumed live, and the records of both replayed from the write-ahead log after a crash
(version-1 records, which logs written before OTAP records existed hold, too). An OTAP batch is
never decoded to OTLP on the way.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from integration.bridge.helpers import CONTRACT_COLUMNS, parsed_json, select_all
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Batch, Signal, new_batch_id
from orasi_common.pdata.otap import codec
from orasi_common.pipeline.wal import WriteAheadLog

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


ARRIVALS = ["otlp", "otap", "otlp record, replayed", "otap record, replayed", "version-1 record, replayed"]
Deliver = Callable[[Signal, Message], Awaitable[tuple[LakeWriter, QueryEngine]]]


def version_1_record(batch: Batch) -> bytes:
    """The record ``Batch.to_record`` wrote before version 2 (OTLP bytes only), by hand."""
    batch_id, tenant = batch.batch_id.encode(), batch.tenant.encode()
    code = {Signal.TRACES: 1, Signal.METRICS: 2, Signal.LOGS: 3}[batch.signal]
    head = struct.pack("<BBIB", 1, code, batch.items, len(batch_id))
    return head + batch_id + struct.pack("<H", len(tenant)) + tenant + batch.raw


@pytest.fixture(params=ARRIVALS)
def deliver(
    request: pytest.FixtureRequest, make_writer: MakeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Deliver:
    """A writer holding ``message`` as it arrived in one of the forms of ARRIVALS."""
    arrival: str = request.param

    async def go(signal: Signal, message: Message) -> tuple[LakeWriter, QueryEngine]:
        batch = data.batch(signal, message)
        if "otap" in arrival:
            tables = codec.encode(batch)
            batch = codec.decode(signal, tables, tenant=batch.tenant, batch_id=new_batch_id())

            def decoded(*_: Any) -> bytes:
                raise AssertionError("an OTAP batch was decoded to OTLP")

            monkeypatch.setattr(codec, "decode_tables", decoded)
        if "replayed" not in arrival:
            writer = await make_writer()
            await writer.consume(batch)
        else:
            log = WriteAheadLog(tmp_path / "wal" / "lake", max_bytes=64 * 1024 * 1024)
            await log.open()
            await log.append(version_1_record(batch) if "version-1" in arrival else batch.to_record())
            await log.close()
            writer = await make_writer(wal={"directory": str(tmp_path / "wal")})
        return writer, QueryEngine(writer, QueryLimits())

    return go


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


async def test_spans_every_column(deliver: Deliver) -> None:
    writer, engine = await deliver(Signal.TRACES, data.traces_request())
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


async def test_logs_every_column(deliver: Deliver) -> None:
    writer, engine = await deliver(Signal.LOGS, data.logs_request())
    expected = data.expected_logs()
    rows = await hot_then_cold(
        writer, engine, "logs", "coalesce(time_unix_nano, observed_time_unix_nano)", expected, check_log
    )
    # A map body is JSON whose value types survive.
    assert json.loads(rows[1]["body"]) == data.MAP_BODY
    # A record without a time is placed at its observed time.
    assert (rows[-1]["time_unix_nano"], rows[-1]["time_us"]) == (None, (data.T0 + 7_000) // 1000)


async def test_metric_points_every_column(deliver: Deliver) -> None:
    writer, engine = await deliver(Signal.METRICS, data.metrics_request())
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
    assert {(row["tenant"], row["region"], row["lake_region"]) for row in rows} == {
        ("acme", "eu-west-9", "eu-west-9")
    }
    # A resource's cloud.region says where its items were produced; lake_region stays the lake's.
    request = data.span_request(data.T0, "produced-elsewhere")
    stamp = request.resource_spans[0].resource.attributes.add()
    stamp.key, stamp.value.string_value = "cloud.region", "ap-south-1"
    await writer.consume(data.batch(Signal.TRACES, request, tenant="acme"))
    result = await engine.execute(
        "SELECT region, lake_region FROM spans WHERE name = 'produced-elsewhere'",
        "acme",
        data.T0 - data.HOUR,
        data.T0 + data.HOUR,
    )
    assert result.rows == [("ap-south-1", "eu-west-9")]
