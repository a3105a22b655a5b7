"""The audit trail: who did what, one JSON line per event on the logger ``orasi.audit``.

    audit("query", tenant=..., **sql_fields(sql), rows=..., duration_ms=...)
        → {"ts", "level": "info", "logger": "orasi.audit", "event": "query", "actor", ..., "msg"}

Events: ``query`` (the bridge's query engine), ``registry.<change>`` (the schema registry's
writes), ``token.create|revoke``, ``settings.set|delete``, ``dr.promote``, ``lake.restore``,
``catalog.restore``. ``actor`` is who asked: the caller's token (``token:<id>``, set by the `auth`
extension for the request being served, ``ACTOR``), or the local user of a command. Never a
secret: a token's id, never its secret; SQL text is kept, with its SHA-256 (``sql_fields``).

Where the lines go: into the process's JSON log stream (stderr) when ``configure_logging`` set
it up (the services, whatever their log level); otherwise (the ``orasi`` commands) on stderr by a
handler of their own. With ``$ORASI_AUDIT_LOG`` set, the lines are appended to that file instead,
in any process. The bridge also keeps its own events in the lake's ``audit`` table.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import sys
from contextvars import ContextVar
from typing import Any

from orasi_common.telemetry.logs import JsonFormatter

LOGGER = logging.getLogger("orasi.audit")
LOGGER.setLevel(logging.INFO)  # audited whatever the service's log level

ENV = "ORASI_AUDIT_LOG"

ACTOR: ContextVar[str | None] = ContextVar("orasi_audit_actor", default=None)
"""Who the request being served speaks for (``token:<id>``), when an authenticator said so."""

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_route: tuple[str, str] | None = None  # (kind, path) of the handler installed on LOGGER
_handler: logging.Handler | None = None


class _Stderr(logging.Handler):
    """Writes to the current ``sys.stderr`` (not the one at creation)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def sql_fields(sql: str) -> dict[str, str]:
    """A query's audited text and its SHA-256 (hex)."""
    return {"sql": sql, "sql_hash": hashlib.sha256(sql.encode()).hexdigest()}


def local_user() -> str:
    """The actor of a command run on this machine: ``user:<login>``."""
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def audit(event: str, **fields: Any) -> dict[str, Any]:
    """Write one audit line (``event``, ``actor`` — ``ACTOR``'s unless given — then ``fields``)
    and return its fields. ``fields`` must not carry secrets, nor a LogRecord attribute's name."""
    clash = _RESERVED.intersection(fields)
    if clash:
        raise ValueError(f"audit fields may not be named {', '.join(sorted(clash))}")
    entry = {"event": event, "actor": fields.pop("actor", None) or ACTOR.get(), **fields}
    _ensure_route()
    LOGGER.info("Audit event.", extra=entry)
    return entry


def _ensure_route() -> None:
    """Install the handler where the lines must go now (module docstring)."""
    global _route, _handler
    path = os.environ.get(ENV, "")
    if path:
        wanted = ("file", path)
    elif any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers):
        wanted = ("stream", "")
    else:
        wanted = ("stderr", "")
    if wanted == _route:
        return
    if _handler is not None:
        LOGGER.removeHandler(_handler)
        _handler.close()
        _handler = None
    LOGGER.propagate = wanted[0] != "file"
    if wanted[0] != "stream":
        _handler = logging.FileHandler(path, encoding="utf-8") if path else _Stderr()
        _handler.setFormatter(JsonFormatter())
        LOGGER.addHandler(_handler)
    _route = wanted
