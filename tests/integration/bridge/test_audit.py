"""The bridge's audit trail: each query through the REST API, and each registry change, is a JSON
line on ``orasi.audit`` and a row of the lake's ``audit`` table, which its tenant alone can read
through the query API (before the flush from memory, after it from the committed table)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.bridge import otlp_data as data
from orasi_bridge import api
from orasi_bridge.api.rest import create_app
from orasi_bridge.lake import LakeWriter
from orasi_bridge.query.engine import QueryEngine
from orasi_bridge.registry.config import RegistryConfig
from orasi_bridge.registry.registry import Registry
from orasi_common.extensions.auth.asgi import TokenGate
from orasi_common.extensions.auth.authenticator import Authenticator
from orasi_common.extensions.auth.config import Config as AuthConfig
from orasi_common.extensions.auth.store import TokenStore
from orasi_common.pdata import Signal
from orasi_common.telemetry.metrics import Metrics

SQL = "SELECT name FROM spans ORDER BY name"
SPANS_WINDOW = {"start": data.T0 - data.HOUR, "end": data.T0 + data.HOUR}
AUDIT_SQL = (
    "SELECT event, sql, sql_hash, row_count, outcome, tenant FROM audit WHERE event = 'query' ORDER BY time"
)


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "orasi.audit"]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    found = Registry(
        RegistryConfig(store=f"sqlite:///{tmp_path / 'registry.db'}"), "", logging.getLogger("t")
    )
    await found.start()
    yield found
    await found.shutdown()


@pytest.fixture
async def client(engine: QueryEngine, registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api.Config(), engine, Metrics("bridge"), registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as started:
        yield started


async def query(client: httpx.AsyncClient, tenant: str, sql: str, **window: Any) -> list[list[Any]]:
    response = await client.post(
        "/api/v1/query", json={"sql": sql, **window}, headers={"x-orasi-tenant": tenant}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["rows"])


async def test_a_query_is_audited_and_readable_by_its_tenant_only(
    writer: LakeWriter, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await writer.consume(data.batch(Signal.TRACES, data.span_request(data.T0, "op", "svc"), tenant="acme"))
    caplog.set_level(logging.INFO, logger="orasi.audit")
    assert await query(client, "acme", SQL, **SPANS_WINDOW) == [["op"]]
    sql_hash = hashlib.sha256(SQL.encode()).hexdigest()
    [line] = audit_records(caplog)
    assert (line.event, line.tenant, line.sql, line.sql_hash, line.row_count, line.outcome) == (  # type: ignore[attr-defined]
        "query",
        "acme",
        SQL,
        sql_hash,
        1,
        "ok",
    )
    assert line.duration_ms >= 0  # type: ignore[attr-defined]

    expected = ["query", SQL, sql_hash, 1, "ok", "acme"]
    assert (await query(client, "acme", AUDIT_SQL))[0] == expected  # in memory, before the flush
    await writer.flush()
    committed = writer.tables["audit"].scan().to_arrow()
    assert set(committed.column("tenant").to_pylist()) == {"acme"}
    assert SQL in committed.column("sql").to_pylist()
    rows = await query(client, "acme", AUDIT_SQL)
    assert rows[0] == expected and len(rows) == 2  # committed, and the audit query before the flush
    # another tenant sees none of acme's rows, only its own queries (each audited once it ran)
    assert await query(client, "other", "SELECT tenant, sql FROM audit") == []
    assert await query(client, "other", "SELECT tenant, sql FROM audit") == [
        ["other", "SELECT tenant, sql FROM audit"]
    ]


async def test_a_refused_query_is_audited(writer: LakeWriter, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/query", json={"sql": "COPY spans TO 'x.csv'"}, headers={"x-orasi-tenant": "acme"}
    )
    assert response.status_code == 400
    [[outcome, row_count]] = await query(
        client, "acme", "SELECT outcome, row_count FROM audit WHERE sql LIKE 'COPY%'"
    )
    assert outcome == "QueryRefused" and row_count is None


async def test_registry_changes_are_audited_and_lookups_are_not(
    writer: LakeWriter, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orasi.audit")
    schema = {"schemaType": "JSON", "schema": json.dumps({"type": "object", "properties": {}})}
    headers = {"x-orasi-tenant": "acme"}
    subject = "/registry/subjects/spans.svc"
    assert (await client.post(f"{subject}/versions", json=schema, headers=headers)).status_code == 200
    assert (await client.post(subject, json=schema, headers=headers)).status_code == 200  # a lookup
    assert (await client.delete(subject, headers=headers)).status_code == 200
    lines = [(r.event, r.tenant, r.path, r.outcome) for r in audit_records(caplog)]  # type: ignore[attr-defined]
    assert lines == [
        ("registry.post", "acme", f"{subject}/versions", "ok"),
        ("registry.delete", "acme", subject, "ok"),
    ]
    await writer.flush()
    rows = await query(
        client, "acme", "SELECT event, details FROM audit WHERE event LIKE 'registry.%' ORDER BY time"
    )
    assert [(event, json.loads(details)["path"]) for event, details in rows] == [
        ("registry.post", f"{subject}/versions"),
        ("registry.delete", subject),
    ]


async def test_the_actor_is_the_authenticated_token(
    engine: QueryEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_uri = f"sqlite:///{tmp_path / 'tokens.db'}"
    store = TokenStore(store_uri)
    store.migrate()
    token, info = store.create("acme", ("query",), "audit test")
    store.close()
    auth = Authenticator(AuthConfig(store=store_uri))
    await auth.start()
    app = TokenGate(
        create_app(api.Config(), engine, Metrics("bridge")), auth, lambda *_: "query", "x-orasi-tenant"
    )
    caplog.set_level(logging.INFO, logger="orasi.audit")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client:
            headers = {"authorization": f"Bearer {token}"}
            response = await client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
            assert response.status_code == 200, response.text
    finally:
        await auth.shutdown()
    [line] = audit_records(caplog)
    assert (line.actor, line.tenant) == (f"token:{info.id}", "acme")  # type: ignore[attr-defined]
    assert token.rsplit("_", 1)[1] not in caplog.text
