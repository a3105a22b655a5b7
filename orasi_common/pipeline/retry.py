"""Retry with exponential backoff and jitter, honouring the peer's retry delay."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import RetryableError


class RetryConfig(ComponentConfig):
    enabled: bool = Field(default=True, description="Retry retryable failures.")
    initial_interval: float = Field(default=5.0, gt=0, description="Seconds before the first retry.")
    randomization_factor: float = Field(
        default=0.5, ge=0, le=1, description="Jitter: each delay is drawn from interval * (1 +- factor)."
    )
    multiplier: float = Field(default=1.5, ge=1, description="Growth of the interval per retry.")
    max_interval: float = Field(default=30.0, gt=0, description="Largest interval between retries.")
    max_elapsed_time: float = Field(
        default=300.0, ge=0, description="Seconds after which a batch is given up (0: never)."
    )


def backoff_delays(config: RetryConfig, rng: random.Random | None = None) -> Iterator[float]:
    """The jittered delays before each retry, endlessly (the caller bounds the elapsed time)."""
    rng = rng or random.Random()
    interval = config.initial_interval
    while True:
        spread = interval * config.randomization_factor
        yield interval - spread + rng.random() * 2 * spread
        interval = min(interval * config.multiplier, config.max_interval)


async def call_with_retry(
    attempt: Callable[[], Awaitable[None]],
    config: RetryConfig,
    *,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``attempt`` until it succeeds, a permanent error, or the retry budget is spent.

    A retryable error's ``retry_after`` (the peer's RetryInfo / Retry-After) replaces the
    backoff delay for that retry. The last error is raised when giving up.
    """
    started = clock()
    delays = backoff_delays(config)
    while True:
        try:
            await attempt()
            return
        except RetryableError as error:
            if not config.enabled:
                raise
            delay = error.retry_after if error.retry_after is not None else next(delays)
            elapsed = clock() - started
            if config.max_elapsed_time and elapsed + delay > config.max_elapsed_time:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)
