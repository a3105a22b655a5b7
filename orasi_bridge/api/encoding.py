"""Query results as JSON, CSV and Arrow IPC."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
import uuid
from typing import Any

import pyarrow as pa

from orasi_bridge.query.engine import QueryResult


def jsonable(value: Any) -> Any:
    """A DuckDB Python value as a JSON value (times as RFC 3339, bytes as base64)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def to_json(result: QueryResult) -> bytes:
    document = {
        "columns": [{"name": name, "type": kind} for name, kind in result.columns],
        "rows": [[jsonable(v) for v in row] for row in result.rows or ()],
        "stats": result.stats,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def to_csv(result: QueryResult) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in result.columns])
    for row in result.rows or ():
        writer.writerow(
            [
                json.dumps(jsonable(v), ensure_ascii=False)
                if isinstance(v, dict | list | tuple)
                else jsonable(v)
                for v in row
            ]
        )
    return out.getvalue().encode()


def to_arrow_stream(result: QueryResult) -> bytes:
    assert result.arrow is not None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.arrow.schema) as stream:
        stream.write_table(result.arrow)
    return bytes(sink.getvalue().to_pybytes())
