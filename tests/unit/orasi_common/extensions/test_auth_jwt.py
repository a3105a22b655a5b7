"""JWTs checked by the `auth` extension against a JWKS file: keys made with `cryptography`, tokens
minted with PyJWT. Each failure is a 401 whose message says which check failed (and never holds
the token); the tenant comes from the named claim, scopes from a claim or the defaults; a rotated
file is picked up without a restart; the push receivers refuse before reading the body."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cramjam
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from orasi_common.errors import PermissionDenied, Unauthenticated
from orasi_common.extensions.auth import Authenticator, Config, JwtConfig, jwks
from orasi_common.extensions.auth.jwks import JwtVerifier
from orasi_common.extensions.auth.store import TokenStore
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import prometheus_remote_write, zipkin
from orasi_common.receivers.prometheus_remote_write.proto.remote_write_pb2 import WriteRequest
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.jwks import AUDIENCE, ISSUER, Issuer

from ...doubles import RecordingConsumer, make_settings


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    made = Issuer()
    for kid, kind in (("r1", "rsa"), ("e1", "ec"), ("d1", "ed"), ("r2", "rsa")):
        made.add(kid, kind)
    return made


@pytest.fixture
def jwks_file(tmp_path: Path, issuer: Issuer) -> Path:
    symmetric = {"kty": "oct", "k": "c2VjcmV0", "kid": "h1"}  # ignored
    return issuer.publish(tmp_path / "jwks.json", "r1", "e1", "d1", extra=(symmetric,))


def jwt_config(jwks_file: Path, **overrides: Any) -> Config:
    jwt_section = {"jwks_file": str(jwks_file), "issuer": ISSUER, "audience": AUDIENCE, "leeway": 0}
    return Config.model_validate({"jwt": {**jwt_section, **overrides}, "cache_seconds": 0})


@pytest.fixture
async def auth(jwks_file: Path) -> AsyncIterator[Authenticator]:
    authenticator = Authenticator(jwt_config(jwks_file, tenant_claim="kubernetes.io/namespace"))
    await authenticator.start()
    yield authenticator
    await authenticator.shutdown()


def sa_claims(namespace: str) -> dict[str, Any]:
    """A Kubernetes service-account token's claims: the namespace is nested."""
    return {"kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "app"}}}


async def test_rs256_es256_and_eddsa_tokens_give_the_claims_tenant(
    auth: Authenticator, issuer: Issuer
) -> None:
    for kid, key, algorithm in (
        ("r1", "rsa", "RS256"),
        ("r1", "rsa", "PS384"),
        ("e1", "ec", "ES256"),
        ("d1", "ed", "EdDSA"),
    ):
        token = issuer.token(kid, algorithm, **sa_claims(f"team-{key}"))
        assert await auth.tenant(f"Bearer {token}", "ingest", None) == f"team-{key}", algorithm
        assert await auth.tenant(f"Bearer {token}", "ingest", f"team-{key}") == f"team-{key}"
        with pytest.raises(PermissionDenied, match="not 'other''s"):
            await auth.tenant(f"Bearer {token}", "ingest", "other")
        with pytest.raises(PermissionDenied, match=r"may not query \(its scopes: ingest\)"):
            await auth.tenant(f"Bearer {token}", "query", None)  # default_scopes: ingest


def hand_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: HS256 keyed with a public key, or unsigned (none)."""
    parts = [jwt.utils.base64url_encode(json.dumps(p).encode()) for p in (header, claims)]
    signing_input = b".".join(parts)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest() if secret else b""
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


async def test_each_refusal_says_which_check_failed(auth: Authenticator, issuer: Issuer) -> None:
    now = int(time.time())
    ns = sa_claims("acme")
    valid = issuer.token("r1", **ns)
    forged = valid.rsplit(".", 1)[0] + "." + issuer.token("r2", header={"kid": "r1"}, **ns).rsplit(".", 1)[1]
    public_pem = (
        issuer.keys["r1"][0].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, **ns}
    cases = {
        "has expired": issuer.token("r1", exp=now - 5, **ns),
        "not valid yet": issuer.token("r1", nbf=now + 300, **ns),
        "issuer \\(iss\\) is not 'https://kubernetes": issuer.token("r1", iss="https://x", **ns),
        "audience \\(aud\\) does not include 'orasi'": issuer.token("r1", aud="kube", **ns),
        "has no 'aud' claim": issuer.token("r1", aud=None, **ns),
        "has no 'exp' claim": issuer.token("r1", exp=None, **ns),
        "key id \\(kid\\) is not a key of the JWKS file": issuer.token("r2", header={"kid": "r9"}, **ns),
        "signature does not verify": forged,
        "algorithm \\(alg\\) is not accepted for its key; use ES256": issuer.token(
            "r1", header={"kid": "e1"}, **ns
        ),
        "names no key id \\(kid\\)": issuer.token("r1", header={}, **ns),
        "has no 'kubernetes.io/namespace' claim naming its tenant": issuer.token("r1"),
        "is not a tenant name": issuer.token("r1", **{"kubernetes.io": {"namespace": 7}}),
        "not a well-formed JWT": "a.b.c",
        "Key ID header parameter must be a string": hand_signed(
            {"alg": "RS256", "kid": ["r1"]}, claims, None
        ),
        # algorithm confusion: HMAC keyed with the published public key; an unsigned token
        "alg\\) is not accepted for its key; use RS256 or RS384": hand_signed(
            {"alg": "HS256", "typ": "JWT", "kid": "r1"}, claims, public_pem
        ),
        "alg\\) is not accepted for its key; use RS256": hand_signed(
            {"alg": "none", "kid": "r1"}, claims, None
        ),
    }
    for message, token in cases.items():
        with pytest.raises(Unauthenticated, match=message) as refused:
            await auth.tenant(f"Bearer {token}", "ingest", None)
        signature = token.rsplit(".", 1)[-1]
        assert token not in refused.value.message and (
            len(signature) < 16 or signature not in refused.value.message
        )
    assert await auth.tenant(f"Bearer {valid}", "ingest", None) == "acme"


async def test_a_rotated_jwks_is_picked_up_without_a_restart(jwks_file: Path, issuer: Issuer) -> None:
    auth = Authenticator(jwt_config(jwks_file, reload_interval=0.01))
    await auth.start()
    old, new = (
        issuer.token("r1", tenant="acme"),
        issuer.token("r2", tenant="acme"),
    )
    try:
        assert await auth.tenant(f"Bearer {old}", "ingest", None) == "acme"
        with pytest.raises(Unauthenticated, match="kid"):
            await auth.tenant(f"Bearer {new}", "ingest", None)
        issuer.publish(jwks_file, "r2")  # r1 retired, r2 published
        deadline = time.monotonic() + 5
        while True:  # picked up at the first check after reload_interval
            try:
                assert await auth.tenant(f"Bearer {new}", "ingest", None) == "acme"
                break
            except Unauthenticated:
                assert time.monotonic() < deadline, "the new key was not picked up"
        with pytest.raises(Unauthenticated, match="kid"):
            await auth.tenant(f"Bearer {old}", "ingest", None)
        assert auth.jwt is not None
        verifier = auth.jwt.verifiers[ISSUER]
        assert verifier.reloads == 1
        await asyncio.to_thread(jwks_file.write_text, '{"keys": [')  # written halfway: keys kept
        assert not verifier.reload_if_changed() and verifier.reloads == 1
        assert await auth.tenant(f"Bearer {new}", "ingest", None) == "acme"
    finally:
        await auth.shutdown()


async def test_a_token_of_an_unknown_key_has_the_file_checked_at_once(
    jwks_file: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "UNKNOWN_KEY_CHECK", 0.0)
    auth = Authenticator(jwt_config(jwks_file, reload_interval=3600))
    await auth.start()
    try:
        new = issuer.token("r2", tenant="acme")
        with pytest.raises(Unauthenticated, match="kid"):
            await auth.tenant(f"Bearer {new}", "ingest", None)
        issuer.publish(jwks_file, "r1", "r2")
        assert await auth.tenant(f"Bearer {new}", "ingest", None) == "acme"  # no wait for the hour
    finally:
        await auth.shutdown()


async def test_scopes_from_a_claim_and_answers_cached_until_exp_at_most(
    jwks_file: Path, issuer: Issuer
) -> None:
    auth = Authenticator(
        jwt_config(jwks_file, scopes_claim="scope").model_copy(update={"cache_seconds": 3600})
    )
    await auth.start()
    reader = issuer.token("e1", tenant="acme", scope="query openid")
    listed = issuer.token("e1", tenant="acme", scope=["ingest", "forward"])
    bare = issuer.token("e1", tenant="acme")
    short = issuer.token("e1", tenant="acme", scope="query", exp=int(time.time()) + 2)
    try:
        assert await auth.tenant(f"Bearer {reader}", "query", None) == "acme"
        with pytest.raises(PermissionDenied, match=r"may not ingest \(its scopes: query\)"):
            await auth.tenant(f"Bearer {reader}", "ingest", None)
        assert await auth.tenant(f"Bearer {listed}", "ingest", "globex") == "globex"  # a forwarding hop
        with pytest.raises(PermissionDenied, match=r"its scopes: none"):
            await auth.tenant(f"Bearer {bare}", "ingest", None)
        assert await auth.tenant(f"Bearer {short}", "query", None) == "acme"
        deadline = time.monotonic() + 5
        while True:  # cached for an hour, but never past the token's exp
            try:
                await auth.tenant(f"Bearer {short}", "query", None)
            except Unauthenticated as error:
                assert "has expired" in error.message
                break
            assert time.monotonic() < deadline, "an expired token was still accepted"
    finally:
        await auth.shutdown()


async def test_tokens_and_jwts_side_by_side(jwks_file: Path, tmp_path: Path, issuer: Issuer) -> None:
    uri = f"sqlite:///{tmp_path / 'tokens.db'}"
    store = TokenStore(uri)
    store.migrate()
    token, _ = store.create("acme", ("ingest",))
    store.close()
    jwt_only = Authenticator(jwt_config(jwks_file))
    both = Authenticator(jwt_config(jwks_file).model_copy(update={"store": uri}))
    await jwt_only.start()
    await both.start()
    signed = issuer.token("r1", tenant="globex")
    try:
        with pytest.raises(Unauthenticated, match="not a JWT, the only kind this server accepts"):
            await jwt_only.tenant(f"Bearer {token}", "ingest", None)
        assert await both.tenant(f"Bearer {token}", "ingest", None) == "acme"
        assert await both.tenant(f"Bearer {signed}", "ingest", None) == "globex"
        with pytest.raises(Unauthenticated, match="bearer token is required"):
            await both.tenant(None, "ingest", None)
    finally:
        await jwt_only.shutdown()
        await both.shutdown()


def test_config_refuses_none_hmac_and_ambiguous_scopes(jwks_file: Path) -> None:
    base = {"jwks_file": str(jwks_file), "issuer": ISSUER, "audience": AUDIENCE}
    for algorithm, why in (("HS256", "HMAC would take as a shared secret"), ("none", "unsigned token")):
        with pytest.raises(ValidationError, match=why):
            JwtConfig.model_validate({**base, "algorithms": ["RS256", algorithm]})
    with pytest.raises(ValidationError, match="scopes_claim or default_scopes, not both"):
        JwtConfig.model_validate({**base, "scopes_claim": "scope", "default_scopes": ["query"]})
    with pytest.raises(ValidationError, match="default_scopes"):
        JwtConfig.model_validate({**base, "default_scopes": ["everything"]})
    with pytest.raises(ValidationError, match="set store \\(bearer tokens\\), jwt"):
        Config.model_validate({})
    with pytest.raises(ValidationError, match="audience"):
        JwtConfig.model_validate({"jwks_file": "x", "issuer": ISSUER})


async def test_a_private_jwk_published_by_mistake_serves_as_its_public_half(
    tmp_path: Path, issuer: Issuer
) -> None:
    private = {**jwt.algorithms.RSAAlgorithm.to_jwk(issuer.keys["r2"][0], as_dict=True), "kid": "r2"}
    path = tmp_path / "jwks.json"
    await asyncio.to_thread(path.write_text, json.dumps({"keys": [private]}))
    auth = Authenticator(jwt_config(path))
    await auth.start()
    try:
        assert await auth.tenant(f"Bearer {issuer.token('r2', tenant='acme')}", "ingest", None) == "acme"
    finally:
        await auth.shutdown()


async def test_a_jwks_that_cannot_serve_fails_start(tmp_path: Path) -> None:
    for text, message in (
        (None, "cannot read the JWKS file"),
        ("[]", 'is not a JWKS \\(JSON with a "keys" list\\)'),
        (json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "holds no usable public key"),
    ):
        path = tmp_path / "jwks.json"
        if text is not None:
            path.write_text(text)
        verifier = JwtVerifier(JwtConfig(jwks_file=str(path), issuer=ISSUER, audience=AUDIENCE))
        with pytest.raises(ValueError, match=message):
            await verifier.start()


ZIPKIN_SPAN = {"traceId": "463ac35c9f6413ad", "id": "a2fb4a1d1a96d312", "name": "op", "timestamp": 1}
WRITE = WriteRequest(
    timeseries=[{"labels": [{"name": "__name__", "value": "up"}], "samples": [{"value": 1, "timestamp": 1}]}]
)
PUSHES = {  # receiver: (its package, signal, path, a valid body, its headers, its success)
    "zipkin": (zipkin, Signal.TRACES, "/api/v2/spans", json.dumps([ZIPKIN_SPAN]).encode(), {}, 202),
    "prometheus_remote_write": (
        prometheus_remote_write,
        Signal.METRICS,
        "/api/v1/write",
        bytes(cramjam.snappy.compress_raw(WRITE.SerializeToString())),
        {"content-encoding": "snappy", "content-type": "application/x-protobuf"},
        204,
    ),
}


@pytest.mark.parametrize("name", PUSHES)
async def test_push_receivers_check_tokens_before_the_body(
    name: str, jwks_file: Path, issuer: Issuer, metrics: Metrics
) -> None:
    package, signal, path, body, headers, success = PUSHES[name]
    consumer = RecordingConsumer()
    extensions = {"auth": jwt_config(jwks_file)}
    settings = replace(make_settings(name, Kind.RECEIVER, metrics), extensions=extensions)
    config = package.Config.model_validate({"endpoint": "127.0.0.1:0", "auth": {"authenticator": "auth"}})
    receiver: Any = package.FACTORY.create(settings, config, {signal: consumer})
    await receiver.start()
    url = f"http://127.0.0.1:{receiver.port}{path}"
    writer = {**headers, "authorization": f"Bearer {issuer.token('r1', tenant='acme')}"}
    expired = {
        **headers,
        "authorization": f"Bearer {issuer.token('r1', tenant='acme', exp=int(time.time()) - 5)}",
    }
    try:
        async with httpx.AsyncClient() as client:
            refused = await client.post(url, content=body, headers=headers)
            assert (refused.status_code, refused.text) == (
                401,
                "a bearer token is required (Authorization: Bearer <token>)",
            )
            refused = await client.post(url, content=body, headers=expired)
            assert refused.status_code == 401 and "has expired" in refused.text
            other = await client.post(url, content=body, headers={**writer, "x-orasi-tenant": "globex"})
            assert other.status_code == 403 and "not 'globex''s" in other.text
            # refused before the body is read: a body past the size limit still gets the 401
            huge = await client.post(url, content=b"x" * (5 * 1024 * 1024), headers=headers)
            assert huge.status_code == 401
            ok = await client.post(url, content=body, headers=writer)
            assert ok.status_code == success, ok.text
        assert [(b.tenant, b.items) for b in consumer.batches] == [("acme", 1)]
    finally:
        await receiver.shutdown()
