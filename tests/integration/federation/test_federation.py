"""Global queries (``scope: global``) over three bridges, each with its own lake and region, held
against one bridge that holds all the data (issue 18): count, GROUP BY with count/sum/min/max/avg,
quantiles, ORDER BY … LIMIT; a region that is down or never answers is reported in
``stats.regions`` and the others answer; regions found in etcd, or given as static peers."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.flight as flight
import pytest

from integration.federation.conftest import SERVICES, MakeBridge, query, send
from integration.federation.global_lake import global_lake_answers
from orasi_common.testing.service_process import ServiceProcess

ROWS: list[dict[str, Any]] = [
    {
        "seq": seq,
        "service": SERVICES[seq % 3],
        "name": f"op-{seq % 4}",
        "duration_ms": (seq * 37) % 211 + 1,  # distinct for seq < 211: ORDER BY … LIMIT has no ties
        "error": seq % 7 == 0,
    }
    for seq in range(90)
]


def split(regions: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Uneven parts: region i gets the rows with seq² mod 5 in its share."""
    shares = {0: 0, 1: 1, 4: 2}
    return {region: [r for r in ROWS if shares[(r["seq"] ** 2) % 5] == i] for i, region in enumerate(regions)}


QUERIES = {
    "count": ("partial", "SELECT count(*) AS n FROM spans"),
    "group": (
        "partial",
        "SELECT service_name, count(*) AS n, sum(duration_ns) AS total, min(duration_ns) AS lo, "
        "max(duration_ns) AS hi, avg(duration_ns) AS mean, "
        "sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors "
        "FROM spans GROUP BY service_name ORDER BY service_name",
    ),
    "group_having": (
        "partial",
        "SELECT name, service_name, count(*) AS n FROM spans WHERE duration_ns > 20000000 "
        "GROUP BY name, service_name HAVING count(*) > 2 ORDER BY n DESC, name, service_name LIMIT 5",
    ),
    "per_minute": (
        "partial",
        "SELECT date_trunc('minute', time) AS minute, count(*) AS n, max(duration_ns) AS hi FROM spans "
        "GROUP BY date_trunc('minute', time) ORDER BY minute",
    ),
    "quantiles": (
        "raw",
        "SELECT service_name, quantile_cont(duration_ns, 0.95) AS p95, median(duration_ns) AS p50, "
        "approx_count_distinct(name) AS names FROM spans GROUP BY service_name ORDER BY service_name",
    ),
    "top": ("top", "SELECT service_name, name, duration_ns FROM spans ORDER BY duration_ns DESC LIMIT 7"),
    "top_offset": (
        "top",
        "SELECT name, duration_ns / 1000000 AS ms FROM spans WHERE status_code <> 'ERROR' "
        "ORDER BY duration_ns, name LIMIT 4 OFFSET 3",
    ),
}


@pytest.fixture
def fleet(make_bridge: MakeBridge, tenant: str) -> Iterator[tuple[dict[str, ServiceProcess], ServiceProcess]]:
    """Three bridges in three etcd regions with the data split between them, and one bridge
    (not registered) with all of it."""
    run = uuid.uuid4().hex[:8]
    regions = [f"fed-{run}-a", f"fed-{run}-b", f"fed-{run}-c"]
    bridges = {region: make_bridge(region) for region in regions}
    for region, rows in split(regions).items():
        send(bridges[region], rows, tenant)
    everything = make_bridge(f"fed-{run}-all", etcd=False)
    send(everything, ROWS, tenant)
    yield bridges, everything


