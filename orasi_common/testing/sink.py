"""A real OTLP/gRPC server that records what it receives: the far end of pipelines under test.

It runs grpc's threaded server, so tests can use it from synchronous code (SDK exporters) and
from asyncio alike. ``fail_next`` makes it refuse the next requests with a chosen status, to
exercise retries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from orasi_common.pdata import SPECS, Signal
from orasi_common.pdata.otlp import count_items, parse_request


@dataclass
class Received:
    signal: Signal
    request: Message
    metadata: dict[str, str]
    items: int


@dataclass
class _Failure:
    code: grpc.StatusCode
    retry_after: float | None


@dataclass
class OtlpSink:
    """Start with ``start()`` (returns the port) and stop with ``stop()``; or use as a context."""

    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _server: grpc.Server | None = None
    refused: int = 0

    def start(self) -> int:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        for signal, spec in SPECS.items():
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(spec.grpc_service, {"Export": handler}),)
            )
        self.port = self._server.add_insecure_port(f"{self.host}:0")
        self._server.start()
        return self.port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> OtlpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, count: int, code: grpc.StatusCode, retry_after: float | None = None) -> None:
        """Refuse the next ``count`` requests with ``code`` (and RetryInfo when given)."""
        with self._condition:
            self._failures.extend(_Failure(code, retry_after) for _ in range(count))

    def reset(self) -> None:
        """Forget what arrived and what was refused, and drop pending ``fail_next`` refusals: a
        sink shared by several tests (one agent per module) starts each test empty."""
        with self._condition:
            self.received.clear()
            self._failures.clear()
            self.refused = 0

    def _handler(self, signal: Signal):  # type: ignore[no-untyped-def]
        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._condition:
                failure = self._failures.pop(0) if self._failures else None
                if failure is not None:
                    self.refused += 1
            if failure is not None:
                trailers: Sequence[tuple[str, bytes]] = ()
                if failure.retry_after is not None:
                    status = status_pb2.Status(code=failure.code.value[0], message="sink refuses")
                    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
                    info.retry_delay.FromNanoseconds(int(failure.retry_after * 1e9))
                    status.details.add().Pack(info)
                    trailers = (("grpc-status-details-bin", status.SerializeToString()),)
                context.abort_with_status(_RpcStatus(failure.code, "sink refuses", tuple(trailers)))
            message = parse_request(signal, request)
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            with self._condition:
                self.received.append(Received(signal, message, metadata, count_items(signal, message)))
                self._condition.notify_all()
            return b""

        return export

    def items(self, signal: Signal) -> int:
        with self._condition:
            return sum(r.items for r in self.received if r.signal is signal)

    def wait_for_items(self, signal: Signal, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` items of ``signal`` arrived; raise on timeout."""
        with self._condition:
            arrived = self._condition.wait_for(
                lambda: sum(r.items for r in self.received if r.signal is signal) >= count, timeout
            )
            got = sum(r.items for r in self.received if r.signal is signal)
            if not arrived:
                raise TimeoutError(f"the sink has {got} {signal.value} items, expected {count}")
            return [r for r in self.received if r.signal is signal]


@dataclass(frozen=True)
class _RpcStatus(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]
