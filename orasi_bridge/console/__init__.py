"""The web console at ``/`` on the bridge's REST port: one page (``static/``, shipped as package
data; nothing is fetched from elsewhere at run time) that reads the lake only through the public
APIs, ``POST /api/v1/query`` and the Jaeger API (``/api/traces/{id}``).

Views (the page's ``#hash``): ``#sql`` a SQL editor with the result table, timing and a CSV
download; ``#services`` request rate, error rate and p95 latency per service over time, as SVG
charts drawn from SQL over ``spans``; ``#trace/<id>`` the waterfall of one trace with each span's
attributes and events; ``#logs`` log search (SQL over ``logs`` with a text filter). The API key
or tenant typed into the page is kept in the browser's localStorage and sent as headers.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_CACHE = "no-cache"  # the page is small; a new bridge version is seen at once


def asset(name: str) -> bytes:
    """One file of ``static/`` (read from the installed package)."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def mount(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets at ``/console/<name>``."""

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(asset("index.html"), headers={"Cache-Control": _CACHE})

    @app.get("/console/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        kind = ASSETS.get(name)
        if kind is None:
            return Response(status_code=404)
        return Response(asset(name), media_type=kind, headers={"Cache-Control": _CACHE})


__all__ = ["mount"]
