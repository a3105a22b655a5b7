"""The query sandbox, through the QueryEngine and through the REST API (ARCHITECTURE §6).

Read-only: no file, extension, ATTACH, COPY, SET or PRAGMA access, no DDL or DML, one statement;
a time limit and a row limit; each refusal a 400 whose message says what was wrong. Tenants see
only their own rows, whether the tenant comes from the X-Orasi-Tenant header or an API key.
Results come as JSON, Arrow IPC or CSV.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter
from orasi_bridge import api
from orasi_bridge.api.rest import create_app
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_bridge.query.sandbox import QueryRefused
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Exporter, Kind, Settings
from orasi_common.telemetry.metrics import Metrics

WINDOW: dict[str, Any] = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
TENANTS = {"tenant-a": "svc-a", "tenant-b": "svc-b"}
RUNAWAY = (
    "SELECT count(*) FROM range(1000000000) a, range(1000000000) b "
    "WHERE (a.range * 31 + b.range) % 1000003 = 7"
)


def rest_client(engine: QueryEngine, **config: Any) -> httpx.AsyncClient:
    """The bridge's REST app in process; app errors come back as responses (a 500 is a finding)."""
    app = create_app(api.Config(**config), engine, Metrics("bridge"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://bridge")


async def post_query(
    client: httpx.AsyncClient, sql: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return await client.post("/api/v1/query", json={"sql": sql, **WINDOW, **body}, headers=headers or {})


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


@pytest.fixture
async def two_tenants(writer: LakeWriter) -> LakeWriter:
    """Spans and logs of two tenants, each with its own service name."""
    for tenant, service in TENANTS.items():
        for n in range(3):
            await writer.consume(
                data.batch(
                    Signal.TRACES, data.span_request(data.T0 + n, f"{tenant}-op-{n}", service), tenant=tenant
                )
            )
        await writer.consume(
            data.batch(Signal.LOGS, data.log_request(data.T0, f"secret of {tenant}", service), tenant=tenant)
        )
    return writer


@pytest.fixture
async def client(engine: QueryEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_client(engine) as started:
        yield started


# --- what the sandbox refuses ----------------------------------------------------------------

FILE_READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd', header=false)",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT count(*) FROM spans, read_text('/etc/passwd')",
]

# statement → a word the refusal must name.
STATEMENTS = {
    "COPY (SELECT 1) TO '{tmp}/copied.csv'": "COPY",
    "COPY spans TO '{tmp}/copied.parquet' (FORMAT parquet)": "COPY",
    "ATTACH '{tmp}/attached.duckdb' AS other": "ATTACH",
    "DETACH other": "DETACH",
    "INSTALL httpfs": "SELECT",
    "LOAD httpfs": "SELECT",
    "SET enable_external_access = true": "SET",
    "RESET threads": "SET",
    "PRAGMA enable_profiling": "PRAGMA",
    "CREATE TABLE stolen AS SELECT * FROM spans": "CREATE",
    "CREATE VIEW v AS SELECT 1": "CREATE",
    "DROP TABLE spans": "DROP",
    "INSERT INTO spans (tenant) VALUES ('x')": "INSERT",
    "UPDATE spans SET tenant = 'x'": "UPDATE",
    "DELETE FROM spans": "DELETE",
    "EXPORT DATABASE '{tmp}/exported'": "EXPORT",
    "CALL pragma_version()": "CALL",
    "CHECKPOINT": "SELECT",
}
MULTIPLE = [
    "SELECT 1; SELECT 2",
    "SELECT count(*) FROM spans; DROP TABLE spans",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/x.csv'",
]


async def test_file_reads_are_refused(
    two_tenants: LakeWriter, engine: QueryEngine, client: httpx.AsyncClient
) -> None:
    problems = []
    for sql in FILE_READS:
        try:
            await engine.execute(sql, "tenant-a", **WINDOW)
            problems.append(f"{sql}: the engine ran it")
        except QueryRefused:
            pass
        except Exception as error:
            problems.append(
                f"{sql}: the engine raised {type(error).__name__} instead of QueryRefused: {error}"
            )
        response = await post_query(client, sql)
        if response.status_code != 400:
            problems.append(f"{sql}: HTTP {response.status_code} {response.text[:300]}")
            continue
        message = error_of(response)
        if "root:" in response.text:
            problems.append(f"{sql}: the answer shows the file: {message}")
        if "disabled" not in message.lower() and "permission" not in message.lower():
            problems.append(f"{sql}: the message does not say file access is disabled: {message}")
    assert not problems, "\n".join(problems)
    # And the sandbox still answers ordinary queries.
    response = await post_query(client, "SELECT count(*) FROM spans", {"X-Orasi-Tenant": "tenant-a"})
    assert (response.status_code, response.json()["rows"]) == (200, [[3]])


async def test_statements_other_than_one_select_are_refused(
    two_tenants: LakeWriter, engine: QueryEngine, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    problems = []
    for template, word in STATEMENTS.items():
        sql = template.format(tmp=tmp_path)
        with pytest.raises(QueryRefused) as raised:
            await engine.execute(sql, "tenant-a", **WINDOW)
        if "only SELECT" not in raised.value.message or word not in raised.value.message:
            problems.append(f"{sql}: engine message {raised.value.message!r} lacks 'only SELECT' / {word!r}")
        response = await post_query(client, sql)
        if response.status_code != 400 or error_of(response) != raised.value.message:
            problems.append(f"{sql}: REST answered {response.status_code} {response.text[:200]}")
    for template in MULTIPLE:
        sql = template.format(tmp=tmp_path)
        response = await post_query(client, sql)
        if response.status_code != 400 or "exactly one statement" not in error_of(response):
            problems.append(f"{sql}: REST answered {response.status_code} {response.text[:200]}")
    assert not problems, "\n".join(problems)
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))  # nothing was written
    # Nothing changed: the tables are all there, with all their rows.
    response = await post_query(client, "SELECT count(*) FROM spans", {"X-Orasi-Tenant": "tenant-a"})
    assert response.json()["rows"] == [[3]]


async def test_sql_errors_are_400_with_duckdbs_message(
    two_tenants: LakeWriter, client: httpx.AsyncClient
) -> None:
    problems = []
    for sql, fragment in (
        ("SELEC 1", "syntax error"),
        ("SELECT no_such_column FROM spans", "no_such_column"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT no_such_function(1)", "no_such_function"),
        ("SELECT 1/0::INTEGER + 'x'::INTEGER", "x"),
    ):
        response = await post_query(client, sql)
        if response.status_code != 400 or fragment not in error_of(response):
            problems.append(f"{sql}: HTTP {response.status_code} {response.text[:300]}")
    assert not problems, "\n".join(problems)


async def test_queries_that_bind_to_lake_columns_are_answered(
    two_tenants: LakeWriter, client: httpx.AsyncClient
) -> None:
    """Valid SQL whose meaning depends on the tables' columns (USING, NATURAL, COLUMNS(...))."""
    problems = []
    for sql, rows in (
        ("SELECT count(*) FROM spans s JOIN logs l USING (service_name)", [[3]]),
        (
            "SELECT count(*) FROM (SELECT service_name FROM spans) "
            "NATURAL JOIN (SELECT service_name FROM logs)",
            [[3]],
        ),
        ("SELECT COLUMNS('^service_.*') FROM logs", [["svc-a"]]),
    ):
        response = await post_query(client, sql, {"X-Orasi-Tenant": "tenant-a"})
        if response.status_code != 200 or response.json()["rows"] != rows:
            problems.append(f"{sql}: HTTP {response.status_code} {response.text[:300]}")
    assert not problems, "\n".join(problems)


async def test_arrow_answer_without_warning(engine: QueryEngine) -> None:
    """The Arrow path runs clean under warnings-as-errors (no extra copy of the rows)."""
    result = await engine.execute("SELECT * FROM range(3)", "default", as_arrow=True)
    assert result.arrow is not None and result.arrow.num_rows == 3


async def test_row_limit(make_writer: MakeWriter) -> None:
    writer = await make_writer()
    engine = QueryEngine(writer, QueryLimits(max_rows=5))
    assert (await engine.execute("SELECT * FROM range(5)", "default")).stats["rows"] == 5
    with pytest.raises(QueryRefused) as raised:
        await engine.execute("SELECT * FROM range(6)", "default")
    assert "more than 5 rows" in raised.value.message
    with pytest.raises(QueryRefused):
        await engine.execute("SELECT * FROM range(1000000)", "default", as_arrow=True)
    async with rest_client(engine, limits={"max_rows": 5}) as client:
        for fmt in ("json", "csv", "arrow"):
            response = await post_query(client, "SELECT * FROM range(6)", format=fmt)
            assert response.status_code == 400, fmt
            assert "row limit" in error_of(response)
            assert (await post_query(client, "SELECT * FROM range(5)", format=fmt)).status_code == 200


async def test_runaway_query_is_stopped_and_the_server_keeps_serving(make_writer: MakeWriter) -> None:
    """A real uvicorn server (the `query_api` extension) with limits.timeout = 1 s."""
    writer = await make_writer()
    await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0, "kept")))

    class Host:
        def exporter(self, exporter_id: str) -> Exporter:
            assert exporter_id == "lake"
            return writer

    metrics = Metrics("bridge")
    settings = Settings(
        "query_api", Kind.EXTENSION, "bridge", metrics, logging.getLogger("orasi.test.query_api")
    )
    config = api.FACTORY.config_type.model_validate({"endpoint": "127.0.0.1:0", "limits": {"timeout": 1}})
    extension = api.FACTORY.create(settings, config, Host())
    await extension.start()
    try:
        url = f"http://127.0.0.1:{extension.port}/api/v1/query"  # type: ignore[attr-defined]
        async with httpx.AsyncClient(timeout=60) as client:
            runaway = asyncio.create_task(client.post(url, json={"sql": RUNAWAY}))
            meanwhile = await client.post(url, json={"sql": "SELECT name FROM spans", **WINDOW})
            stopped = await runaway
            after = await client.post(url, json={"sql": "SELECT name FROM spans", **WINDOW})
            again = await client.post(url, json={"sql": RUNAWAY})
        assert (meanwhile.status_code, meanwhile.json()["rows"]) == (200, [["kept"]])
        assert stopped.status_code == 400, stopped.text
        assert "longer than the limit of 1 s" in error_of(stopped)
        assert (after.status_code, after.json()["rows"]) == (200, [["kept"]])
        assert again.status_code == 400
    finally:
        await extension.shutdown()


