"""Where bearer tokens live: one table, ``auth_tokens``, in PostgreSQL or SQLite.

    auth_tokens  id (PRIMARY KEY, 16 hex digits, public), tenant, scopes (space-separated),
                 salt, hash (scrypt of the secret), created_at, revoked_at (NULL: active),
                 description
    auth_migrations  version, applied_at

A token is ``orasi_<id>_<secret>``: the id finds the row, the secret (32 random bytes, URL-safe
base64) is checked against the row's salted scrypt hash with a constant-time comparison. The
secret itself is never stored or logged: ``create`` returns it once.

SQL goes through SQLAlchemy Core (a dependency already, as the Iceberg catalog's layer), which
speaks both databases; the registry's SQL layer (``orasi_bridge.registry.store``) lives in a
service package the shared package may not import. Every method blocks: callers use a thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from orasi_common.errors import Unavailable
from orasi_common.extensions.auth.config import SCOPES, Principal

PREFIX = "orasi_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

_metadata = sa.MetaData()
TOKENS = sa.Table(
    "auth_tokens",
    _metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),
    sa.Column("salt", sa.LargeBinary, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("revoked_at", sa.String(40), nullable=True),
    sa.Column("description", sa.String(200), nullable=False, default=""),
)
MIGRATIONS_TABLE = sa.Table(
    "auth_migrations",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)
MIGRATIONS: tuple[tuple[int, tuple[sa.Table, ...]], ...] = ((1, (TOKENS,)),)
"""Numbered migrations, applied once each, in order: the tables each creates."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None
    description: str


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def engine_url(uri: str) -> str:
    """A SQLAlchemy URL for ``postgresql://…`` (psycopg 3) or ``sqlite:///path``."""
    if uri.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + uri.split("://", 1)[1]
    if uri.startswith(("postgresql+psycopg://", "sqlite:///")):
        return uri
    raise ValueError(f"the token store must be postgresql:// or sqlite:///, not {uri.split(':')[0]}")


def id_of(token_or_id: str) -> str:
    """A token's id, given the id or the whole token (never to be logged)."""
    return token_or_id[len(PREFIX) :].split("_", 1)[0] if token_or_id.startswith(PREFIX) else token_or_id


class TokenStore:
    def __init__(self, uri: str) -> None:
        self._engine = sa.create_engine(engine_url(uri), pool_pre_ping=True, pool_size=2)

    def close(self) -> None:
        self._engine.dispose()

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet (safe when several processes start together:
        tables are created if missing, and a version another process recorded is skipped)."""
        applied = []
        try:
            with self._engine.begin() as connection:
                MIGRATIONS_TABLE.create(connection, checkfirst=True)
                done = set(connection.scalars(sa.select(MIGRATIONS_TABLE.c.version)))
                for number, tables in MIGRATIONS:
                    if number in done:
                        continue
                    for table in tables:
                        table.create(connection, checkfirst=True)
                    connection.execute(MIGRATIONS_TABLE.insert().values(version=number, applied_at=_now()))
                    applied.append(number)
        except sa.exc.IntegrityError:
            return self.migrate()  # another process applied it meanwhile
        except sa.exc.OperationalError as error:
            raise Unavailable(f"the token store cannot be reached: {error.orig}", 1.0) from None
        return applied

    def create(self, tenant: str, scopes: tuple[str, ...], description: str = "") -> tuple[str, TokenInfo]:
        """A new token of ``tenant`` with ``scopes``: (the secret token, shown once; its row)."""
        unknown = set(scopes) - set(SCOPES)
        if not scopes or unknown:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
        token_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
        info = TokenInfo(token_id, tenant, tuple(sorted(set(scopes))), _now(), None, description)
        with self._engine.begin() as connection:
            connection.execute(
                TOKENS.insert().values(
                    id=token_id,
                    tenant=tenant,
                    scopes=" ".join(info.scopes),
                    salt=salt,
                    hash=_hash(secret, salt),
                    created_at=info.created_at,
                    description=description,
                )
            )
        return f"{PREFIX}{token_id}_{secret}", info

    def list(self, tenant: str | None = None) -> list[TokenInfo]:
        query = sa.select(TOKENS).order_by(TOKENS.c.created_at)
        if tenant is not None:
            query = query.where(TOKENS.c.tenant == tenant)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            TokenInfo(r.id, r.tenant, tuple(r.scopes.split()), r.created_at, r.revoked_at, r.description)
            for r in rows
        ]

    def revoke(self, token_id: str) -> bool:
        """Revoke the token ``token_id`` (its id, or the whole token); whether one was active."""
        token_id = id_of(token_id)
        with self._engine.begin() as connection:
            result = connection.execute(
                TOKENS.update()
                .where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        return bool(result.rowcount)

    def verify(self, token: str) -> Principal | None:
        """The principal of an active ``token``, None when it is malformed, unknown or revoked."""
        if not token.startswith(PREFIX) or token.count("_") < 2:
            return None
        token_id, secret = token[len(PREFIX) :].split("_", 1)
        try:
            with self._engine.connect() as connection:
                row = connection.execute(sa.select(TOKENS).where(TOKENS.c.id == token_id)).first()
        except sa.exc.OperationalError as error:
            raise Unavailable(f"the token store cannot be reached: {error.orig}", 1.0) from None
        if row is None or row.revoked_at is not None:
            _hash(secret, b"\0" * 16)  # as slow as a real check: no timing hint about ids
            return None
        if not hmac.compare_digest(_hash(secret, row.salt), row.hash):
            return None
        return Principal(row.id, row.tenant, frozenset(row.scopes.split()))
