"""The `batch` processor: groups batches per tenant and sends them by items, bytes or time.

Grouping concatenates serialized requests (no parse); only a group over
``send_batch_max_size`` is parsed, to be split. A send triggered by size happens inside the
``consume`` that crossed the threshold, so a slow downstream slows the sender (backpressure);
a send triggered by the timeout runs in the processor's own task and retries retryable
refusals, since its items were already acknowledged. With ``wait_for_send``, ``consume`` returns
only once its batch was handed on, so an acknowledgement means what the next component's
acknowledgement means (e.g. durable in a write-ahead-log queue), at a latency of up to
``timeout``.

Live settings (``control.settings``): ``send_batch_size``, ``send_batch_size_mib``,
``send_batch_max_size`` and ``timeout`` can change while it runs (``reconfigure``); sizes apply to
the next item, the timeout to the next group started (groups already waiting keep theirs).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

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
    # Resolved once every item of the group was handed on (or given up: then ``error`` is set).
    handed: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    error: OrasiError | None = None

    def finish(self, error: OrasiError | None = None) -> None:
        self.error = self.error or error
        if not self.handed.done():
            self.handed.set_result(None)


class BatchProcessor:
    reloadable_keys: ClassVar[frozenset[str]] = frozenset(
        {"send_batch_size", "send_batch_size_mib", "send_batch_max_size", "timeout"}
    )

    def __init__(self, settings: Settings, config: Config, next_consumer: Consumer) -> None:
        self._next = next_consumer
        self._logger = settings.logger
        self._id = settings.id
        self._sent = settings.metrics.batch_sent
        self._sizes = settings.metrics.batch_size.labels(settings.id)
        self.reconfigure(config)
        self._groups: dict[str, _Group] = {}
        self._tasks = TaskScope()
        self._stopping = False

    @property
    def config(self) -> Config:
        return self._config

    def reconfigure(self, config: Config) -> None:
        self._config = config
        self._size_limit = int(config.send_batch_size_mib * MIB) if config.send_batch_size_mib else None

    async def start(self) -> None:
        await self._tasks.open()

    async def consume(self, batch: Batch) -> None:
        if batch.otap is not None:
            await asyncio.to_thread(batch.check_otap)  # held means acknowledged: refuse bad tables now
        group = self._groups.get(batch.tenant)
        limit = self._size_limit
        if group is not None and limit is not None and group.size_bytes + batch.size_bytes > limit:
            # Adding this batch would pass the byte limit: send what is there first.
            await self._send_now(self._take(batch.tenant), "size", includes_caller=False)
            group = None
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
        if group.items >= self._config.send_batch_size or (limit is not None and group.size_bytes >= limit):
            await self._send_now(self._take(batch.tenant), "size")
        if self._config.wait_for_send:
            await self._handed(group)

    @staticmethod
    async def _handed(group: _Group) -> None:
        """Wait until the group's items were handed on; raise if they were given up."""
        await asyncio.shield(group.handed)
        if group.error is not None:
            raise group.error

    def _take(self, tenant: str) -> _Group:
        group = self._groups.pop(tenant)
        if group.timer is not None:
            group.timer.cancel()
        return group

    def _on_timeout(self, tenant: str, group: _Group) -> None:
        if self._groups.get(tenant) is group:
            group = self._take(tenant)
            self._tasks.spawn(self._deliver(self._parts(group.batches), "timeout", group))

    def _parts(self, batches: list[Batch]) -> list[Batch]:
        merged = Batch.merge(batches)
        limit = self._config.send_batch_max_size
        return merged.split(limit) if limit else [merged]

    async def _send_now(self, group: _Group, trigger: str, *, includes_caller: bool = True) -> None:
        """Send a group on behalf of a ``consume`` (backpressure to its caller).

        On a retryable refusal only the caller's own batch (the group's last, if it
        ``includes_caller``) is refused: items already acknowledged to earlier callers are kept
        and retried in the background.
        """
        parts = self._parts(group.batches)
        for index, part in enumerate(parts):
            try:
                await self._next.consume(part)
            except RetryableError:
                if index > 0:  # some items went out; keep the rest, the caller's included
                    self._tasks.spawn(self._deliver(parts[index:], trigger, group))
                    return
                acknowledged = group.batches[:-1] if includes_caller else group.batches
                if acknowledged:
                    self._tasks.spawn(self._deliver(self._parts(acknowledged), trigger, group))
                raise
            self._count(part, trigger)
        group.finish()

    def _count(self, part: Batch, trigger: str) -> None:
        self._sent.labels(self._id, trigger).inc()
        self._sizes.observe(part.items)

    async def _deliver(self, parts: list[Batch], trigger: str, group: _Group) -> None:
        """Send parts no caller is blocked on: retryable refusals are retried until shutdown."""
        for part in parts:
            while True:
                try:
                    await self._next.consume(part)
                    self._count(part, trigger)
                    break
                except RetryableError as error:
                    if not self._stopping:
                        await asyncio.sleep(error.retry_after or self._config.timeout)
                        continue
                    self._lost(part, trigger, error, group)
                    break
                except OrasiError as error:
                    self._lost(part, trigger, error, group)
                    break
        group.finish()

    def _lost(self, part: Batch, trigger: str, error: OrasiError, group: _Group) -> None:
        group.finish(error)
        self._logger.error(
            "The next component refused a batch; its items are lost.",
            extra={"items": part.items, "trigger": trigger, "error": error.message},
        )

    async def shutdown(self) -> None:
        """Send every pending group, then wait for sends in flight."""
        self._stopping = True
        for tenant in list(self._groups):
            group = self._take(tenant)
            await self._deliver(self._parts(group.batches), "shutdown", group)
        await self._tasks.close()
