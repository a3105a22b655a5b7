"""Lake rows of ``spans`` → Jaeger's JSON model (``model/json`` of the Jaeger query service).

OTLP → Jaeger, as Jaeger's own OTLP translator maps it::

    span                 → {traceID, spanID, flags, operationName, references, startTime (µs),
                            duration (µs), tags, logs, processID, warnings}
    parent_span_id       → reference CHILD_OF (first);  links → references FOLLOWS_FROM
    kind                 → tag span.kind (client, server, producer, consumer, internal;
                            none for UNSPECIFIED)
    status_code          → tag otel.status_code (OK, ERROR; none for UNSET) and, for ERROR,
                            tag error = true; status_message → tag otel.status_description
    scope_name, _version → tags otel.scope.name, otel.scope.version
    trace_state          → tag w3c.tracestate
    events               → logs {timestamp (µs), fields: event = name, then the attributes}
    resource_attributes  → the process {serviceName, tags (all but service.name)}, one per
                            distinct process in the trace: p1, p2, ... in order of first use

Tag types: the lake keeps attribute values as canonical strings (ARCHITECTURE §5) without their
original type, so the type is read back from the canonical form, conservatively: ``true`` and
``false`` are bool, a canonical decimal integer within int64 is int64, a canonical finite float
(with a ``.`` or an exponent) is float64, and everything else is a string (arrays and maps stay
the JSON text Jaeger's translator also writes for them; bytes stay their base64 text, typed string).
A string attribute that looks like a number is therefore shown as a number: the same text, another
type. Ids are written as Jaeger writes them: span ids in 16 hex digits, trace ids in 16 when the
high 64 bits are zero, else without the leading zeros of the high half (``model.TraceID.String``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "name",
    "kind",
    "start_time_unix_nano",
    "duration_ns",
    "status_code",
    "status_message",
    "service_name",
    "attributes",
    "resource_attributes",
    "scope_name",
    "scope_version",
    "events",
    "links",
)
"""The columns of ``spans`` a Jaeger span is made from, in this order."""

SPAN_KINDS = {
    "CLIENT": "client",
    "SERVER": "server",
    "PRODUCER": "producer",
    "CONSUMER": "consumer",
    "INTERNAL": "internal",
}
"""Lake ``kind`` → Jaeger's ``span.kind`` value (the OTLP translator's lower-case names)."""

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def trace_id_text(trace_id: str) -> str:
    """A 32-hex-digit trace id as Jaeger prints it."""
    high, low = trace_id[:-16].lstrip("0"), trace_id[-16:]
    return high + low


def tag(key: str, value: str | None) -> dict[str, Any]:
    """One attribute as a Jaeger tag, typed from its canonical string (module docstring)."""
    if value is None:
        return {"key": key, "type": "string", "value": ""}
    if value in ("true", "false"):
        return {"key": key, "type": "bool", "value": value == "true"}
    if _INTEGER.fullmatch(value) and -(2**63) <= int(value) < 2**63:
        return {"key": key, "type": "int64", "value": int(value)}
    if _FLOAT.fullmatch(value) and ("." in value or "e" in value.lower()) and math.isfinite(float(value)):
        return {"key": key, "type": "float64", "value": float(value)}
    return {"key": key, "type": "string", "value": value}


def _string(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


def _tags(
    attributes: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None,
) -> list[dict[str, Any]]:
    if attributes is None:
        return []
    items = attributes.items() if isinstance(attributes, Mapping) else attributes
    return [tag(key, value) for key, value in items]


def traces(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Jaeger traces from span rows (any order), traces in order of first appearance, spans by
    start time."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["trace_id"], []).append(row)
    return [trace(spans) for spans in grouped.values()]


def trace(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One Jaeger trace from the rows of its spans."""
    processes: dict[tuple[Any, ...], str] = {}
    documents: dict[str, dict[str, Any]] = {}
    spans = []
    for row in sorted(rows, key=lambda r: (r["start_time_unix_nano"] or 0, r["span_id"] or "")):
        resource = dict(row["resource_attributes"] or {})
        service = row["service_name"] or resource.get("service.name") or ""
        process_tags = _tags([(k, v) for k, v in resource.items() if k != "service.name"])
        key = (service, tuple(sorted((t["key"], str(t["value"])) for t in process_tags)))
        process_id = processes.get(key)
        if process_id is None:
            process_id = processes[key] = f"p{len(processes) + 1}"
            documents[process_id] = {"serviceName": service, "tags": process_tags}
        spans.append(span(row, process_id))
    return {
        "traceID": trace_id_text(rows[0]["trace_id"]),
        "spans": spans,
        "processes": documents,
        "warnings": None,
    }


def span(row: Mapping[str, Any], process_id: str) -> dict[str, Any]:
    trace_id = trace_id_text(row["trace_id"])
    references = []
    if row["parent_span_id"]:
        references.append({"refType": "CHILD_OF", "traceID": trace_id, "spanID": row["parent_span_id"]})
    for link in row["links"] or ():
        if link.get("trace_id") and link.get("span_id"):
            references.append(
                {
                    "refType": "FOLLOWS_FROM",
                    "traceID": trace_id_text(link["trace_id"]),
                    "spanID": link["span_id"],
                }
            )
    tags = _tags(row["attributes"])
    kind = SPAN_KINDS.get(row["kind"] or "")
    if kind is not None:
        tags.append(_string("span.kind", kind))
    if row["status_code"] in ("OK", "ERROR"):
        tags.append(_string("otel.status_code", row["status_code"]))
        if row["status_code"] == "ERROR":
            tags.append({"key": "error", "type": "bool", "value": True})
    if row["status_message"]:
        tags.append(_string("otel.status_description", row["status_message"]))
    if row["scope_name"]:
        tags.append(_string("otel.scope.name", row["scope_name"]))
    if row["scope_version"]:
        tags.append(_string("otel.scope.version", row["scope_version"]))
    if row["trace_state"]:
        tags.append(_string("w3c.tracestate", row["trace_state"]))
    logs = [
        {
            "timestamp": (event.get("time_unix_nano") or 0) // 1000,
            "fields": [_string("event", event.get("name") or ""), *_tags(event.get("attributes"))],
        }
        for event in row["events"] or ()
    ]
    document: dict[str, Any] = {
        "traceID": trace_id,
        "spanID": row["span_id"],
        "operationName": row["name"] or "",
        "references": references,
        "startTime": (row["start_time_unix_nano"] or 0) // 1000,
        "duration": max(row["duration_ns"] or 0, 0) // 1000,
        "tags": tags,
        "logs": logs,
        "processID": process_id,
        "warnings": None,
    }
    flags = (row["flags"] or 0) & 0xFF
    if flags:
        document = {"flags": flags, **document}
    return document
