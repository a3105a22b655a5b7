"""`orasi schema`: the bridge's schema registry from the command line (its REST API, over HTTP).

    orasi schema list                                  the tenant's subjects
    orasi schema get spans.checkout [--version 2]      a version's schema (latest by default)
    orasi schema get --id 7                            a schema by its id
    orasi schema register spans.checkout FILE          register (FILE or - for stdin)
    orasi schema check spans.checkout FILE             compatible with the latest? (exit 1 if not)
    orasi schema config [SUBJECT] [--set LEVEL]        show or set a compatibility level
                        [--validation MODE]            and/or what ingest does with violations
    orasi schema observe spans.checkout [--as-schema]  the attribute keys and types ingest saw,
                                                       or a schema of them to start a contract

``--url`` is the bridge's REST API (default http://127.0.0.1:8080, as `orasi query`); the
tenant and API key are sent as for queries. This module talks HTTP only: it imports no service.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

LEVELS = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
VALIDATION = ("off", "flag", "drop_attribute", "reject")
SECTIONS = ("attributes", "resource_attributes")
_SCHEMA_TYPES = {"bytes": "string"}  # observed type → the schema's (base64 text); "empty" has none


class Failed(Exception):
    """What the command prints on stderr before exiting 1."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    schema: argparse.ArgumentParser = commands.add_parser(
        "schema", help="list, get, register and check schemas (bridge registry)"
    )
    actions = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8080", help="the bridge's REST API")
    common.add_argument("--tenant", help="tenant (X-Orasi-Tenant)")
    common.add_argument("--api-key", default=os.environ.get("ORASI_API_KEY"), help="API key ($ORASI_API_KEY)")
    listing = actions.add_parser("list", parents=[common], help="the subjects")
    listing.add_argument("--deleted", action="store_true", help="include soft-deleted subjects")
    get = actions.add_parser("get", parents=[common], help="a subject's version, or a schema by id")
    get.add_argument("subject", nargs="?", help="e.g. spans.checkout")
    get.add_argument("--version", default="latest", help="a version number or latest (default)")
    get.add_argument("--id", type=int, help="a schema id instead of a subject")
    for name, text in (("register", "register a schema"), ("check", "test a schema's compatibility")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("subject", help="e.g. spans.checkout")
        action.add_argument("file", help="the JSON Schema document (- for stdin)")
        if name == "check":
            action.add_argument("--version", default="latest", help="against this version (default latest)")
    config = actions.add_parser("config", parents=[common], help="show or set a compatibility level")
    config.add_argument("subject", nargs="?", help="a subject (default: the tenant's level)")
    config.add_argument("--set", type=str.upper, choices=LEVELS, metavar="LEVEL", help=", ".join(LEVELS))
    config.add_argument("--validation", choices=VALIDATION, help="what ingest does with violations")
    observe = actions.add_parser("observe", parents=[common], help="the attribute keys and types seen")
    observe.add_argument("subject", help="e.g. spans.checkout")
    observe.add_argument(
        "--as-schema", action="store_true", help="print a schema of them (a contract to start from)"
    )
    return schema


def run(args: argparse.Namespace) -> int:
    try:
        print(_ACTIONS[args.action](args))
    except Failed as error:
        print(f"orasi schema {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx  # only for this command

    headers = {"Accept": MEDIA_TYPE}
    if args.tenant:
        headers["X-Orasi-Tenant"] = args.tenant
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    content = None
    if body is not None:
        headers["Content-Type"] = MEDIA_TYPE
        content = json.dumps(body).encode()
    url = f"{args.url.rstrip('/')}/registry{path}"
    try:
        response = httpx.request(method, url, content=content, headers=headers, timeout=60)
    except httpx.HTTPError as error:
        raise Failed(f"cannot reach {args.url}: {error}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        message = answer.get("message") if isinstance(answer, dict) else response.text
        code = answer.get("error_code") if isinstance(answer, dict) else None
        raise Failed(f"HTTP {response.status_code}" + (f" (error {code})" if code else "") + f": {message}")
    return answer


def _document(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as error:
        raise Failed(f"cannot read {path}: {error}") from None
    try:
        json.loads(text)
    except ValueError as error:
        raise Failed(f"{path} is not JSON: {error}") from None
    return text


def _list(args: argparse.Namespace) -> str:
    subjects = _request(args, "GET", "/subjects" + ("?deleted=true" if args.deleted else ""))
    return "\n".join(subjects) if subjects else "(no subjects)"


def _get(args: argparse.Namespace) -> str:
    if args.id is not None:
        return _pretty(_request(args, "GET", f"/schemas/ids/{args.id}")["schema"])
    if not args.subject:
        raise Failed("name a subject (e.g. spans.checkout) or give --id")
    found = _request(args, "GET", f"/subjects/{args.subject}/versions/{args.version}")
    return f"# {found['subject']} version {found['version']} (id {found['id']})\n{_pretty(found['schema'])}"


def _register(args: argparse.Namespace) -> str:
    body = {"schema": _document(args.file), "schemaType": "JSON"}
    registered = _request(args, "POST", f"/subjects/{args.subject}/versions", body)
    found = _request(args, "POST", f"/subjects/{args.subject}", body)
    return f"{args.subject}: version {found['version']}, id {registered['id']}"


def _check(args: argparse.Namespace) -> str:
    body = {"schema": _document(args.file), "schemaType": "JSON"}
    path = f"/compatibility/subjects/{args.subject}/versions/{args.version}?verbose=true"
    answer = _request(args, "POST", path, body)
    if not answer["is_compatible"]:
        raise Failed("incompatible:\n" + "\n".join(f"  {m}" for m in answer.get("messages", [])))
    return f"{args.subject}: compatible"


def _config(args: argparse.Namespace) -> str:
    path = "/config" + (f"/{args.subject}" if args.subject else "")
    body = {"compatibility": args.set} if args.set else {}
    if args.validation:
        body["validation"] = args.validation
    if body:
        answer = _request(args, "PUT", path, body)
        return "\n".join(str(answer[key]) for key in ("compatibility", "validation") if key in answer)
    answer = _request(args, "GET", path)
    validation = answer.get("validation", "off")
    return str(answer["compatibilityLevel"]) + (f"\nvalidation: {validation}" if validation != "off" else "")


def _observe(args: argparse.Namespace) -> str:
    seen = _request(args, "GET", f"/observed/{args.subject}")
    if not args.as_schema:
        return json.dumps(seen, indent=2, ensure_ascii=False)
    return json.dumps(as_schema(seen), indent=2, ensure_ascii=False)


def as_schema(seen: dict[str, Any]) -> dict[str, Any]:
    """A schema (in the registry's subset) admitting what was seen: each key with the types it
    had, every other key allowed, nothing required; tighten it before registering."""
    properties: dict[str, Any] = {}
    for section in SECTIONS:
        keys: dict[str, Any] = {}
        for key, kinds in sorted(seen.get(section, {}).items()):
            names = sorted({_SCHEMA_TYPES.get(kind, kind) for kind in kinds if kind != "empty"})
            keys[key] = {} if not names else {"type": names[0] if len(names) == 1 else names}
        if keys:
            properties[section] = {"type": "object", "properties": keys}
    return {"type": "object", "properties": properties}


def _pretty(text: str) -> str:
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)


_ACTIONS = {
    "list": _list,
    "get": _get,
    "register": _register,
    "check": _check,
    "config": _config,
    "observe": _observe,
}

__all__ = ["add_parser", "as_schema", "run"]
