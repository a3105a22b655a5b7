"""OTAP end to end over real gRPC: OtapClient / `otap` exporter → `otap` receiver → `otlp` exporter → sink.

    OtapClient ──OTAP streams──▶ gateway (otap receiver → otlp exporter) ──OTLP──▶ OtlpSink

What the sink records is compared with what went in: the exact OTLP request of every batch
(ids, attributes, values), its tenant and its batch id, which only the HPACK headers of each
BatchArrowRecords carry across the OTAP hop. Malformed OTAP is written with a raw gRPC
stream_stream call against an `orasi gateway` subprocess: each bad batch must be answered
INVALID_ARGUMENT under its own batch_id while the same stream goes on serving valid batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import hpack
import pyarrow as pa
import pytest
from google.protobuf.message import Message

from integration.otap_data import (
    METRIC_KINDS,
    RunningService,
    client_settings,
    free_port,
    logs_request,
    metrics_request,
    new_batch_id,
    otlp_exporter_part,
    receiver_part,
    request_for,
    running_service,
    service_config,
    traces_request,
)
from orasi_common.exporters.otap import FACTORY as OTAP_EXPORTER
from orasi_common.exporters.otap import Config as OtapConfig
from orasi_common.exporters.otap.client import OtapClient
from orasi_common.exporters.otap.config import ArrowClientConfig
from orasi_common.exporters.otlp.client import open_channel
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.pdata.otap import codec
from orasi_common.pdata.otap.payload_types import ArrowPayloadType as P
from orasi_common.testing.service_process import ServiceProcess
from orasi_common.testing.sink import OtlpSink
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.protocol import method_path
from orasi_common.transport.otap.stream import StreamProducer
from orasi_gateway.factories import FACTORIES as GATEWAY

TENANT = "x-orasi-tenant"
BATCH_ID = "x-orasi-batch-id"
SIGNALS = (Signal.TRACES, Signal.LOGS, Signal.METRICS)
Sent = dict[str, tuple[Signal, str, Message]]  # batch id → (signal, tenant, request)


@dataclass
class Gateway:
    running: RunningService
    endpoint: str


@contextlib.asynccontextmanager
async def gateway(receiver_type: str, sink: OtlpSink, **exporter: Any) -> AsyncIterator[Gateway]:
    grpc_port = free_port()
    config = service_config(
        (receiver_type, receiver_part(grpc_port, free_port())),
        ("otlp", otlp_exporter_part(sink.endpoint, compression="none", **exporter)),
        free_port(),
    )
    async with running_service("gateway", config, GATEWAY) as running:
        yield Gateway(running, f"127.0.0.1:{grpc_port}")


@pytest.fixture
async def otap_gateway(sink: OtlpSink) -> AsyncIterator[Gateway]:
    async with gateway("otap", sink) as started:
        yield started


@contextlib.asynccontextmanager
async def otap_client(endpoint: str, **arrow: Any) -> AsyncIterator[OtapClient]:
    config = ArrowClientConfig.model_validate(
        {"endpoint": endpoint, "tls": {"insecure": True}, "compression": "none", "arrow": arrow}
    )
    channel = await open_channel(config)
    client = OtapClient(client_settings(), config, channel)
    try:
        yield client
    finally:
        await client.close()
        await channel.close()


async def wait_items(sink: OtlpSink, signal: Signal, count: int, within: float = 15.0) -> None:
    await asyncio.to_thread(sink.wait_for_items, signal, count, within)


def received_by_batch_id(sink: OtlpSink, signal: Signal) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for received in list(sink.received):
        if received.signal is signal:
            out.setdefault(received.metadata[BATCH_ID], []).append(received)
    return out


def assert_delivered_exactly(sink: OtlpSink, sent: Sent) -> None:
    """Each sent batch arrived once, with its tenant, as the very request that was sent."""
    for signal in SIGNALS:
        got = received_by_batch_id(sink, signal)
        expected = {bid: (tenant, msg) for bid, (s, tenant, msg) in sent.items() if s is signal}
        assert set(got) == set(expected), f"{signal.value}: batch ids differ"
        for batch_id, (tenant, message) in expected.items():
            (received,) = got[batch_id]  # exactly once
            assert received.metadata[TENANT] == tenant
            assert received.request == message, f"{signal.value} batch {batch_id} changed on the way"


async def assert_all_delivered(sink: OtlpSink, sent: Sent) -> None:
    """Waits until the sink holds as many items as were sent, then assert_delivered_exactly."""
    for signal in SIGNALS:
        expected = sum(Batch.from_message(s, r).items for s, _, r in sent.values() if s is signal)
        await wait_items(sink, signal, expected)
    assert_delivered_exactly(sink, sent)


def tracked(sent: Sent, signal: Signal, request: Message, tenant: str) -> Batch:
    """A batch of ``request`` under a new batch id, recorded in ``sent``."""
    batch_id = new_batch_id()
    sent[batch_id] = (signal, tenant, request)
    return Batch.from_message(signal, request, tenant=tenant, batch_id=batch_id)


@dataclass
class Front:
    """A gateway with an OTLP gRPC receiver and an `otap` exporter, and a channel to send to it."""

    running: RunningService
    channel: grpc.aio.Channel
    sent: Sent

    async def export(self, signal: Signal, request: Message, tenant: str) -> None:
        batch_id = new_batch_id()
        await self.channel.unary_unary(SPECS[signal].grpc_method)(
            request.SerializeToString(), metadata=[(TENANT, tenant), (BATCH_ID, batch_id)], timeout=10
        )
        self.sent[batch_id] = (signal, tenant, request)


@contextlib.asynccontextmanager
async def front_with_otap_exporter(endpoint: str, exporter: dict[str, Any]) -> AsyncIterator[Front]:
    """The front gateway; its `otap` exporter (``exporter``'s settings) sends to ``endpoint``."""
    front_grpc = free_port()
    otap = {"endpoint": endpoint, **exporter}
    config = service_config(("otlp", receiver_part(front_grpc)), ("otap", otap), free_port())
    async with running_service("gateway", config, GATEWAY) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{front_grpc}")
        try:
            yield Front(running, channel, {})
        finally:
            await channel.close()


# ---------------------------------------------------------------------------------------------
# (a) every signal, exactly


async def test_traces_logs_and_metrics_arrive_exactly_with_tenant_and_batch_id(
    otap_gateway: Gateway, sink: OtlpSink
) -> None:
    requests: list[tuple[Signal, Message]] = []
    for number in range(4):
        requests.append(
            (
                Signal.TRACES,
                traces_request(range(number * 5, number * 5 + 5), 4, seed=number, prefix=f"a{number}"),
            )
        )
        requests.append((Signal.LOGS, logs_request(16, seed=number, prefix=f"a{number}")))
        requests.append((Signal.METRICS, metrics_request(seed=number, prefix=f"a{number}")))
    sent: Sent = {}
    batches = []
    for index, (signal, request) in enumerate(requests):
        batches.append(tracked(sent, signal, request, f"tenant-{index % 3}"))
    metric_kinds = {
        m.WhichOneof("data")
        for _, r in requests
        if _ is Signal.METRICS
        for rm in r.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert metric_kinds == set(METRIC_KINDS)

    async with otap_client(otap_gateway.endpoint, max_batches_in_flight=4) as client:
        # sequentially first (HPACK dynamic table and IPC deltas build up on each stream) ...
        for batch in batches[:6]:
            await client.send(batch)
        # ... then pipelined: many unanswered batches on the same streams at once
        await asyncio.gather(*(client.send(b) for b in batches[6:]))
        assert client.fell_back is False

    await assert_all_delivered(sink, sent)
    accepted = await otap_gateway.running.metric(
        "orasi_receiver_accepted_items_total", signal="traces", transport="otap"
    )
    assert accepted == sum(b.items for b in batches if b.signal is Signal.TRACES)


async def test_ids_and_values_survive_in_detail(otap_gateway: Gateway, sink: OtlpSink) -> None:
    """Spot checks independent of protobuf equality: raw ids, attribute types, metric values."""
    request = traces_request(range(3), 3, seed=42, prefix="detail")
    metrics = metrics_request(seed=43, prefix="detail")
    async with otap_client(otap_gateway.endpoint) as client:
        await client.send(Batch.from_message(Signal.TRACES, request, tenant="acme", batch_id=new_batch_id()))
        await client.send(Batch.from_message(Signal.METRICS, metrics, tenant="acme", batch_id=new_batch_id()))
    await wait_items(sink, Signal.TRACES, 9)
    await wait_items(sink, Signal.METRICS, Batch.from_message(Signal.METRICS, metrics).items)
    (traces,) = [r.request for r in sink.received if r.signal is Signal.TRACES]
    sent_spans = {s.name: s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    got_spans = {s.name: s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert set(got_spans) == set(sent_spans)
    for name, span in sent_spans.items():
        got = got_spans[name]
        assert (got.trace_id, got.span_id, got.parent_span_id) == (
            span.trace_id,
            span.span_id,
            span.parent_span_id,
        )
        assert [(a.key, a.value.WhichOneof("value")) for a in got.attributes] == [
            (a.key, a.value.WhichOneof("value")) for a in span.attributes
        ]
        assert (
            got.end_time_unix_nano - got.start_time_unix_nano
            == span.end_time_unix_nano - span.start_time_unix_nano
        )
    (got_metrics,) = [r.request for r in sink.received if r.signal is Signal.METRICS]
    sent_points = {
        m.name: m for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    for rm in got_metrics.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                assert metric == sent_points.pop(metric.name)
    assert sent_points == {}


# ---------------------------------------------------------------------------------------------
# (b) stream recycling


async def test_recycled_streams_lose_nothing(otap_gateway: Gateway, sink: OtlpSink) -> None:
    """max_stream_lifetime 0.5 s: batches go on until a fourth stream has carried some (30 s at
    most: a loaded machine sends fewer waves a second), every batch arrives once."""
    sent: Sent = {}
    streams_seen: set[int] = set()
    async with otap_client(otap_gateway.endpoint, max_stream_lifetime=0.5, max_batches_in_flight=3) as client:
        deadline = time.monotonic() + 30.0
        number = 0
        while len(streams_seen) < 4 and time.monotonic() < deadline:
            wave = []
            for signal in SIGNALS:
                wave.append(tracked(sent, signal, request_for(signal, number, prefix="recycle"), "recycler"))
                number += 1
            await asyncio.gather(*(client.send(b) for b in wave))
            streams_seen.update(id(s) for s in client._streams[Signal.TRACES])
            await asyncio.sleep(0.05)
    assert len(streams_seen) >= 4, "streams were not recycled"
    await assert_all_delivered(sink, sent)


async def test_batches_waiting_for_a_slot_when_their_stream_expires_are_not_failed(
    otap_gateway: Gateway, sink: OtlpSink
) -> None:
    """Many concurrent sends, one slot per stream, a short lifetime: a batch queued behind the
    slot of a stream that expires meanwhile must go out (on that stream or a fresh one), not
    fail with 'the OTAP stream broke' — nothing here is wrong with the peer."""
    sent: Sent = {}
    failures: list[BaseException] = []
    async with otap_client(otap_gateway.endpoint, max_stream_lifetime=0.2, max_batches_in_flight=1) as client:

        async def one(number: int) -> None:
            request = request_for(Signal.LOGS, number, size=2, prefix="slot")
            batch_id = new_batch_id()
            try:
                await client.send(Batch.from_message(Signal.LOGS, request, tenant="slots", batch_id=batch_id))
            except Exception as error:
                failures.append(error)
            else:
                sent[batch_id] = (Signal.LOGS, "slots", request)

        for wave in range(8):
            await asyncio.gather(*(one(wave * 10 + i) for i in range(10)))
            await asyncio.sleep(0.1)
    assert failures == [], f"{len(failures)} of 80 sends failed: {failures[:3]}"
    await wait_items(sink, Signal.LOGS, 160)
    assert_delivered_exactly(sink, sent)


async def test_the_otap_exporter_recycles_streams_without_loss(sink: OtlpSink) -> None:
    """The `otap` exporter component (queue, retries) in a front service, recycling every 0.5 s."""
    exporter = {
        "tls": {"insecure": True},
        "compression": "none",
        "retry_on_failure": {"initial_interval": 0.02, "max_interval": 0.2, "max_elapsed_time": 30},
        "arrow": {"max_stream_lifetime": 0.5, "max_batches_in_flight": 4},
    }
    async with gateway("otap", sink) as back, front_with_otap_exporter(back.endpoint, exporter) as front:
        deadline = time.monotonic() + 2.5
        number = 0
        while time.monotonic() < deadline:
            signal = SIGNALS[number % 3]
            await front.export(signal, request_for(signal, number, prefix="exp"), "front")
            number += 1
            await asyncio.sleep(0.02)
        await assert_all_delivered(sink, front.sent)
        assert await front.running.metric("orasi_exporter_send_failed_items_total") == 0


async def test_the_otap_exporter_counts_its_schema_resets(sink: OtlpSink) -> None:
    """Dictionaries of at most 4 names overflow on new span names: each overflow resets the
    SPANS schema, counted per signal and payload type, and every batch still arrives."""
    exporter = {
        "tls": {"insecure": True},
        "compression": "none",
        "arrow": {"max_dictionary_size": 4},
    }
    async with gateway("otap", sink) as back, front_with_otap_exporter(back.endpoint, exporter) as front:
        for number in range(4):
            await front.export(Signal.TRACES, request_for(Signal.TRACES, number, prefix="reset"), "front")
        await assert_all_delivered(sink, front.sent)
        resets = await front.running.metric(
            "orasi_otap_schema_resets_total", signal="traces", payload_type="SPANS"
        )
        assert resets >= 3  # four distinct sets of names, one stream
        assert await front.running.metric("orasi_otap_schema_resets_total", signal="logs") == 0


# ---------------------------------------------------------------------------------------------
# (d) fallback to OTLP


async def test_an_otap_client_falls_back_to_otlp_and_delivers_everything(sink: OtlpSink) -> None:
    sent: Sent = {}
    async with gateway("otlp", sink) as plain, otap_client(plain.endpoint) as client:
        for number in range(6):
            signal = SIGNALS[number % 3]
            await client.send(tracked(sent, signal, request_for(signal, number, prefix="fallback"), "fb"))
        assert client.fell_back is True
        await assert_all_delivered(sink, sent)


async def test_the_otap_exporter_falls_back_to_an_otlp_receiver(sink: OtlpSink) -> None:
    exporter = {
        "tls": {"insecure": True},
        "retry_on_failure": {"initial_interval": 0.02, "max_interval": 0.2, "max_elapsed_time": 10},
    }
    async with gateway("otlp", sink) as plain, front_with_otap_exporter(plain.endpoint, exporter) as front:
        for number in range(9):
            signal = SIGNALS[number % 3]
            await front.export(signal, request_for(signal, number, prefix="fbexp"), "fbexp")
        await assert_all_delivered(sink, front.sent)
        assert await front.running.metric("orasi_exporter_send_failed_items_total") == 0


# ---------------------------------------------------------------------------------------------
# (c) malformed OTAP on a raw stream, against an `orasi gateway` process


@pytest.fixture
def gateway_process(tmp_path: Path, sink: OtlpSink) -> Iterator[tuple[ServiceProcess, str]]:
    grpc_port = free_port()
    config = service_config(
        ("otap", receiver_part(grpc_port, free_port())),
        ("otlp", otlp_exporter_part(sink.endpoint)),
        free_port(),
    )
    config["service"]["telemetry"]["logs"]["level"] = "info"
    process = ServiceProcess.from_config("gateway", config, tmp_path)
    try:
        process.start(ready_timeout=30)
        yield process, f"127.0.0.1:{grpc_port}"
    finally:
        process.stop()


class RawStream:
    """A raw ArrowTraces stream: write BatchArrowRecords, read BatchStatus, one at a time."""

    def __init__(self, channel: grpc.aio.Channel, signal: Signal = Signal.TRACES) -> None:
        self._call = channel.stream_stream(
            method_path(signal),
            request_serializer=otap_pb2.BatchArrowRecords.SerializeToString,
            response_deserializer=otap_pb2.BatchStatus.FromString,
        )()
        self._encoder = hpack.Encoder()
        self._ids = iter(range(1, 10**6))

    def records(
        self, payloads: list[otap_pb2.ArrowPayload], *, tenant: str, batch_id: str
    ) -> otap_pb2.BatchArrowRecords:
        headers = self._encoder.encode([(TENANT, tenant), (BATCH_ID, batch_id)])
        return otap_pb2.BatchArrowRecords(batch_id=next(self._ids), arrow_payloads=payloads, headers=headers)

    async def exchange(self, records: otap_pb2.BatchArrowRecords) -> otap_pb2.BatchStatus:
        await self._call.write(records)
        answer = await asyncio.wait_for(self._call.read(), 10)
        assert answer is not grpc.aio.EOF, "the server ended the stream"
        return answer

    async def close(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._call.done_writing()
        self._call.cancel()


def restarted_payloads(tables: dict[P, pa.RecordBatch], tag: str) -> list[otap_pb2.ArrowPayload]:
    """Payloads that start a new IPC stream for every type (a fresh producer, unique schema ids)."""
    payloads = StreamProducer().encode(tables)
    for payload in payloads:
        payload.schema_id = f"{payload.schema_id}/{tag}"
    return payloads


def trace_tables(number: int) -> tuple[Message, dict[P, pa.RecordBatch]]:
    request = traces_request(range(number * 3, number * 3 + 3), 2, seed=number, prefix=f"raw{number}")
    return request, codec.encode(Batch.from_message(Signal.TRACES, request))


def with_column(table: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    return table.set_column(table.schema.get_field_index(name), name, values)


def malformed_batches() -> list[tuple[str, Any]]:
    """(what, payloads or a function of the stream making the records) for each bad case."""
    _, tables = trace_tables(900)
    spans = tables[P.SPANS]
    cases: list[tuple[str, Any]] = [
        ("garbage IPC", [otap_pb2.ArrowPayload(schema_id="junk", type=P.SPANS, record=os.urandom(300))]),
        (
            "unknown payload type",
            [otap_pb2.ArrowPayload(schema_id="u", type=77, record=restarted_payloads(tables, "u")[0].record)],
        ),
        ("no root table", restarted_payloads({P.SPAN_ATTRS: tables[P.SPAN_ATTRS]}, "noroot")),
        (
            "wrong column type",
            restarted_payloads(
                {**tables, P.SPANS: with_column(spans, "name", pa.array(range(spans.num_rows), pa.int64()))},
                "wrongtype",
            ),
        ),
        (
            "required column missing",
            restarted_payloads({**tables, P.SPANS: spans.drop_columns(["trace_id"])}, "missing"),
        ),
        (
            "parent ids pointing nowhere",
            restarted_payloads(
                {
                    **tables,
                    P.SPAN_ATTRS: with_column(
                        tables[P.SPAN_ATTRS],
                        "parent_id",
                        pa.array(
                            [60000] * tables[P.SPAN_ATTRS].num_rows,
                            tables[P.SPAN_ATTRS].schema.field("parent_id").type,
                        ),
                    ),
                },
                "orphans",
            ),
        ),
        (
            "a logs table on the traces stream",
            restarted_payloads({P.LOGS: pa.record_batch({"id": pa.array([0], pa.uint16())})}, "logs"),
        ),
        (
            "the same payload type twice",
            restarted_payloads(tables, "twice-a") + restarted_payloads({P.SPANS: spans}, "twice-b"),
        ),
        (
            "truncated IPC",
            [
                otap_pb2.ArrowPayload(
                    schema_id="cut",
                    type=P.SPANS,
                    record=restarted_payloads({P.SPANS: spans}, "cut")[0].record[:100],
                )
            ],
        ),
    ]
    return cases


async def test_malformed_batches_fail_alone_and_the_stream_goes_on(
    gateway_process: tuple[ServiceProcess, str], sink: OtlpSink
) -> None:
    process, endpoint = gateway_process
    delivered: dict[str, Message] = {}
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stream = RawStream(channel)
        try:
            for index, (what, payloads) in enumerate([("valid first", None), *malformed_batches()]):
                if payloads is not None:
                    bad = stream.records(payloads, tenant="bad", batch_id=new_batch_id())
                    answer = await stream.exchange(bad)
                    assert (answer.batch_id, answer.status_code) == (
                        bad.batch_id,
                        otap_pb2.INVALID_ARGUMENT,
                    ), f"{what}: {answer}"
                    assert answer.status_message, what
                # a valid batch right after it, on the same stream
                request, tables = trace_tables(index)
                batch_id = new_batch_id()
                good = stream.records(
                    restarted_payloads(tables, f"ok{index}"), tenant="good", batch_id=batch_id
                )
                answer = await stream.exchange(good)
                assert (answer.batch_id, answer.status_code) == (good.batch_id, otap_pb2.OK), (
                    f"after {what}: {answer}"
                )
                delivered[batch_id] = request

            # headers that are not HPACK
            bad = stream.records(
                restarted_payloads(trace_tables(950)[1], "hpack"), tenant="x", batch_id=new_batch_id()
            )
            bad.headers = b"\xff\xff\xff\xff\xff\xff\xff"
            answer = await stream.exchange(bad)
            assert answer.status_code == otap_pb2.INVALID_ARGUMENT, answer
        finally:
            await stream.close()

        # a fresh stream and plain OTLP still work: the process keeps serving
        stream = RawStream(channel)
        try:
            request, tables = trace_tables(990)
            batch_id = new_batch_id()
            answer = await stream.exchange(
                stream.records(StreamProducer().encode(tables), tenant="good", batch_id=batch_id)
            )
            assert answer.status_code == otap_pb2.OK, answer
            delivered[batch_id] = request
        finally:
            await stream.close()
    assert process.process is not None and process.process.poll() is None

    await wait_items(
        sink, Signal.TRACES, sum(Batch.from_message(Signal.TRACES, r).items for r in delivered.values())
    )
    got = received_by_batch_id(sink, Signal.TRACES)
    assert set(got) == set(delivered), "only the valid batches reach the sink"
    for batch_id, request in delivered.items():
        assert [r.request for r in got[batch_id]] == [request]
        assert got[batch_id][0].metadata[TENANT] == "good"


async def test_a_bad_batch_from_a_live_producer_does_not_break_its_ipc_streams(
    gateway_process: tuple[ServiceProcess, str], sink: OtlpSink
) -> None:
    """One producer for the whole stream (dictionary deltas, no resets): a batch whose tables are
    well-formed Arrow but invalid OTAP (orphan attributes) fails alone; the next batches, which
    continue the same IPC streams, are OK and decode to what was sent."""
    _, endpoint = gateway_process
    producer = StreamProducer()
    delivered: dict[str, Message] = {}
    bad_schema_ids: set[str] = set()
    continued: set[int] = set()
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stream = RawStream(channel)
        try:
            for number in range(6):
                request, tables = trace_tables(number)
                if number == 2:
                    attrs = tables[P.SPAN_ATTRS]
                    orphan = pa.array([60000] * attrs.num_rows, attrs.schema.field("parent_id").type)
                    tables = {**tables, P.SPAN_ATTRS: with_column(attrs, "parent_id", orphan)}
                batch_id = new_batch_id()
                payloads = producer.encode(tables)
                if number > 2:  # continuations of IPC streams that carried the bad batch
                    continued.update(p.type for p in payloads if p.schema_id in bad_schema_ids)
                if number == 2:
                    bad_schema_ids = {p.schema_id for p in payloads}
                records = stream.records(payloads, tenant="live", batch_id=batch_id)
                answer = await stream.exchange(records)
                expected = otap_pb2.INVALID_ARGUMENT if number == 2 else otap_pb2.OK
                assert answer.status_code == expected, (number, answer)
                if number != 2:
                    delivered[batch_id] = request
        finally:
            await stream.close()
    assert P.SPANS in continued  # the root table's IPC stream went on through the bad batch
    await wait_items(
        sink, Signal.TRACES, sum(Batch.from_message(Signal.TRACES, r).items for r in delivered.values())
    )
    got = received_by_batch_id(sink, Signal.TRACES)
    assert {bid: [r.request for r in rs] for bid, rs in got.items()} == {
        bid: [r] for bid, r in delivered.items()
    }


def _ipc_without_end(batch: pa.RecordBatch) -> bytes:
    sink = io.BytesIO()
    writer = pa.ipc.new_stream(sink, batch.schema)
    writer.write_batch(batch)
    return sink.getvalue()


def corrupt_spans(tables: dict[P, pa.RecordBatch], corruption: str) -> list[otap_pb2.ArrowPayload]:
    """Payloads whose SPANS name column has buffers that break the Arrow format."""
    spans = tables[P.SPANS]
    n = spans.num_rows
    if corruption == "string offsets":
        column = pa.array(["qqqq"] * n)
        pattern = b"".join(struct.pack("<i", 4 * k) for k in range(n + 1))
        replacement = pattern[:-4] + struct.pack("<i", 10**9)
    elif corruption == "dictionary indices":
        indices = [k % 3 for k in range(n)]
        column = pa.DictionaryArray.from_arrays(pa.array(indices, pa.uint16()), pa.array(["a", "b", "c"]))
        pattern = b"".join(struct.pack("<H", k) for k in indices)
        replacement = pattern[:2] + struct.pack("<H", 60000) + pattern[4:]
    else:
        raise ValueError(corruption)
    index = spans.schema.get_field_index("name")
    table = spans.set_column(index, pa.field("name", column.type), column)
    record = _ipc_without_end(table)
    assert record.count(pattern) == 1
    payloads = restarted_payloads(
        {k: v for k, v in tables.items() if k != P.SPANS}, corruption.replace(" ", "-")
    )
    payloads.append(
        otap_pb2.ArrowPayload(
            schema_id=f"corrupt-{corruption}", type=P.SPANS, record=record.replace(pattern, replacement)
        )
    )
    return payloads


@pytest.mark.parametrize("corruption", ["dictionary indices", "string offsets"])
async def test_arrow_buffers_that_break_the_format_get_invalid_argument(
    gateway_process: tuple[ServiceProcess, str], sink: OtlpSink, corruption: str
) -> None:
    """Bytes from the network must be validated before they are read: a dictionary index past its
    dictionary, or a string offset past the data, must be refused like any bad batch."""
    process, endpoint = gateway_process
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stream = RawStream(channel)
        try:
            _, tables = trace_tables(1)
            bad = stream.records(corrupt_spans(tables, corruption), tenant="bad", batch_id=new_batch_id())
            try:
                answer = await stream.exchange(bad)
            except (grpc.aio.AioRpcError, AssertionError) as error:
                await asyncio.sleep(0.5)
                exit_code = process.process.poll() if process.process else None
                pytest.fail(
                    f"{corruption}: the stream died instead of answering INVALID_ARGUMENT "
                    f"(gateway exit code {exit_code}): {error}"
                )
            assert (answer.batch_id, answer.status_code) == (bad.batch_id, otap_pb2.INVALID_ARGUMENT), answer
            request, tables = trace_tables(2)
            batch_id = new_batch_id()
            answer = await stream.exchange(
                stream.records(restarted_payloads(tables, "after"), tenant="good", batch_id=batch_id)
            )
            assert answer.status_code == otap_pb2.OK, answer
        finally:
            await stream.close()
    await wait_items(sink, Signal.TRACES, Batch.from_message(Signal.TRACES, request).items)
    assert process.process is not None and process.process.poll() is None


async def test_a_message_announcing_a_huge_body_gets_invalid_argument(
    otap_gateway: Gateway, sink: OtlpSink
) -> None:
    """A dozen bytes claiming a 1 TiB IPC message body: refused as bad data, stream goes on."""
    async with grpc.aio.insecure_channel(otap_gateway.endpoint) as channel:
        stream = RawStream(channel)
        try:
            _, tables = trace_tables(3)
            payloads = restarted_payloads(tables, "huge")
            spans = next(p for p in payloads if p.type == P.SPANS)
            spans.record = patch_first_body_length(spans.record, 2**40)
            bad = stream.records(payloads, tenant="bad", batch_id=new_batch_id())
            try:
                answer = await stream.exchange(bad)
            except grpc.aio.AioRpcError as error:
                pytest.fail(
                    f"the stream died instead of answering INVALID_ARGUMENT: {error.code()} {error.details()}"
                )
            assert (answer.batch_id, answer.status_code) == (bad.batch_id, otap_pb2.INVALID_ARGUMENT), answer
            request, tables = trace_tables(4)
            answer = await stream.exchange(
                stream.records(restarted_payloads(tables, "after-huge"), tenant="g", batch_id=new_batch_id())
            )
            assert answer.status_code == otap_pb2.OK, answer
        finally:
            await stream.close()
    await wait_items(sink, Signal.TRACES, Batch.from_message(Signal.TRACES, request).items)


def patch_first_body_length(record: bytes, declared: int) -> bytes:
    """``record`` with the bodyLength of its first message that has a body set to ``declared``."""
    data = bytearray(record)
    pos = 0
    while pos < len(data):
        _, meta_len = struct.unpack_from("<Ii", data, pos)
        base = pos + 8
        root = base + struct.unpack_from("<I", data, base)[0]
        vtable = root - struct.unpack_from("<i", data, root)[0]
        vsize = struct.unpack_from("<H", data, vtable)[0]
        slot = 4 + 2 * 3  # Message.bodyLength
        at = struct.unpack_from("<H", data, vtable + slot)[0] if slot < vsize else 0
        body = struct.unpack_from("<q", data, root + at)[0] if at else 0
        if body:
            struct.pack_into("<q", data, root + at, declared)
            return bytes(data)
        pos = base + meta_len + body
    raise AssertionError("no message with a body")


async def test_an_otap_stream_on_a_signal_without_pipeline_is_unimplemented(sink: OtlpSink) -> None:
    """A receiver only in a traces pipeline answers UNIMPLEMENTED on ArrowLogs (what clients fall back on)."""
    grpc_port = free_port()
    config = service_config(
        ("otap", receiver_part(grpc_port)),
        ("otlp", otlp_exporter_part(sink.endpoint)),
        free_port(),
        signals=("traces",),
    )
    async with (
        running_service("gateway", config, GATEWAY),
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stream = RawStream(channel, Signal.LOGS)
        request = logs_request(2)
        tables = codec.encode(Batch.from_message(Signal.LOGS, request))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream.exchange(
                stream.records(StreamProducer().encode(tables), tenant="t", batch_id=new_batch_id())
            )
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
        await stream.close()


# ---------------------------------------------------------------------------------------------
# The client against a scripted OTAP peer: statuses out of order, bounded pipelining


class ScriptedPeer:
    """An ArrowTraces server that holds batches and answers them in reverse order, with the
    status code the test chose for each Orasi batch id (read from the HPACK headers)."""

    def __init__(self, codes: dict[str, int], hold: int) -> None:
        self.codes = codes
        self.hold = hold
        self.max_in_flight = 0
        self.answered: list[str] = []
        self.server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(
            self._serve,
            request_deserializer=otap_pb2.BatchArrowRecords.FromString,
            response_serializer=otap_pb2.BatchStatus.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.experimental.arrow.v1.ArrowTracesService", {"ArrowTraces": handler}
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _serve(
        self, requests: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[otap_pb2.BatchStatus]:
        decoder = hpack.Decoder()
        queue: asyncio.Queue[otap_pb2.BatchArrowRecords | None] = asyncio.Queue()

        async def pump() -> None:
            async for records in requests:
                await queue.put(records)
            await queue.put(None)

        task = asyncio.create_task(pump())
        pending: list[tuple[int, str]] = []
        finished = False
        try:
            while not finished or pending:
                item: otap_pb2.BatchArrowRecords | None = None
                if not finished:
                    try:
                        item = await asyncio.wait_for(queue.get(), 0.1)
                    except TimeoutError:
                        item = None
                    else:
                        if item is None:
                            finished = True
                if item is not None:
                    orasi_id = dict(decoder.decode(item.headers))[BATCH_ID]
                    pending.append((item.batch_id, orasi_id))
                    self.max_in_flight = max(self.max_in_flight, len(pending))
                if pending and (len(pending) >= self.hold or item is None):
                    for batch_id, orasi_id in reversed(pending):
                        code = self.codes.get(orasi_id, otap_pb2.OK)
                        self.answered.append(orasi_id)
                        yield otap_pb2.BatchStatus(
                            batch_id=batch_id, status_code=code, status_message="scripted"
                        )
                    pending.clear()
        finally:
            task.cancel()


async def test_statuses_are_matched_by_batch_id_and_pipelining_is_bounded() -> None:
    from orasi_common.errors import MalformedData, Throttled, Unavailable

    batches = [
        Batch.from_message(Signal.TRACES, request_for(Signal.TRACES, n, size=1), batch_id=new_batch_id())
        for n in range(24)
    ]
    expected: dict[str, type[BaseException] | None] = {}
    codes: dict[str, int] = {}
    for number, batch in enumerate(batches):
        code = [
            otap_pb2.OK,
            otap_pb2.INVALID_ARGUMENT,
            otap_pb2.OK,
            otap_pb2.UNAVAILABLE,
            otap_pb2.RESOURCE_EXHAUSTED,
        ][number % 5]
        codes[batch.batch_id] = code
        expected[batch.batch_id] = {
            otap_pb2.OK: None,
            otap_pb2.INVALID_ARGUMENT: MalformedData,
            otap_pb2.UNAVAILABLE: Unavailable,
            otap_pb2.RESOURCE_EXHAUSTED: Throttled,
        }[code]
    peer = ScriptedPeer(codes, hold=6)  # more than the client may send: it must stop at 4
    await peer.server.start()
    try:
        async with otap_client(f"127.0.0.1:{peer.port}", max_batches_in_flight=4, num_streams=1) as client:
            outcomes = await asyncio.gather(*(client.send(b) for b in batches), return_exceptions=True)
    finally:
        await peer.server.stop(None)
    got = {
        b.batch_id: (type(o) if isinstance(o, BaseException) else None)
        for b, o in zip(batches, outcomes, strict=True)
    }
    assert got == expected
    assert sorted(peer.answered) == sorted(codes)
    assert peer.max_in_flight == 4, f"{peer.max_in_flight} unanswered batches at once (limit 4)"


async def test_a_stream_broken_by_a_peer_restart_is_replaced(sink: OtlpSink) -> None:
    """The peer goes away mid-stream: sends fail as retryable (Unavailable), and once it is back
    the client opens a fresh stream (fresh IPC and HPACK state) and delivers again."""
    from orasi_common.errors import RetryableError

    grpc_port = free_port()
    config = service_config(
        ("otap", receiver_part(grpc_port)), ("otlp", otlp_exporter_part(sink.endpoint)), free_port()
    )
    endpoint = f"127.0.0.1:{grpc_port}"
    sent: Sent = {}

    async def send(client: OtapClient, number: int) -> None:
        request = request_for(Signal.TRACES, number, prefix="restart")
        batch_id = new_batch_id()
        await client.send(Batch.from_message(Signal.TRACES, request, tenant="restart", batch_id=batch_id))
        sent[batch_id] = (Signal.TRACES, "restart", request)

    async with otap_client(endpoint) as client:
        async with running_service("gateway", config, GATEWAY):
            for number in range(3):
                await send(client, number)
        with pytest.raises(RetryableError):
            await send(client, 100)
        config["service"]["telemetry"]["admin"]["endpoint"] = f"127.0.0.1:{free_port()}"
        async with running_service("gateway", config, GATEWAY):
            for attempt in range(50):  # the channel reconnects with backoff
                try:
                    await send(client, 200 + attempt)
                    break
                except RetryableError:
                    await asyncio.sleep(0.1)
            for number in range(3):
                await send(client, 300 + number)
            # half-close before the service stops: an open OTAP stream holds the receiver's
            # shutdown for its whole grace period (5 s), as it did for the first service
            await client.close()
        assert len(sent) == 7
    await assert_all_delivered(sink, sent)


# ---------------------------------------------------------------------------------------------
# (f) an item the encoder refuses


async def test_the_otap_exporter_drops_only_the_item_it_cannot_encode(
    otap_gateway: Gateway, sink: OtlpSink
) -> None:
    """Receivers refuse ids of the wrong length, but a batch that reached the exporter with one
    (made here without a receiver) loses that span alone: the rest is delivered, and the span is
    counted as failed with reason malformed."""
    request = traces_request(range(6), prefix="isolate")
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) > 2
    spans[1].span_id = b"\x01\x02"
    bad = Batch(Signal.TRACES, len(spans), _raw=request.SerializeToString())
    settings = client_settings("otap")
    config = OtapConfig.model_validate(
        {"endpoint": otap_gateway.endpoint, "tls": {"insecure": True}, "compression": "none"}
    )
    exporter = OTAP_EXPORTER.create(settings, config)
    await exporter.start()
    try:
        await exporter.consume(bad)
    finally:
        await exporter.shutdown()
    await wait_items(sink, Signal.TRACES, len(spans) - 1)
    delivered = [
        s.span_id
        for received in sink.received
        for rs in received.request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert sorted(delivered) == sorted(s.span_id for i, s in enumerate(spans) if i != 1)
    failed = {"signal": "traces", "exporter": "otap", "reason": "malformed"}
    assert settings.metrics.registry.get_sample_value("orasi_exporter_send_failed_items_total", failed) == 1
