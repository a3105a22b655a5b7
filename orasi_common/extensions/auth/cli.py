"""`orasi tokens`: the `auth` extension's bearer tokens, in its database.

    orasi tokens create --tenant acme --scope ingest --scope query [--description TEXT]
    orasi tokens list [--tenant acme]
    orasi tokens revoke ID                     (the id `list` shows, or the whole token)

``--store`` is the extension's `store` (`postgresql://…` or `sqlite:///path`; default
$ORASI_TOKEN_STORE); `orasi up --auth` keeps its tokens in `sqlite:///<data-dir>/tokens.db`.
`create` prints the token once, on its own line: only its salted hash is kept, so it cannot be
shown again. `create` and `revoke` are audited (``token.create|revoke``:
the token's id, never its secret; ``orasi_common.telemetry.audit``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from orasi_common.extensions.auth.config import SCOPES
from orasi_common.telemetry.audit import audit, local_user
from orasi_common.transport.headers import incoming_tenant


def add_parser(commands: Any) -> argparse.ArgumentParser:
    tokens: argparse.ArgumentParser = commands.add_parser(
        "tokens", help="create, list and revoke bearer tokens (the auth extension)"
    )
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", default=os.environ.get("ORASI_TOKEN_STORE"), help="token database ($ORASI_TOKEN_STORE)"
    )
    create = actions.add_parser("create", parents=[common], help="a new token (printed once)")
    create.add_argument("--tenant", required=True, help="the tenant the token writes and reads as")
    create.add_argument("--scope", action="append", choices=SCOPES, required=True, help="repeat for several")
    create.add_argument("--description", default="", help="what the token is for")
    listing = actions.add_parser("list", parents=[common], help="the tokens (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("id", help="the token's id (or the token)")
    return tokens


def run(args: argparse.Namespace) -> int:
    if not args.store:
        print("orasi tokens: set --store or $ORASI_TOKEN_STORE", file=sys.stderr)
        return 2
    from orasi_common.extensions.auth.store import TokenStore, id_of  # SQLAlchemy only when run

    store = TokenStore(args.store)
    try:
        store.migrate()
        if args.action == "create":
            token, info = store.create(incoming_tenant(args.tenant), tuple(args.scope), args.description)
            print(
                f"created token {info.id} (tenant {info.tenant}, scopes {' '.join(info.scopes)}); "
                "it is shown once:",
                file=sys.stderr,
            )
            print(token)
            audit(
                "token.create",
                actor=local_user(),
                tenant=info.tenant,
                token_id=info.id,
                scopes=sorted(info.scopes),
            )
        elif args.action == "list":
            for info in store.list(args.tenant):
                print(json.dumps(info.__dict__))
        elif not store.revoke(args.id):
            print(f"orasi tokens: no active token {args.id!r}", file=sys.stderr)
            return 1
        else:
            audit("token.revoke", actor=local_user(), token_id=id_of(args.id))
        return 0
    finally:
        store.close()
