"""OTLP/gRPC served by worker processes (``protocols.grpc.processes``).

The workers are real processes and the clients real gRPC channels; the pipelines' side is a sink
in this process that records, refuses or holds batches, so that every verdict a sender can get
is checked: accepted, each classified refusal (with RetryInfo), a bug downstream, bad input
caught by the worker. Also: a killed worker is replaced, shutdown lets requests in flight finish,
a taken port fails start with a clear error, and workers exit when their owner dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import psutil
import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orasi_common.errors import MalformedData, OrasiError, Throttled, Unavailable
from orasi_common.pdata import SPECS, Batch, Signal
from orasi_common.receivers.otap import Config as OtapConfig
from orasi_common.receivers.otlp.config import GrpcConfig
from orasi_common.receivers.otlp.workers import GrpcWorkers
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.sink import OtlpSink
from orasi_common.transport import headers, status
from tests.integration.otap_data import eventually

TENANT_HEADER = headers.TENANT
TRACES = SPECS[Signal.TRACES].grpc_method


def request_bytes(name: str, spans: int = 3) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(spans):
        scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"{name}-{index}")
    return request.SerializeToString()


class RecordingSink:
    """The pipelines' side: records batches; ``refuse`` makes it raise, ``hold`` makes it wait."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """As new: the workers shared by a module's tests hand each test an empty sink."""
        self.batches: list[Batch] = []
        self.refuse: Callable[[], BaseException] | None = None
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def consume(self, batch: Batch, transport: str) -> None:
        assert transport == "grpc"
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse is not None:
            raise self.refuse()
        self.batches.append(batch)


async def start_workers(
    sink: RecordingSink, processes: int = 2, endpoint: str = "127.0.0.1:0"
) -> GrpcWorkers:
    workers = GrpcWorkers(
        GrpcConfig(endpoint=endpoint, processes=processes), sink, TENANT_HEADER, logging.getLogger("test")
    )
    await workers.start()
    return workers


# One event loop for the module: the shared workers' owner side (its links to the workers, the
# calls into the sink) runs in the loop that started them, so every test runs in that loop.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[tuple[GrpcWorkers, RecordingSink]]:
    """Workers (two processes) for the tests that only send requests: started once per module."""
    recording = RecordingSink()
    started = await start_workers(recording)
    try:
        yield started, recording
    finally:
        await started.shutdown()


@pytest_asyncio.fixture(loop_scope="module")
async def sink(shared: tuple[GrpcWorkers, RecordingSink]) -> RecordingSink:
    recording = shared[1]
    recording.reset()
    return recording


@pytest_asyncio.fixture(loop_scope="module")
async def workers(shared: tuple[GrpcWorkers, RecordingSink], sink: RecordingSink) -> GrpcWorkers:
    started = shared[0]
    # Every test before this one left both workers serving.
    assert len(started.pids) == 2 and all(psutil.pid_exists(pid) for pid in started.pids)
    return started


@pytest_asyncio.fixture(loop_scope="module")
async def fresh_sink() -> RecordingSink:
    return RecordingSink()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh_workers(fresh_sink: RecordingSink) -> AsyncIterator[GrpcWorkers]:
    """Workers of the test's own, for the tests that kill them, cut their links or stop them."""
    started = await start_workers(fresh_sink)
    try:
        yield started
    finally:
        await started.shutdown()


