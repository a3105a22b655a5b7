"""Checking a request's bearer token: who it is (tenant), and whether it may (scope).

    authorization: "Bearer orasi_<id>_<secret>"  → Principal(tenant, scopes)
    none, malformed, unknown or revoked          → Unauthenticated   (401 / UNAUTHENTICATED)
    valid, without the scope asked for           → PermissionDenied  (403 / PERMISSION_DENIED)
    valid, but a tenant header naming another    → PermissionDenied

The tenant of an authenticated request is the token's: a tenant header (``X-Orasi-Tenant``) may
be sent, but must name the same tenant. One exception, for forwarding hops (an agent or gateway
carries many tenants' batches): a token holding both ``ingest`` and ``admin`` may ingest as the
tenant its header names. Reads are always the token's tenant's.

Answers are kept ``cache_seconds`` (by a hash of the token, never the token), so that a request
costs no database round trip and no scrypt; the cache holds at most ``CACHE_ENTRIES`` answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from orasi_common.errors import PermissionDenied, Unauthenticated
from orasi_common.extensions.auth.config import Config, Principal

if TYPE_CHECKING:
    from orasi_common.extensions.auth.store import TokenStore

CACHE_ENTRIES = 10_000


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` value (None when there is none)."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


class Authenticator:
    """The `auth` extension's checks, for one component (it owns its store connection)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._store: TokenStore | None = None
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()

    async def start(self) -> None:
        if self._store is None:
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
            assert self._store is not None, "Authenticator.start() was not called"
            found = await asyncio.to_thread(self._store.verify, token)
            self._cache[key] = (now + self._config.cache_seconds, found)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        if found is None:
            raise Unauthenticated("the bearer token is not known, or was revoked")
        return found

    async def tenant(self, authorization: str | None, scope: str, tenant_header: str | None) -> str:
        """The request's tenant: its token's, once the token is valid and holds ``scope`` and the
        tenant header (if any) names the same tenant."""
        principal = await self.principal(authorization)
        if scope not in principal.scopes:
            raise PermissionDenied(
                f"this token may not {scope} (its scopes: {', '.join(sorted(principal.scopes))})"
            )
        if tenant_header and tenant_header != principal.tenant:
            if scope == "ingest" and "admin" in principal.scopes:
                return tenant_header  # a forwarding hop's token
            raise PermissionDenied(f"this token is tenant {principal.tenant!r}'s, not {tenant_header!r}'s")
        return principal.tenant
