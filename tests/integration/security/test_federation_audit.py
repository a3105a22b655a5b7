"""A global query is audited once by its coordinating bridge — its SQL, ``scope: global``, the
regions asked and what each sent — and not again for the part its own region ran; the other
region's bridge audits the part it ran, under the same ``federation_id``. Two real bridges, each
with a lake of its own, federated by static peers; a refused global query is audited once too."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from integration.federation.conftest import (
    MakeBridge,
    etcd_up,
    lake_servers,
    make_bridge,
    query,
    send,
    tenant,
)
from orasi_common.testing.service_process import ServiceProcess

__all__ = ["etcd_up", "lake_servers", "make_bridge", "tenant"]

ROWS = [
    {"seq": seq, "service": "checkout", "name": "pay", "duration_ms": 5, "error": False} for seq in range(6)
]


def audited_queries(bridge: ServiceProcess, expected: int) -> list[dict[str, Any]]:
    """The bridge's ``query`` audit lines, once there are ``expected`` of them (a line is written
    when the query ends, which may be just after its answer was sent)."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in bridge.logged("Audit event.") if r.get("event") == "query"]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_global_query_is_audited_once_by_its_coordinator(make_bridge: MakeBridge, tenant: str) -> None:
    run = uuid.uuid4().hex[:8]
    home, other = f"audit-{run}-a", f"audit-{run}-b"
    second = make_bridge(other, etcd=False)

    def federation(own: str) -> dict[str, Any]:
        return {
            "peers": [
                {"region": home, "endpoint": own},
                {"region": other, "endpoint": second.query_url.removeprefix("http://")},
            ]
        }

    first = make_bridge(home, etcd=False, federation=federation)
    send(first, ROWS[:2], tenant)
    send(second, ROWS[2:], tenant)
    sql = "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name"
    answer = query(first, sql, tenant, scope="global")
    assert answer["rows"] == [["checkout", 6]]

    [coordinated] = audited_queries(first, 1)
    assert coordinated["sql"] == sql and coordinated["scope"] == "global" and coordinated["tenant"] == tenant
    assert coordinated["outcome"] == "ok" and coordinated["row_count"] == 1
    assert coordinated["regions"] == {home: {"rows": 1}, other: {"rows": 1}}  # one partial row each
    federation_id = coordinated["federation_id"]
    [leg] = audited_queries(second, 1)
    assert leg["federation_id"] == federation_id and leg["sql"] != sql and leg["tenant"] == tenant

    # The lake's audit table of the coordinator holds the one row too (its details: the regions).
    rows = query(first, "SELECT sql, details FROM audit WHERE event = 'query'", tenant)["rows"]
    assert len(rows) == 1 and rows[0][0] == sql  # (this query itself is audited once it has run)
    assert json.loads(rows[0][1])["regions"] == coordinated["regions"]

    # A global query the SQL refuses: refused before any region is asked, audited once.
    refused = httpx.post(
        first.query_url + "/api/v1/query",
        json={"sql": "SELECT no_such_column FROM spans", "scope": "global"},
        headers={"x-orasi-tenant": tenant},
        timeout=30,
    )
    assert refused.status_code == 400, refused.text
    lines = audited_queries(first, 3)
    assert [(r["sql"], r.get("scope"), r["outcome"], r.get("regions")) for r in lines[2:]] == [
        ("SELECT no_such_column FROM spans", "global", "QueryRefused", {})
    ]
    assert len(audited_queries(second, 1)) == 1  # the other region was not asked
