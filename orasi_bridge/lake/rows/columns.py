"""What both forms' converters share: the rows of each table from its columns, and the column
helpers (enum names, ids as hex, times, lists of children).

A converter reads each column from its form (``otlp``: the native field scan; ``otap``: the
Arrow tables) and hands them to :func:`span_rows`, :func:`log_rows` or :func:`point_rows`,
which derive the rest (durations, ``time``, enum names, tenant and regions) the one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_bridge.lake import schema
from orasi_common.pdata.canonical import VALUE_TYPE_NAMES
from orasi_common.pdata.envelope import PRODUCED_IN
from orasi_common.pdata.otap.common import Keys
from orasi_common.pdata.otap.wire import binary_buffers
from orasi_common.pdata.protoscan import I64, U8, Buffer, hex_strings

SPAN_KIND: dict[int, str] = {v: k.removeprefix("SPAN_KIND_") for k, v in trace_pb2.Span.SpanKind.items()}
STATUS: dict[int, str] = {v: k.removeprefix("STATUS_CODE_") for k, v in trace_pb2.Status.StatusCode.items()}
TEMPORALITY: dict[int, str] = {
    v: k.removeprefix("AGGREGATION_TEMPORALITY_") for k, v in metrics_pb2.AggregationTemporality.items()
}


def enum_names(codes: I64, names: dict[int, str]) -> pa.Array:
    """Enum values by name (unknown values as their number)."""
    as_int32 = codes.astype(np.int32)
    unique, inverse = np.unique(as_int32, return_inverse=True)
    labels = pa.array([names.get(int(u)) or str(int(u)) for u in unique], pa.string())
    return labels.take(pa.array(inverse.reshape(-1)))


def micros(nanos: I64) -> pa.Array:
    """The ``time`` column of Unix nanoseconds."""
    return pa.array(nanos // 1000).cast(schema.TIME)


def constant(value: str, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=object), pa.string())


def regions(columns: Mapping[str, pa.Array], lake_region: str, n: int) -> dict[str, pa.Array]:
    """``region``: where each row was produced, its resource's ``cloud.region`` (``PRODUCED_IN``)
    or, without one, the lake's region; ``lake_region``: the region of the lake storing it."""
    produced = columns.get(PRODUCED_IN)
    stored = constant(lake_region, n)
    return {
        "region": stored if produced is None else pc.fill_null(produced, lake_region),
        "lake_region": stored,
    }


def hex_ids(arr: pa.Array | None, n: int) -> pa.Array:
    """Lowercase hex of a binary id column (null where null, empty or absent)."""
    if arr is None:
        return pa.nulls(n, pa.string())
    offsets, data = binary_buffers(pc.fill_null(arr.cast(pa.binary()), b""))
    return hex_strings(Buffer(data.tobytes()), offsets[:-1], offsets[1:])


def text(arr: pa.Array | None, n: int, empty_is_null: bool) -> pa.Array:
    """A string column ("" or null where absent or null)."""
    if arr is None:
        return pa.nulls(n, pa.string()) if empty_is_null else pa.array([""] * n, pa.string())
    if empty_is_null:
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return pc.fill_null(arr, "")


def lists(parents: I64, n_parents: int, values: pa.Array) -> pa.Array:
    """Lists of ``values`` per parent (``parents`` ascending)."""
    offsets = np.zeros(n_parents + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=n_parents), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def children(parents: I64, keys: Keys, values: pa.Array, what: str) -> pa.Array:
    """Lists of ``values`` per row of the parent table (``keys``), in table order."""
    owner = keys.of(parents, what)
    order = np.argsort(owner, kind="stable")
    per_key = lists(owner[order], len(keys.unique), values.take(pa.array(order)))
    return keys.spread(per_key, pa.array([[]], per_key.type))


def record_batch(table: pa.Schema, columns: Mapping[str, pa.Array]) -> pa.RecordBatch:
    """The rows of ``columns`` (``schema_violations`` null: validation adds it when it flags)."""
    n = len(columns["tenant"])
    return pa.RecordBatch.from_arrays(
        [columns[f.name] if f.name != schema.VIOLATIONS else pa.nulls(n, f.type) for f in table], schema=table
    )


def span_rows(tenant: str, region: str, envelope: Mapping[str, pa.Array], **c: Any) -> pa.RecordBatch:
    """The spans rows from the columns of either form; ``start``/``end`` are int64 nanoseconds,
    ``kind``/``status_code`` the enum numbers, the rest the lake's columns."""
    start, end = c.pop("start"), c.pop("end")
    n = len(start)
    return record_batch(
        schema.SPANS,
        {
            **c,
            **envelope,
            "tenant": constant(tenant, n),
            **regions(envelope, region, n),
            "kind": enum_names(c["kind"], SPAN_KIND),
            "flags": pa.array(c["flags"]),
            "start_time_unix_nano": pa.array(start),
            "end_time_unix_nano": pa.array(end),
            "duration_ns": pa.array(end - start),
            "status_code": enum_names(c["status_code"], STATUS),
            "dropped_attributes_count": pa.array(c["dropped_attributes_count"]),
            "time": micros(start),
        },
    )


def log_rows(tenant: str, region: str, envelope: Mapping[str, pa.Array], **c: Any) -> pa.RecordBatch:
    """The logs rows from the columns of either form; ``time``/``observed`` are int64
    nanoseconds (0: unset), ``body_type`` the OTAP type code of each body, ``received`` when
    the bridge received each record, the observed time of a record that has neither."""
    time_ns, observed, received = c.pop("time"), c.pop("observed"), c.pop("received")
    body_type: U8 = c.pop("body_type")
    n = len(time_ns)
    observed = np.where((time_ns == 0) & (observed == 0), received, observed)
    return record_batch(
        schema.LOGS,
        {
            **c,
            **envelope,
            "tenant": constant(tenant, n),
            **regions(envelope, region, n),
            "time_unix_nano": pa.array(time_ns, mask=time_ns == 0),
            "observed_time_unix_nano": pa.array(observed, mask=observed == 0),
            "severity_number": pa.array(c["severity_number"].astype(np.int32)),
            "body_type": pa.array(VALUE_TYPE_NAMES[body_type], pa.string()),
            "flags": pa.array(c["flags"]),
            "time": micros(np.where(time_ns != 0, time_ns, observed)),
        },
    )