# --- tenants -----------------------------------------------------------------------------------

ISOLATION_QUERIES = [
    "SELECT DISTINCT tenant, service_name FROM spans",
    "SELECT DISTINCT tenant, service_name FROM spans WHERE tenant <> '{tenant}'",
    "SELECT DISTINCT tenant, service_name FROM logs",
    "SELECT DISTINCT s.tenant, l.service_name FROM spans s JOIN logs l ON s.service_name = l.service_name",
]


async def visible(client: httpx.AsyncClient, headers: dict[str, str], tenant: str) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for template in ISOLATION_QUERIES:
        response = await post_query(client, template.format(tenant=tenant), headers)
        assert response.status_code == 200, response.text
        seen |= {tuple(row) for row in response.json()["rows"]}
    return seen


async def test_tenant_header_isolates_tenants(two_tenants: LakeWriter, client: httpx.AsyncClient) -> None:
    for state in ("hot", "committed"):
        if state == "committed":
            await two_tenants.flush()
        for tenant, service in TENANTS.items():
            assert await visible(client, {"X-Orasi-Tenant": tenant}, tenant) == {(tenant, service)}, state
        response = await post_query(client, "SELECT body FROM logs", {"X-Orasi-Tenant": "tenant-a"})
        assert response.json()["rows"] == [["secret of tenant-a"]]
        # No header: the default tenant, which has nothing here.
        response = await post_query(client, "SELECT count(*) FROM spans")
        assert response.json()["rows"] == [[0]]
    response = await post_query(client, "SELECT 1", {"X-Orasi-Tenant": "../tenant-b"})
    assert response.status_code == 400
    assert "X-Orasi-Tenant" in error_of(response)


