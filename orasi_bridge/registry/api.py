"""The Confluent Schema Registry REST API, under ``/registry`` on the bridge's REST port.

==============================================================  =============================
request                                                         answer
==============================================================  =============================
``GET /subjects`` (``?deleted=true``)                           ``["spans.checkout", …]``
``POST /subjects/{s}/versions`` ``{"schema", "schemaType"}``    ``{"id"}``
``GET /subjects/{s}/versions``                                  ``[1, 2, …]``
``GET /subjects/{s}/versions/{v|latest}``                       ``{"subject", "version",
                                                                "id", "schemaType", "schema"}``
``GET /subjects/{s}/versions/{v|latest}/schema``                the schema document itself
``POST /subjects/{s}`` (lookup)                                 as a version
``DELETE /subjects/{s}`` (``?permanent=true``)                  ``[versions]``
``GET /schemas/ids/{id}``                                       ``{"schema", "schemaType"}``
``GET /schemas/types``                                          ``["JSON"]``
``POST /compatibility/subjects/{s}/versions/{v|latest}``        ``{"is_compatible",
(``?verbose=true``; without a version: every version)            "messages"}``
``GET|PUT|DELETE /config``, ``/config/{s}``                     ``{"compatibilityLevel"}`` /
                                                                ``{"compatibility"}``
``GET|PUT /mode``                                               ``{"mode"}``
``GET /observed/{s}``                                           ``{"subject", "attributes":
                                                                {key: [types]},
                                                                "resource_attributes": …}``
==============================================================  =============================

Answers are ``application/vnd.schemaregistry.v1+json``; request bodies are read as JSON
whatever their declared type. Errors are ``{"error_code", "message"}`` (codes in ``errors``);
the tenant comes from ``X-Orasi-Tenant`` or the API key, as for queries. ``GET /config/{s}``
answers the level that applies to the subject (Confluent's ``defaultToGlobal=true``).

Beyond Confluent's API: ``/config`` and ``/config/{s}`` also carry ``validation`` (``off``,
``flag``, ``drop_attribute``, ``reject``: what ingest does with the subject's violations, see
``validate``; a PUT may set it alone), and ``/observed/{s}`` lists what ingest has seen.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from orasi_bridge.registry.errors import UNAVAILABLE_CODE, BodyTooLarge, RegistryError
from orasi_bridge.registry.registry import SCHEMA_TYPE, Registry
from orasi_bridge.registry.schema import ATTRIBUTE_SECTIONS
from orasi_bridge.registry.store import Version
from orasi_common.errors import OrasiError, PermanentError, Unavailable

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
PREFIX = "/registry"

P = ParamSpec("P")
TenantOf = Callable[[Request], str]


def _answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def error_answer(error: OrasiError) -> Response:
    """``{"error_code", "message"}`` with the status of ``error``."""
    if isinstance(error, RegistryError):
        challenge = getattr(error, "challenge", None)
        headers = {"WWW-Authenticate": challenge} if challenge else None
        return _answer({"error_code": error.code, "message": error.message}, error.status, headers=headers)
    if isinstance(error, Unavailable):
        retry = str(max(1, round(error.retry_after or 1)))
        return _answer(
            {"error_code": UNAVAILABLE_CODE, "message": error.message}, 503, headers={"Retry-After": retry}
        )
    status = getattr(error, "status", None) or (400 if isinstance(error, PermanentError) else 500)
    return _answer({"error_code": status, "message": error.message}, status)


def _errors(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    @functools.wraps(handler)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except OrasiError as error:
            return error_answer(error)

    return guarded


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter (``true``/``True``: the Python client sends the latter)."""
    return request.query_params.get(name, "false").lower() == "true"


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, read up to ``limit`` bytes (413 past it, 400 if not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"the request body ({int(declared)} bytes) is over the registry's limit of {limit} bytes"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the request body is over the registry's limit of {limit} bytes")
    try:
        return json.loads(body)
    except ValueError as error:
        raise _BadRequest(f"the request body is not valid JSON: {error}") from None


class _BadRequest(PermanentError):
    status = 400


async def _object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_json(request, limit)
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    return body


def _version(subject: str, version: Version) -> dict[str, Any]:
    return {
        "subject": subject,
        "version": version.version,
        "id": version.id,
        "schemaType": SCHEMA_TYPE,
        "schema": version.text,
    }


def router(registry: Registry, tenant_of: TenantOf, limit: int) -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=["schema registry"])

    @api.get("", summary="The registry's root (an empty object, as Confluent's)")
    async def root() -> Response:
        return _answer({})

    @api.get("/subjects", summary="The tenant's subjects")
    @_errors
    async def subjects(request: Request) -> Response:
        return _answer(await registry.subjects(tenant_of(request), _flag(request, "deleted")))

    @api.get("/subjects/{subject}/versions", summary="A subject's version numbers")
    @_errors
    async def versions(request: Request, subject: str) -> Response:
        found = await registry.versions(tenant_of(request), subject, _flag(request, "deleted"))
        return _answer([v.version for v in found])

    @api.get("/subjects/{subject}/versions/{version}", summary="One version (or latest) of a subject")
    @_errors
    async def version(request: Request, subject: str, version: str) -> Response:
        found = await registry.version(tenant_of(request), subject, version, _flag(request, "deleted"))
        return _answer(_version(subject, found))

    @api.get("/subjects/{subject}/versions/{version}/schema", summary="The schema document of a version")
    @_errors
    async def version_schema(request: Request, subject: str, version: str) -> Response:
        found = await registry.version(tenant_of(request), subject, version)
        return Response(found.text, media_type=MEDIA_TYPE)

    @api.post("/subjects/{subject}/versions", summary="Register a schema under a subject")
    @_errors
    async def register(request: Request, subject: str) -> Response:
        body = await _object(request, limit)
        registered = await registry.register(tenant_of(request), subject, body)
        return _answer({"id": registered.id})

    @api.post("/subjects/{subject}", summary="Look a schema up in a subject")
    @_errors
    async def lookup(request: Request, subject: str) -> Response:
        body = await _object(request, limit)
        found = await registry.lookup(tenant_of(request), subject, body, _flag(request, "deleted"))
        return _answer(_version(subject, found))

    @api.delete("/subjects/{subject}", summary="Delete a subject (soft; ?permanent=true after that)")
    @_errors
    async def delete(request: Request, subject: str) -> Response:
        permanent = _flag(request, "permanent")
        return _answer(await registry.delete_subject(tenant_of(request), subject, permanent))

    @api.get("/schemas/ids/{schema_id}", summary="A schema by its id")
    @_errors
    async def schema(request: Request, schema_id: int) -> Response:
        text = await registry.schema_by_id(tenant_of(request), schema_id)
        return _answer({"schema": text, "schemaType": SCHEMA_TYPE})

    @api.get("/schemas/types", summary="The schema types this registry holds")
    async def types() -> Response:
        return _answer([SCHEMA_TYPE])

    async def _check(request: Request, subject: str, version: str) -> Response:
        body = await _object(request, limit)
        messages = await registry.check(tenant_of(request), subject, version, body)
        answer: dict[str, Any] = {"is_compatible": not messages, "messages": messages}
        return _answer(answer)

    @api.post(
        "/compatibility/subjects/{subject}/versions/{version}", summary="Test a schema against a version"
    )
    @_errors
    async def compatible(request: Request, subject: str, version: str) -> Response:
        return await _check(request, subject, version)

    @api.post("/compatibility/subjects/{subject}/versions", summary="Test a schema against every version")
    @_errors
    async def compatible_all(request: Request, subject: str) -> Response:
        return await _check(request, subject, "all")

    async def _settings(request: Request, subject: str | None) -> Response:
        tenant = tenant_of(request)
        level = await registry.compatibility(tenant, subject)
        validation = await registry.validation(tenant, subject)
        return _answer({"compatibilityLevel": level, "validation": validation})

    async def _set(request: Request, subject: str | None) -> Response:
        """``{"compatibility"}`` and/or ``{"validation"}`` (an extra field of this registry's)."""
        body = await _object(request, limit)
        tenant = tenant_of(request)
        answer: dict[str, str] = {}
        if "validation" in body:
            answer["validation"] = await registry.set_validation(tenant, subject, body["validation"])
        if "compatibility" in body or not answer:
            level = body.get("compatibility")
            answer["compatibility"] = await registry.set_compatibility(tenant, subject, level)
        return _answer(answer)

    @api.get("/config", summary="The tenant's compatibility level and validation mode")
    @_errors
    async def config(request: Request) -> Response:
        return await _settings(request, None)

    @api.put("/config", summary="Set the tenant's compatibility level and/or validation mode")
    @_errors
    async def set_config(request: Request) -> Response:
        return await _set(request, None)

    @api.get("/config/{subject}", summary="The compatibility level and validation that apply to a subject")
    @_errors
    async def subject_config(request: Request, subject: str) -> Response:
        return await _settings(request, subject)

    @api.put("/config/{subject}", summary="Set a subject's compatibility level and/or validation mode")
    @_errors
    async def set_subject_config(request: Request, subject: str) -> Response:
        return await _set(request, subject)

    @api.get("/observed/{subject}", summary="The attribute keys and original types ingest has seen")
    @_errors
    async def observed(request: Request, subject: str) -> Response:
        seen = await registry.observed(tenant_of(request), subject)
        sections = {section: seen.get(section, {}) for section in ATTRIBUTE_SECTIONS}
        return _answer({"subject": subject, **sections})

    @api.delete("/config", summary="Remove the tenant's level (the configured default applies)")
    @_errors
    async def delete_config(request: Request) -> Response:
        level = await registry.delete_compatibility(tenant_of(request), None)
        return _answer({"compatibilityLevel": level})

    @api.delete("/config/{subject}", summary="Remove a subject's level (the tenant's applies)")
    @_errors
    async def delete_subject_config(request: Request, subject: str) -> Response:
        level = await registry.delete_compatibility(tenant_of(request), subject)
        return _answer({"compatibilityLevel": level})

    @api.get("/mode", summary="The tenant's mode (READWRITE or READONLY)")
    @_errors
    async def mode(request: Request) -> Response:
        return _answer({"mode": await registry.mode(tenant_of(request))})

    @api.put("/mode", summary="Set the tenant's mode")
    @_errors
    async def set_mode(request: Request) -> Response:
        body = await _object(request, limit)
        return _answer({"mode": await registry.set_mode(tenant_of(request), body.get("mode"))})

    return api


def mount(app: FastAPI, registry: Registry, tenant_of: TenantOf, limit: int) -> None:
    """Serve the registry on ``app`` under ``/registry``."""
    app.include_router(router(registry, tenant_of, limit))


__all__ = ["MEDIA_TYPE", "PREFIX", "error_answer", "mount", "read_json", "router"]
