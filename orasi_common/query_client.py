"""`orasi query`: send SQL to a bridge's REST API and print the answer."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx


def _table(columns: list[dict[str, str]], rows: list[list[Any]]) -> str:
    header = [c["name"] for c in columns]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def run_query(
    url: str, sql: str, start: str | None, end: str | None, fmt: str, tenant: str | None, api_key: str | None
) -> int:
    headers = {}
    if tenant:
        headers["X-Orasi-Tenant"] = tenant
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body: dict[str, Any] = {
        "sql": sql,
        "start": start,
        "end": end,
        "format": "json" if fmt == "table" else fmt,
    }
    try:
        response = httpx.post(f"{url.rstrip('/')}/api/v1/query", json=body, headers=headers, timeout=120)
    except httpx.HTTPError as error:
        print(f"orasi query: cannot reach {url}: {error}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text
        print(f"orasi query: HTTP {response.status_code}: {message}", file=sys.stderr)
        return 1
    if fmt == "table":
        answer = response.json()
        print(_table(answer["columns"], answer["rows"]))
        stats = answer["stats"]
        print(f"({stats.get('rows', len(answer['rows']))} rows, {stats.get('elapsed_ms')} ms)")
    else:
        sys.stdout.write(response.text)
    return 0