def channel_to(workers: GrpcWorkers) -> grpc.aio.Channel:
    # No connection sharing between channels, so that connections can land on either worker.
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{workers.port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def export(workers: GrpcWorkers, payload: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    async with channel_to(workers) as channel:
        result: bytes = await channel.unary_unary(TRACES)(payload, timeout=30, metadata=metadata)
        return result


async def refusal(workers: GrpcWorkers, payload: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await export(workers, payload)
    return raised.value


def listening(port: int | None) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port or 0), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


@module_loop
async def test_every_request_reaches_the_sink_with_its_bytes_tenant_and_batch_id(
    workers: GrpcWorkers, sink: RecordingSink
) -> None:
    assert len(workers.pids) == 2 and all(psutil.pid_exists(pid) for pid in workers.pids)
    sent: dict[str, bytes] = {}

    async def client(number: int) -> None:
        async with channel_to(workers) as channel:
            call = channel.unary_unary(TRACES)
            for index in range(25):
                batch_id = os.urandom(16).hex()
                payload = request_bytes(f"c{number}-r{index}")
                sent[batch_id] = payload
                metadata = ((TENANT_HEADER, f"tenant-{number % 3}"), (headers.BATCH_ID, batch_id))
                assert await call(payload, timeout=30, metadata=metadata) == b""

    await asyncio.gather(*(client(number) for number in range(8)))
    received = {batch.batch_id: batch for batch in sink.batches}
    assert received.keys() == sent.keys()
    for batch_id, batch in received.items():
        assert batch.raw == sent[batch_id]
        assert batch.items == 3 and batch.signal is Signal.TRACES
    assert {batch.tenant for batch in sink.batches} == {"tenant-0", "tenant-1", "tenant-2"}


@module_loop
async def test_a_request_without_a_tenant_header_belongs_to_the_default_tenant(
    workers: GrpcWorkers, sink: RecordingSink
) -> None:
    await export(workers, request_bytes("plain"))
    assert [batch.tenant for batch in sink.batches] == ["default"]
    assert len(sink.batches[0].batch_id) == 32  # a fresh id: the sender named none


@pytest.mark.parametrize(
    ("error", "code", "delay"),
    [
        (Throttled("the queue is full", retry_after=2.5), grpc.StatusCode.RESOURCE_EXHAUSTED, 2.5),
        (Unavailable("the lake is down", retry_after=4), grpc.StatusCode.UNAVAILABLE, 4.0),
        (Unavailable("the lake is down"), grpc.StatusCode.UNAVAILABLE, None),
        (MalformedData("span 3 has no trace id"), grpc.StatusCode.INVALID_ARGUMENT, None),
    ],
    ids=["throttled", "unavailable-with-delay", "unavailable", "malformed"],
)
@module_loop
async def test_the_pipelines_refusal_reaches_the_sender_classified(
    workers: GrpcWorkers, sink: RecordingSink, error: OrasiError, code: grpc.StatusCode, delay: float | None
) -> None:
    sink.refuse = lambda: error
    raised = await refusal(workers, request_bytes("refused"))
    assert raised.code() is code
    assert raised.details() == error.message
    classified = status.from_grpc(raised.code(), raised.details(), raised.trailing_metadata())
    assert getattr(classified, "retry_after", None) == delay
    sink.refuse = None
    assert await export(workers, request_bytes("after")) == b""  # and it keeps serving
    assert len(sink.batches) == 1


@module_loop
async def test_a_bug_downstream_fails_that_request_only(workers: GrpcWorkers, sink: RecordingSink) -> None:
    sink.refuse = lambda: RuntimeError("boom")
    raised = await refusal(workers, request_bytes("bug"))
    assert raised.code() is grpc.StatusCode.INTERNAL
    sink.refuse = None
    assert await export(workers, request_bytes("after")) == b""
    assert len(sink.batches) == 1


@module_loop
async def test_bad_input_is_refused_by_the_worker_and_never_handed_over(
    workers: GrpcWorkers, sink: RecordingSink
) -> None:
    raised = await refusal(workers, b"garbage\xff\x00\x01")
    assert raised.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf ExportTraceServiceRequest" in (raised.details() or "")
    assert not sink.arrived.is_set()
    assert await export(workers, request_bytes("valid")) == b""
    assert len(sink.batches) == 1


@module_loop
async def test_an_odd_request_is_refused_by_the_worker_naming_its_path_and_never_handed_over(
    workers: GrpcWorkers, sink: RecordingSink
) -> None:
    """Values no later hop can carry (issue 11) are refused by whichever worker serves the
    connection (a new channel each time, so both do), as the owner would refuse them."""
    odd = [
        ({"span_id": b"\x01\x02"}, "spans[1].span_id: must be 8 bytes or empty, got 2 bytes"),
        (
            {"start_time_unix_nano": 2**64 - 1},
            "spans[1].start_time_unix_nano: 18446744073709551615 is past the latest time",
        ),
    ]
    for attempt in range(6):
        fields, problem = odd[attempt % 2]
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="honest")
        scope.spans.add(**{"trace_id": os.urandom(16), "span_id": os.urandom(8), "name": "odd", **fields})
        raised = await refusal(workers, request.SerializeToString())
        assert raised.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"resource_spans[0].scope_spans[0].{problem}" in (raised.details() or "")
    assert not sink.arrived.is_set()
    assert await export(workers, request_bytes("valid")) == b""
    assert len(sink.batches) == 1


@module_loop
async def test_a_killed_worker_is_replaced(fresh_workers: GrpcWorkers, fresh_sink: RecordingSink) -> None:
    workers, sink = fresh_workers, fresh_sink
    victim, survivor = workers.pids
    os.kill(victim, signal.SIGKILL)
    await eventually(
        lambda: victim not in workers.pids and len(workers.pids) == 2, 60, "a replacement worker"
    )
    assert survivor in workers.pids
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    for index in range(10):  # whichever worker each new connection lands on serves it
        assert await export(workers, request_bytes(f"after-{index}")) == b""
    assert len(sink.batches) == 10


@module_loop
async def test_a_broken_link_refuses_the_request_in_flight_as_retryable_and_serving_resumes(
    fresh_workers: GrpcWorkers, fresh_sink: RecordingSink
) -> None:
    """The owner's end of a worker's socket closes under a request (as when the owner dies): the
    sender gets UNAVAILABLE, never a success; the worker exits and its replacement serves."""
    workers, sink = fresh_workers, fresh_sink
    pids = workers.pids
    sink.hold = asyncio.Event()
    async with channel_to(workers) as channel:
        call = asyncio.ensure_future(channel.unary_unary(TRACES)(request_bytes("cut"), timeout=30))
        await asyncio.wait_for(sink.arrived.wait(), 30)
        for link in list(workers._links):  # the socket as the owner's death would leave it
            link.close()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    await eventually(
        lambda: not set(pids) & set(workers.pids) and len(workers.pids) == 2 and listening(workers.port),
        60,
        "replacement workers listening",
    )
    sink.hold = None
    assert await export(workers, request_bytes("after")) == b""


@module_loop
async def test_shutdown_lets_a_request_in_flight_finish_and_leaves_no_worker(
    fresh_sink: RecordingSink,
) -> None:
    sink = fresh_sink
    workers = await start_workers(sink)
    pids = workers.pids
    sink.hold = asyncio.Event()
    payload = request_bytes("in-flight")
    call = asyncio.create_task(export(workers, payload))
    await asyncio.wait_for(sink.arrived.wait(), 30)
    stopping = asyncio.create_task(workers.shutdown())
    # The workers got SIGTERM: they no longer listen.
    await eventually(lambda: not listening(workers.port), 30, "the workers to stop listening")
    assert not call.done()
    sink.hold.set()
    assert await asyncio.wait_for(call, 30) == b""
    await asyncio.wait_for(stopping, 30)
    assert [batch.raw for batch in sink.batches] == [payload]
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
    )
    await workers.shutdown()  # safe twice


