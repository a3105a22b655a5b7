"""JWTs against a real bridge whose `auth` extension has no token store, only a JWKS file: spans
sent by the OpenTelemetry SDK's OTLP exporter with a service-account-like JWT land in the tenant
its namespace claim names, read back with a query-scoped JWT over REST and Flight SQL; an
expired token is refused with a message saying so; a rotated JWKS file is taken without a
restart. A gateway forwarding with its service account's token (granted `forward` by
`jwt.subjects`, as the chart does) lands many tenants' batches each under its tenant, where a
gateway holding an app's token may forward its own tenant's only. A bridge trusting two clusters'
issuers (`jwt` as a list) takes each cluster's gateway, and refuses a token claiming one issuer
signed by the other's key."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fault.harness import MEMORY_LIMITER
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from integration.receivers.conftest import Processes
from integration.security.test_tokens import (
    bearer,
    bridge_with_auth,
    flight_rows,
    post_http,
    query,
    rows_of,
    spans,
)
from orasi_common.testing.jwks import AUDIENCE, ISSUER, Issuer
from orasi_common.testing.service_process import free_ports
from orasi_common.topology import service


def namespace(tenant: str, scope: str) -> dict[str, Any]:
    """A Kubernetes service-account token's claims (the namespace nested), with a scope claim."""
    return {"kubernetes.io": {"namespace": tenant, "serviceaccount": {"name": "app"}}, "scope": scope}


def recorded_spans(run: str, count: int) -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "jwt-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(count):
        with provider.get_tracer("jwt-test").start_as_current_span(f"op {i}", attributes={"run": run}):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def export(bridge: Any, token: str, recorded: tuple[ReadableSpan, ...]) -> SpanExportResult:
    """``recorded`` sent by the SDK's OTLP/gRPC exporter with ``token`` as its bearer."""
    exporter = OTLPSpanExporter(
        endpoint=bridge.grpc_endpoint, insecure=True, headers={"authorization": f"Bearer {token}"}, timeout=10
    )
    try:
        return exporter.export(recorded)
    finally:
        exporter.shutdown()


def test_jwts_from_a_real_exporter_land_in_the_claims_tenant(processes: Processes, tmp_path: Path) -> None:
    issuer = Issuer()
    issuer.add("k1", "rsa")
    issuer.add("k2", "ec")
    jwks = issuer.publish(tmp_path / "jwks.json", "k1")
    auth = {
        "jwt": {
            "jwks_file": str(jwks),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "tenant_claim": "kubernetes.io/namespace",
            "scopes_claim": "scope",
            "reload_interval": 0.2,
        },
        "cache_seconds": 0.5,
    }
    bridge = bridge_with_auth(processes, auth=auth)
    tenant, other = f"team-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex
    recorded = recorded_spans(run, 3)

    expired = issuer.token("k1", exp=int(time.time()) - 60, **namespace(tenant, "ingest"))
    assert export(bridge, expired, recorded) == SpanExportResult.FAILURE
    refused = post_http(bridge, spans(run, 1), **bearer(expired))
    assert refused.status_code == 401 and "the JWT has expired" in refused.text
    assert expired.rsplit(".", 1)[1] not in refused.text  # the token is never echoed
    reader_only = issuer.token("k1", **namespace(tenant, "query"))
    assert post_http(bridge, spans(run, 1), **bearer(reader_only)).status_code == 403

    writer = issuer.token("k1", **namespace(tenant, "ingest"))
    assert export(bridge, writer, recorded) == SpanExportResult.SUCCESS
    sql = f"SELECT tenant, count(*) FROM spans WHERE attributes['run'] = '{run}' GROUP BY tenant"
    assert rows_of(bridge, sql, reader_only, 1) == [[tenant, 3]]
    assert flight_rows(bridge, sql, reader_only) == [[tenant, 3]]
    assert rows_of(bridge, sql, issuer.token("k1", **namespace(other, "query")), 0) == []
    for path in ("/api/services", "/registry/subjects"):  # Jaeger and registry reads: scope query
        assert httpx.get(bridge.query_url + path, timeout=30).status_code == 401, path
        assert httpx.get(bridge.query_url + path, headers=bearer(reader_only), timeout=30).status_code == 200
    registry_config = bridge.query_url + "/registry/config"

    def change(token: str) -> int:  # a registry change: scope admin
        return httpx.put(
            registry_config, json={"compatibility": "NONE"}, headers=bearer(token), timeout=30
        ).status_code

    assert change(reader_only) == 403
    assert change(issuer.token("k1", **namespace(tenant, "query admin"))) == 200

    # Rotation: k2 published, k1 retired; the running bridge takes k2's tokens within reload_interval.
    issuer.publish(jwks, "k2")
    rotated = issuer.token("k2", **namespace(tenant, "ingest query"))
    deadline = time.monotonic() + 10
    while post_http(bridge, spans(run, 1), **bearer(rotated)).status_code != 200:
        assert time.monotonic() < deadline, "the rotated key was not taken"
        time.sleep(0.1)
    deadline = time.monotonic() + 60
    while True:  # the query API's own check of the file
        found = query(bridge, sql, **bearer(rotated))
        if found.status_code == 200 and found.json()["rows"] == [[tenant, 4]]:
            break
        assert time.monotonic() < deadline, found.text
        time.sleep(0.2)
    retired = post_http(bridge, spans(run, 1), **bearer(issuer.token("k1", **namespace(tenant, "ingest"))))
    assert retired.status_code == 401 and "key id (kid)" in retired.text


