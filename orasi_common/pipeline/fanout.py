"""Fan-out: one batch to several consumers."""

from __future__ import annotations

from collections.abc import Sequence

from orasi_common.errors import OrasiError
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Consumer


class FanOut:
    """Hands each batch to every consumer; each gets its own Batch (sharing immutable bytes).

    Every consumer is tried. If any refused, the first retryable refusal is raised (the sender
    retries, and consumers that had accepted see the data again: at-least-once), else the first.
    """

    def __init__(self, consumers: Sequence[Consumer]) -> None:
        self.consumers = list(consumers)

    async def consume(self, batch: Batch) -> None:
        if len(self.consumers) == 1:
            await self.consumers[0].consume(batch)
            return
        refusals: list[OrasiError] = []
        for consumer in self.consumers:
            try:
                await consumer.consume(batch.copy())
            except OrasiError as exc:
                refusals.append(exc)
        if refusals:
            raise next((e for e in refusals if e.retryable), refusals[0])
