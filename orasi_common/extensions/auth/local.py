"""`orasi up --auth`: the tokens of the all-in-one, in SQLite under its data directory.

    <data-dir>/tokens.db                the token store (`orasi tokens ... --store sqlite:///<data-dir>/tokens.db`)
    <data-dir>/auth/forwarding.token    the agent's and the gateway's token (mode 0600)

``with_auth`` adds to the three services' configurations one `auth` extension on that store,
names it on every receiver (agent, gateway, bridge) and on the bridge's query API (REST, Jaeger,
registry, Flight SQL), and gives the agent's and the gateway's exporters the forwarding token's
file (``exporters/bearer.py``): each hop proves itself to the next as any outside sender must.

``prepare`` (blocking, before the services start) creates the tables, the forwarding token (tenant
``orasi-up``, scope forward, which lets a hop ingest as the tenant its batches name) unless the
file's token is still valid and holds forward (one made before that scope, with ingest and admin,
is replaced and revoked), and — on the first start only, when the store holds no
other token — the first token: tenant ``default``, scopes admin, ingest and query, returned to be
printed once. Its secret is kept nowhere: lost, it is revoked and another is made with
`orasi tokens`. Both creations are audited (``token.create``), as the command's are.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from orasi_common.telemetry.audit import audit

FIRST_TENANT = "default"
FIRST_SCOPES = ("admin", "ingest", "query")
FORWARDING_TENANT = "orasi-up"
FORWARDING_SCOPES = ("forward",)
FORWARDING_DESCRIPTION = "orasi up: agent -> gateway -> bridge forwarding"
FIRST_DESCRIPTION = "orasi up: the first token"
ACTOR = "orasi-up"


def store_uri(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'tokens.db'}"


def forwarding_file(data_dir: Path) -> Path:
    return data_dir / "auth" / "forwarding.token"


def with_auth(documents: MutableMapping[str, dict[str, Any]], data_dir: Path) -> None:
    """Turn auth on in the chain's ``documents`` (agent, gateway, bridge; see the module docstring)."""
    checked_by = {"authenticator": "auth"}
    for document in documents.values():
        document.setdefault("extensions", {})["auth"] = {"store": store_uri(data_dir)}
        document["service"]["extensions"] = ["auth", *(document["service"].get("extensions") or [])]
        for receiver in document["receivers"].values():
            receiver["auth"] = dict(checked_by)
        for exporter in document["exporters"].values():
            if "endpoint" in exporter or "resolver" in exporter:  # a forwarding exporter, not the lake
                exporter["auth"] = {"bearer_token_file": str(forwarding_file(data_dir))}
    documents["bridge"]["extensions"]["query_api"]["auth"] = dict(checked_by)


def _write_secret(path: Path, text: str) -> None:
    """``text`` in ``path``, readable by its owner only, replaced atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def prepare(data_dir: Path) -> str | None:
    """Make the store ready (see the module docstring); the first token when it was just made."""
    from orasi_common.extensions.auth.store import TokenStore, id_of  # SQLAlchemy only with --auth

    store = TokenStore(store_uri(data_dir))
    try:
        store.migrate()
        path = forwarding_file(data_dir)
        held = path.read_text().strip() if path.exists() else None
        principal = store.verify(held) if held is not None else None
        if principal is None or not principal.scopes >= set(FORWARDING_SCOPES):
            token, info = store.create(FORWARDING_TENANT, FORWARDING_SCOPES, FORWARDING_DESCRIPTION)
            _write_secret(path, token)
            audit("token.create", actor=ACTOR, tenant=info.tenant, token_id=info.id, scopes=list(info.scopes))
            if held is not None:
                store.revoke(id_of(held))
        if any(t.description != FORWARDING_DESCRIPTION for t in store.list()):
            return None
        first, info = store.create(FIRST_TENANT, FIRST_SCOPES, FIRST_DESCRIPTION)
        audit("token.create", actor=ACTOR, tenant=info.tenant, token_id=info.id, scopes=list(info.scopes))
        return first
    finally:
        store.close()


def banner_lines(data_dir: Path, first: str | None, agent_http: str, query_url: str) -> list[str]:
    """What `orasi up --auth` prints after its ready banner: the first token once, and how to use
    tokens."""
    store = store_uri(data_dir)
    lines = [f"  {'auth:':24} on: every receiver and the query API take bearer tokens ({store})"]
    if first is None:
        lines.append(f"  {'':24} tokens: orasi tokens list --store {store}")
        return lines
    scopes = " ".join(FIRST_SCOPES)
    return [
        *lines,
        f"  {'first token:':24} tenant {FIRST_TENANT}, scopes {scopes}; shown this once, keep it:",
        f"  {'':24} {first}",
        f"  {'send with it:':24} OTEL_EXPORTER_OTLP_HEADERS='authorization=Bearer {first}'",
        f"  {'':24} curl {agent_http}/v1/traces -H 'Authorization: Bearer <token>' ...",
        f'  {"query with it:":24} orasi query --api-key <token> "SELECT count(*) FROM spans"',
        f"  {'':24} curl {query_url}/api/v1/query -H 'Authorization: Bearer <token>' ...",
        f"  {'more tokens:':24} orasi tokens create --store {store} --tenant T --scope ingest",
    ]


__all__ = ["banner_lines", "forwarding_file", "prepare", "store_uri", "with_auth"]