GATEWAY_SUBJECT = "system:serviceaccount:orasi-gateway:orasi-gateway"


def service_account(namespace: str, name: str) -> dict[str, Any]:
    """A projected service-account token's claims: its subject and its namespace (nested)."""
    return {
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    }


def lb_gateway(processes: Processes, bridge: Any, token_file: Path) -> Any:
    """A gateway as the chart runs it (OTLP in, the loadbalancing exporter speaking OTAP to the
    bridges) with its bearer token read from ``token_file``; refusals go back to its sender (no
    queue, no retries)."""
    exporter = {
        "protocol": "otap",
        "resolver": {"static": {"endpoints": [bridge.grpc_endpoint]}},
        "tls": {"insecure": True},
        "auth": {"bearer_token_file": str(token_file)},
        "sending_queue": {"enabled": False},
        "retry_on_failure": {"enabled": False},
    }
    config = service(free_ports(), "otlp", MEMORY_LIMITER, "loadbalancing", exporter, signals=("traces",))
    return processes._add("gateway", config).start()


def test_the_gateways_service_account_forwards_tenants_an_apps_token_cannot(
    processes: Processes, tmp_path: Path
) -> None:
    """The chart's bridge: JWTs of one issuer and audience for apps and gateways alike; the gateway's
    subject is granted forward (jwt.subjects), every other token has the default scopes."""
    issuer = Issuer()
    issuer.add("k1", "ec")
    auth = {
        "jwt": {
            "jwks_file": str(issuer.publish(tmp_path / "jwks.json", "k1")),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "tenant_claim": "kubernetes.io/namespace",
            "default_scopes": ["ingest", "query"],
            "subjects": {GATEWAY_SUBJECT: {"scopes": ["forward"]}},
        },
        "cache_seconds": 0.5,
    }
    bridge = bridge_with_auth(processes, "otap", auth=auth)
    a, b = f"team-a-{uuid.uuid4().hex[:6]}", f"team-b-{uuid.uuid4().hex[:6]}"
    app = {t: issuer.token("k1", **service_account(t, "checkout")) for t in (a, b)}
    gateway_token = issuer.token("k1", **service_account("orasi-gateway", "orasi-gateway"))
    run = uuid.uuid4().hex

    # Tenant a's app token is refused as b: straight to the bridge, and as a gateway's token.
    direct = post_http(bridge, spans(run, 1), **bearer(app[a]), **{"x-orasi-tenant": b})
    assert direct.status_code == 403 and f"not '{b}''s" in direct.text, direct.text
    assert post_http(bridge, spans(run, 1), **{"x-orasi-tenant": b}).status_code == 401
    posing_file = tmp_path / "posing.token"
    posing_file.write_text(app[a] + "\n")
    posing = lb_gateway(processes, bridge, posing_file)
    refused = post_http(posing, spans(run, 1), **{"x-orasi-tenant": b})
    assert refused.status_code == 403, refused.text
    assert "PERMISSION_DENIED" in refused.text and f"not '{b}''s" in refused.text
    assert post_http(posing, spans(run, 1), **{"x-orasi-tenant": a}).status_code == 200  # its own

    # The gateway's service account forwards both tenants' batches, each under its own tenant.
    token_file = tmp_path / "gateway.token"
    token_file.write_text(gateway_token + "\n")
    gateway = lb_gateway(processes, bridge, token_file)
    for tenant, count in ((a, 2), (b, 3)):
        answer = post_http(gateway, spans(run, count), **{"x-orasi-tenant": tenant})
        assert answer.status_code == 200, answer.text
    for tenant, count in ((a, 3), (b, 3)):  # a: its own span through the posing gateway, and 2
        sql = (
            f"SELECT tenant, count(*) FROM spans WHERE attributes['run'] = '{run}' GROUP BY tenant "
            f"HAVING count(*) >= {count}"
        )
        assert rows_of(bridge, sql, app[tenant], 1) == [[tenant, count]], tenant
    # forward reads nothing: the gateway's token queries no tenant's data.
    assert query(bridge, "SELECT 1", **bearer(gateway_token)).status_code == 403
    assert gateway_token not in gateway.log_text() and gateway_token not in bridge.log_text()


