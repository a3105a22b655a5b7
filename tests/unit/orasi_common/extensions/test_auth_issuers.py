"""JWTs of several issuers: ``jwt`` as a list of sections, one per issuer (e.g. the service-account
issuers of the clusters whose gateways forward to one region's bridges). A token's ``iss`` picks its
section; that section's keys, audience, tenant claim and subjects alone decide. A token signed with
one issuer's key but naming another is refused; an unknown ``iss`` is a 401 that names it (never
the token); a grant under one issuer is nothing under another."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from orasi_common.errors import InvalidToken, PermissionDenied
from orasi_common.extensions.auth import Authenticator, Config
from orasi_common.extensions.auth.jwks import ISSUER_SHOWN
from orasi_common.testing.jwks import Issuer

EAST = "https://oidc.eks.us-east-1.amazonaws.com/id/EAST"
WEST = "https://oidc.eks.eu-west-1.amazonaws.com/id/WEST"
GATEWAY = "system:serviceaccount:orasi-gateway:orasi-gateway"
FORWARD = {GATEWAY: {"scopes": ["forward"]}}


def service_account(namespace: str, name: str) -> dict[str, Any]:
    return {
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    }


@pytest.fixture(scope="module")
def east() -> Issuer:
    made = Issuer(EAST, "orasi")
    made.add("k1", "ec")
    made.add("e2", "rsa")
    return made


@pytest.fixture(scope="module")
def west() -> Issuer:
    made = Issuer(WEST, "orasi-west")
    made.add("k1", "ec")  # the same kid as east's, another key
    made.add("w2", "rsa")
    return made


def section(issuer: Issuer, jwks: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "jwks_file": str(jwks),
        "issuer": issuer.issuer,
        "audience": issuer.audience,
        "tenant_claim": "kubernetes.io/namespace",
        "reload_interval": 0,
        **overrides,
    }


@pytest.fixture
def files(tmp_path: Path, east: Issuer, west: Issuer) -> dict[str, Path]:
    return {
        EAST: east.publish(tmp_path / "east.json", "k1", "e2"),
        WEST: west.publish(tmp_path / "west.json", "k1", "w2"),
    }


@pytest.fixture
async def auth(files: dict[str, Path], east: Issuer, west: Issuer) -> AsyncIterator[Authenticator]:
    """The us-east-1 bridge: its own cluster's tokens (its gateways forward, apps ingest and query),
    and eu-west-1's, whose gateways forward and whose other tokens only ingest, tenant from `team`."""
    sections = [
        section(east, files[EAST], subjects=FORWARD, default_scopes=["ingest", "query"]),
        section(west, files[WEST], subjects=FORWARD, tenant_claim="team"),
    ]
    authenticator = Authenticator(Config.model_validate({"jwt": sections, "cache_seconds": 0}))
    await authenticator.start()
    yield authenticator
    await authenticator.shutdown()


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def test_each_issuers_token_is_checked_by_its_own_section(
    auth: Authenticator, east: Issuer, west: Issuer
) -> None:
    for kid in ("k1", "e2"):
        app = bearer(east.token(kid, **service_account("shop", "checkout")))
        assert await auth.tenant(app, "ingest", None) == "shop"
        assert await auth.tenant(app, "query", None) == "shop"  # east's default_scopes
    for kid in ("k1", "w2"):
        app = bearer(west.token(kid, sub="system:serviceaccount:web:app", team="web"))  # west's claim
        assert await auth.tenant(app, "ingest", None) == "web"
        with pytest.raises(PermissionDenied, match=r"may not query \(its scopes: ingest\)"):
            await auth.tenant(app, "query", None)  # west's default_scopes: ingest only
    with pytest.raises(InvalidToken, match="no 'team' claim"):  # west's tenant claim, not east's
        await auth.tenant(bearer(west.token("w2", **service_account("web", "app"))), "ingest", None)


async def test_a_token_signed_by_one_issuers_key_naming_another_is_refused(
    auth: Authenticator, east: Issuer, west: Issuer
) -> None:
    """East's keys signing a token that says it is west's: checked with west's keys, refused; the
    iss read unverified picks the keys, never vouches for the token."""
    claims = {"iss": WEST, "aud": west.audience, "team": "web", "sub": GATEWAY}
    with pytest.raises(InvalidToken, match=r"key id \(kid\) is not a key of the JWKS file .*west\.json"):
        await auth.tenant(bearer(east.token("e2", **claims)), "ingest", "shop")
    # kid k1 is in both files: west's k1 is another key, so the signature does not verify.
    with pytest.raises(InvalidToken, match="signature does not verify"):
        await auth.tenant(bearer(east.token("k1", **claims)), "ingest", "shop")
    with pytest.raises(InvalidToken, match=r"audience \(aud\) does not include 'orasi-west'"):
        await auth.tenant(bearer(west.token("w2", aud=east.audience, team="web")), "ingest", None)


