"""Forwarding hops among JWTs: the `forward` scope, granted to a subject by ``jwt.subjects``.

A gateway's projected service-account token and an app's are of one issuer and audience; only the
subject (``sub``) tells them apart. The subject listed with ``forward`` ingests as the tenant each
request names (its tenant header, as hops send it); every other token stays pinned to its own
tenant, over the Authenticator and through a real OTLP receiver (gRPC PERMISSION_DENIED, HTTP 403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from pydantic import ValidationError

from orasi_common.errors import InvalidToken, PermissionDenied
from orasi_common.extensions.auth import Authenticator, Config, JwtConfig, local
from orasi_common.extensions.auth.store import TokenStore
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import otlp
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.jwks import AUDIENCE, ISSUER, Issuer

from ...doubles import RecordingConsumer, make_settings

GATEWAY = "system:serviceaccount:orasi-gateway:orasi-gateway"


def service_account(namespace: str, name: str, **claims: Any) -> dict[str, Any]:
    """A Kubernetes projected service-account token's claims: its subject and nested namespace."""
    return {
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
        **claims,
    }


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    made = Issuer()
    made.add("k1", "ec")
    return made


def auth_config(jwks: Path, **jwt: Any) -> Config:
    section = {
        "jwks_file": str(jwks),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "tenant_claim": "kubernetes.io/namespace",
        "subjects": {GATEWAY: {"scopes": ["forward"]}},
        **jwt,
    }
    return Config.model_validate({"jwt": section, "cache_seconds": 0})


@pytest.fixture
async def auth(tmp_path: Path, issuer: Issuer) -> AsyncIterator[Authenticator]:
    jwks = issuer.publish(tmp_path / "jwks.json", "k1")
    authenticator = Authenticator(auth_config(jwks, default_scopes=["ingest", "query"]))
    await authenticator.start()
    yield authenticator
    await authenticator.shutdown()


async def test_the_gateways_subject_ingests_as_the_tenant_each_request_names(
    auth: Authenticator, issuer: Issuer
) -> None:
    gateway = f"Bearer {issuer.token('k1', **service_account('orasi-gateway', 'orasi-gateway'))}"
    for tenant in ("team-a", "team-b", "orasi-gateway"):
        assert await auth.tenant(gateway, "ingest", tenant) == tenant
    assert await auth.tenant(gateway, "ingest", None) == "orasi-gateway"  # no header: its own
    for scope in ("query", "admin"):  # the grant replaces default_scopes: it forwards, nothing else
        with pytest.raises(PermissionDenied, match=rf"may not {scope} \(its scopes: forward\)"):
            await auth.tenant(gateway, scope, None)


async def test_an_app_token_stays_pinned_to_its_tenant(auth: Authenticator, issuer: Issuer) -> None:
    app = f"Bearer {issuer.token('k1', **service_account('team-a', 'checkout'))}"
    assert await auth.tenant(app, "ingest", "team-a") == "team-a"
    assert await auth.tenant(app, "query", None) == "team-a"
    with pytest.raises(PermissionDenied, match=r"tenant 'team-a''s, not 'team-b''s .*scope forward"):
        await auth.tenant(app, "ingest", "team-b")
    # The gateway's service-account name in another namespace is another subject: default scopes.
    namesake = f"Bearer {issuer.token('k1', **service_account('team-a', 'orasi-gateway'))}"
    assert await auth.tenant(namesake, "query", None) == "team-a"
    with pytest.raises(PermissionDenied, match="not 'team-b''s"):
        await auth.tenant(namesake, "ingest", "team-b")
    # A token without a subject is an unlisted subject; one whose subject is not a string, invalid.
    anonymous = issuer.token("k1", **{**service_account("team-a", "x"), "sub": None})
    with pytest.raises(PermissionDenied, match="not 'team-b''s"):
        await auth.tenant(f"Bearer {anonymous}", "ingest", "team-b")
    listed = issuer.token("k1", **{**service_account("orasi-gateway", "x"), "sub": [GATEWAY]})
    with pytest.raises(InvalidToken, match="Subject must be a string"):
        await auth.tenant(f"Bearer {listed}", "ingest", "team-b")


async def test_a_subjects_grant_wins_over_the_scopes_claim(tmp_path: Path, issuer: Issuer) -> None:
    auth = Authenticator(auth_config(issuer.publish(tmp_path / "jwks.json", "k1"), scopes_claim="scope"))
    await auth.start()
    try:
        claimed = service_account("orasi-gateway", "orasi-gateway", scope="ingest query admin")
        gateway = f"Bearer {issuer.token('k1', **claimed)}"
        assert await auth.tenant(gateway, "ingest", "team-b") == "team-b"
        with pytest.raises(PermissionDenied, match="may not query"):
            await auth.tenant(gateway, "query", None)
        app = f"Bearer {issuer.token('k1', **service_account('team-a', 'app', scope='ingest query'))}"
        assert await auth.tenant(app, "query", None) == "team-a"
        with pytest.raises(PermissionDenied, match="not 'team-b''s"):
            await auth.tenant(app, "ingest", "team-b")
    finally:
        await auth.shutdown()