def test_a_bridge_trusting_two_clusters_issuers_takes_each_clusters_gateway(
    processes: Processes, tmp_path: Path
) -> None:
    """The chart's us-east-1 bridge with auth.jwt.trustedIssuers: its own cluster's issuer and
    eu-west-1's, each a `jwt` section with its own JWKS file and its gateways' subject granted
    forward. A gateway of each cluster forwards tenants' batches with its own cluster's token, each
    batch landing under its tenant; a token signed by eu-west-1's key but claiming us-east-1's
    issuer, and a token of an issuer not trusted, are refused (401, the latter naming its iss)."""
    east = Issuer("https://oidc.eks.us-east-1.amazonaws.com/id/EAST", AUDIENCE)
    west = Issuer("https://oidc.eks.eu-west-1.amazonaws.com/id/WEST", AUDIENCE)
    east.add("k1", "ec")
    west.add("k1", "ec")  # one kid and kind in both clusters' files (another key), as may well be

    def section(issuer: Issuer, **more: Any) -> dict[str, Any]:
        jwks = issuer.publish(tmp_path / f"{issuer.issuer.rsplit('/', 1)[1]}.json", "k1")
        subjects = {GATEWAY_SUBJECT: {"scopes": ["forward"]}}
        return {
            "jwks_file": str(jwks),
            "issuer": issuer.issuer,
            "audience": AUDIENCE,
            "tenant_claim": "kubernetes.io/namespace",
            "subjects": subjects,
            **more,
        }

    auth = {"jwt": [section(east, default_scopes=["ingest", "query"]), section(west)], "cache_seconds": 0.5}
    bridge = bridge_with_auth(processes, "otap", auth=auth)
    gateway_claims = service_account("orasi-gateway", "orasi-gateway")
    tenants = {t: f"{t}-{uuid.uuid4().hex[:6]}" for t in ("a", "b", "c")}
    run = uuid.uuid4().hex

    def gateway_with(name: str, token: str) -> Any:
        token_file = tmp_path / f"{name}.token"
        token_file.write_text(token + "\n")
        return lb_gateway(processes, bridge, token_file)

    sent = {"east": {"a": 2, "b": 1}, "west": {"a": 3, "c": 4}}
    for cluster, issuer in (("east", east), ("west", west)):
        gateway = gateway_with(cluster, issuer.token("k1", **gateway_claims))
        for tenant, count in sent[cluster].items():
            answer = post_http(gateway, spans(run, count), **{"x-orasi-tenant": tenants[tenant]})
            assert answer.status_code == 200, (cluster, answer.text)
    for tenant, count in (("a", 5), ("b", 1), ("c", 4)):
        reader = east.token("k1", **service_account(tenants[tenant], "checkout"))
        sql = (
            f"SELECT tenant, count(*) FROM spans WHERE attributes['run'] = '{run}' GROUP BY tenant "
            f"HAVING count(*) >= {count}"
        )
        assert rows_of(bridge, sql, reader, 1) == [[tenants[tenant], count]], tenant

    # West's key, east's issuer: checked with east's keys (kid k1 there is another key).
    posing = west.token("k1", iss=east.issuer, **gateway_claims)
    refused = post_http(gateway_with("posing", posing), spans(run, 1), **{"x-orasi-tenant": tenants["b"]})
    assert refused.status_code != 200 and "signature does not verify" in refused.text, refused.text
    stranger = Issuer("https://oidc.example/stranger", AUDIENCE)
    stranger.add("k1", "ec")
    unknown = stranger.token("k1", **gateway_claims)
    refused = post_http(bridge, spans(run, 1), **bearer(unknown), **{"x-orasi-tenant": tenants["b"]})
    assert refused.status_code == 401 and "'https://oidc.example/stranger'" in refused.text, refused.text
    assert unknown.rsplit(".", 1)[1] not in refused.text
