"""The Jaeger query API (the HTTP API of Jaeger's query service, ``/api/...``) over the lake.

So that Grafana's Jaeger data source and the Jaeger UI read Orasi's traces::

    GET /api/services                          {"data": [service, ...], "total": n, ...}
    GET /api/services/{service}/operations     {"data": [operation name, ...], "total": n, ...}
    GET /api/operations?service=&spanKind=     {"data": [{"name", "spanKind"}, ...], "total": n, ...}
    GET /api/traces?service=&operation=&tags=&tag=&minDuration=&maxDuration=&start=&end=&limit=
                   &lookback=&traceID=         {"data": [trace, ...], "total": 0, ...}
    GET /api/traces/{traceID}?start=&end=      {"data": [trace], ...}; 404 when not found

Every answer is Jaeger's envelope ``{"data", "total", "limit", "offset", "errors"}`` with the
values Jaeger's handler writes (``total`` is set for services and operations only; ``errors`` is
null or ``[{"code", "msg"}]``); traces are ``convert``'s. Bad parameters are a 400 with Jaeger's
message, an unknown trace id a 404 ``trace not found``.

Time: ``start``/``end`` are Unix microseconds, as in Jaeger. A search without ``start`` looks back
from ``end`` (default now) over ``lookback`` (``1h``, ``2d``, ...; Jaeger's units plus ``d``) or,
without it, Jaeger's default of 2 days, so Grafana's searches (which may send no times) find
recent traces; services and operations are those of the same default 2 days. A trace by id is
looked up over all time (the trace index finds its row groups) unless ``start``/``end`` narrow it.
A search reads its window back from the end in slices (5 minutes, then doubling) and stops once
``limit`` traces are found, so a common tag reads the newest row groups only, not the whole window;
the result is that of one query over the window (newest latest-matching span first).

Everything is SQL over the lake through the one query engine, for the tenant of the request
(``X-Orasi-Tenant`` / API key, as ``POST /api/v1/query``). String values are written into the
SQL as escaped literals; ids are checked to be hex first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orasi_bridge.jaeger import convert
from orasi_bridge.query.engine import QueryEngine
from orasi_common.errors import OrasiError, PermanentError
from orasi_common.transport import status

DEFAULT_LOOKBACK_US = 2 * 24 * 3600 * 10**6
"""Jaeger's default trace search lookback (``defaultTraceQueryLookbackDuration``): 2 days."""
DEFAULT_LIMIT = 100
ALL_TIME = (0, 2**62)  # ns: a trace by id, when no start/end narrows it
FIRST_SLICE_NS = 5 * 60 * 10**9
"""A search reads its window back from the end in slices, the first this long (module docstring)."""

TenantOf = Callable[[Request], str]
"""A request → its tenant; raises Unauthenticated or PermissionDenied when its key or tenant is
refused (answered 401 / 403 with their WWW-Authenticate challenge, ``status.http_headers``)."""

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h|d)")
_UNITS_US = {"ns": 1e-3, "us": 1, "µs": 1, "μs": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6, "d": 86400e6}
_KINDS = {value: key for key, value in convert.SPAN_KINDS.items()}


class BadParameter(PermanentError):
    """A query parameter Jaeger would refuse (400)."""


class TraceNotFound(PermanentError):
    """No span of the trace in the window (404)."""


def envelope(
    data: Any, total: int = 0, errors: list[dict[str, Any]] | None = None, code: int = 200
) -> JSONResponse:
    return JSONResponse(
        {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}, status_code=code
    )


def _failure(code: int, message: str) -> JSONResponse:
    return envelope(None, errors=[{"code": code, "msg": message}], code=code)


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def parse_trace_id(text: str) -> str:
    """A Jaeger trace id (1-32 hex digits, as Jaeger accepts them) → the lake's 32 lowercase digits."""
    if not _HEX.fullmatch(text):
        raise BadParameter(f"cannot parse traceID param: {text!r} is not 1 to 32 hex digits")
    return text.lower().rjust(32, "0")


