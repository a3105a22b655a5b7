"""An OtlpSink whose answers can be held back: exports wait at a gate until it opens.

While the gate is closed, every Export call blocks (the exporter's send stays in flight, so its
queue keeps the batch), which lets tests fill queues and observe drains without timing games.

    with GatedSink() as sink:
        sink.close_gate()
        ...                     # data piles up in the agent
        sink.open_gate()        # everything held is now recorded
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from orasi_common.pdata import Signal
from orasi_common.testing.sink import OtlpSink


@dataclass
class GatedSink(OtlpSink):
    """``held`` counts Export calls waiting at the gate right now."""

    max_hold: float = 60.0
    held: int = 0
    _gate: threading.Event = field(default_factory=threading.Event)
    _held_changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._gate.set()

    def close_gate(self) -> None:
        self._gate.clear()

    def open_gate(self) -> None:
        self._gate.set()

    def wait_for_held(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` Export calls wait at the gate; raise on timeout."""
        with self._held_changed:
            if not self._held_changed.wait_for(lambda: self.held >= count, timeout):
                raise TimeoutError(f"{self.held} exports wait at the gate, expected {count}")

    def stop(self) -> None:
        self.open_gate()
        super().stop()

    def _handler(self, signal: Signal) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        inner = super()._handler(signal)

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            if not self._gate.is_set():
                with self._held_changed:
                    self.held += 1
                    self._held_changed.notify_all()
                try:
                    self._gate.wait(self.max_hold)
                finally:
                    with self._held_changed:
                        self.held -= 1
                        self._held_changed.notify_all()
            result: bytes = inner(request, context)
            return result

        return export


__all__ = ["GatedSink"]