@module_loop
async def test_a_taken_port_fails_start_with_a_clear_error(fresh_sink: RecordingSink) -> None:
    sink = fresh_sink
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}"):
            await start_workers(sink, endpoint=f"127.0.0.1:{port}")


def test_the_otap_receiver_refuses_worker_processes() -> None:
    with pytest.raises(ValueError, match=r"protocols\.grpc\.processes"):
        OtapConfig.model_validate({"protocols": {"grpc": {"processes": 2}}})
    assert OtapConfig.model_validate({"protocols": {"grpc": {}}}).protocols.grpc is not None


def test_an_agent_with_workers_forwards_and_its_workers_die_with_it(tmp_path: Path) -> None:
    overrides = {"receivers": {"otlp": {"protocols": {"grpc": {"processes": 2}}}}}
    with OtlpSink() as sink, AgentProcess.launch(tmp_path, sink.endpoint, overrides=overrides) as agent:
        workers = psutil.Process(agent.pid).children()
        assert len(workers) == 2
        with grpc.insecure_channel(agent.grpc_endpoint) as channel:
            for index in range(5):
                assert channel.unary_unary(TRACES)(request_bytes(f"agent-{index}"), timeout=30) == b""
        sink.wait_for_items(Signal.TRACES, 15)
        os.kill(agent.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"workers outlived their agent: {alive}"