async def test_a_query_slot_keeps_nothing_of_the_tenant_before(two_tenants: LakeWriter) -> None:
    """One query slot (its DuckDB database is reused) serving tenant A then tenant B: B's query
    sees none of what A's registered, by the lake's names or the engine's internal ones."""
    engine = QueryEngine(two_tenants, QueryLimits(max_concurrent=1))
    await two_tenants.flush()  # committed files and hot rows: the tables are unions of parts
    await two_tenants.consume(
        data.batch(Signal.TRACES, data.span_request(data.T0, "tenant-a-hot", "svc-a"), tenant="tenant-a")
    )
    seen = await engine.execute("SELECT count(*) FROM spans", "tenant-a", **WINDOW)
    assert seen.rows == [(4,)]
    views = await engine.execute(
        "SELECT count(*) FROM duckdb_views() WHERE NOT internal", "tenant-b", **WINDOW
    )
    assert views.rows == [(0,)], "a view of the tenant before is still there"
    for name in ("__orasi_spans_0", "__orasi_spans_1"):
        with pytest.raises(QueryRefused, match=name):
            await engine.execute(f"SELECT count(*) FROM {name}", "tenant-b", **WINDOW)
    names = await engine.execute("SELECT DISTINCT name FROM spans ORDER BY name", "tenant-b", **WINDOW)
    assert names.rows == [(f"tenant-b-op-{n}",) for n in range(3)]


