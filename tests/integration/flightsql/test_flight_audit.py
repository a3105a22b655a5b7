"""A Flight SQL query through the `auth` extension is audited with its token as the actor."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pyarrow.flight as flight
import pytest

from integration.flightsql.conftest import StartApi
from integration.flightsql.test_flight_sql import flight_query, options, uri
from orasi_bridge.flightsql.proto import FlightSql_pb2 as sql
from orasi_bridge.lake import LakeWriter
from orasi_common.extensions.auth.config import Config as AuthConfig
from orasi_common.extensions.auth.store import TokenStore


async def test_a_flight_query_is_audited_with_its_token(
    writer: LakeWriter, start_api: StartApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_uri = f"sqlite:///{tmp_path / 'tokens.db'}"
    store = TokenStore(store_uri)
    store.migrate()
    tokens = [store.create(tenant, ("query",), "audit test") for tenant in ("acme", "zeta")]
    store.close()
    server = await start_api(
        writer, extensions={"auth": AuthConfig(store=store_uri)}, auth={"authenticator": "auth"}
    )
    caplog.set_level(logging.INFO, logger="orasi.audit")

    def run(token: str) -> int:
        client = flight.connect(uri(server))
        return flight_query(client, sql.CommandStatementQuery(query="SELECT 42"), options(key=token)).num_rows

    for token, _ in (*tokens, tokens[0]):  # the Flight threads serve several tokens in turn
        assert await asyncio.to_thread(run, token) == 1
    lines = [(r.actor, r.tenant) for r in caplog.records if r.name == "orasi.audit"]  # type: ignore[attr-defined]
    assert lines == [(f"token:{info.id}", info.tenant) for _, info in (*tokens, tokens[0])]
