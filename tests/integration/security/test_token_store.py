"""The `auth` extension's token store, each test on both of its databases (PostgreSQL, a schema of
the test's own in the catalog's database; and SQLite, as `orasi up --auth` keeps it): tokens stored
as salted hashes, verified, listed, revoked; the Authenticator's answers (401 / 403), its tenant
rule and its cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from integration.registry.conftest import pg_uri
from orasi_common.errors import PermissionDenied, Unauthenticated
from orasi_common.extensions.auth import Authenticator, Config
from orasi_common.extensions.auth.store import TokenStore, engine_url

__all__ = ["pg_uri"]


@pytest.fixture(params=["postgresql", "sqlite"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tokens.db'}"
    found: str = request.getfixturevalue("pg_uri")
    return found


def test_tokens_are_kept_as_salted_hashes_and_verified(uri: str) -> None:
    store = TokenStore(uri)
    assert store.migrate() == [1]
    assert store.migrate() == []  # once
    token, info = store.create("acme", ("query", "ingest"), "ci")
    other, _ = store.create("acme", ("query",))
    assert token.startswith(f"orasi_{info.id}_") and info.scopes == ("ingest", "query")
    principal = store.verify(token)
    assert principal is not None and principal.tenant == "acme" and principal.scopes == {"ingest", "query"}
    secret = token.split("_", 2)[2]
    raw = sa.create_engine(engine_url(uri))
    with raw.connect() as connection:
        rows = connection.execute(sa.text("SELECT salt, hash FROM auth_tokens")).all()
    raw.dispose()
    assert len({salt for salt, _ in rows}) == 2  # a salt per token
    assert all(secret.encode() not in bytes(h) and secret.encode() not in bytes(s) for s, h in rows)
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # a wrong secret
    assert store.verify("orasi_0000000000000000_x") is None  # an unknown id
    assert store.verify("not a token") is None
    assert [t.id for t in store.list("acme")] == [info.id, other.split("_")[1]]
    assert store.revoke(info.id) and not store.revoke(info.id)
    assert store.verify(token) is None
    assert store.list()[0].revoked_at is not None
    with pytest.raises(ValueError, match="scopes must be some of"):
        store.create("acme", ("everything",))
    store.close()


async def test_the_authenticator_answers_401_and_403(uri: str) -> None:
    store = TokenStore(uri)
    store.migrate()
    both, _ = store.create("acme", ("ingest", "query"))
    reader, _ = store.create("acme", ("query",))
    hop, _ = store.create("infra", ("forward",))
    admin_hop, _ = store.create("infra", ("ingest", "admin"))
    auth = Authenticator(Config(store=uri, cache_seconds=0))
    await auth.start()
    try:
        assert await auth.tenant(f"Bearer {both}", "ingest", None) == "acme"
        assert await auth.tenant(f"bearer {both}", "query", "acme") == "acme"
        for missing in (None, "", "Basic abc", "Bearer "):
            with pytest.raises(Unauthenticated, match="bearer token is required"):
                await auth.tenant(missing, "query", None)
        with pytest.raises(Unauthenticated, match="not known, or was revoked"):
            await auth.tenant("Bearer orasi_0123456789abcdef_nope", "query", None)
        with pytest.raises(PermissionDenied, match="may not ingest"):
            await auth.tenant(f"Bearer {reader}", "ingest", None)
        with pytest.raises(PermissionDenied, match="tenant 'acme''s, not 'globex''s"):
            await auth.tenant(f"Bearer {both}", "query", "globex")
        with pytest.raises(PermissionDenied, match="not 'globex'"):
            await auth.tenant(f"Bearer {both}", "ingest", "globex")
        # A forwarding hop's token (forward) ingests as the tenant its header names (its own without
        # one) and reads nothing; ingest + admin does not forward.
        assert await auth.tenant(f"Bearer {hop}", "ingest", "globex") == "globex"
        assert await auth.tenant(f"Bearer {hop}", "ingest", None) == "infra"
        with pytest.raises(PermissionDenied, match="may not query"):
            await auth.tenant(f"Bearer {hop}", "query", "globex")
        with pytest.raises(PermissionDenied, match="only a forwarding hop's token, scope forward"):
            await auth.tenant(f"Bearer {admin_hop}", "ingest", "globex")
        store.revoke(both.split("_")[1])
        with pytest.raises(Unauthenticated):  # no cache: revoked at once
            await auth.tenant(f"Bearer {both}", "query", None)
    finally:
        await auth.shutdown()
        store.close()


async def test_answers_are_cached_for_cache_seconds(uri: str) -> None:
    store = TokenStore(uri)
    store.migrate()
    token, info = store.create("acme", ("query",))
    auth = Authenticator(Config(store=uri, cache_seconds=3600))
    await auth.start()
    try:
        assert await auth.tenant(f"Bearer {token}", "query", None) == "acme"
        store.revoke(info.id)
        assert await auth.tenant(f"Bearer {token}", "query", None) == "acme"  # still cached
    finally:
        await auth.shutdown()
        store.close()