def test_forward_is_granted_by_subject_never_to_every_token(tmp_path: Path) -> None:
    base = {"jwks_file": str(tmp_path / "jwks.json"), "issuer": ISSUER, "audience": AUDIENCE}
    with pytest.raises(ValidationError, match="forward is refused here: every token could then write"):
        JwtConfig.model_validate({**base, "default_scopes": ["ingest", "forward"]})
    with pytest.raises(ValidationError, match=r"subjects\.x\.scopes"):
        JwtConfig.model_validate({**base, "subjects": {"x": {"scopes": []}}})
    with pytest.raises(ValidationError, match=r"subjects\.x\.scopes\.0"):
        JwtConfig.model_validate({**base, "subjects": {"x": {"scopes": ["write"]}}})
    with pytest.raises(ValidationError, match=r"subjects\.x\.tenant"):  # an unknown key, named
        JwtConfig.model_validate({**base, "subjects": {"x": {"scopes": ["forward"], "tenant": "a"}}})
    granted = JwtConfig.model_validate({**base, "subjects": {GATEWAY: {"scopes": ["forward"]}}})
    assert granted.subjects[GATEWAY].scopes == ("forward",) and granted.default_scopes == ("ingest",)


def _request() -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "op"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return request


async def test_an_otlp_receiver_takes_forwarded_tenants_from_the_gateway_only(
    tmp_path: Path, issuer: Issuer, metrics: Metrics
) -> None:
    """gRPC and HTTP: the gateway's token lands each batch under the tenant it names; an app's token
    naming another tenant is PERMISSION_DENIED / 403 and nothing of it is consumed."""
    consumer = RecordingConsumer()
    extensions = {"auth": auth_config(issuer.publish(tmp_path / "jwks.json", "k1"))}
    settings = replace(make_settings("otlp", Kind.RECEIVER, metrics), extensions=extensions)
    protocols = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    config = otlp.Config.model_validate({"protocols": protocols, "auth": {"authenticator": "auth"}})
    receiver = otlp.FACTORY.create(settings, config, {Signal.TRACES: consumer})
    assert isinstance(receiver, otlp.OtlpReceiver)
    gateway = issuer.token("k1", **service_account("orasi-gateway", "orasi-gateway"))
    app = issuer.token("k1", **service_account("team-a", "checkout"))
    body = _request().SerializeToString()
    await receiver.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            await stub.Export(
                _request(), metadata=(("authorization", f"Bearer {gateway}"), ("x-orasi-tenant", "team-b"))
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Export(
                    _request(), metadata=(("authorization", f"Bearer {app}"), ("x-orasi-tenant", "team-b"))
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "tenant 'team-a''s, not 'team-b''s" in (refused.value.details() or "")
            await stub.Export(_request(), metadata=(("authorization", f"Bearer {app}"),))
        url = f"http://127.0.0.1:{receiver.http_port}/v1/traces"
        protobuf = {"content-type": "application/x-protobuf"}
        async with httpx.AsyncClient(timeout=30) as client:
            forwarded = await client.post(
                url,
                content=body,
                headers={**protobuf, "authorization": f"Bearer {gateway}", "x-orasi-tenant": "team-c"},
            )
            assert forwarded.status_code == 200, forwarded.text
            denied = await client.post(
                url,
                content=body,
                headers={**protobuf, "authorization": f"Bearer {app}", "x-orasi-tenant": "team-c"},
            )
            assert denied.status_code == 403 and "not 'team-c''s" in denied.text
    finally:
        await receiver.shutdown()
    assert [(b.tenant, b.items) for b in consumer.batches] == [("team-b", 1), ("team-a", 1), ("team-c", 1)]


def test_orasi_up_replaces_a_forwarding_token_made_before_the_forward_scope(tmp_path: Path) -> None:
    """`orasi up --auth`'s hops forward with scope forward: a token file of the earlier kind (ingest
    and admin, which no longer forwards) is replaced at the next start, and the old token revoked."""
    store = TokenStore(local.store_uri(tmp_path))
    store.migrate()
    old, _ = store.create(local.FORWARDING_TENANT, ("admin", "ingest"), local.FORWARDING_DESCRIPTION)
    store.close()
    path = local.forwarding_file(tmp_path)
    path.parent.mkdir()
    path.write_text(old + "\n")
    local.prepare(tmp_path)
    kept = path.read_text().strip()
    local.prepare(tmp_path)  # a valid forwarding token is kept
    assert path.read_text().strip() == kept != old
    store = TokenStore(local.store_uri(tmp_path))
    try:
        principal = store.verify(kept)
        assert principal is not None and principal.scopes == {"forward"}
        assert store.verify(old) is None
    finally:
        store.close()