async def test_an_unknown_issuer_is_a_401_naming_it_never_the_token(
    auth: Authenticator, east: Issuer
) -> None:
    token = east.token("k1", iss="https://oidc.example/other", **service_account("shop", "app"))
    with pytest.raises(InvalidToken) as refused:
        await auth.tenant(bearer(token), "ingest", None)
    message = refused.value.message
    assert message == (
        f"the JWT's issuer (iss) is not {EAST!r} or {WEST!r} (it names 'https://oidc.example/other')"
    )
    assert token.rsplit(".", 1)[1] not in message and token.split(".")[1] not in message
    long = "https://" + "x" * 500
    with pytest.raises(InvalidToken) as refused:
        await auth.tenant(bearer(east.token("k1", iss=long)), "ingest", None)
    assert refused.value.message.endswith(f"(it names {long!r:.{ISSUER_SHOWN}}…)")
    with pytest.raises(InvalidToken, match="the JWT has no 'iss' claim"):
        await auth.tenant(bearer(east.token("k1", iss=None)), "ingest", None)
    numeric = {"iss": 7, "aud": "orasi", "exp": int(time.time()) + 60}  # PyJWT makes none: by hand
    signed = jwt.api_jws.encode(json.dumps(numeric).encode(), east.keys["k1"][0], "ES256", {"kid": "k1"})
    with pytest.raises(InvalidToken, match=r"is not 'https://oidc.*\(it names 7\)"):
        await auth.tenant(bearer(signed), "ingest", None)


async def test_grants_are_per_issuer(files: dict[str, Path], east: Issuer, west: Issuer) -> None:
    """The subject granted forward under east is an ordinary subject under west (same sub, another
    cluster's token): pinned to its tenant there."""
    sections = [section(east, files[EAST], subjects=FORWARD), section(west, files[WEST], tenant_claim="team")]
    auth = Authenticator(Config.model_validate({"jwt": sections, "cache_seconds": 0}))
    await auth.start()
    try:
        gateway = bearer(east.token("k1", **service_account("orasi-gateway", "orasi-gateway")))
        for tenant in ("shop", "web"):
            assert await auth.tenant(gateway, "ingest", tenant) == tenant
        same_subject = bearer(west.token("k1", sub=GATEWAY, team="orasi-gateway"))
        assert await auth.tenant(same_subject, "ingest", None) == "orasi-gateway"
        with pytest.raises(PermissionDenied, match="only a forwarding hop's token"):
            await auth.tenant(same_subject, "ingest", "shop")
        # Both principals' ids name their issuer: one sub, two clusters' service accounts.
        assert (await auth.principal(gateway)).token_id == f"jwt:{GATEWAY}@{EAST}"
        assert (await auth.principal(same_subject)).token_id == f"jwt:{GATEWAY}@{WEST}"
    finally:
        await auth.shutdown()


async def test_each_section_reloads_its_own_file(files: dict[str, Path], east: Issuer, west: Issuer) -> None:
    """West's rotation is west's: its file read again for a token of a kid it lacked; east's file,
    keys and checks untouched."""
    sections = [
        section(east, files[EAST], reload_interval=0.05),
        section(west, files[WEST], reload_interval=0.05, tenant_claim="team"),
    ]
    auth = Authenticator(Config.model_validate({"jwt": sections, "cache_seconds": 0}))
    await auth.start()
    try:
        assert auth.jwt is not None
        east_keys, west_keys = auth.jwt.verifiers[EAST], auth.jwt.verifiers[WEST]
        west.add("w3", "ec")
        west.publish(files[WEST], "w3")
        rotated = bearer(west.token("w3", team="web"))
        deadline = time.monotonic() + 5
        while True:  # taken at west's first check after its reload_interval
            try:
                assert await auth.tenant(rotated, "ingest", None) == "web"
                break
            except InvalidToken as refused:
                assert "west.json" in refused.message, refused.message
                assert time.monotonic() < deadline, "west's new key was not picked up"
        assert (east_keys.reloads, west_keys.reloads) == (0, 1)
        with pytest.raises(InvalidToken, match=r"key id \(kid\).*west\.json"):  # w2 retired
            await auth.tenant(bearer(west.token("w2", team="web")), "ingest", None)
        east_app = bearer(east.token("e2", **service_account("shop", "a")))
        assert await auth.tenant(east_app, "ingest", None) == "shop"
        assert east_keys.reloads == 0
    finally:
        await auth.shutdown()


def test_one_section_is_a_list_of_one_and_each_issuer_has_one_section(tmp_path: Path, east: Issuer) -> None:
    one = section(east, tmp_path / "east.json")
    assert Config.model_validate({"jwt": one}) == Config.model_validate({"jwt": [one]})
    with pytest.raises(ValidationError, match=f"the issuer '{EAST}' has two sections"):
        Config.model_validate({"jwt": [one, {**one, "jwks_file": "other.json"}]})
    with pytest.raises(ValidationError, match="an empty list trusts no issuer"):
        Config.model_validate({"jwt": []})
    with pytest.raises(ValidationError, match=r"one issuer's section \(a mapping\) or a list of them"):
        Config.model_validate({"jwt": "/etc/orasi-jwks/jwks.json"})
    with pytest.raises(ValidationError, match="forward is refused here"):  # each section's own rules
        Config.model_validate({"jwt": [one, {**one, "issuer": WEST, "default_scopes": ["forward"]}]})