def parse_duration_us(text: str, name: str) -> int:
    """A Go duration (``1.5s``, ``250ms``, ``1h30m``; and ``d``) in microseconds."""
    position, total = 0, 0.0
    negative = text.startswith("-")
    body = text[1:] if negative else text
    for match in _DURATION.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS_US[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise BadParameter(f"unable to parse param '{name}': time: invalid duration {text!r}")
    return int(-total if negative else total)


def _integer(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadParameter(f"unable to parse param '{name}': {value!r} is not an integer") from None


def mount(app: FastAPI, engine: QueryEngine, tenant_of: TenantOf) -> None:
    """Add the Jaeger routes to ``app``."""

    async def rows(request: Request, sql: str, window: tuple[int, int]) -> list[dict[str, Any]]:
        tenant = tenant_of(request)
        result = await engine.execute(sql, tenant, window[0], window[1])
        names = [name for name, _ in result.columns]
        return [dict(zip(names, row, strict=True)) for row in result.rows or ()]

    def recent() -> tuple[int, int]:
        now = time.time_ns()
        return now - DEFAULT_LOOKBACK_US * 1000, now

    def answer(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> JSONResponse:
            try:
                response: JSONResponse = await handler(request)
                return response
            except TraceNotFound as error:
                return _failure(404, error.message)
            except OrasiError as error:
                failure = _failure(status.http_status(error), error.message)
                failure.headers.update(dict(status.http_headers(error)))  # Retry-After, WWW-Authenticate
                return failure

        return run

    @answer
    async def services(request: Request) -> JSONResponse:
        found = await rows(request, "SELECT DISTINCT service_name AS s FROM spans ORDER BY 1", recent())
        names = [row["s"] for row in found if row["s"] is not None]
        return envelope(names, len(names))

    @answer
    async def operations_legacy(request: Request) -> JSONResponse:
        service = request.path_params["service"]
        sql = f"SELECT DISTINCT name AS n FROM spans WHERE service_name = {literal(service)} ORDER BY 1"
        names = [row["n"] for row in await rows(request, sql, recent()) if row["n"] is not None]
        return envelope(names, len(names))

    @answer
    async def operations(request: Request) -> JSONResponse:
        service = request.query_params.get("service", "")
        if not service:
            raise BadParameter("parameter 'service' is required")
        kind = request.query_params.get("spanKind", "")
        where = f"service_name = {literal(service)}"
        if kind:
            if kind not in _KINDS:
                raise BadParameter(f"unsupported span kind {kind!r} (one of {', '.join(sorted(_KINDS))})")
            where += f" AND kind = {literal(_KINDS[kind])}"
        sql = f"SELECT DISTINCT name AS n, kind AS k FROM spans WHERE {where} ORDER BY 1, 2"
        found = [
            {"name": row["n"], "spanKind": convert.SPAN_KINDS.get(row["k"] or "", "")}
            for row in await rows(request, sql, recent())
        ]
        return envelope(found, len(found))

    async def fetch(request: Request, trace_ids: list[str], window: tuple[int, int]) -> list[dict[str, Any]]:
        listed = ", ".join(literal(trace_id) for trace_id in trace_ids)
        sql = f"SELECT {', '.join(convert.SPAN_COLUMNS)} FROM spans WHERE trace_id IN ({listed})"
        return convert.traces(await rows(request, sql, window))

    async def newest(request: Request, where: str, limit: int, window: tuple[int, int]) -> list[str]:
        """The ``limit`` traces whose latest span matching ``where`` started last, newest first:
        searched slice by slice back from the window's end (slices doubling from ``FIRST_SLICE_NS``),
        stopping once ``limit`` traces are found. A trace first found in a slice has its latest
        match there (``time`` is the start's µs), so the order is that of one query over the window."""
        found: dict[str, None] = {}
        start, high, width = window[0], window[1], FIRST_SLICE_NS
        while high >= start and len(found) < limit:
            low = max(start, (high - width) // 1000 * 1000 + 1000)
            sql = (
                f"SELECT trace_id FROM spans WHERE {where} GROUP BY trace_id "
                f"ORDER BY max(start_time_unix_nano) DESC LIMIT {limit + len(found)}"
            )
            for row in await rows(request, sql, (low, high)):
                if row["trace_id"] and len(found) < limit:
                    found.setdefault(row["trace_id"])
            high, width = low - 1, width * 2
        return list(found)

    @answer
    async def trace(request: Request) -> JSONResponse:
        trace_id = parse_trace_id(request.path_params["trace_id"])
        window = _window(request, ALL_TIME)
        found = await fetch(request, [trace_id], window)
        if not found:
            raise TraceNotFound("trace not found")
        return envelope(found)

    @answer
    async def search(request: Request) -> JSONResponse:
        params = request.query_params
        ids = [parse_trace_id(value) for value in params.getlist("traceID")]
        end_us = _integer(request, "end")
        end_ns = time.time_ns() if end_us is None else end_us * 1000
        lookback = params.get("lookback", "")
        lookback_us = (
            parse_duration_us(lookback, "lookback")
            if lookback and lookback != "custom"
            else DEFAULT_LOOKBACK_US
        )
        start_us = _integer(request, "start")
        window = (end_ns - lookback_us * 1000 if start_us is None else start_us * 1000, end_ns)
        if ids:
            found = await fetch(request, ids, window)
            missing = set(ids) - {parse_trace_id(t["traceID"]) for t in found}
            errors = [
                {"msg": "trace not found", "traceID": convert.trace_id_text(i)} for i in sorted(missing)
            ]
            return envelope(found, errors=errors or None)
        service = params.get("service", "")
        if not service:
            raise BadParameter("parameter 'service' is required")
        limit = _integer(request, "limit") or DEFAULT_LIMIT
        if limit < 0:
            raise BadParameter("unable to parse param 'limit': must not be negative")
        terms = [f"service_name = {literal(service)}"]
        if params.get("operation"):
            terms.append(f"name = {literal(params['operation'])}")
        durations = {}
        for name, op in (("minDuration", ">="), ("maxDuration", "<=")):
            if params.get(name):
                durations[name] = parse_duration_us(params[name], name)
                terms.append(f"duration_ns {op} {durations[name] * 1000}")
        if len(durations) == 2 and durations["maxDuration"] < durations["minDuration"]:
            raise BadParameter("'maxDuration' should be greater than 'minDuration'")
        terms += [_tag_term(key, value) for key, value in _tags(request).items()]
        ids = await newest(request, " AND ".join(terms), limit, window)
        if not ids:
            return envelope([])
        found = await fetch(request, ids, window)
        order = {trace_id: n for n, trace_id in enumerate(ids)}
        found.sort(key=lambda t: order.get(parse_trace_id(t["traceID"]), len(order)))
        return envelope(found)

    app.add_api_route("/api/services", services, methods=["GET"], summary="Jaeger: services")
    app.add_api_route(
        "/api/services/{service}/operations", operations_legacy, methods=["GET"], summary="Jaeger: operations"
    )
    app.add_api_route("/api/operations", operations, methods=["GET"], summary="Jaeger: operations with kinds")
    app.add_api_route("/api/traces", search, methods=["GET"], summary="Jaeger: search traces")
    app.add_api_route("/api/traces/{trace_id}", trace, methods=["GET"], summary="Jaeger: one trace")


def _window(request: Request, default: tuple[int, int]) -> tuple[int, int]:
    start_us, end_us = _integer(request, "start"), _integer(request, "end")
    return (
        default[0] if start_us is None else start_us * 1000,
        default[1] if end_us is None else end_us * 1000,
    )


def _tags(request: Request) -> dict[str, str]:
    """``tag=key:value`` (repeated) and ``tags={"key": "value"}``, as Jaeger's query parser reads them."""
    found: dict[str, str] = {}
    for simple in request.query_params.getlist("tag"):
        key, sep, value = simple.partition(":")
        if not sep:
            raise BadParameter(f"malformed 'tag' parameter, expecting key:value, received: {simple}")
        found[key] = value
    for text in request.query_params.getlist("tags"):
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise BadParameter(f"malformed 'tags' parameter, cannot unmarshal JSON: {error}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise BadParameter("malformed 'tags' parameter, expecting a JSON object of strings")
        found.update(parsed)
    return found


def _tag_term(key: str, value: str) -> str:
    """A span matches a tag when a span attribute, a resource attribute, or the tag the span
    becomes (span.kind, error, otel.status_code, otel.status_description) has that value."""
    if key == "span.kind":
        return f"kind = {literal(_KINDS.get(value, value.upper()))}"
    if key == "error":
        return "status_code = 'ERROR'" if value == "true" else "status_code <> 'ERROR'"
    if key == "otel.status_code":
        return f"status_code = {literal(value)}"
    if key == "otel.status_description":
        return f"status_message = {literal(value)}"
    k, v = literal(key), literal(value)
    # map_extract (the key's values, as a list) measured fastest over Arrow maps: about 0.6x the
    # time of map[key] = v and of list_contains(map_entries(map), {key, value}).
    return (
        f"(list_contains(map_extract(attributes, {k}), {v})"
        f" OR list_contains(map_extract(resource_attributes, {k}), {v}))"
    )
