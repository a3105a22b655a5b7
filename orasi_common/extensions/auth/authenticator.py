"""Checking a request's bearer token: who it is (tenant), and whether it may (scope).

    authorization: "Bearer orasi_<id>_<secret>"  → Principal(tenant, scopes)   (the token store)
    authorization: "Bearer <JWT>"                → Principal(tenant claim, scopes of its subject
                                                              or claim or default, all of the
                                                              section of its issuer)   (``jwks.py``)
    none                                         → Unauthenticated   (401 / UNAUTHENTICATED)
    malformed, unknown, revoked or expired       → InvalidToken      (401 / UNAUTHENTICATED)
    valid, without the scope asked for           → PermissionDenied  (403 / PERMISSION_DENIED)
    valid, but a tenant header naming another    → PermissionDenied   (ingest with ``forward``: that tenant)

The tenant of an authenticated request is the token's: a tenant header (``X-Orasi-Tenant``, also
an OTAP batch's HPACK headers) may be sent, but must name the same tenant. One exception, for
forwarding hops (an agent or gateway carries many tenants' batches, each naming its tenant in that
header): a token holding ``forward`` ingests as the tenant its header names (its own without one).
``forward`` is granted to the hops alone: an `orasi tokens` token made with it, or a JWT of a
subject listed with it under its issuer's ``jwt.subjects`` (never ``default_scopes``). Reads are always the
token's tenant's; ``forward`` reads nothing.

A token of a JWT's shape is checked by the `jwt` section of its issuer, when `jwt` is set (one
section or a list, one per issuer); any other by the store. Answers
(a principal, or why not) are kept ``cache_seconds`` (by a hash of the token, never the token; a
JWT's never past its ``exp``), so that a request costs no database round trip, scrypt or signature
check; the cache holds at most ``CACHE_ENTRIES`` answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from orasi_common.errors import InvalidToken, PermissionDenied, Unauthenticated
from orasi_common.extensions.auth.config import AuthSettings, Config, Principal, extension_config
from orasi_common.extensions.auth.jwks import JwtIssuers, looks_like_jwt
from orasi_common.telemetry.audit import ACTOR

if TYPE_CHECKING:
    from orasi_common.extensions.auth.store import TokenStore
    from orasi_common.pipeline.component import Settings

CACHE_ENTRIES = 10_000


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` value (None when there is none)."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def authenticator(settings: Settings, auth: AuthSettings | None) -> Authenticator | None:
    """The Authenticator of a component whose config says ``auth: {authenticator: <id>}`` (None
    without ``auth``); ValueError when the id is not a listed `auth` extension."""
    if auth is None:
        return None
    return Authenticator(extension_config(settings.extensions, auth, settings.id), settings.logger)


class Authenticator:
    """The `auth` extension's checks, for one component (it owns its store connection)."""

    def __init__(self, config: Config, logger: logging.Logger | None = None) -> None:
        self._config = config
        self._store: TokenStore | None = None
        self.jwt = JwtIssuers(config.jwt, logger) if config.jwt is not None else None
        self._cache: OrderedDict[bytes, tuple[float, Principal | str]] = OrderedDict()

    async def start(self) -> None:
        if self.jwt is not None:
            await self.jwt.start()
        if self._store is None and self._config.store is not None:
            # Imported here: SQLAlchemy costs every service's start-up, and only token users need it.
            from orasi_common.extensions.auth.store import TokenStore

            self._store = TokenStore(self._config.store)
            await asyncio.to_thread(self._store.migrate)

    async def shutdown(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await asyncio.to_thread(store.close)

    async def principal(self, authorization: str | None) -> Principal:
        """Who the request's token speaks for; Unauthenticated when it speaks for no one."""
        token = bearer(authorization)
        if token is None:
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found, seconds = await self._verify(token)
            self._cache[key] = (now + seconds, found)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        if isinstance(found, str):
            raise InvalidToken(found)
        return found

    async def _verify(self, token: str) -> tuple[Principal | str, float]:
        """(the token's principal, or why it has none; how many seconds the answer holds)."""
        seconds = self._config.cache_seconds
        if self.jwt is not None and looks_like_jwt(token):
            try:
                principal, expires = await self.jwt.verify(token)
            except Unauthenticated as error:
                return error.message, seconds
            return principal, min(seconds, expires - time.time())
        if self._config.store is None:
            return "the bearer token is not a JWT, the only kind this server accepts", seconds
        assert self._store is not None, "Authenticator.start() was not called"
        found = await asyncio.to_thread(self._store.verify, token)
        return (found if found is not None else "the bearer token is not known, or was revoked"), seconds

    async def tenant(self, authorization: str | None, scope: str, tenant_header: str | None) -> str:
        """The request's tenant: its token's, once the token is valid and holds ``scope`` and the
        tenant header (if any) names the same tenant; the header's, for a forwarding hop's ingest."""
        principal = await self.principal(authorization)
        forwards = scope == "ingest" and "forward" in principal.scopes
        if scope not in principal.scopes and not forwards:
            raise PermissionDenied(
                f"this token may not {scope} (its scopes: {', '.join(sorted(principal.scopes)) or 'none'})"
            )
        if tenant_header and tenant_header != principal.tenant and not forwards:
            hint = (
                " (only a forwarding hop's token, scope forward, ingests as another)"
                if scope == "ingest"
                else ""
            )
            raise PermissionDenied(
                f"this token is tenant {principal.tenant!r}'s, not {tenant_header!r}'s{hint}"
            )
        ACTOR.set(f"token:{principal.token_id}")  # the audit trail's actor of this request
        return (tenant_header or principal.tenant) if forwards else principal.tenant