def wait_for_regions(bridge: ServiceProcess, tenant: str, regions: list[str], timeout: float = 30.0) -> None:
    """Until a global query sees every one of ``regions`` answer (their registrations are in etcd)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = query(bridge, "SELECT count(*) FROM spans", tenant, scope="global")["stats"]["regions"]
        if all(seen.get(region, {}).get("error", "missing") is None for region in regions):
            return
        time.sleep(0.2)
    raise AssertionError(f"the regions {regions} did not all answer within {timeout} s: {seen}")


def test_global_queries_equal_the_query_over_all_the_data(
    fleet: tuple[dict[str, ServiceProcess], ServiceProcess], tenant: str, tmp_path: Path
) -> None:
    bridges, everything = fleet
    regions = list(bridges)
    coordinator = bridges[regions[1]]
    wait_for_regions(coordinator, tenant, regions)
    for label, (plan, sql) in QUERIES.items():
        expected = query(everything, sql, tenant)
        answer = query(coordinator, sql, tenant, scope="global")
        assert answer["stats"]["plan"] == plan, label
        names = [c["name"] for c in answer["columns"]]
        assert names == [c["name"] for c in expected["columns"]], label
        assert _close(answer["rows"], expected["rows"]), f"{label}: {answer['rows']} != {expected['rows']}"
        assert answer["rows"], label
        for region in regions:
            assert answer["stats"]["regions"][region]["error"] is None, (label, answer["stats"]["regions"])
    # partial aggregates: one row per group and region travels, not the spans
    answer = query(coordinator, QUERIES["group"][1], tenant, scope="global")
    assert sum(answer["stats"]["regions"][r]["rows"] for r in regions) <= 3 * len(SERVICES)
    # the rows' region column says where they come from
    answer = query(
        coordinator,
        "SELECT region, count(*) FROM spans GROUP BY region ORDER BY region",
        tenant,
        scope="global",
    )
    assert answer["rows"] == [[region, len(rows)] for region, rows in split(regions).items()]
    assert query(everything, "SELECT count(*) FROM spans", tenant)["rows"] == [[len(ROWS)]]

    # the regions' lakes replicated into a global lake answer the same (timestamps aside: the
    # JSON answer writes them as text)
    timeless = {label: sql for label, (_, sql) in QUERIES.items() if label != "per_minute"}
    expected_rows = {label: query(everything, sql, tenant)["rows"] for label, sql in timeless.items()}
    answers, by_region = global_lake_answers(list(bridges.values()), tenant, timeless, tmp_path)
    for label, rows in answers.items():
        assert rows and _close(rows, expected_rows[label]), f"{label}: {rows} != {expected_rows[label]}"
    assert by_region == {region: len(rows) for region, rows in split(regions).items()}


def _close(left: list[list[Any]], right: list[list[Any]]) -> bool:
    """Rows equal, floats to 12 significant digits (sums in another order)."""
    if len(left) != len(right):
        return False
    for a_row, b_row in zip(left, right, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            if isinstance(a, float) or isinstance(b, float):
                if a != pytest.approx(b, rel=1e-12):
                    return False
            elif a != b:
                return False
    return True


def test_a_region_down_is_reported_and_the_others_answer(
    fleet: tuple[dict[str, ServiceProcess], ServiceProcess], tenant: str
) -> None:
    bridges, _ = fleet
    regions = list(bridges)
    coordinator = bridges[regions[0]]
    wait_for_regions(coordinator, tenant, regions)
    bridges[regions[2]].kill9()  # its registration stays in etcd until its lease expires
    started = time.monotonic()
    answer = query(coordinator, "SELECT count(*) AS n FROM spans", tenant, scope="global")
    assert time.monotonic() - started < 5 + 3, "the query waited longer than the region timeout"
    stats = answer["stats"]["regions"]
    assert stats[regions[2]]["error"], stats
    assert stats[regions[2]]["rows"] is None
    parts = split(regions)
    assert stats[regions[0]]["error"] is None and stats[regions[1]]["error"] is None, stats
    assert answer["rows"] == [[len(parts[regions[0]]) + len(parts[regions[1]])]]


def test_static_peers_without_etcd_a_silent_region_times_out_and_the_api_key_is_forwarded(
    make_bridge: MakeBridge, tenant: str
) -> None:
    run = uuid.uuid4().hex[:8]
    regions = [f"static-{run}-a", f"static-{run}-b"]
    silent_region = f"static-{run}-silent"
    keys = {"key-fed": tenant}
    parts = split([*regions, "unused"])
    second = make_bridge(regions[1], etcd=False, api_keys=keys)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent_endpoint = f"127.0.0.1:{silent.getsockname()[1]}"

        def federation(own: str) -> dict[str, Any]:
            return {
                "timeout": 2,
                "peers": [
                    {"region": regions[0], "endpoint": own},
                    {"region": regions[1], "endpoint": second.query_url.removeprefix("http://")},
                    {"region": silent_region, "endpoint": silent_endpoint},
                ],
            }

        first = make_bridge(regions[0], etcd=False, api_keys=keys, flight_sql=True, federation=federation)
        auth = {"Authorization": "Bearer key-fed"}
        send(first, parts[regions[0]], tenant)
        send(second, parts[regions[1]], tenant)
        expected = len(parts[regions[0]]) + len(parts[regions[1]])
        started = time.monotonic()
        answer = query(first, "SELECT count(*) AS n FROM spans", tenant, scope="global", headers=auth)
        elapsed = time.monotonic() - started
        assert answer["rows"] == [[expected]]
        stats = answer["stats"]["regions"]
        assert set(stats) == {*regions, silent_region}
        assert stats[silent_region]["error"] == "no answer within 2 s", stats
        assert stats[silent_region]["ms"] >= 2000 and elapsed < 2 + 3, (elapsed, stats)
        assert stats[regions[0]]["error"] is None and stats[regions[1]]["error"] is None, stats

        # a wrong key is refused by the coordinator itself; none is forwarded without one
        response = httpx.post(
            first.query_url + "/api/v1/query",
            json={"sql": "SELECT 1", "scope": "global"},
            headers={"Authorization": "Bearer nope"},
            timeout=30,
        )
        assert response.status_code == 401, response.text
        # a query the SQL refuses is refused here, before any region is asked (no wait for the silent one)
        started = time.monotonic()
        response = httpx.post(
            first.query_url + "/api/v1/query",
            json={"sql": "SELECT no_such_column FROM spans", "scope": "global"},
            headers=auth,
            timeout=30,
        )
        assert response.status_code == 400 and "no_such_column" in response.json()["error"], response.text
        assert time.monotonic() - started < 2, "the refused query waited for the regions"

        # Flight SQL: the same global query with the x-orasi-scope header
        assert first.config is not None
        flight_sql = first.config["extensions"]["query_api"]["flight_sql"]
        client = flight.FlightClient(f"grpc://{flight_sql}")
        options = flight.FlightCallOptions(
            headers=[(b"authorization", b"Bearer key-fed"), (b"x-orasi-scope", b"global")],
            timeout=30,
        )
        top = "SELECT duration_ns FROM spans ORDER BY duration_ns DESC LIMIT 3"
        info = client.get_flight_info(flight.FlightDescriptor.for_command(_statement(top)), options)
        table = client.do_get(info.endpoints[0].ticket, options).read_all()
        wanted = sorted(
            (r["duration_ms"] * 10**6 for r in parts[regions[0]] + parts[regions[1]]), reverse=True
        )
        assert table.column("duration_ns").to_pylist() == wanted[:3]
        client.close()


def _statement(sql: str) -> bytes:
    from google.protobuf import any_pb2

    from orasi_bridge.flightsql.proto import FlightSql_pb2

    wrapped = any_pb2.Any()
    wrapped.Pack(FlightSql_pb2.CommandStatementQuery(query=sql))
    return wrapped.SerializeToString()
