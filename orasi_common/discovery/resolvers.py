"""Endpoint resolvers: each keeps a sorted list of ``host:port`` and reports changes.

``static`` never changes. ``dns`` resolves a name (e.g. a Kubernetes headless Service) every
``interval`` seconds and reports the set of addresses; a failed lookup keeps the last set.
``etcd`` watches the services registered in etcd (``discovery/etcd.py``); while etcd is
unreachable it keeps the last set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field, model_validator

from orasi_common.config.model import ComponentConfig
from orasi_common.discovery.etcd import EtcdDefaults, EtcdResolverConfig, EtcdWatch, RecordEndpoint
from orasi_common.telemetry.metrics import Metrics

log = logging.getLogger("orasi.discovery")

OnChange = Callable[[list[str]], None]


class StaticResolverConfig(ComponentConfig):
    endpoints: list[str] = Field(min_length=1, description="host:port of every upstream.")


class DnsResolverConfig(ComponentConfig):
    hostname: str = Field(description="Name whose A/AAAA records are the upstreams.")
    port: int = Field(default=4317, ge=1, le=65535, description="Port of every upstream.")
    interval: float = Field(default=5.0, gt=0, description="Seconds between lookups.")


class ResolverConfig(ComponentConfig):
    static: StaticResolverConfig | None = Field(default=None, description="A fixed list.")
    dns: DnsResolverConfig | None = Field(default=None, description="A DNS name, re-resolved.")
    etcd: EtcdResolverConfig | None = Field(
        default=None, description="The instances of a service registered in etcd, watched."
    )

    @model_validator(mode="after")
    def _one(self) -> ResolverConfig:
        if sum(part is not None for part in (self.static, self.dns, self.etcd)) != 1:
            raise ValueError("set exactly one of static, dns and etcd")
        return self

    @property
    def kind(self) -> Literal["static", "dns", "etcd"]:
        return "static" if self.static is not None else "dns" if self.dns is not None else "etcd"


def _endpoint(family: int, address: str, port: int) -> str:
    return f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"


def pick(endpoints: Sequence[str], current: str | None, identity: str) -> str | None:
    """One endpoint of a list, for a sender that talks to one peer at a time: ``current`` while it
    is listed, else the endpoint ranking first for ``identity`` under rendezvous hashing (None if
    the list is empty). Senders spread evenly, and when a peer leaves only its senders move."""
    if current in endpoints:
        return current

    def rank(endpoint: str) -> bytes:
        return hashlib.blake2b(f"{identity}|{endpoint}".encode(), digest_size=8).digest()

    return max(endpoints, key=rank, default=None)


class Resolver:
    """Calls ``on_change`` with the sorted endpoint list whenever it changes (and at start when
    the first list is not empty).

    ``name`` labels the resolver's metrics (``orasi_discovery_up``, ...); ``protocol`` is the
    endpoint of an etcd registration record to dial; ``etcd_defaults`` the etcd extension's
    endpoints and region, for an etcd resolver that leaves them unset.
    """

    def __init__(
        self,
        config: ResolverConfig,
        on_change: OnChange,
        *,
        name: str = "",
        metrics: Metrics | None = None,
        protocol: RecordEndpoint = "otlp_grpc",
        etcd_defaults: EtcdDefaults | None = None,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self.endpoints: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._etcd: EtcdWatch | None = None
        if config.etcd is not None:
            up = metrics.discovery_up.labels(name) if metrics else None
            malformed = metrics.discovery_malformed_records.labels(name) if metrics else None
            self._etcd = EtcdWatch(
                config.etcd,
                protocol,
                self._update,
                name=name,
                defaults=etcd_defaults,
                on_up=(lambda value: up.set(int(value))) if up else lambda _: None,
                on_malformed=malformed.inc if malformed else lambda _: None,
            )

    def _update(self, endpoints: list[str]) -> None:
        endpoints = sorted(set(endpoints))
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self._on_change(endpoints)

    @property
    def etcd(self) -> EtcdWatch | None:
        return self._etcd

    async def start(self) -> None:
        if self._config.static is not None:
            self._update(self._config.static.endpoints)
            return
        if self._etcd is not None:
            await self._etcd.start()
            return
        assert self._config.dns is not None
        await self._resolve(self._config.dns)
        self._task = asyncio.create_task(self._poll(self._config.dns), name="dns-resolver")

    async def _resolve(self, dns: DnsResolverConfig) -> None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                dns.hostname, dns.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.warning(
                "DNS lookup of the upstreams failed; keeping the last endpoints.",
                extra={"hostname": dns.hostname, "error": str(exc), "endpoints": len(self.endpoints)},
            )
            return
        self._update([_endpoint(info[0], str(info[4][0]), dns.port) for info in infos])

    async def _poll(self, dns: DnsResolverConfig) -> None:
        while True:
            await asyncio.sleep(dns.interval)
            await self._resolve(dns)

    async def stop(self) -> None:
        if self._etcd is not None:
            await self._etcd.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
