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
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pydantic import Field, field_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.control.registration import MalformedRecord, decode, parse_key, prefix
from orasi_common.control.registry import parse_endpoint
from orasi_common.control.roles import ROLES_KEY, MalformedRoles, Role, Roles
from orasi_common.control.watch import Entry, PrefixWatch
from orasi_common.extensions.etcd.config import Config as EtcdExtensionConfig
from orasi_common.pipeline.tasks import TaskScope

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
    role: Role | None = Field(
        default=None,
        description="Follow the region holding this role in /orasi/global/roles (control/roles.py; "
        "`orasi dr promote`); `region` is used while the key is absent.",
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


class EtcdWatch:
    """Keeps ``membership`` in step with etcd and calls ``on_change`` with each new endpoint set
    (the list/watch/resume/resync loop is ``control.watch.PrefixWatch``'s)."""

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
        self._name = name
        self._config = config
        self._targets = list(urls)
        self._protocol = config.protocol or protocol
        self._on_change = on_change
        self._on_up = on_up
        self._on_malformed = on_malformed
        self.region = region
        self._generation = 0
        self._watch = self._watch_region(region)
        self._roles: PrefixWatch | None = None
        if config.role is not None:
            self._roles = PrefixWatch(
                self._targets,
                ROLES_KEY,
                _RolesHandler(self, config.role, region),
                name=f"{name} roles",
                timeout=config.timeout,
                retry_interval=config.retry_interval,
                logger=log,
            )
        self._switching = asyncio.Lock()
        self._started = False
        self._tasks = TaskScope()

    def _watch_region(self, region: str) -> PrefixWatch:
        """A watch of ``region``'s instances, feeding a fresh membership (a new generation: events
        of an earlier region's watch that arrive late are ignored)."""
        self._generation += 1
        self._watched = region
        self._membership = Membership(self._config.service, self._protocol)
        self._listed = False
        return PrefixWatch(
            self._targets,
            prefix(region, self._config.service).encode(),
            _Current(self, self._generation),
            name=self._name,
            timeout=self._config.timeout,
            retry_interval=self._config.retry_interval,
            on_up=self._on_up,
            down_message="etcd is unreachable; keeping the last known endpoints until it answers again.",
            up_message="etcd answers; discovery resumes.",
            extra=lambda: {"resolver": self._name, "endpoints": len(self._membership.endpoints())},
            logger=log,
        )

    @property
    def prefix(self) -> bytes:
        """The etcd prefix of the instances watched now."""
        return prefix(self._watched, self._config.service).encode()

    @property
    def revision(self) -> int | None:
        return self._watch.revision

    @property
    def resyncs(self) -> int:
        return self._watch.resyncs

    async def start(self) -> None:
        """One listing attempt (so a reachable etcd's set is known when start returns), then the
        watch runs in a task; an unreachable etcd is retried there, never raised. With a ``role``,
        the roles key is read first, so the set is that of the region holding the role."""
        await self._tasks.open()
        if self._roles is not None:
            await self._roles.start()
        async with self._switching:
            if self.region != self._watched:
                self._watch = self._watch_region(self.region)
            await self._watch.start()
            self._started = True

    async def stop(self) -> None:
        if self._roles is not None:
            await self._roles.stop()
        await self._tasks.close(cancel=True)
        async with self._switching:
            await self._watch.stop()

    def follow_region(self, region: str) -> None:
        """Watch ``region``'s instances from now on (the roles changed); switched in a task."""
        if region == self.region:
            return
        self.region = region
        if self._started:
            self._tasks.spawn(self._follow(), name=f"etcd-roles {self._name}")

    async def _follow(self) -> None:
        async with self._switching:
            if self.region == self._watched:
                return
            await self._watch.stop()
            log.info(
                "Following the region that holds the role now.",
                extra={"resolver": self._name, "region": self.region, "role": self._config.role},
            )
            self._watch = self._watch_region(self.region)
            await self._watch.start()

    def _changed(self, changed: bool, malformed_before: int) -> None:
        if self._membership.malformed > malformed_before:
            self._on_malformed(self._membership.malformed - malformed_before)
        if changed:
            self._on_change(self._membership.endpoints())

    def listed(self, entries: Sequence[Entry], revision: int) -> None:
        before = self._membership.malformed
        changed = self._membership.replace(entries)
        self._changed(changed or not self._listed, before)
        self._listed = True

    def put(self, entry: Entry) -> None:
        before = self._membership.malformed
        self._changed(self._membership.put(entry.key, entry.value, entry.mod_revision), before)

    def delete(self, key: bytes, revision: int) -> None:
        self._changed(self._membership.delete(key), self._membership.malformed)


class _Current:
    """Hands a region watch's events to its resolver while that watch is the current one."""

    def __init__(self, owner: EtcdWatch, generation: int) -> None:
        self._owner = owner
        self._generation = generation

    def _current(self) -> bool:
        return self._owner._generation == self._generation

    def listed(self, entries: Sequence[Entry], revision: int) -> None:
        if self._current():
            self._owner.listed(entries, revision)

    def put(self, entry: Entry) -> None:
        if self._current():
            self._owner.put(entry)

    def delete(self, key: bytes, revision: int) -> None:
        if self._current():
            self._owner.delete(key, revision)


class _RolesHandler:
    """Turns the roles key into the region a resolver follows (``fallback`` while it is absent; a
    malformed value is logged and changes nothing)."""

    def __init__(self, owner: EtcdWatch, role: Role, fallback: str) -> None:
        self._owner = owner
        self._role = role
        self._fallback = fallback

    def _apply(self, value: bytes | None) -> None:
        region = self._fallback
        if value is not None:
            try:
                region = Roles.decode(value).region(self._role) or self._fallback
            except MalformedRoles as error:
                log.warning("Ignored malformed region roles.", extra={"error": str(error)})
                return
        self._owner.follow_region(region)

    def listed(self, entries: Sequence[Entry], revision: int) -> None:
        self._apply(next((entry.value for entry in entries if entry.key == ROLES_KEY), None))

    def put(self, entry: Entry) -> None:
        if entry.key == ROLES_KEY:
            self._apply(entry.value)

    def delete(self, key: bytes, revision: int) -> None:
        if key == ROLES_KEY:
            self._apply(None)


__all__ = [
    "EtcdDefaults",
    "EtcdResolverConfig",
    "EtcdWatch",
    "Membership",
    "RecordEndpoint",
    "record_endpoint",
]
