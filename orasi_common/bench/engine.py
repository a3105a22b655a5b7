"""The load loop of ``orasi bench`` (and of the benchmarks' generators): send payloads at a fixed
rate or as fast as they are acknowledged, and record every answer.

    plan = Plan(duration=10, rate=10_000, workers=8)     # 10k items/s, at most 8 requests in flight
    run = await drive(sender, cycle(payloads), plan)
    run.summary()                                         # items sent/acknowledged/refused, latencies

* ``rate=None``: ``workers`` loops each send, wait for the answer, send again (a refusal waits
  10 ms, so that a refusing peer is not spun on).
* ``rate``: requests are scheduled ``items / rate`` apart; at most ``workers`` are in flight. A
  send that starts more than ``max_lag`` late (default: one interval) counts as late; with
  ``give_up_lag`` the schedule then restarts from now instead of catching up in a burst.
  Latency is measured from the scheduled time (no coordinated omission).
* ``warmup`` seconds of load precede the measured window; ``Run.window`` holds it, and the
  summary counts only answers that arrived inside it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Payload:
    """One serialized export request and the items it holds; ``tag`` is the caller's."""

    data: bytes
    items: int
    tag: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A peer's answer: items acknowledged and refused; ``status`` None when the call succeeded."""

    acked: int
    refused: int = 0
    status: str | None = None


Sender = Callable[[Payload], Awaitable[Outcome]]


@dataclass(frozen=True)
class Plan:
    duration: float
    rate: float | None = None  # items/s in all; None: as fast as answers come
    workers: int = 1  # requests in flight at most
    warmup: float = 0.0
    max_lag: float | None = None  # seconds late before a send counts late (default: one interval)
    give_up_lag: bool = False  # late: restart the schedule from now rather than catch up


@dataclass
class Run:
    """What a drive did; ``answers`` has one (done, latency, items, outcome) per answered request."""

    started: float
    window: tuple[float, float]
    answers: list[tuple[float, float, int, Outcome]] = field(default_factory=list)
    sent_requests: int = 0
    sent_items: int = 0
    late: int = 0
    in_flight: int = 0

    @property
    def acked_items(self) -> int:
        return sum(outcome.acked for _, _, _, outcome in self.answers)

    @property
    def refused_items(self) -> int:
        return sum(outcome.refused for _, _, _, outcome in self.answers)

    def in_window(self) -> list[tuple[float, float, int, Outcome]]:
        start, end = self.window
        return [answer for answer in self.answers if start <= answer[0] < end]

    def summary(self) -> dict[str, Any]:
        """Counts over the whole run; throughput and latencies from the measured window's start
        to its end or the last answer, if later (requests in flight at the end count)."""
        start = self.window[0]
        window = [answer for answer in self.answers if answer[0] >= start]
        seconds = max([self.window[1], *(answer[0] for answer in window)]) - start
        refused: Counter[str] = Counter()
        requests: Counter[str] = Counter()
        for _, _, _, outcome in self.answers:
            if outcome.refused:
                refused[outcome.status or "PARTIAL_SUCCESS"] += outcome.refused
            requests["acknowledged" if outcome.status is None else "refused"] += 1
        acked_in_window = sum(outcome.acked for _, _, _, outcome in window)
        return {
            "requests": {
                "sent": self.sent_requests,
                "acknowledged": requests["acknowledged"],
                "refused": requests["refused"],
                "unanswered": self.sent_requests - len(self.answers),
            },
            "items": {
                "sent": self.sent_items,
                "acknowledged": self.acked_items,
                "refused": self.refused_items,
                "refused_by_status": dict(sorted(refused.items())),
            },
            "throughput": {
                "items_per_s": round(acked_in_window / seconds, 1) if seconds > 0 else 0.0,
                "requests_per_s": round(
                    sum(1 for *_, o in window if o.status is None) / seconds if seconds > 0 else 0.0, 1
                ),
            },
            "latency_ms": percentiles(sorted(latency for _, latency, _, _ in window)),
            "late_sends": self.late,
        }

    def timeline(self, step: float = 1.0) -> list[dict[str, Any]]:
        """Per ``step`` seconds from the start: items acknowledged and refused, and latencies."""
        buckets: dict[int, list[tuple[float, float, int, Outcome]]] = {}
        for answer in self.answers:
            buckets.setdefault(int((answer[0] - self.started) / step), []).append(answer)
        rows = []
        for index in range(max(buckets, default=-1) + 1):
            answers = buckets.get(index, [])
            latency = percentiles(sorted(latency for _, latency, _, _ in answers))
            rows.append(
                {
                    "t_s": round(index * step, 3),
                    "items_acknowledged_per_s": sum(o.acked for *_, o in answers) / step,
                    "items_refused_per_s": sum(o.refused for *_, o in answers) / step,
                    "latency_ms": latency,
                }
            )
        return rows


