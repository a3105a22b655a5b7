"""Synthetic spans of the lake's schema for the query part: built with numpy/pyarrow, no OTLP.

20 services, 50 operations, 8-span traces with random 16-byte ids, lognormal durations, 2 % errors,
one hour of start times, 6 span and 5 resource attributes.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.lake_rig import S3_REGION

N_SERVICES = 20
N_OPERATIONS = 50
SPANS_PER_TRACE = 8
SERVICE_NAMES = [
    "frontend",
    "checkout",
    "cart",
    "payment",
    "catalog",
    "shipping",
    "recommendation",
    "currency",
    "ads",
    "email",
    "auth",
    "search",
    "inventory",
    "pricing",
    "reviews",
    "notifications",
    "accounts",
    "gateway",
    "fraud",
    "loyalty",
]


class SpanFactory:
    """Vectorized synthetic spans of the lake's schema (orasi_bridge.lake.schema.SPANS)."""

    def __init__(self, seed: int, hour_start_ns: int, tenant: str) -> None:
        import numpy as np
        import pyarrow as pa

        self.np, self.pa = np, pa
        self.rng = np.random.default_rng(seed)
        self.hour_start_ns = hour_start_ns
        self.tenant = tenant
        ops = np.arange(N_OPERATIONS)
        self.op_service = ops % N_SERVICES
        verbs = ["GET", "POST", "PUT", "DELETE"]
        nouns = [
            "/api/items",
            "/api/items/{id}",
            "/api/orders",
            "/api/users/{id}",
            "/rpc/Process",
            "/rpc/Lookup",
        ]
        self.op_route = [nouns[i % len(nouns)] for i in ops]
        self.op_method = [verbs[i % len(verbs)] for i in ops]
        self.op_names = pa.array([f"{self.op_method[i]} {self.op_route[i]}" for i in ops], pa.string())
        kinds = ["SERVER", "CLIENT", "INTERNAL", "SERVER", "CONSUMER", "PRODUCER"]
        self.op_kind = pa.array([kinds[i % len(kinds)] for i in ops], pa.string())
        self.services = pa.array(SERVICE_NAMES[:N_SERVICES], pa.string())
        self.scope = pa.array([f"io.opentelemetry.{s}" for s in SERVICE_NAMES[:N_SERVICES]], pa.string())
        # Resource variants: 3 pods per service, 5 attributes each.
        keys, values = [], []
        for s in range(N_SERVICES):
            for pod in range(3):
                name = SERVICE_NAMES[s]
                pairs = [
                    ("service.name", name),
                    ("service.version", f"1.{s}.{pod}"),
                    ("deployment.environment", "production"),
                    ("host.name", f"node-{(s * 3 + pod) % 17:03d}.us-east-1.compute.internal"),
                    ("k8s.pod.name", f"{name}-{(s * 7919 + pod * 104729) % 16**8:08x}-{pod:05x}"),
                ]
                keys += [k for k, _ in pairs]
                values += [v for _, v in pairs]
        self.resource_keys = pa.array(keys, pa.string())
        self.resource_values = pa.array(values, pa.string())
        self.resource_width = 5
        self.attribute_keys = pa.array(
            [
                "http.request.method",
                "http.route",
                "http.response.status_code",
                "server.address",
                "user.id",
                "net.peer.port",
            ],
            pa.string(),
        )

    def _hex(self, count: int, width: int) -> Any:
        """``count`` random lowercase hex strings of ``width`` bytes, as an Arrow string array."""
        np, pa = self.np, self.pa
        raw = self.rng.integers(0, 256, size=(count, width), dtype=np.uint8)
        digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        text = np.empty((count, 2 * width), dtype=np.uint8)
        text[:, 0::2] = digits[raw >> 4]
        text[:, 1::2] = digits[raw & 15]
        offsets = np.arange(0, 2 * width * (count + 1), 2 * width, dtype=np.int32)
        return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))

    def table(self, rows: int) -> tuple[Any, list[str]]:
        """``rows`` spans (a whole number of traces when possible) and a few of their trace ids."""
        import pyarrow.compute as pc

        from orasi_bridge.lake.schema import EVENT, LINK, SPANS

        np, pa, rng = self.np, self.pa, self.rng
        traces = -(-rows // SPANS_PER_TRACE)
        trace_of_row = np.arange(rows) // SPANS_PER_TRACE
        position = np.arange(rows) % SPANS_PER_TRACE
        trace_ids = self._hex(traces, 16)
        trace_id = trace_ids.take(pa.array(trace_of_row))
        span_id = self._hex(rows, 8)
        parent_ids = self._hex(rows, 8)
        parent_span_id = pc.if_else(pa.array(position == 0), pa.scalar(None, pa.string()), parent_ids)
        op = rng.integers(0, N_OPERATIONS, size=rows)
        op_arrow = pa.array(op)
        service_index = self.op_service[op]
        trace_start = self.hour_start_ns + rng.integers(0, 3600 * 10**9 - 10**9, size=traces)
        start = trace_start[trace_of_row] + position * rng.integers(0, 60_000_000, size=rows)
        duration = rng.lognormal(mean=math.log(20e6), sigma=1.0, size=rows).astype(np.int64) + 1000
        error = rng.random(rows) < 0.02
        ok = rng.random(rows) < 0.1
        status = np.where(error, "ERROR", np.where(ok, "OK", "UNSET"))
        status_message = pc.if_else(
            pa.array(error), pa.scalar("internal error"), pa.scalar(None, pa.string())
        )
        # span attributes: 6 per span, interleaved key by key
        width = len(self.attribute_keys)
        methods = pa.array(self.op_method, pa.string()).take(op_arrow)
        routes = pa.array(self.op_route, pa.string()).take(op_arrow)
        codes = pa.array(np.where(error, "500", np.where(rng.random(rows) < 0.05, "404", "200")))
        servers = pa.array([f"{s}.svc.cluster.local" for s in SERVICE_NAMES[:N_SERVICES]]).take(
            pa.array(service_index)
        )
        users = pc.binary_join_element_wise(
            "user-", pc.cast(pa.array(rng.integers(0, 100_000, size=rows)), pa.string()), ""
        )
        ports = pc.cast(pa.array(rng.integers(1024, 65535, size=rows)), pa.string())
        columns = [methods, routes, codes, servers, users, ports]
        interleave = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).reshape(-1)
        values = pa.concat_arrays(
            [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        )
        attributes = pa.MapArray.from_arrays(
            pa.array(np.arange(0, width * (rows + 1), width, dtype=np.int32)),
            self.attribute_keys.take(pa.array(np.tile(np.arange(width), rows))),
            values.take(pa.array(interleave)),
            type=pa.map_(pa.string(), pa.string()),
        )
        resource = service_index * 3 + rng.integers(0, 3, size=rows)
        rw = self.resource_width
        resource_take = pa.array((resource[:, None] * rw + np.arange(rw)[None, :]).reshape(-1))
        resource_attributes = pa.MapArray.from_arrays(
            pa.array(np.arange(0, rw * (rows + 1), rw, dtype=np.int32)),
            self.resource_keys.take(resource_take),
            self.resource_values.take(resource_take),
            type=pa.map_(pa.string(), pa.string()),
        )
        empty = pa.array(np.zeros(rows + 1, dtype=np.int32))
        service_take = pa.array(service_index)
        arrays = {
            "tenant": pa.array(np.full(rows, self.tenant)),
            "region": pa.array(np.full(rows, S3_REGION)),
            "lake_region": pa.array(np.full(rows, S3_REGION)),
            "service_name": self.services.take(service_take),
            "name": self.op_names.take(op_arrow),
            "kind": self.op_kind.take(op_arrow),
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": parent_span_id,
            "trace_state": pa.nulls(rows, pa.string()),
            "flags": pa.array(np.full(rows, 256, dtype=np.int64)),
            "start_time_unix_nano": pa.array(start.astype(np.int64)),
            "end_time_unix_nano": pa.array((start + duration).astype(np.int64)),
            "duration_ns": pa.array(duration),
            "status_code": pa.array(status),
            "status_message": status_message,
            "attributes": attributes,
            "resource_attributes": resource_attributes,
            "scope_name": self.scope.take(service_take),
            "scope_version": pa.array(np.full(rows, "2.1.0")),
            "events": pa.ListArray.from_arrays(empty, pa.array([], EVENT), type=pa.list_(EVENT)),
            "links": pa.ListArray.from_arrays(empty, pa.array([], LINK), type=pa.list_(LINK)),
            "dropped_attributes_count": pa.array(np.zeros(rows, dtype=np.int64)),
            "time": pa.array((start // 1000).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
        }
        # the columns not made above (schema_violations, …) are null, as ingest leaves them
        batch = pa.RecordBatch.from_arrays(
            [arrays[f.name] if f.name in arrays else pa.nulls(rows, f.type) for f in SPANS], schema=SPANS
        )
        samples = trace_ids.take(pa.array(rng.integers(0, traces, size=8))).to_pylist()
        return batch, samples
