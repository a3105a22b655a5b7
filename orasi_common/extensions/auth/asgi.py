"""Bearer tokens in front of an ASGI app (the bridge's REST, Jaeger and registry API).

``TokenGate`` checks each request that ``scope_of(method, path)`` gives a scope to, before the app
sees it: a refusal is answered here (401 or 403, with the ``WWW-Authenticate`` bearer challenge
of ``status.challenge``; JSON ``{"error": message}``), an accepted request reaches the app with
its tenant header set to the token's tenant (and any ``X-API-Key`` removed), so the app's own
tenant handling applies unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from orasi_common.errors import OrasiError
from orasi_common.extensions.auth.authenticator import Authenticator
from orasi_common.transport import status

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]
ScopeOf = Callable[[str, str], str | None]


class TokenGate:
    def __init__(self, app: App, auth: Authenticator, scope_of: ScopeOf, tenant_header: str) -> None:
        self._app = app
        self._auth = auth
        self._scope_of = scope_of
        self._tenant_header = tenant_header.lower().encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        needed = (
            self._scope_of(scope.get("method", ""), scope.get("path", ""))
            if scope["type"] == "http"
            else None
        )
        if needed is None:
            await self._app(scope, receive, send)
            return
        found: dict[bytes, str] = {}
        for key, value in scope["headers"]:
            found.setdefault(key, value.decode("latin-1"))
        try:
            tenant = await self._auth.tenant(
                found.get(b"authorization"), needed, found.get(self._tenant_header)
            )
        except OrasiError as error:
            await _refuse(send, error)
            return
        kept = [(k, v) for k, v in scope["headers"] if k not in (self._tenant_header, b"x-api-key")]
        await self._app({**scope, "headers": [*kept, (self._tenant_header, tenant.encode())]}, receive, send)


async def _refuse(send: Any, error: OrasiError) -> None:
    body = json.dumps({"error": error.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.encode(), value.encode()) for key, value in status.http_headers(error)]
    await send({"type": "http.response.start", "status": status.http_status(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})