def percentiles(sorted_seconds: list[float]) -> dict[str, float] | None:
    """p50, p90, p99 and max, in milliseconds, of sorted latencies in seconds (None: no values)."""
    if not sorted_seconds:
        return None

    def at(q: float) -> float:
        return round(sorted_seconds[min(len(sorted_seconds) - 1, int(q * len(sorted_seconds)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)}


def new_run(plan: Plan, started: float) -> Run:
    """The record of a load that starts at ``started`` (monotonic clock)."""
    return Run(started, (started + plan.warmup, started + plan.warmup + plan.duration))


async def drive(
    sender: Sender,
    payloads: Iterator[Payload],
    plan: Plan,
    *,
    started: float | None = None,
    run: Run | None = None,
    on_send: Callable[[Payload], None] | None = None,
    on_answer: Callable[[Payload, Outcome, float], None] | None = None,
) -> Run:
    """Send ``payloads`` (an endless iterator, e.g. ``itertools.cycle``) as ``plan`` says.

    The load starts at ``started`` (default: now); ``run`` (from ``new_run``) lets the caller
    watch the counts while it goes."""
    clock = time.monotonic  # CLOCK_MONOTONIC: comparable across processes on Linux
    run = run or new_run(plan, clock() if started is None else started)
    begin, end = run.started, run.window[1]

    async def send(payload: Payload, scheduled: float) -> Outcome:
        run.sent_requests += 1
        run.sent_items += payload.items
        run.in_flight += 1
        if on_send is not None:
            on_send(payload)
        try:
            outcome = await sender(payload)
        finally:
            run.in_flight -= 1
        done = clock()
        run.answers.append((done, done - scheduled, payload.items, outcome))
        if on_answer is not None:
            on_answer(payload, outcome, done - scheduled)
        return outcome

    if plan.rate is None:

        async def worker() -> None:
            while (now := clock()) < end:
                outcome = await send(next(payloads), now)
                if outcome.status is not None:
                    await asyncio.sleep(0.01)  # do not spin on a refusing peer

        await asyncio.gather(*(worker() for _ in range(plan.workers)))
        return run

    slots = asyncio.Semaphore(plan.workers)
    tasks: set[asyncio.Task[Outcome]] = set()

    async def paced(payload: Payload, scheduled: float) -> Outcome:
        try:
            return await send(payload, scheduled)
        finally:
            slots.release()

    scheduled = max(begin, clock())
    while scheduled < end:
        payload = next(payloads)
        interval = payload.items / plan.rate
        if (delay := scheduled - clock()) > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        if clock() - scheduled > (interval if plan.max_lag is None else plan.max_lag):
            run.late += 1
            if plan.give_up_lag:
                scheduled = clock()
        task = asyncio.create_task(paced(payload, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        scheduled += interval
    if tasks:
        await asyncio.gather(*tasks)
    return run


__all__ = ["Outcome", "Payload", "Plan", "Run", "Sender", "drive", "new_run", "percentiles"]
