"""Leader election for singleton jobs: ``/orasi/<region>/leader/<role>`` on etcd.

A candidate grants itself a lease of ``ttl`` seconds and, in one transaction, creates the key
under that lease only if the key does not exist (``create_revision == 0``). The one whose
transaction succeeds leads and keeps its lease alive every ``ttl / 3`` seconds; the others watch
the key and try again when it is deleted (or every ``ttl`` seconds, whatever the watch says).

- ``resign()`` (and ``shutdown()``) revokes the lease: the key goes at once and a follower leads
  within a round trip.
- A killed leader stops keeping its lease alive; etcd deletes the key ``ttl`` seconds after the
  last keep-alive, and a follower leads right after (within ``ttl`` plus a little).
- Never two leaders: a leader that could not renew its lease for ``ttl - margin`` seconds (from
  the moment it *sent* the last successful keep-alive) stops leading on its own, before etcd can
  hand the key to anyone else.

``on_change(is_leader)`` is called on every change, and ``changed`` (an ``asyncio.Event``) is
set then; ``wait_until(leader)`` waits for a given state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from orasi_common.control.registration import ROOT
from orasi_common.control.registry import etcd_client
from orasi_common.pipeline.tasks import TaskScope

log = logging.getLogger("orasi.control.election")


def leader_key(region: str, role: str) -> str:
    """``/orasi/<region>/leader/<role>``."""
    for value, what in ((region, "region"), (role, "role")):
        if not value or "/" in value:
            raise ValueError(f"{what} must be a non-empty name without '/', got {value!r}")
    return f"{ROOT}/{region}/leader/{role}"


class Election:
    def __init__(
        self,
        endpoints: list[str],
        region: str,
        role: str,
        candidate: str,
        ttl: int = 10,
        on_change: Callable[[bool], None] | None = None,
        margin: float = 0.5,
    ) -> None:
        if ttl < 2:
            raise ValueError("an election's ttl is at least 2 seconds")
        self.key = leader_key(region, role)
        self.candidate = candidate
        self._endpoint = endpoints[0]
        self._ttl = ttl
        self._margin = margin
        self._on_change = on_change
        self._client: Any = None
        self._lease: Any = None
        self._tasks = TaskScope()  # the campaign
        self._campaigning = False
        self._leader = False
        self.changed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _set(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        log.info(
            "Leadership changed.", extra={"key": self.key, "candidate": self.candidate, "leader": leader}
        )
        self.changed.set()
        self.changed = asyncio.Event()
        if self._on_change is not None:
            self._on_change(leader)

    async def wait_until(self, leader: bool) -> None:
        while self._leader != leader:
            await self.changed.wait()

    async def campaign(self) -> None:
        """Start running for leader in the background (returns at once; idempotent)."""
        if self._campaigning:
            return
        if self._client is None:
            self._client = etcd_client(self._endpoint)
            await self._client.connect()
        await self._tasks.open()
        self._tasks.spawn(self._run(), name=f"election {self.key}")
        self._campaigning = True

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # etcd unreachable: not leading; try again shortly
                self._set(False)
                log.warning("Election round failed; retrying.", extra={"key": self.key, "error": repr(error)})
                await asyncio.sleep(min(1.0, self._ttl / 4))

    async def _round(self) -> None:
        client = self._client
        lease = self._lease = await client.lease(self._ttl)
        granted = time.monotonic()
        key = self.key.encode()
        won, responses = await client.transaction(
            compare=[client.transactions.create(key) == 0],
            success=[client.transactions.put(key, self.candidate.encode(), lease.id)],
            failure=[client.transactions.get(key)],
        )
        if not won:
            with contextlib.suppress(Exception):
                await lease.revoke()
            revision = responses[0][0][1].mod_revision if responses and responses[0] else None
            await self._wait_for_vacancy(revision)
            return
        self._set(True)
        renewed = granted
        try:
            while True:
                await asyncio.sleep(self._ttl / 3)
                sent = time.monotonic()
                if sent - renewed > self._ttl - self._margin:
                    break
                left = self._ttl - self._margin - (sent - renewed)  # before etcd could let go
                reply = await asyncio.wait_for(client.refresh_lease(lease.id), timeout=max(0.1, left))
                if reply is None or reply.TTL <= 0:
                    break
                renewed = sent
        finally:
            self._set(False)

    async def _wait_for_vacancy(self, revision: int | None) -> None:
        """Until the key is deleted (or ``ttl`` seconds pass: then the caller simply tries again)."""
        import aetcd

        watch = await self._client.watch(
            self.key.encode(), start_revision=(revision + 1) if revision else None
        )
        try:
            async with asyncio.timeout(self._ttl):
                async for event in watch:
                    if event.kind == aetcd.EventKind.DELETE:
                        return
        except TimeoutError:
            return
        finally:
            await watch.cancel()

    async def resign(self) -> None:
        """Stop running and give up leadership at once (the key is deleted with the lease)."""
        await self._tasks.close(cancel=True)
        self._campaigning = False
        self._set(False)
        if self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.revoke()
            self._lease = None

    async def shutdown(self) -> None:
        """Resign and close the client; safe twice and without ``campaign``."""
        await self.resign()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
