"""The `batch` processor: groups batches per tenant and sends them by items, bytes or time.

Grouping concatenates serialized requests (no parse); only a group over
``send_batch_max_size`` is parsed, to be split. A send triggered by size happens inside the
``consume`` that crossed the threshold, so a slow downstream slows the sender (backpressure);
a send triggered by the timeout runs in the processor's own task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from orasi_common.errors import OrasiError, RetryableError, Throttled
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.processors.batch.config import Config

MIB = 1024 * 1024


@dataclass
class _Group:
    batches: list[Batch] = field(default_factory=list)
    items: int = 0
    size_bytes: int = 0
    timer: asyncio.TimerHandle | None = None


class BatchProcessor:
    def __init__(self, settings: Settings, config: Config, next_consumer: Consumer) -> None:
        self._config = config
        self._next = next_consumer
        self._logger = settings.logger
        self._id = settings.id
        self._sent = settings.metrics.batch_sent
        self._sizes = settings.metrics.batch_size.labels(settings.id)
        self._size_limit = int(config.send_batch_size_mib * MIB) if config.send_batch_size_mib else None
        self._groups: dict[str, _Group] = {}
        self._tasks = TaskScope()
        self._stopping = False

    async def start(self) -> None:
        await self._tasks.open()

    async def consume(self, batch: Batch) -> None:
        group = self._groups.get(batch.tenant)
        if group is None:
            if len(self._groups) >= self._config.max_tenants:
                raise Throttled(
                    f"the batch processor already holds data of {self._config.max_tenants} "
                    "tenants (max_tenants); retry shortly",
                    retry_after=self._config.timeout,
                )
            group = self._groups[batch.tenant] = _Group()
            group.timer = asyncio.get_running_loop().call_later(
                self._config.timeout, self._on_timeout, batch.tenant, group
            )
        batch.release_message()
        group.batches.append(batch)
        group.items += batch.items
        group.size_bytes += batch.size_bytes
        if group.items >= self._config.send_batch_size or (
            self._size_limit is not None and group.size_bytes >= self._size_limit
        ):
            await self._send(self._take(batch.tenant), "size")

    def _take(self, tenant: str) -> _Group:
        group = self._groups.pop(tenant)
        if group.timer is not None:
            group.timer.cancel()
        return group

    def _on_timeout(self, tenant: str, group: _Group) -> None:
        if self._groups.get(tenant) is group:
            self._tasks.spawn(self._send_in_background(self._take(tenant), "timeout"))

    async def _send(self, group: _Group, trigger: str, *, persist: bool = False) -> None:
        """Send a group, split to the maximum size.

        With ``persist`` (sends nobody waits for), a retryable refusal is retried until it
        succeeds or the processor shuts down; otherwise the refusal goes to the caller.
        """
        merged = Batch.merge(group.batches)
        limit = self._config.send_batch_max_size
        parts = merged.split(limit) if limit else [merged]
        self._sent.labels(self._id, trigger).inc(len(parts))
        for part in parts:
            self._sizes.observe(part.items)
            while True:
                try:
                    await self._next.consume(part)
                    break
                except RetryableError as error:
                    if not persist or self._stopping:
                        raise
                    await asyncio.sleep(error.retry_after or self._config.timeout)

    async def _send_in_background(self, group: _Group, trigger: str) -> None:
        try:
            await self._send(group, trigger, persist=True)
        except OrasiError as error:
            self._logger.error(
                "The next component refused a batch; its items are lost.",
                extra={"items": group.items, "trigger": trigger, "error": error.message},
            )

    async def shutdown(self) -> None:
        """Send every pending group, then wait for sends in flight."""
        self._stopping = True
        for tenant in list(self._groups):
            await self._send_in_background(self._take(tenant), "shutdown")
        await self._tasks.close()
