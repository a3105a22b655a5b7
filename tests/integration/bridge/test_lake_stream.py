"""The lake's stream processors on real ingest: a chain that filters, redacts an email and
transforms a name, on OTLP spans and logs and OTAP spans; the rows queried back hot and after the flush, and a
batch whose rows were all filtered out committed (its id) and gone from the write-ahead log."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, close_writer
from integration.bridge.test_lake_writer import WINDOW, batch_ids_in_summaries
from orasi_bridge.lake.buffer import holds_otap
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pdata import Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.traces import encode_traces_bytes
from orasi_common.pipeline.wal import WriteAheadLog
from orasi_common.telemetry.metrics import Metrics

STREAM = [
    {"type": "filter", "signals": ["traces"], "drop_where": "name = 'GET /healthz'"},
    {"type": "redact", "builtins": ["email"], "name": "pii"},
    {
        "type": "transform",
        "signals": ["traces"],
        "set": {"name": "regexp_replace(name, '/[0-9]+', '/{id}', 'g')"},
    },
]


def spans(*named: tuple[str, str | None]) -> ExportTraceServiceRequest:
    """One span per (name, user.email attribute or None)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(data.key_values({"service.name": "shop"}))
    scope = resource_spans.scope_spans.add()
    for i, (name, email) in enumerate(named):
        span = scope.spans.add(
            trace_id=data.TRACE_ID,
            span_id=hashlib.blake2b(f"{name}{i}".encode(), digest_size=8).digest(),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=data.T0 + i,
            end_time_unix_nano=data.T0 + i + 1000,
        )
        if email is not None:
            span.attributes.extend(data.key_values({"user.email": email}))
    return request


async def test_a_chain_filters_redacts_and_transforms_what_queries_see_hot_and_committed(
    make_writer: MakeWriter, tmp_path: Path
) -> None:
    metrics = Metrics("bridge")
    wal = {"directory": str(tmp_path / "wal")}
    writer = await make_writer(metrics, stream=STREAM, wal=wal)
    engine = QueryEngine(writer, QueryLimits())
    mixed = data.batch(
        Signal.TRACES,
        spans(("GET /users/42/orders/7", "alice@example.com"), ("GET /healthz", None), ("GET /cart", None)),
    )
    health = data.batch(Signal.TRACES, spans(("GET /healthz", None), ("GET /healthz", None)))
    logs = data.batch(Signal.LOGS, data.log_request(data.T0, "mail to bob@example.org failed"))
    tables = encode_traces_bytes(spans(("GET /items/9", "carol@example.com")).SerializeToString())
    otap = codec.decode(Signal.TRACES, tables, tenant="default", batch_id=uuid.uuid4().hex)
    assert holds_otap(otap)
    for batch in (mixed, health, logs, otap):
        await writer.consume(batch)

    expected_spans = [
        ("GET /cart", None),
        ("GET /items/{id}", "[REDACTED:email]"),
        ("GET /users/{id}/orders/{id}", "[REDACTED:email]"),
    ]
    expected_logs = [("mail to [REDACTED:email] failed",)]
    span_sql = "SELECT name, attributes['user.email'] FROM spans ORDER BY name"
    log_sql = "SELECT body FROM logs"
    hot = await engine.execute(span_sql, "default", **WINDOW)
    assert (hot.rows, hot.stats["hot_rows"]) == (expected_spans, 3)
    assert (await engine.execute(log_sql, "default", **WINDOW)).rows == expected_logs

    await writer.flush()
    committed = await engine.execute(span_sql, "default", **WINDOW)
    assert (committed.rows, committed.stats["hot_rows"]) == (expected_spans, 0)
    assert (await engine.execute(log_sql, "default", **WINDOW)).rows == expected_logs
    # The batch left without rows is committed like the others: a replay of it writes nothing.
    assert sorted(batch_ids_in_summaries(writer, "spans")) == sorted(
        [mixed.batch_id, health.batch_id, otap.batch_id]
    )
    assert writer.is_known(health.batch_id)
    labels = {"exporter": "lake", "processor": "filter_0", "table": "spans"}
    assert metrics.registry.get_sample_value("orasi_stream_dropped_rows_total", labels) == 3
    labels = {"exporter": "lake", "processor": "pii", "rule": "email"}
    assert metrics.registry.get_sample_value("orasi_stream_redactions_total", labels) == 3

    await close_writer(writer)  # and every record of the log was dropped after its commit
    log = WriteAheadLog(tmp_path / "wal" / "lake", max_bytes=64 * 1024 * 1024)
    recovered = await log.open()
    await log.close()
    assert recovered.pending == []
