"""Bearer tokens against a real bridge process whose tokens live in its catalog's PostgreSQL
database, made with the real `orasi tokens` command: no or a bad token is 401 / UNAUTHENTICATED,
the wrong scope or another tenant 403 / PERMISSION_DENIED, and a token of one tenant never writes
into or reads from another (OTLP gRPC and HTTP, the REST query API, Jaeger and registry routes)."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import grpc
import httpx
import pytest
from fault.harness import MEMORY_LIMITER
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from integration.bridge.servers import AWS_ENV
from integration.receivers.conftest import Processes
from orasi_common.testing.service_process import ServiceProcess, free_port, free_ports, orasi_command
from orasi_common.topology import forwarder, service

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def bridge_with_auth(
    processes: Processes, receiver: str = "otlp", auth: dict[str, Any] | None = None
) -> ServiceProcess:
    """A bridge whose receiver and query APIs name the `auth` extension ``auth`` (default: tokens in
    the catalog's database)."""
    lake = processes.lake.lake_config(region=AWS_ENV["AWS_REGION"], flush_interval=0.5)
    lake["wal"] = {"directory": str(processes.workdir / f"bridge-wal-{uuid.uuid4().hex}")}
    config = service(
        free_ports(), receiver, MEMORY_LIMITER, "lake", lake, signals=("traces",), query_api=True
    )
    config["extensions"]["auth"] = auth or {"store": processes.lake.catalog_uri, "cache_seconds": 0.5}
    config["extensions"]["query_api"]["auth"] = {"authenticator": "auth"}
    config["extensions"]["query_api"]["flight_sql"] = f"127.0.0.1:{free_port()}"
    config["receivers"][receiver]["auth"] = {"authenticator": "auth"}
    config["service"]["extensions"] = ["auth", "query_api"]
    return processes._add("bridge", config).start()


def tokens(processes: Processes, *args: str) -> str:
    return tokens_in(processes.lake.catalog_uri, *args)


def tokens_in(store: str, *args: str) -> str:
    """What `orasi tokens ARGS --store STORE` prints (its success asserted)."""
    done = subprocess.run(
        [*orasi_command(), "tokens", *args, "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def spans(run: str, count: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i in range(count):
        span = scope.spans.add(name=f"op {i}", start_time_unix_nano=now, end_time_unix_nano=now + 1000)
        span.trace_id, span.span_id = uuid.uuid4().bytes, uuid.uuid4().bytes[:8]
        span.attributes.append(KeyValue(key="run", value=AnyValue(string_value=run)))
    return request


def bearer(token: str | None, tenant: str | None = None) -> dict[str, str]:
    found = {}
    if token is not None:
        found["authorization"] = f"Bearer {token}"
    if tenant is not None:
        found["x-orasi-tenant"] = tenant
    return found


def post_http(bridge: ServiceProcess, request: ExportTraceServiceRequest, **headers: str) -> httpx.Response:
    return httpx.post(
        bridge.http_url + "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", **headers},
        timeout=30,
    )


def export_grpc(
    bridge: ServiceProcess, request: ExportTraceServiceRequest, **metadata: str
) -> grpc.StatusCode:
    with grpc.insecure_channel(bridge.grpc_endpoint) as channel:
        try:
            channel.unary_unary(EXPORT)(
                request.SerializeToString(), metadata=list(metadata.items()), timeout=30
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def query(bridge: ServiceProcess, sql: str, **headers: str) -> httpx.Response:
    return httpx.post(bridge.query_url + "/api/v1/query", json={"sql": sql}, headers=headers, timeout=30)


def rows_of(bridge: ServiceProcess, sql: str, token: str, expected: int) -> list[list[Any]]:
    deadline = time.monotonic() + 60
    while True:
        answer = query(bridge, sql, **bearer(token))
        assert answer.status_code == 200, answer.text
        rows: list[list[Any]] = answer.json()["rows"]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def flight_rows(bridge: ServiceProcess, sql: str, token: str | None, tenant: str | None = None) -> list[Any]:
    """``sql`` over Flight SQL (the ADBC driver) with ``token`` as the bearer and ``tenant`` as header."""
    assert bridge.config is not None
    options = {}
    if token is not None:
        options["adbc.flight.sql.authorization_header"] = f"Bearer {token}"
    if tenant is not None:
        options["adbc.flight.sql.rpc.call_header.x-orasi-tenant"] = tenant
    endpoint = bridge.config["extensions"]["query_api"]["flight_sql"]
    with (
        flightsql.connect(f"grpc://{endpoint}", db_kwargs=options, autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
        return [list(row) for row in cursor.fetchall()]


def test_tokens_bind_every_request_to_its_tenant(processes: Processes) -> None:
    bridge = bridge_with_auth(processes)
    rng = random.Random(20)
    tenants = [f"tenant-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    token = {
        t: tokens(processes, "create", "--tenant", t, "--scope", "ingest", "--scope", "query")
        for t in tenants
    }
    reader = tokens(processes, "create", "--tenant", tenants[0], "--scope", "query")
    run = uuid.uuid4().hex
    request = spans(run, 3)

    # Ingest: no token, a bad one, the wrong scope, another tenant's header: refused, over both transports.
    assert post_http(bridge, request).status_code == 401
    assert post_http(bridge, request, **bearer("orasi_0123456789abcdef_forged")).status_code == 401
    assert post_http(bridge, request, **bearer(reader)).status_code == 403
    assert post_http(bridge, request, **bearer(token[tenants[0]], tenants[1])).status_code == 403
    assert export_grpc(bridge, request) == grpc.StatusCode.UNAUTHENTICATED
    assert export_grpc(bridge, request, **bearer(token[tenants[0]] + "x")) == grpc.StatusCode.UNAUTHENTICATED
    assert export_grpc(bridge, request, **bearer(reader)) == grpc.StatusCode.PERMISSION_DENIED
    assert (
        export_grpc(bridge, request, **bearer(token[tenants[0]], tenants[1]))
        == grpc.StatusCode.PERMISSION_DENIED
    )

    # Each tenant writes a random number of spans over a random transport, some naming their own tenant.
    written = {}
    for tenant in tenants:
        count = rng.randint(1, 6)
        written[tenant] = count
        own = tenant if rng.random() < 0.5 else None
        if rng.random() < 0.5:
            assert post_http(bridge, spans(run, count), **bearer(token[tenant], own)).status_code == 200
        else:
            assert export_grpc(bridge, spans(run, count), **bearer(token[tenant], own)) == grpc.StatusCode.OK

    sql = f"SELECT tenant, count(*) FROM spans WHERE attributes['run'] = '{run}' GROUP BY tenant"
    for tenant in tenants:
        assert rows_of(bridge, sql, token[tenant], 1) == [[tenant, written[tenant]]]
    assert rows_of(bridge, sql, reader, 1) == [[tenants[0], written[tenants[0]]]]
    assert flight_rows(bridge, sql, token[tenants[1]]) == [[tenants[1], written[tenants[1]]]]
    with pytest.raises(adbc_driver_manager.Error, match=r"UNAUTHENTICATED.*a bearer token is required"):
        flight_rows(bridge, sql, None)
    with pytest.raises(adbc_driver_manager.Error, match=r"UNAUTHORIZED.*this token is tenant 'tenant-1-"):
        flight_rows(bridge, sql, token[tenants[1]], tenants[2])
    # Reading: no token, another tenant's header, on the query, Jaeger and registry routes.
    for path in ("/api/v1/query", "/api/services", "/registry/subjects"):
        url = bridge.query_url + path

        def call(path: str = path, url: str = url, **headers: str) -> int:
            if path == "/api/v1/query":
                return query(bridge, sql, **headers).status_code
            return httpx.get(url, headers=headers, timeout=30).status_code

        assert call() == 401, path
        assert call(**bearer(token[tenants[1]], tenants[2])) == 403, path
        assert call(**bearer(token[tenants[1]])) == 200, path
    jaeger = httpx.get(bridge.query_url + "/api/services", headers=bearer(token[tenants[1]]), timeout=30)
    assert jaeger.json()["data"] == ["unknown_service"]
    registry_write = httpx.put(
        bridge.query_url + "/registry/config",
        json={"compatibility": "NONE"},
        headers=bearer(token[tenants[1]]),
        timeout=30,
    )
    assert registry_write.status_code == 403  # a change needs the admin scope

    # Revoked: refused within cache_seconds.
    tokens(processes, "revoke", token[tenants[3]])
    deadline = time.monotonic() + 10
    while query(bridge, sql, **bearer(token[tenants[3]])).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still reads"
        time.sleep(0.2)
    assert post_http(bridge, request, **bearer(token[tenants[3]])).status_code == 401
    listed = tokens(processes, "list")
    assert (
        "secret" not in listed
        and token[tenants[0]] not in listed
        and token[tenants[0]].split("_")[1] in listed
    )


def otap_gateway(processes: Processes, bridge: ServiceProcess, token: str) -> ServiceProcess:
    """A gateway forwarding OTLP it receives to ``bridge`` as OTAP streams carrying ``token``;
    refusals go back to its sender (no queue, no retries)."""
    exporter = forwarder(
        bridge.grpc_endpoint,
        None,
        headers={"authorization": f"Bearer {token}"},
        sending_queue={"enabled": False},
        retry_on_failure={"enabled": False},
    )
    config = service(free_ports(), "otlp", MEMORY_LIMITER, "otap", exporter, signals=("traces",))
    return processes._add("gateway", config).start()


def test_otap_streams_carry_a_forwarding_token(processes: Processes) -> None:
    bridge = bridge_with_auth(processes, "otap")
    tenant, other = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    hop = tokens(processes, "create", "--tenant", "infra", "--scope", "forward")
    ingest_only = tokens(processes, "create", "--tenant", tenant, "--scope", "ingest")
    reader = {t: tokens(processes, "create", "--tenant", t, "--scope", "query") for t in (tenant, other)}
    run = uuid.uuid4().hex
    forwarding = otap_gateway(processes, bridge, hop)
    for name, count in ((tenant, 2), (other, 3)):  # one hop token forwards both tenants' batches
        answer = post_http(forwarding, spans(run, count), **{"x-orasi-tenant": name})
        assert answer.status_code == 200, answer.text
    sql = f"SELECT tenant, count(*) FROM spans WHERE attributes['run'] = '{run}' GROUP BY tenant"
    assert rows_of(bridge, sql, reader[tenant], 1) == [[tenant, 2]]
    assert rows_of(bridge, sql, reader[other], 1) == [[other, 3]]

    # A tenant's own ingest token may not forward another tenant's batches over OTAP.
    narrow = otap_gateway(processes, bridge, ingest_only)
    refused = post_http(narrow, spans(run, 1), **{"x-orasi-tenant": other})
    assert refused.status_code == 403, refused.text
    assert "PERMISSION_DENIED" in refused.text and "not '" + other in refused.text
