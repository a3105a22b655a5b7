"""The `etcd` resolver: the upstreams are the services registered under one etcd prefix.

Every service's ``etcd`` extension keeps ``/orasi/<region>/services/<kind>/<instance>`` → its
registration record (``orasi_common.control.registration``, the one format) under a lease. The
resolver lists that prefix, then watches it from the listed revision, so an instance that
registers, changes or whose lease expires is in or out of the endpoint set within one event::

    list prefix (revision R) ──► watch from R+1 ──► events ──► endpoint set ──► on_change
         ▲                          │ etcd unreachable: keep the set, orasi_discovery_up 0,
         │                          │ log once, reconnect, resume from the last revision seen
         └── revision compacted ◄───┘ (the events in between are gone): list again, replace

Which endpoint of a record is used follows the exporter's protocol: ``otlp_grpc`` for OTLP,
``otap`` for OTAP (``protocol`` overrides it). A record without that endpoint is not an upstream;
a record that does not parse (or a key with the wrong shape) is skipped, counted in
``orasi_discovery_malformed_records`` and logged once per revision of the key, and an instance
whose record turns malformed leaves the set. No etcd error ends the resolver's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import Field, field_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.control.registration import MalformedRecord, decode, parse_key, prefix
from orasi_common.control.registry import etcd_client, parse_endpoint
from orasi_common.extensions.etcd.config import Config as EtcdExtensionConfig
from orasi_common.pipeline.tasks import TaskScope

if TYPE_CHECKING:
    import aetcd

log = logging.getLogger("orasi.discovery")

RecordEndpoint = Literal["otlp_grpc", "otap"]


class EtcdResolverConfig(ComponentConfig):
    service: Literal["agent", "gateway", "bridge"] = Field(
        description="Kind of service whose registered instances are the upstreams."
    )
    region: str | None = Field(
        default=None, description="Region to look in (default: the `etcd` extension's region)."
    )
    endpoints: list[str] | None = Field(
        default=None,
        min_length=1,
        description="etcd client URLs, http://host:port (default: the `etcd` extension's).",
    )
    protocol: RecordEndpoint | None = Field(
        default=None,
        description="Which endpoint of a record to dial (default: otap for OTAP exporters, else otlp_grpc).",
    )
    timeout: float = Field(default=5.0, gt=0, description="Seconds one etcd call may take.")
    retry_interval: float = Field(
        default=1.0, gt=0, description="Seconds between attempts to reach etcd while it is unreachable."
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None:
            prefix(value)  # raises ValueError on an empty name or one holding "/"
        return value

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, value: list[str] | None) -> list[str] | None:
        for url in value or []:
            parse_endpoint(url)
        return value


class EtcdDefaults(NamedTuple):
    """The service's ``etcd`` extension's endpoints and region, for resolvers that leave them unset."""

    endpoints: list[str]
    region: str

    @classmethod
    def of(cls, extensions: Mapping[str, ComponentConfig]) -> EtcdDefaults | None:
        """From the first started ``etcd`` extension that registers in a real etcd (None if none)."""
        for config in extensions.values():
            if isinstance(config, EtcdExtensionConfig) and config.endpoints:
                return cls(list(config.endpoints), config.region)
        return None


def record_endpoint(key: bytes, value: bytes, kind: str, protocol: RecordEndpoint) -> str | None:
    """The ``protocol`` endpoint of the record ``key`` → ``value`` of a ``kind`` instance (None when
    the instance does not serve it); ``MalformedRecord`` when the key or the value is not a record."""
    parsed = parse_key(key)
    if parsed.kind != kind:
        raise MalformedRecord(f"{key!r} is not under the prefix of {kind!r}")
    endpoint: str | None = getattr(decode(value).endpoints, protocol)
    return endpoint


@dataclass
class Membership:
    """The instances under one prefix and the endpoint each offers (pure: no I/O).

    ``put``/``delete``/``replace`` return True when the endpoint set changed; ``malformed`` counts
    records skipped, once per key and revision (a resync reads the same bad record again).
    """

    kind: str
    protocol: RecordEndpoint
    instances: dict[bytes, str | None] = field(default_factory=dict)
    malformed: int = 0
    _bad: dict[bytes, int] = field(default_factory=dict)

    def endpoints(self) -> list[str]:
        return sorted({e for e in self.instances.values() if e is not None})

    def _apply(self, key: bytes, value: bytes, revision: int) -> None:
        try:
            self.instances[key] = record_endpoint(key, value, self.kind, self.protocol)
            self._bad.pop(key, None)
        except MalformedRecord as error:
            self.instances.pop(key, None)
            if self._bad.get(key) != revision:
                self._bad[key] = revision
                self.malformed += 1
                log.warning(
                    "Skipped a malformed registration record.",
                    extra={"key": key.decode("utf-8", "replace"), "revision": revision, "error": str(error)},
                )

    def put(self, key: bytes, value: bytes, revision: int) -> bool:
        before = self.endpoints()
        self._apply(key, value, revision)
        return self.endpoints() != before

    def delete(self, key: bytes) -> bool:
        before = self.endpoints()
        self.instances.pop(key, None)
        self._bad.pop(key, None)
        return self.endpoints() != before

    def replace(self, records: Iterable[tuple[bytes, bytes, int]]) -> bool:
        """The whole prefix as listed: instances not in ``records`` are gone."""
        before = self.endpoints()
        self.instances.clear()
        listed = set()
        for key, value, revision in records:
            listed.add(key)
            self._apply(key, value, revision)
        self._bad = {k: r for k, r in self._bad.items() if k in listed}
        return self.endpoints() != before


# gRPC keepalive on the etcd channel, so a watch on a silently dead peer fails within ~15 s
# (etcd accepts pings every 5 s or more).
_CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
}


class EtcdWatch:
    """Keeps ``membership`` in step with etcd and calls ``on_change`` with each new endpoint set."""

    def __init__(
        self,
        config: EtcdResolverConfig,
        protocol: RecordEndpoint,
        on_change: Callable[[list[str]], None],
        *,
        name: str,
        defaults: EtcdDefaults | None = None,
        on_up: Callable[[bool], None] = lambda _: None,
        on_malformed: Callable[[int], None] = lambda _: None,
    ) -> None:
        region = config.region or (defaults.region if defaults else None)
        urls = config.endpoints or (defaults.endpoints if defaults else None)
        if region is None or urls is None:
            raise ValueError(
                f"resolver {name}: set etcd.region and etcd.endpoints, or start the etcd extension "
                "(service.extensions) with etcd endpoints"
            )
        self._config = config
        self._name = name
        self._prefix = prefix(region, config.service).encode()
        self._targets = list(urls)
        self._membership = Membership(config.service, config.protocol or protocol)
        self._on_change = on_change
        self._on_up = on_up
        self._on_malformed = on_malformed
        self._revision: int | None = None  # the last revision seen: the listing's or an event's
        self._up: bool | None = None
        self._attempt = 0
        self.resyncs = 0
        self._tasks = TaskScope()

    @property
    def revision(self) -> int | None:
        return self._revision

    async def start(self) -> None:
        """One listing attempt (so a reachable etcd's set is known when start returns), then the
        watch runs in a task; an unreachable etcd is retried there, never raised."""
        client = await self._reach()
        await self._tasks.open()
        self._tasks.spawn(self._run(client), name=f"etcd-resolver {self._name}")

    async def stop(self) -> None:
        await self._tasks.close(cancel=True)

    def _set_up(self, up: bool, error: BaseException | None = None) -> None:
        if up == self._up:
            return
        if up and self._up is False:
            log.info(
                "etcd answers; discovery resumes.",
                extra={"resolver": self._name, "revision": self._revision},
            )
        elif self._up is not None or error is not None:
            log.warning(
                "etcd is unreachable; keeping the last known endpoints until it answers again.",
                extra={
                    "resolver": self._name,
                    "endpoints": len(self._membership.endpoints()),
                    "error": str(error),
                },
            )
        self._up = up
        self._on_up(up)

    def _changed(self) -> None:
        self._on_change(self._membership.endpoints())

    def _count_malformed(self, before: int) -> None:
        if self._membership.malformed > before:
            self._on_malformed(self._membership.malformed - before)

    async def _list(self, client: aetcd.Client) -> None:
        listing = await client.get_prefix(self._prefix)
        before = self._membership.malformed
        changed = self._membership.replace((kv.key, kv.value, kv.mod_revision) for kv in listing)
        self._count_malformed(before)
        self._revision = listing.header.revision
        if changed or self._up is None:
            self._changed()
        self._set_up(True)

    async def _reach(self) -> aetcd.Client | None:
        """A connected client that has listed the prefix if none was listed yet (None on failure)."""
        url = self._targets[self._attempt % len(self._targets)]
        self._attempt += 1
        client = etcd_client(url, self._config.timeout, _CHANNEL_OPTIONS)
        try:
            await client.connect()
            if self._revision is None:
                await self._list(client)
        except Exception as error:  # etcd unreachable, or anything else: never end discovery
            await _close(client)
            self._set_up(False, error)
            return None
        return client

    async def _run(self, client: aetcd.Client | None) -> None:
        import aetcd

        while True:
            if client is None:
                await asyncio.sleep(self._config.retry_interval)
                client = await self._reach()
                continue
            try:
                await self._watch(client)
            except aetcd.RevisionCompactedError as error:
                self.resyncs += 1
                log.warning(
                    "The watch's revision was compacted; listing the prefix again.",
                    extra={
                        "resolver": self._name,
                        "revision": self._revision,
                        "compacted": error.compacted_revision,
                    },
                )
                self._revision = None
            except asyncio.CancelledError:
                await _close(client)
                raise
            except Exception as error:  # a watch error never ends discovery
                self._set_up(False, error)
            await _close(client)
            client = None if self._revision is not None else await self._reach()

    async def _watch(self, client: aetcd.Client) -> None:
        """Watch from the revision after the last one seen; returns or raises when the watch ends."""
        assert self._revision is not None
        watch = await client.watch_prefix(self._prefix, start_revision=self._revision + 1)
        self._set_up(True)
        try:
            async for event in watch:
                kv = event.kv
                before = self._membership.malformed
                if event.kind == "DELETE":
                    changed = self._membership.delete(kv.key)
                else:
                    changed = self._membership.put(kv.key, kv.value, kv.mod_revision)
                self._count_malformed(before)
                self._revision = max(self._revision, kv.mod_revision)
                if changed:
                    self._changed()
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()


async def _close(client: aetcd.Client) -> None:
    with contextlib.suppress(Exception):
        await client.close()


__all__ = [
    "EtcdDefaults",
    "EtcdResolverConfig",
    "EtcdWatch",
    "Membership",
    "RecordEndpoint",
    "record_endpoint",
]
