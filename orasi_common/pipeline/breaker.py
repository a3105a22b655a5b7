"""A circuit breaker per upstream endpoint: closed → open → half-open → closed.

Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls are refused
at once for ``open_duration`` seconds. Half-open: probes pass, at most ``half_open_max_calls`` of
them in flight at once (a slot is free again when its probe's outcome is recorded, or when the
call ended without one: ``abandon``, a cancelled call), so probes go
on one after another until ``success_threshold`` consecutive successes close it; a failure opens
it again and the count starts over. A success recorded while it is open (a
call let through before it opened, answering late) counts as a probe's. Only failures that say
something about the endpoint (unreachable, unavailable, timed out) should be recorded, not
refusals of bad data.

``reconfigure`` takes new thresholds and durations without losing the state: an open breaker
stays open (for the new ``open_duration``, counted from when it opened), the failures and
successes counted so far count against the new ``failure_threshold`` and ``success_threshold``
from the next outcome, and a half-open one lets through as many probes at once as the new
``half_open_max_calls`` allows.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from pydantic import Field

from orasi_common.config.model import ComponentConfig


class BreakerConfig(ComponentConfig):
    failure_threshold: int = Field(default=3, ge=1, description="Consecutive failures that open it.")
    open_duration: float = Field(default=2.0, gt=0, description="Seconds it stays open before a probe.")
    half_open_max_calls: int = Field(default=1, ge=1, description="Probes in flight at once when half-open.")
    success_threshold: int = Field(
        default=1, ge=1, description="Consecutive successful probes that close it (failback after as many)."
    )


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0  # in flight, when half-open
        self._successes = 0  # consecutive, since it last opened

    def reconfigure(self, config: BreakerConfig) -> None:
        self._config = config

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """Whether a call may go to the endpoint now (counts a probe when half-open)."""
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._config.open_duration:
                return False
            self._set(BreakerState.HALF_OPEN)
            self._probes = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes >= self._config.half_open_max_calls:
                return False
            self._probes += 1
        return True

    def available(self) -> bool:
        """Whether a call would be allowed, without counting a probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self._clock() - self._opened_at >= self._config.open_duration
        return self._probes < self._config.half_open_max_calls

    def record_success(self) -> None:
        self._failures = 0
        if self.state is BreakerState.CLOSED:
            return
        self._probes = max(0, self._probes - 1)
        self._successes += 1
        if self._successes >= self._config.success_threshold:
            self._successes = 0
            self._set(BreakerState.CLOSED)

    def abandon(self) -> None:
        """A call ``allow`` let through ended with no outcome (it was cancelled: the caller's own
        timeout, shutdown): its probe slot, when half-open, is free again. Neither a success nor a
        failure is counted."""
        if self.state is BreakerState.HALF_OPEN:
            self._probes = max(0, self._probes - 1)

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._config.failure_threshold:
            self._opened_at = self._clock()
            self._successes = 0
            self._set(BreakerState.OPEN)
