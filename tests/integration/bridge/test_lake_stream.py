"""The lake's stream processors on real ingest: a chain that filters, redacts an email and
transforms a name, on OTLP spans and logs and OTAP spans; the rows queried back hot and after the flush, and a
batch whose rows were all filtered out committed (its id) and gone from the write-ahead log; tail
sampling keeping whole traces, with a crash while spans are held."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from integration.bridge import otlp_data as data
from integration.bridge.conftest import MakeWriter, close_writer
from integration.bridge.helpers import run_crashing
from integration.bridge.servers import LakeSpace
from integration.bridge.test_lake_writer import TESTS_DIR, WINDOW, batch_ids_in_summaries, eventually, stats
from orasi_bridge.lake.convert import holds_otap
from orasi_bridge.lake.writer import LakeWriter
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


# -- tail_sample ---------------------------------------------------------------------------------

TAIL_WAIT = 0.2
TAIL = {"type": "tail_sample", "name": "tail", "decision_wait": TAIL_WAIT, "min_duration_ms": 500}


def trace_spans(*named: tuple[str, str, bool, int]) -> ExportTraceServiceRequest:
    """One span per (trace letter, span name, error, duration in ms); trace ids are the letter
    repeated (32 hex digits: letters a-f)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(data.key_values({"service.name": "shop"}))
    scope = resource_spans.scope_spans.add()
    for i, (trace, name, error, duration_ms) in enumerate(named):
        span = scope.spans.add(
            trace_id=bytes.fromhex(trace * 32),
            span_id=hashlib.blake2b(name.encode(), digest_size=8).digest(),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=data.T0 + i,
            end_time_unix_nano=data.T0 + i + duration_ms * 1_000_000,
        )
        if error:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return request


async def spans_per_trace(engine: QueryEngine) -> dict[str, tuple[int, int]]:
    """Per trace id: its spans in the lake, and how many distinct ones (a duplicate shows)."""
    sql = "SELECT trace_id, count(*), count(DISTINCT span_id) FROM spans GROUP BY trace_id"
    result = await engine.execute(sql, "default", **WINDOW)
    return {trace: (n, distinct) for trace, n, distinct in result.rows}


async def released(writer: LakeWriter) -> bool:
    return writer._stream is not None and writer._stream.due() is None


async def log_is_empty(directory: Path) -> bool:
    log = WriteAheadLog(directory, max_bytes=64 * 1024 * 1024)
    recovered = await log.open()
    await log.close()
    return recovered.pending == []


async def test_tail_sampling_keeps_whole_traces_that_matter_and_commits_every_batch_once(
    make_writer: MakeWriter, tmp_path: Path
) -> None:
    metrics = Metrics("bridge")
    wal = {"directory": str(tmp_path / "wal")}
    waiting = {**TAIL, "decision_wait": 3600}  # until the reload below
    writer = await make_writer(metrics, stream=[STREAM[0], waiting], wal=wal)
    engine = QueryEngine(writer, QueryLimits())
    first = data.batch(
        Signal.TRACES,
        trace_spans(
            ("a", "a1", False, 1), ("b", "b1", False, 1), ("c", "c1", False, 900), ("d", "d1", False, 1)
        ),
    )
    second = data.batch(
        Signal.TRACES,
        trace_spans(("a", "a2", True, 1), ("b", "b2", False, 1), ("a", "GET /healthz", True, 1)),
    )
    tables = encode_traces_bytes(trace_spans(("e", "e1", True, 1), ("d", "d2", False, 1)).SerializeToString())
    otap = codec.decode(Signal.TRACES, tables, tenant="default", batch_id=uuid.uuid4().hex)
    for batch in (first, second, otap):
        await writer.consume(batch)
    # held, not visible yet; a retry of a held batch is acknowledged and not written again
    assert writer.is_known(first.batch_id)
    assert (await stats(engine, "spans"))["hot_rows"] == 0
    await writer.consume(
        data.batch(Signal.TRACES, trace_spans(("a", "a1", False, 1)), batch_id=first.batch_id)
    )
    await writer.flush()  # converted, and held
    assert (await stats(engine, "spans"))["hot_rows"] == 0
    assert batch_ids_in_summaries(writer, "spans") == []
    reloaded = {**writer.config.model_dump(mode="json"), "stream": [STREAM[0], TAIL]}
    writer.reconfigure(type(writer.config).model_validate(reloaded))  # as SIGHUP does
    await eventually(lambda: released(writer), "the tail decisions")
    await writer.flush()

    # a (an error), c (a slow span) and e (an error, over OTAP) whole; b and d gone; the filter ran first
    assert await spans_per_trace(engine) == {"a" * 32: (2, 2), "c" * 32: (1, 1), "e" * 32: (1, 1)}
    assert sorted(batch_ids_in_summaries(writer, "spans")) == sorted(
        [first.batch_id, second.batch_id, otap.batch_id]
    )
    decisions = "orasi_stream_tail_decisions_total"
    by = {"exporter": "lake", "processor": "tail"}
    assert metrics.registry.get_sample_value(decisions, {**by, "policy": "error", "decision": "kept"}) == 2
    assert metrics.registry.get_sample_value(decisions, {**by, "policy": "duration", "decision": "kept"}) == 1
    assert metrics.registry.get_sample_value(decisions, {**by, "policy": "none", "decision": "dropped"}) == 2
    assert metrics.registry.get_sample_value("orasi_stream_tail_held", {**by, "unit": "spans"}) == 0
    await close_writer(writer)
    assert await log_is_empty(tmp_path / "wal" / "lake")


