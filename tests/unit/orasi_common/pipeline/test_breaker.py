"""The circuit breaker's states on a fake clock: probes in flight and consecutive successes."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from orasi_common.pipeline.breaker import BreakerConfig, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clocked:
    """A breaker on a clock the test moves, with the states it changed to."""

    def __init__(self, **config: Any) -> None:
        self.now = 0.0
        self.changes: list[BreakerState] = []
        self.breaker = CircuitBreaker(BreakerConfig(**config), self.changes.append, clock=lambda: self.now)

    def open(self) -> None:
        """Fail until it opens, then wait out ``open_duration`` (1 s in these tests)."""
        while self.breaker.state is not OPEN:
            self.breaker.record_failure()
        self.now += 1.0

    def succeed(self, probes: int) -> None:
        """``probes`` probes, one after another, each let through and succeeding."""
        for _ in range(probes):
            assert self.breaker.allow()
            self.breaker.record_success()


def opened(**config: Any) -> tuple[Clocked, CircuitBreaker]:
    """A breaker (open for 1 s) that opened and whose ``open_duration`` is over."""
    clocked = Clocked(open_duration=1, **config)
    clocked.open()
    return clocked, clocked.breaker


def test_by_default_one_successful_probe_closes_it() -> None:
    clocked = Clocked(failure_threshold=2, open_duration=1)
    breaker = clocked.breaker
    breaker.record_failure()
    assert breaker.state is CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is OPEN and not breaker.allow() and not breaker.available()
    clocked.now = 0.99
    assert not breaker.allow()
    clocked.now = 1.0
    assert breaker.available() and breaker.allow()
    assert breaker.state is HALF_OPEN and not breaker.allow()  # the one probe is in flight
    breaker.record_success()
    assert clocked.changes == [OPEN, HALF_OPEN, CLOSED]


def test_success_threshold_lets_probes_through_one_after_another_until_it_is_reached() -> None:
    clocked, breaker = opened(success_threshold=3)
    for probe in range(3):
        assert breaker.state is (HALF_OPEN if probe else OPEN)
        assert breaker.available() and breaker.allow()
        assert not breaker.available() and not breaker.allow()  # half_open_max_calls=1 in flight
        breaker.record_success()
    assert breaker.state is CLOSED and breaker.allow() and breaker.allow()
    assert clocked.changes == [OPEN, HALF_OPEN, CLOSED]


def test_a_failed_probe_opens_it_again_and_the_successes_count_from_zero() -> None:
    clocked, breaker = opened(success_threshold=3)
    clocked.succeed(2)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is OPEN and not breaker.allow()
    clocked.now += 1.0
    clocked.succeed(2)
    assert breaker.state is HALF_OPEN  # two of three: the earlier two no longer count
    clocked.succeed(1)
    assert breaker.state is CLOSED
    assert clocked.changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_half_open_max_calls_bounds_the_probes_in_flight_not_the_probes() -> None:
    _, breaker = opened(half_open_max_calls=2, success_threshold=4)
    assert breaker.allow() and breaker.allow() and not breaker.allow()
    breaker.record_success()
    assert breaker.allow() and not breaker.allow()
    breaker.record_success()
    breaker.record_success()
    assert breaker.state is HALF_OPEN and breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED


def test_a_late_success_while_open_counts_as_a_probe() -> None:
    clocked, breaker = opened(success_threshold=2)
    breaker.record_success()  # a call let through while it was closed, answering now
    assert breaker.state is OPEN
    clocked.succeed(1)
    assert breaker.state is CLOSED


def test_reconfigure_counts_the_successes_so_far_against_the_new_threshold() -> None:
    clocked, breaker = opened(success_threshold=5)
    clocked.succeed(2)
    assert breaker.allow()
    breaker.reconfigure(BreakerConfig(open_duration=1, success_threshold=3, half_open_max_calls=2))
    assert breaker.state is HALF_OPEN and breaker.allow()  # a second probe in flight: the new limit
    breaker.record_success()  # the third success
    assert breaker.state is CLOSED


def test_success_threshold_must_be_at_least_one() -> None:
    with pytest.raises(pydantic.ValidationError, match="success_threshold"):
        BreakerConfig(success_threshold=0)


def test_an_abandoned_probe_frees_its_slot_and_counts_as_nothing() -> None:
    """A probe whose call was cancelled (the caller's timeout) leaves no outcome: its slot is
    free again for the next probe, and it neither closes nor reopens the breaker."""
    clocked, breaker = opened(success_threshold=2)
    assert breaker.allow() and not breaker.allow()  # the one slot is taken
    breaker.abandon()
    assert breaker.state is HALF_OPEN and breaker.allow()
    breaker.record_success()
    breaker.abandon()  # closed or open: nothing to free, nothing changes
    clocked.succeed(1)
    assert clocked.changes == [OPEN, HALF_OPEN, CLOSED]
    breaker.abandon()
    assert breaker.state is CLOSED and breaker.allow()
