"""`orasi up` is killed (SIGKILL) just after it acknowledged data, and started again on the same
data directory.

Spans (and logs) go in through the OpenTelemetry SDK's OTLP/gRPC exporters, called directly: an
export that returns SUCCESS was acknowledged. When the process dies, each acknowledged batch is in
the agent's write-ahead-log queue or in the bridge's (or committed); after the restart every
acknowledged span must be in the lake exactly once — counted per span id. The restarted agent
sends again batches whose delivery its log had not recorded; the bridge must recognise them by
batch id, whether they wait in its own replayed log or were committed before the kill.

Kill moments: at once after the last acknowledgement, nothing in flight; during a burst from
two senders, before the bridge's first commit; during a burst, right after a commit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fault.harness import wait_until
from orasi_common.testing.up_process import UpProcess

SPANS = 300
LOGS = 100
CHUNK = 50  # spans or logs per export call (one OTLP request)
BURST_CHUNK = 25
EXPORT_TIMEOUT = 5.0  # seconds; the SDK retries a refused export within it


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    with UpProcess.launch(tmp_path) as process:
        yield process


def make_spans(service: str, count: int) -> list[ReadableSpan]:
    """``count`` finished SDK spans of ``service`` (random, unique span ids)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("orasi.fault.up")
    for index in range(count):
        with tracer.start_as_current_span(f"op-{index % 5}", attributes={"index": index}):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def make_logs(service: str, count: int) -> list[ReadableLogRecord]:
    """``count`` SDK log records of ``service`` whose bodies are unique."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("orasi.fault.up")
    for index in range(count):
        logger.emit(body=f"{service} log {index}")
    provider.shutdown()
    return list(memory.get_finished_logs())


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def chunks(items: Sequence[ReadableSpan], size: int) -> Iterator[Sequence[ReadableSpan]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Burst:
    """Two threads export chunks of ``spans`` to the agent, one export after the other, until
    stopped or out of spans; spans of exports that returned SUCCESS are ``acked``."""

    def __init__(self, endpoint: str, spans: list[ReadableSpan], threads: int = 2) -> None:
        self._endpoint = endpoint
        self._chunks = list(chunks(spans, BURST_CHUNK))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.acked: set[str] = set()
        self.attempted: set[str] = set()
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _next(self) -> Sequence[ReadableSpan] | None:
        with self._lock:
            if self._stop.is_set() or not self._chunks:
                return None
            chunk = self._chunks.pop()
            self.attempted.update(span_id(span) for span in chunk)
            return chunk

    def _run(self) -> None:
        exporter = OTLPSpanExporter(endpoint=self._endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
        try:
            while (chunk := self._next()) is not None:
                if exporter.export(chunk) is SpanExportResult.SUCCESS:
                    with self._lock:
                        self.acked.update(span_id(span) for span in chunk)
        except BaseException as error:  # reported by stop()
            self._errors.append(error)
        finally:
            exporter.shutdown()

    def stop(self) -> None:
        """Stop sending; return once every export in flight has ended (within its timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(EXPORT_TIMEOUT + 10)
        assert not any(thread.is_alive() for thread in self._threads), "a sender did not stop"
        assert not self._errors, f"a sender failed: {self._errors!r}"


def lake_counts(up: UpProcess, sql: str) -> dict[str, int]:
    return {str(key): int(count) for key, count in up.query(sql)}


def span_counts(up: UpProcess, service: str) -> dict[str, int]:
    """Rows per span id of ``service`` in the lake (committed and buffered)."""
    return lake_counts(up, f"SELECT span_id, count(*) FROM spans WHERE service_name = '{service}' GROUP BY 1")


def settled_counts(up: UpProcess, service: str, acked: set[str]) -> dict[str, int]:
    """The lake's rows per span id once every acknowledged span arrived and the restarted agent
    sent everything its log kept (a duplicate would come with those sends)."""
    wait_until(lambda: acked <= span_counts(up, service).keys(), 60, "every acknowledged span in the lake")
    wait_until(
        lambda: up.service_metric("agent", "orasi_queue_size_bytes") == 0,
        60,
        "the agent's log to be delivered",
    )
    return span_counts(up, service)


def assert_exactly_once(counts: dict[str, int], acked: set[str], attempted: set[str]) -> None:
    missing = acked - counts.keys()
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged spans are not in the lake"
    twice = {key: count for key, count in counts.items() if count != 1}
    assert not twice, f"{len(twice)} spans are in the lake more than once: {list(twice.items())[:10]}"
    strangers = counts.keys() - attempted
    assert not strangers, f"{len(strangers)} spans nobody sent are in the lake"


def wal_bytes(up: UpProcess) -> int:
    return sum(path.stat().st_size for path in (up.data_dir / "wal").rglob("*.wal"))


def test_spans_and_logs_acknowledged_just_before_kill9_are_in_the_lake_once(up: UpProcess) -> None:
    service = f"up-killed-{uuid.uuid4().hex[:8]}"
    endpoint = f"127.0.0.1:{up.ports['agent.grpc']}"
    spans = make_spans(service, SPANS)
    logs = make_logs(service, LOGS)
    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
    try:
        for chunk in chunks(spans, CHUNK):
            assert span_exporter.export(chunk) is SpanExportResult.SUCCESS
        for start in range(0, LOGS, CHUNK):
            assert log_exporter.export(logs[start : start + CHUNK]) is LogRecordExportResult.SUCCESS
        up.kill9()  # at once: the lake flushes every 5 s, so all of it is in a write-ahead log
    finally:
        span_exporter.shutdown()
        log_exporter.shutdown()
    assert wal_bytes(up) > 0, "nothing was in a write-ahead log when orasi up was killed"

    up.start(ready_timeout=90)
    acked = {span_id(span) for span in spans}
    assert_exactly_once(settled_counts(up, service, acked), acked, acked)

    bodies = {str(log.log_record.body) for log in logs}
    log_sql = f"SELECT body, count(*) FROM logs WHERE service_name = '{service}' GROUP BY 1"
    wait_until(lambda: bodies <= lake_counts(up, log_sql).keys(), 60, "every acknowledged log in the lake")
    assert lake_counts(up, log_sql) == dict.fromkeys(bodies, 1)
    assert up.terminate() == 0, up.log_text()[-8000:]


@pytest.mark.parametrize("moment", ["before_first_commit", "after_a_commit"])
def test_spans_acknowledged_during_a_burst_survive_kill9_once(up: UpProcess, moment: str) -> None:
    service = f"up-burst-{uuid.uuid4().hex[:8]}"
    burst = Burst(f"127.0.0.1:{up.ports['agent.grpc']}", make_spans(service, 4000))
    burst.start()
    try:
        if moment == "before_first_commit":
            wait_until(lambda: len(burst.acked) >= 4 * BURST_CHUNK, 60, "a few acknowledged exports")
        else:
            # Batches committed just now whose delivery the agent's log may not have recorded yet.
            wait_until(
                lambda: up.service_metric("bridge", "orasi_lake_commits_total") >= 1, 60, "a commit", 0.02
            )
        up.kill9()  # the senders are still sending
    finally:
        # Exports in flight fail now (nothing listens); the restart comes after they ended, so
        # that no SDK retry delivers a request a second time.
        burst.stop()
    assert burst.acked, "nothing was acknowledged before the kill"

    up.start(ready_timeout=90)
    assert_exactly_once(settled_counts(up, service, burst.acked), burst.acked, burst.attempted)
    assert up.terminate() == 0, up.log_text()[-8000:]