CRASHING_TAIL = """
import asyncio, json, os, sys
sys.path.insert(0, {tests!r})
from integration.bridge.conftest import build_writer
from integration.bridge import otlp_data as data
from integration.bridge.test_lake_stream import trace_spans
from orasi_common.pdata import Signal

async def main():
    config = json.loads({config!r})
    writer = build_writer(config)
    await writer.start()
    # t: an error; u: none; both decided and committed
    first = trace_spans(("a", "t1", True, 1), ("b", "u1", False, 1))
    await writer.consume(data.batch(Signal.TRACES, first, batch_id={first!r}))
    await writer.flush()  # converted, held
    while writer._stream.due() is not None:
        await asyncio.sleep(0.02)
    await writer.flush()  # committed
    config["stream"][0]["decision_wait"] = 3600  # a reload, as SIGHUP makes
    writer.reconfigure(type(writer.config).model_validate(config))
    # acknowledged, then held (a decision_wait of an hour) when the process dies: t's and u's
    # later spans (u's with an error), and v, a new trace with an error
    later = trace_spans(("a", "t2", False, 1), ("b", "u2", True, 1), ("c", "v1", True, 1))
    await writer.consume(data.batch(Signal.TRACES, later, batch_id={held!r}))
    await writer.flush()
    assert writer.is_known({held!r}), "held"
    print("acknowledged", flush=True)
    os._exit(0)  # a crash: no shutdown, no flush

asyncio.run(main())
"""


async def test_tail_held_spans_survive_a_crash_once_and_are_decided_as_before(
    make_writer: MakeWriter, lake_space: LakeSpace, tmp_path: Path
) -> None:
    wal = {"directory": str(tmp_path / "wal")}
    config = lake_space.lake_config(wal=wal, stream=[TAIL])
    first, held = uuid.uuid4().hex, uuid.uuid4().hex
    script = CRASHING_TAIL.format(tests=TESTS_DIR, config=json.dumps(config), first=first, held=held)
    await run_crashing(script, "acknowledged")

    writer = await make_writer(wal=wal, stream=[TAIL])
    engine = QueryEngine(writer, QueryLimits())
    assert batch_ids_in_summaries(writer, "spans") == [first]
    assert writer.is_known(held)  # replayed
    await writer.flush()  # converted, and held again
    assert batch_ids_in_summaries(writer, "spans") == [first]
    await eventually(lambda: released(writer), "the tail decisions after the replay")
    await writer.flush()
    # t kept whole and u dropped whole (their decisions were kept on disk: u2's error alone would
    # keep u2, t2 alone would be dropped); v decided now; nothing written twice
    expected = {"a" * 32: (2, 2), "c" * 32: (1, 1)}
    assert await spans_per_trace(engine) == expected
    assert batch_ids_in_summaries(writer, "spans").count(held) == 1
    await close_writer(writer)
    assert await log_is_empty(tmp_path / "wal" / "lake")
    again = await make_writer(wal=wal, stream=[TAIL])
    assert await spans_per_trace(QueryEngine(again, QueryLimits())) == expected


async def test_without_a_log_a_shutdown_decides_and_commits_what_the_tail_sampler_holds(
    make_writer: MakeWriter,
) -> None:
    metrics = Metrics("bridge")
    waiting = {**TAIL, "decision_wait": 3600}
    writer = await make_writer(metrics, stream=[waiting])
    spans = trace_spans(("a", "a1", True, 1), ("a", "a2", False, 1), ("b", "b1", False, 1))
    batch = data.batch(Signal.TRACES, spans)
    await writer.consume(batch)
    await writer.flush()  # converted, and held
    assert batch_ids_in_summaries(writer, "spans") == []
    await close_writer(writer)
    labels = {"exporter": "lake", "processor": "tail", "reason": "shutdown"}
    assert metrics.registry.get_sample_value("orasi_stream_tail_early_decisions_total", labels) == 2
    again = await make_writer()
    assert await spans_per_trace(QueryEngine(again, QueryLimits())) == {"a" * 32: (2, 2)}
    assert batch_ids_in_summaries(again, "spans") == [batch.batch_id]
