"""Where services register: one interface, two implementations.

- ``EtcdRegistry`` (aetcd): every registered key lives under one lease of ``ttl`` seconds, kept
  alive every ``ttl / 3`` seconds by the registry's own task. When the lease is lost (etcd
  restarted, a partition longer than the TTL) the task grants a new lease and writes every key
  again, retrying until etcd answers; ``shutdown()`` revokes the lease, so the keys vanish at
  once. A killed process stops keeping its lease alive and its keys expire after ``ttl``.
- ``InProcessRegistry``: the same contract inside one process (``orasi up`` without etcd);
  nothing expires, ``shutdown()`` deletes what it registered.

Both answer ``snapshot(prefix)`` and ``watch(prefix)``: the watch first yields the full snapshot
(``Change(key, value)`` per key) and then every change (``value`` None for a deletion). The
etcd watch is the plain one: an etcd error ends it with that error (resuming from the last
revision, and resyncing after a compaction, is the `etcd` resolver's work). Keys are ``str``,
values ``bytes``; ``registration`` defines what they hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from orasi_common.pipeline.tasks import TaskScope

log = logging.getLogger("orasi.control")


@dataclass(frozen=True)
class Change:
    """A key that appeared, changed (``value`` set) or disappeared (``value`` None)."""

    key: str
    value: bytes | None


class Registry(Protocol):
    """Registration of this process's keys, and reading of everyone's."""

    async def start(self) -> None: ...

    async def shutdown(self) -> None:
        """Remove what this process registered (revoke the lease); safe twice and without start."""

    async def register(self, key: str, value: bytes) -> None:
        """Write ``key`` and keep it alive until ``deregister`` or ``shutdown``."""

    async def deregister(self, key: str) -> None: ...

    async def snapshot(self, prefix: str) -> dict[str, bytes]: ...

    def watch(self, prefix: str) -> AsyncIterator[Change]:
        """The current keys under ``prefix``, then every change, until the iterator is closed."""
        ...


def parse_endpoint(url: str) -> tuple[str, int]:
    """``http://host:port`` (or ``host:port``; 2379 when the port is left out) → ``(host, port)``;
    ValueError otherwise. The client speaks plaintext only, so ``https://`` is refused."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise ValueError(f"an etcd endpoint is http://host:port (TLS is not supported yet), got {url!r}")
    try:
        port = parsed.port or 2379
    except ValueError as error:
        raise ValueError(f"bad port in etcd endpoint {url!r}") from error
    return parsed.hostname, port


