"""Following one etcd prefix for as long as a service runs: list, watch, resume, resync.

Both readers of the control plane that follow a prefix live (the `etcd` resolver, over
``services/<kind>/``, and the live settings, over ``config/<kind>/``) share this loop::

    list prefix (revision R) ──► watch from R+1 ──► put / delete events ──► handler
         ▲                          │ etcd unreachable: on_up(False), log once, reconnect,
         │                          │ resume from the last revision seen
         └── revision compacted ◄───┘ (the events in between are gone): list again

The handler (``PrefixHandler``) gets the whole listing (``listed``: what is not in it is gone),
then one call per event; it must not raise (it runs between two events). No etcd error ends the
task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from orasi_common.control.registry import etcd_client
from orasi_common.pipeline.tasks import TaskScope

if TYPE_CHECKING:
    import aetcd

log = logging.getLogger("orasi.control.watch")

# gRPC keepalive on the etcd channel, so a watch on a silently dead peer fails within ~15 s
# (etcd accepts pings every 5 s or more).
CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
}


class Entry(NamedTuple):
    """One key under the prefix: its value and the revision that last modified it."""

    key: bytes
    value: bytes
    mod_revision: int


class PrefixHandler(Protocol):
    def listed(self, entries: Sequence[Entry], revision: int) -> None:
        """The whole prefix at ``revision`` (at start, and after a compaction)."""

    def put(self, entry: Entry) -> None: ...

    def delete(self, key: bytes, revision: int) -> None: ...


class PrefixWatch:
    """Keeps ``handler`` in step with the keys under ``prefix``; ``on_up`` says whether etcd answers.

    ``down_message`` and ``up_message`` are the two log lines (once per outage); ``extra()`` the
    fields logged with them, by ``logger``.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: bytes,
        handler: PrefixHandler,
        *,
        name: str,
        timeout: float = 5.0,
        retry_interval: float = 1.0,
        on_up: Callable[[bool], None] = lambda _: None,
        down_message: str = "etcd is unreachable; keeping the last values until it answers again.",
        up_message: str = "etcd answers; the watch resumes.",
        extra: Callable[[], Mapping[str, Any]] = dict,
        logger: logging.Logger = log,
    ) -> None:
        if not endpoints:
            raise ValueError(f"{name}: a prefix watch needs at least one etcd endpoint")
        self._targets = list(endpoints)
        self._prefix = prefix
        self._handler = handler
        self._name = name
        self._timeout = timeout
        self._retry = retry_interval
        self._on_up = on_up
        self._down_message = down_message
        self._up_message = up_message
        self._extra = extra
        self._log = logger
        self._revision: int | None = None  # the last revision seen: the listing's or an event's
        self._up: bool | None = None
        self._attempt = 0
        self.resyncs = 0
        self._tasks = TaskScope()

    @property
    def revision(self) -> int | None:
        return self._revision

    @property
    def up(self) -> bool | None:
        """None before the first attempt to reach etcd."""
        return self._up

    async def start(self) -> None:
        """One listing attempt (so a reachable etcd's keys are handled when start returns), then the
        watch runs in a task; an unreachable etcd is retried there, never raised."""
        client = await self._reach()
        await self._tasks.open()
        self._tasks.spawn(self._run(client), name=f"etcd-watch {self._name}")

    async def stop(self) -> None:
        await self._tasks.close(cancel=True)

    def _set_up(self, up: bool, error: BaseException | None = None) -> None:
        if up == self._up:
            return
        if up and self._up is False:
            self._log.info(self._up_message, extra={**self._extra(), "revision": self._revision})
        elif self._up is not None or error is not None:
            self._log.warning(self._down_message, extra={**self._extra(), "error": str(error)})
        self._up = up
        self._on_up(up)

    async def _list(self, client: aetcd.Client) -> None:
        listing = await client.get_prefix(self._prefix)
        self._handler.listed(
            [Entry(kv.key, kv.value, kv.mod_revision) for kv in listing], listing.header.revision
        )
        self._revision = listing.header.revision
        self._set_up(True)

    async def _reach(self) -> aetcd.Client | None:
        """A connected client that has listed the prefix if none was listed yet (None on failure)."""
        url = self._targets[self._attempt % len(self._targets)]
        self._attempt += 1
        client = etcd_client(url, self._timeout, CHANNEL_OPTIONS)
        try:
            await client.connect()
            if self._revision is None:
                await self._list(client)
        except Exception as error:  # etcd unreachable, or anything else: never end the watch
            await close_client(client)
            self._set_up(False, error)
            return None
        return client

    async def _run(self, client: aetcd.Client | None) -> None:
        import aetcd

        while True:
            if client is None:
                await asyncio.sleep(self._retry)
                client = await self._reach()
                continue
            try:
                await self._watch(client)
            except aetcd.RevisionCompactedError as error:
                self.resyncs += 1
                self._log.warning(
                    "The watch's revision was compacted; listing the prefix again.",
                    extra={
                        **self._extra(),
                        "revision": self._revision,
                        "compacted": error.compacted_revision,
                    },
                )
                self._revision = None
            except asyncio.CancelledError:
                await close_client(client)
                raise
            except Exception as error:  # a watch error never ends the watch
                self._set_up(False, error)
            await close_client(client)
            client = None if self._revision is not None else await self._reach()

    async def _watch(self, client: aetcd.Client) -> None:
        """Watch from the revision after the last one seen; returns or raises when the watch ends."""
        assert self._revision is not None
        watch = await client.watch_prefix(self._prefix, start_revision=self._revision + 1)
        self._set_up(True)
        try:
            async for event in watch:
                kv = event.kv
                if event.kind == "DELETE":
                    self._handler.delete(kv.key, kv.mod_revision)
                else:
                    self._handler.put(Entry(kv.key, kv.value, kv.mod_revision))
                self._revision = max(self._revision, kv.mod_revision)
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()


async def close_client(client: aetcd.Client) -> None:
    with contextlib.suppress(Exception):
        await client.close()


__all__ = ["CHANNEL_OPTIONS", "Entry", "PrefixHandler", "PrefixWatch", "close_client"]
