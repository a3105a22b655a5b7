"""The admin HTTP app: /healthz, /readyz, /metrics and /debug/pipelines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orasi_common.telemetry.metrics import Metrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AdminApp:
    """``ready`` says whether the service accepts data; ``describe`` draws its pipelines."""

    def __init__(
        self,
        service: str,
        metrics: Metrics,
        ready: Callable[[], bool],
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._ready = ready
        self._describe = describe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            code, content_type, body = 405, "application/json", _json({"error": "use GET"})
        elif path == "/healthz":
            code, content_type, body = (
                200,
                "application/json",
                _json({"status": "ok", "service": self._service}),
            )
        elif path == "/readyz":
            ready = self._ready()
            code = 200 if ready else 503
            content_type, body = "application/json", _json({"ready": ready, "service": self._service})
        elif path == "/metrics":
            # In a thread: collectors read /proc and statvfs at scrape time, and a large
            # registry takes milliseconds to render.
            body = await asyncio.to_thread(generate_latest, self._metrics.registry)
            code, content_type = 200, CONTENT_TYPE_LATEST
        elif path == "/debug/pipelines":
            code, content_type, body = 200, "application/json", _json(self._describe())
        else:
            code, content_type = 404, "application/json"
            body = _json({"error": f"no such path {path}; try /healthz, /readyz, /metrics, /debug/pipelines"})
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})


def _json(document: Any) -> bytes:
    return json.dumps(document, indent=1).encode()
