"""Exponential backoff with jitter, and the retry loop (driven by a fake clock and sleep)."""

from __future__ import annotations

import itertools
import random

import pytest

from orasi_common.errors import MalformedData, RetryableError, Throttled, Unavailable
from orasi_common.pipeline.retry import RetryConfig, backoff_delays, call_with_retry


def test_delays_stay_within_the_jitter_bounds() -> None:
    config = RetryConfig(initial_interval=1, randomization_factor=0.5, multiplier=2, max_interval=10)
    delays = list(itertools.islice(backoff_delays(config, random.Random(7)), 12))
    intervals = [1, 2, 4, 8, 10, 10, 10, 10, 10, 10, 10, 10]
    for delay, interval in zip(delays, intervals, strict=True):
        assert interval * 0.5 <= delay <= interval * 1.5
    assert max(delays) <= 15  # capped interval * (1 + factor)


def test_delays_are_exact_without_jitter() -> None:
    config = RetryConfig(initial_interval=0.5, randomization_factor=0, multiplier=3, max_interval=10)
    assert list(itertools.islice(backoff_delays(config, random.Random(1)), 5)) == [0.5, 1.5, 4.5, 10, 10]


def test_seeded_delays_are_reproducible_and_jittered() -> None:
    config = RetryConfig(initial_interval=1, randomization_factor=0.5, multiplier=1, max_interval=1)
    first = list(itertools.islice(backoff_delays(config, random.Random(42)), 20))
    assert first == list(itertools.islice(backoff_delays(config, random.Random(42)), 20))
    assert len(set(first)) > 1  # jitter actually varies the delays


def test_config_defaults_and_bounds() -> None:
    config = RetryConfig()
    assert (config.enabled, config.initial_interval, config.multiplier, config.max_interval) == (
        True,
        5.0,
        1.5,
        30.0,
    )
    for bad in (
        {"initial_interval": 0},
        {"randomization_factor": 1.5},
        {"multiplier": 0.5},
        {"max_elapsed_time": -1},
    ):
        with pytest.raises(ValueError):
            RetryConfig(**bad)  # type: ignore[arg-type]


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


class Attempts:
    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


NO_JITTER = RetryConfig(
    initial_interval=1, randomization_factor=0, multiplier=2, max_interval=8, max_elapsed_time=100
)


async def test_retries_retryable_errors_until_success() -> None:
    fake = FakeTime()
    attempt = Attempts(Unavailable("a"), Unavailable("b"), Unavailable("c"), None)
    retried: list[tuple[str, float]] = []
    await call_with_retry(
        attempt,
        NO_JITTER,
        on_retry=lambda e, d: retried.append((e.message, d)),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert attempt.calls == 4
    assert fake.sleeps == [1, 2, 4]
    assert retried == [("a", 1), ("b", 2), ("c", 4)]


async def test_permanent_error_stops_at_once() -> None:
    fake = FakeTime()
    attempt = Attempts(Unavailable("a"), MalformedData("bad"), None)
    with pytest.raises(MalformedData):
        await call_with_retry(attempt, NO_JITTER, sleep=fake.sleep, clock=fake.clock)
    assert attempt.calls == 2
    assert fake.sleeps == [1]


async def test_retry_after_replaces_the_backoff() -> None:
    fake = FakeTime()
    attempt = Attempts(Throttled("t", retry_after=7), Unavailable("u"), Throttled("t", retry_after=0.5), None)
    await call_with_retry(attempt, NO_JITTER, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [7, 1, 0.5]


async def test_gives_up_after_max_elapsed_time() -> None:
    fake = FakeTime()
    config = NO_JITTER.model_copy(update={"max_elapsed_time": 10})
    attempt = Attempts(*[Unavailable(f"e{i}") for i in range(20)])
    with pytest.raises(Unavailable) as caught:
        await call_with_retry(attempt, config, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [1, 2, 4]  # the next delay (8) would end past 10 s
    assert sum(fake.sleeps) <= 10
    assert caught.value.message == "e3"  # the last error is the one raised
    assert attempt.calls == 4


async def test_server_delay_past_the_budget_gives_up() -> None:
    fake = FakeTime()
    attempt = Attempts(Throttled("t", retry_after=500))
    with pytest.raises(Throttled):
        await call_with_retry(attempt, NO_JITTER, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


async def test_zero_max_elapsed_time_retries_forever() -> None:
    fake = FakeTime()
    config = NO_JITTER.model_copy(update={"max_elapsed_time": 0})
    attempt = Attempts(*[Unavailable("x") for _ in range(50)])
    await call_with_retry(attempt, config, sleep=fake.sleep, clock=fake.clock)
    assert attempt.calls == 51
    assert fake.now > 300


async def test_disabled_raises_at_once() -> None:
    fake = FakeTime()
    attempt = Attempts(Unavailable("no"), None)
    with pytest.raises(Unavailable):
        await call_with_retry(attempt, RetryConfig(enabled=False), sleep=fake.sleep, clock=fake.clock)
    assert attempt.calls == 1
    assert fake.sleeps == []


async def test_success_needs_no_sleep() -> None:
    fake = FakeTime()
    await call_with_retry(Attempts(None), NO_JITTER, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


async def test_subclass_of_retryable_error_is_retried() -> None:
    class Custom(RetryableError):
        pass

    fake = FakeTime()
    attempt = Attempts(Custom("c"), None)
    await call_with_retry(attempt, NO_JITTER, sleep=fake.sleep, clock=fake.clock)
    assert attempt.calls == 2
