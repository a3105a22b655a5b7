"""The bridge's REST API: ``POST /api/v1/query`` (ARCHITECTURE §6), the schema registry under
``/registry``, the Jaeger query API under ``/api`` (``orasi_bridge.jaeger``), OpenAPI docs at /docs,
the web console at ``/`` (``orasi_bridge.console``)."""

from __future__ import annotations

import hmac
import re
import time
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orasi_bridge import console
from orasi_bridge.api import encoding
from orasi_bridge.api.config import Config
from orasi_bridge.federation import Federation
from orasi_bridge.federation.coordinator import FEDERATION_ID, federation_id_of
from orasi_bridge.jaeger import api as jaeger_api
from orasi_bridge.lake.schema import TABLES
from orasi_bridge.query.engine import QueryEngine
from orasi_bridge.registry import api as registry_api
from orasi_bridge.registry import errors as registry_errors
from orasi_bridge.registry.registry import Registry
from orasi_common.errors import InvalidToken, OrasiError, PermanentError, PermissionDenied, Unauthenticated
from orasi_common.pdata import DEFAULT_TENANT
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport import status

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="One SELECT over spans, logs and metric_points.", min_length=1)
    start: str | int | None = Field(
        default=None, description="RFC 3339 or Unix ns; bounds `time` (default: end - 1 h)."
    )
    end: str | int | None = Field(default=None, description="RFC 3339 or Unix ns (default: now).")
    format: Literal["json", "arrow", "csv"] = Field(default="json", description="Answer format.")
    scope: Literal["local", "global"] = Field(
        default="local",
        description="local: this bridge's lake; global: every region's bridge (federation, README).",
    )


class Unauthorized(Unauthenticated):
    """No API key."""


class UnknownKey(Unauthorized, InvalidToken):
    """An API key that is not configured."""


class Forbidden(PermissionDenied):
    """The key may not read the tenant asked for."""


def _error(code: int, message: str, headers: list[tuple[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code, headers=dict(headers or ()))


def resolve_tenant(config: Config, tenant: str | None, authorization: str | None, api_key: str | None) -> str:
    """The tenant a request reads: its API key's when keys are configured, else the header's."""
    key = api_key or (
        authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
    )
    if config.api_keys:
        if not key:
            raise Unauthorized("an API key is required (Authorization: Bearer KEY or X-API-Key)")
        owner = next((t for k, t in config.api_keys.items() if hmac.compare_digest(k, key)), None)
        if owner is None:
            raise UnknownKey("the API key is not known")
        if tenant is not None and tenant != owner:
            raise Forbidden(f"this API key may not read tenant {tenant!r}")
        return owner
    tenant = tenant or DEFAULT_TENANT
    if not _TENANT.fullmatch(tenant):
        raise PermanentError("X-Orasi-Tenant must be 1-64 letters, digits, '_', '.' or '-'")
    return tenant


def _registry_change(method: str, path: str) -> bool:
    """Whether a registry request writes: PUT and DELETE, and POST of a subject's versions (its
    other POSTs, lookups and compatibility checks, read)."""
    if not path.startswith(registry_api.PREFIX):
        return False
    return method in ("PUT", "DELETE") or (method == "POST" and path.endswith("/versions"))


def create_app(
    config: Config,
    engine: QueryEngine,
    metrics: Metrics,
    registry: Registry | None = None,
    federation: Federation | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Orasi bridge query API",
        version="1",
        description="Read-only SQL over the telemetry lake (spans, logs, metric_points).",
    )
    duration = metrics.http_request_duration

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        handler = getattr(route, "path", "other")
        duration.labels("query", handler, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    @app.post(
        "/api/v1/query",
        summary="Run one SELECT over the caller's tenant's lake tables",
        responses={
            400: {"description": "Refused or failed query"},
            401: {},
            403: {},
            429: {"description": "The tenant's concurrent queries are at its rate limit (Retry-After)"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": QueryRequest.model_json_schema()}},
            }
        },
    )
    async def query(
        request: Request,
        x_orasi_tenant: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        try:
            # The body is JSON whatever its declared type, so `curl -d '{...}'` works too.
            body = QueryRequest.model_validate_json(await request.body())
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
            )
            return _error(400, f"invalid query request: {problems}")
        try:
            tenant = resolve_tenant(config, x_orasi_tenant, authorization, x_api_key)
            if body.scope == "global":
                if federation is None:
                    raise PermanentError("this bridge does not serve global queries")
                credentials = {"authorization": authorization or "", "x-api-key": x_api_key or ""}
                result = await federation.execute(
                    body.sql, tenant, body.start, body.end, body.format == "arrow", credentials
                )
            else:
                # a global query's regional part names it: audited with its federation_id
                part_of = federation_id_of(request.headers.get(FEDERATION_ID))
                result = await engine.execute(
                    body.sql,
                    tenant,
                    body.start,
                    body.end,
                    as_arrow=body.format == "arrow",
                    audit_fields={"federation_id": part_of} if part_of else None,
                )
        except OrasiError as error:  # 401 and 403 with their WWW-Authenticate challenge
            return _error(status.http_status(error), error.message, status.http_headers(error))
        if body.format == "arrow":
            return Response(
                encoding.to_arrow_stream(result), media_type="application/vnd.apache.arrow.stream"
            )
        if body.format == "csv":
            return Response(encoding.to_csv(result), media_type="text/csv; charset=utf-8")
        return Response(encoding.to_json(result), media_type="application/json")

    @app.get("/api/v1/tables", summary="The lake tables and their columns")
    async def tables() -> dict[str, Any]:
        return {
            "tables": [
                {"name": name, "columns": [{"name": f.name, "type": str(f.type)} for f in schema]}
                for name, schema in TABLES.items()
            ]
        }

    def request_tenant(request: Request) -> str:
        headers = request.headers
        tenant, key = headers.get("x-orasi-tenant"), headers.get("x-api-key")
        return resolve_tenant(config, tenant, headers.get("authorization"), key)

    if registry is not None:

        def tenant_of(request: Request) -> str:
            try:
                return request_tenant(request)
            except Unauthorized as error:
                raise registry_errors.Unauthorized(error.message, status.challenge(error)) from None
            except Forbidden as error:
                raise registry_errors.Forbidden(error.message, status.challenge(error)) from None

        registry_api.mount(app, registry, tenant_of, config.registry.max_request_bytes)

        @app.middleware("http")
        async def audit_registry(request: Request, call_next: Any) -> Response:
            """Audit each registry change asked by an identified tenant (``registry.<method>``)."""
            response: Response = await call_next(request)
            if _registry_change(request.method, request.url.path):
                try:
                    tenant = request_tenant(request)
                except OrasiError:  # refused before it could change anything
                    return response
                engine.audit.record(
                    f"registry.{request.method.lower()}",
                    tenant,
                    path=request.url.path,
                    outcome="ok" if response.status_code < 400 else f"http {response.status_code}",
                )
            return response

    jaeger_api.mount(app, engine, request_tenant)
    console.mount(app)

    return app
