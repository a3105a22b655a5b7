"""Test doubles for the unit tests: a recording consumer and settings for components."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.telemetry.metrics import Metrics


def make_settings(
    component_id: str = "test",
    kind: Kind = Kind.PROCESSOR,
    metrics: Metrics | None = None,
    pipeline: str | None = None,
) -> Settings:
    return Settings(
        component_id,
        kind,
        "agent",
        metrics if metrics is not None else Metrics("agent"),
        logging.getLogger(f"orasi.test.{kind.value}.{component_id}"),
        pipeline,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


class RecordingConsumer:
    """Records every batch it accepts; ``refuse`` holds errors to raise on the next calls."""

    def __init__(self, refuse: list[Exception] | None = None) -> None:
        self.batches: list[Batch] = []
        self.refuse = list(refuse or [])
        self.calls = 0
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        async with self._condition():
            self._condition().notify_all()
        if self.refuse:
            raise self.refuse.pop(0)
        self.batches.append(batch)
        async with self._condition():
            self._condition().notify_all()

    @property
    def items(self) -> int:
        return sum(b.items for b in self.batches)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait for ``predicate`` to hold (checked after every consume call); fail after 5 s."""
        async with asyncio.timeout(5):
            async with self._condition():
                await self._condition().wait_for(predicate)