def etcd_client(endpoint: str, timeout: float = 5.0, options: Mapping[str, int] | None = None) -> Any:
    """An aetcd client for ``endpoint``, with ``options`` added to its gRPC channel's (aetcd is
    imported here, so that only the services that use etcd load its gRPC stubs)."""
    import aetcd

    host, port = parse_endpoint(endpoint)
    # gRPC's reconnection backoff grows to 2 minutes by default: after an etcd outage the client
    # would wait that long before it tries again. One second at most keeps re-registration quick.
    channel = {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.min_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        **(options or {}),
    }
    return aetcd.Client(host=host, port=port, timeout=timeout, options=channel)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class EtcdRegistry:
    def __init__(self, endpoints: list[str], ttl: int, retry_interval: float = 0.5) -> None:
        if not endpoints:
            raise ValueError("the etcd registry needs at least one endpoint")
        self._endpoints = endpoints
        self._ttl = ttl
        self._retry = retry_interval
        self._client: Any = None
        self._lease: Any = None
        self._keys: dict[str, bytes] = {}
        self._tasks = TaskScope()  # the keep-alive task
        self._lock = asyncio.Lock()
        self.sessions = 0  # leases granted so far (1 + the re-registrations after a lost lease)

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = etcd_client(self._endpoints[0])
        await self._tasks.open()
        try:
            await self._client.connect()
            await self._new_session()
        except Exception as error:  # a service starts without etcd, and registers once it answers
            log.warning("etcd does not answer; registering once it does.", extra={"error": repr(error)})
        self._tasks.spawn(self._keep_alive(), name="etcd-registry-keepalive")

    async def _new_session(self) -> None:
        """A new lease, and every key written again under it (``_lease`` stays None on a failure)."""
        async with self._lock:
            self._lease = None
            lease = await self._client.lease(self._ttl)
            for key, value in self._keys.items():
                await self._client.put(key.encode(), value, lease=lease)
            self._lease = lease
            self.sessions += 1

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3 if self._lease is not None else self._retry)
            try:
                if self._lease is None:
                    await self._new_session()
                    log.info("Registered in etcd.", extra={"keys": len(self._keys), "session": self.sessions})
                    continue
                reply = await self._client.refresh_lease(self._lease.id)
                if reply is None or reply.TTL <= 0:
                    self._lease = None
                    log.warning("etcd lease expired; registering again.")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # etcd down or restarting: keep trying, never end the task
                if self._lease is not None:
                    log.warning("etcd does not answer; retrying.", extra={"error": repr(error)})
                self._lease = None

    async def register(self, key: str, value: bytes) -> None:
        """Write ``key`` now when etcd answers; otherwise it is written with the next lease."""
        async with self._lock:
            self._keys[key] = value
            if self._lease is None:
                return
            try:
                await self._client.put(key.encode(), value, lease=self._lease)
            except Exception as error:
                log.warning("etcd does not answer; registering once it does.", extra={"error": repr(error)})
                self._lease = None

    async def deregister(self, key: str) -> None:
        async with self._lock:
            if self._keys.pop(key, None) is None or self._lease is None:
                return
            try:
                await self._client.delete(key.encode())
            except Exception as error:  # it goes with the lease
                log.warning("Could not delete a key in etcd.", extra={"key": key, "error": repr(error)})

    async def snapshot(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` (the registry must be started)."""
        result = await self._client.get_prefix(prefix.encode())
        return {kv.key.decode(): kv.value for kv in result}

    async def watch(self, prefix: str) -> AsyncIterator[Change]:
        import aetcd

        raw = prefix.encode()
        result = await self._client.get_prefix(raw)
        for kv in result:
            yield Change(kv.key.decode(), kv.value)
        watch = await self._client.watch(
            raw, range_end=prefix_end(raw), start_revision=result.header.revision + 1
        )
        try:
            async for event in watch:
                gone = event.kind == aetcd.EventKind.DELETE
                yield Change(event.kv.key.decode(), None if gone else event.kv.value)
        finally:
            await watch.cancel()

    async def shutdown(self) -> None:
        await self._tasks.close(cancel=True)
        if self._client is None:
            return
        client, self._client = self._client, None
        try:
            if self._lease is not None:
                await self._lease.revoke()
        except Exception as error:  # etcd gone: the lease expires on its own
            log.warning("Could not revoke the etcd lease; it expires.", extra={"error": repr(error)})
        finally:
            self._lease = None
            await client.close()


class InProcessRegistry:
    """A dictionary with watchers, for one process."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._mine: set[str] = set()
        self._watchers: list[tuple[str, asyncio.Queue[Change]]] = []

    async def start(self) -> None:
        pass

    def _publish(self, change: Change) -> None:
        for prefix, queue in self._watchers:
            if change.key.startswith(prefix):
                queue.put_nowait(change)

    async def register(self, key: str, value: bytes) -> None:
        self._data[key] = value
        self._mine.add(key)
        self._publish(Change(key, value))

    async def deregister(self, key: str) -> None:
        self._mine.discard(key)
        if self._data.pop(key, None) is not None:
            self._publish(Change(key, None))

    async def snapshot(self, prefix: str) -> dict[str, bytes]:
        return {key: value for key, value in self._data.items() if key.startswith(prefix)}

    async def watch(self, prefix: str) -> AsyncIterator[Change]:
        # Unbounded on purpose: a change per registration, and a registration per service start.
        queue: asyncio.Queue[Change] = asyncio.Queue()
        entry = (prefix, queue)
        self._watchers.append(entry)
        try:
            for key, value in sorted((await self.snapshot(prefix)).items()):
                yield Change(key, value)
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(entry)

    async def shutdown(self) -> None:
        for key in sorted(self._mine):
            await self.deregister(key)


LOCAL = InProcessRegistry()
"""The registry of this process, for services that run without etcd (``endpoints: []``)."""