async def test_api_keys_choose_the_tenant(two_tenants: LakeWriter, engine: QueryEngine) -> None:
    keys = {"key-of-a-0123456789": "tenant-a", "key-of-b-0123456789": "tenant-b"}
    async with rest_client(engine, api_keys=keys) as client:
        response = await post_query(client, "SELECT 1")
        assert response.status_code == 401
        assert "API key is required" in error_of(response)
        response = await post_query(client, "SELECT 1", {"X-Orasi-Tenant": "tenant-a"})
        assert response.status_code == 401
        response = await post_query(client, "SELECT 1", {"Authorization": "Bearer not-a-key"})
        assert (response.status_code, error_of(response)) == (401, "the API key is not known")

        bearer_a = {"Authorization": "Bearer key-of-a-0123456789"}
        assert await visible(client, bearer_a, "tenant-a") == {("tenant-a", "svc-a")}
        header_b = {"X-API-Key": "key-of-b-0123456789"}
        assert await visible(client, header_b, "tenant-b") == {("tenant-b", "svc-b")}
        # A key may name its own tenant, never another.
        assert (
            await post_query(client, "SELECT 1", {**bearer_a, "X-Orasi-Tenant": "tenant-a"})
        ).status_code == 200
        response = await post_query(
            client, "SELECT count(*) FROM spans", {**bearer_a, "X-Orasi-Tenant": "tenant-b"}
        )
        assert response.status_code == 403
        assert "tenant-b" in error_of(response)


# --- formats and the request ---------------------------------------------------------------------


async def test_answer_formats(writer: LakeWriter, engine: QueryEngine) -> None:
    await writer.consume(data.batch(Signal.TRACES, data.traces_request()))
    sql = (
        "SELECT span_id, duration_ns, kind, attributes['bool.true'] AS flag, resource_attributes, "
        "time, events FROM spans WHERE span_id IN ('eee19b7ec3c1b101', 'eee19b7ec3c1b102') ORDER BY span_id"
    )
    expected = data.expected_spans()
    root, child = expected[data.span_hex(1)], expected[data.span_hex(2)]
    async with rest_client(engine) as client:
        # JSON: columns with DuckDB's types, rows of JSON values, stats.
        answer = (await post_query(client, sql)).json()
        assert [(c["name"], c["type"]) for c in answer["columns"]] == [
            ("span_id", "VARCHAR"),
            ("duration_ns", "BIGINT"),
            ("kind", "VARCHAR"),
            ("flag", "VARCHAR"),
            ("resource_attributes", "MAP(VARCHAR, VARCHAR)"),
            ("time", "TIMESTAMP WITH TIME ZONE"),
            ("events", answer["columns"][6]["type"]),
        ]
        assert answer["rows"][0][:5] == [
            data.span_hex(1),
            1_500_000_123,
            "SERVER",
            "true",
            data.RESOURCE_CANONICAL,
        ]
        assert answer["rows"][0][5] == "2024-05-31T16:08:37.123456+00:00"
        assert answer["rows"][0][6] == root["events"]
        assert answer["rows"][1][:3] == [data.span_hex(2), child["duration_ns"], "CLIENT"]
        assert answer["stats"]["rows"] == 2 and answer["stats"]["tables"] == ["spans"]

        # Arrow IPC stream.
        response = await post_query(client, sql, format="arrow")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(response.content).read_all()
        assert table.column_names == [c["name"] for c in answer["columns"]]
        assert table.column("span_id").to_pylist() == [data.span_hex(1), data.span_hex(2)]
        assert table.column("duration_ns").to_pylist() == [1_500_000_123, 250_000_000]
        assert table.schema.field("duration_ns").type == pa.int64()
        assert dict(table.column("resource_attributes").to_pylist()[0]) == data.RESOURCE_CANONICAL
        assert table.column("events").to_pylist()[0][0]["name"] == "cache.miss"

        # CSV: a header, then rows; nested values as JSON.
        response = await post_query(client, sql, format="csv")
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == [c["name"] for c in answer["columns"]]
        assert rows[1][:4] == [data.span_hex(1), "1500000123", "SERVER", "true"]
        assert json.loads(rows[1][4]) == data.RESOURCE_CANONICAL
        assert len(rows) == 3


async def test_bad_requests_are_400(client: httpx.AsyncClient) -> None:
    for body in (
        {},
        {"sql": ""},
        {"sql": "SELECT 1", "format": "parquet"},
        {"sql": "SELECT 1", "unknown": 1},
        {"sql": "SELECT 1", "start": "not a time"},
        {"sql": "SELECT 1", "start": 10, "end": 5},
    ):
        response = await client.post("/api/v1/query", json=body)
        assert response.status_code == 400, (body, response.text)
        assert error_of(response)
    response = await client.post("/api/v1/query", content=b"{not json")
    assert response.status_code == 400
    tables = (await client.get("/api/v1/tables")).json()["tables"]
    assert [t["name"] for t in tables] == [
        "spans",
        "logs",
        "metric_points",
        "span_metrics_1m",
        "span_metrics_1h",
        "audit",
    ]
