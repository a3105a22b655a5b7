"""The `loadbalancing` exporter: one queue, many upstreams, trace-aware.

Traces are routed by trace id over a consistent-hash ring of the healthy endpoints of the
primary group, so all spans of a trace reach one upstream and few traces move when the group
changes; logs and metrics by service name (or round-robin). Each endpoint has a circuit
breaker: a failing endpoint is skipped (its keys fall to the next endpoints on the ring) until
``circuit_breaker.success_threshold`` probes in a row succeed (each probe carries a part). A part
whose upstream fails is re-sent to another healthy endpoint; while no primary endpoint is
healthy, the failover group (e.g. another region) takes everything, and traffic returns to the
primary as its breakers let probes through, wholly once one is closed again. An endpoint that
leaves the resolver's set while its breaker is not closed (a dead bridge's registration expires)
keeps its breaker for its return: it comes back through the probes, not at once.

Parts keep ids derived from the batch id and the first endpoint chosen for them; when some parts
of a batch fail, its retry re-sends only those parts, under the same ids, so the lake can
recognise any copy. A failed part that no endpoint was ever asked to take (none was known, or
every breaker was open) has no copy anywhere: its retry routes it again by the ring of the moment
(its items split by trace id or service, the new parts' ids derived from its own id), so a batch
that arrived before any upstream was known keeps every trace on one upstream.

Endpoint updates from the resolver are applied one at a time per group, by one updater task that
takes the newest reported set each round (older sets that arrived meanwhile are skipped): opening
a channel can wait (TLS files are read in a thread), and two updates applied at once could leave
the ring on an older set. The ring always ends on the last set the resolver reported.

Live settings (``control.settings``): ``circuit_breaker.*`` and ``routing.*`` can change while it
runs (``reconfigure``): the breakers of the known endpoints (and those kept for a return) take
the new thresholds and durations keeping their state, and the next batch is routed by the new
routing keys.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import grpc

from orasi_common.discovery.etcd import EtcdDefaults
from orasi_common.discovery.resolvers import Resolver, ResolverConfig
from orasi_common.errors import OrasiError, PartialSuccess, PermanentError, RetryableError, Unavailable
from orasi_common.exporters.otap.client import OtapClient
from orasi_common.exporters.otap.config import ArrowClientConfig
from orasi_common.exporters.otlp.client import OtlpGrpcClient, open_channel
from orasi_common.pdata import Batch
from orasi_common.pdata.batch import derived_id
from orasi_common.pipeline.breaker import BreakerState, CircuitBreaker
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterHelper
from orasi_gateway.loadbalancing.config import Config
from orasi_gateway.loadbalancing.ring import HashRing, key_hash
from orasi_gateway.loadbalancing.routing import UNROUTABLE, route

Client = OtlpGrpcClient | OtapClient


# Batches whose parts are partly delivered, remembered for their retries (oldest forgotten first).
MAX_UNFINISHED = 10_000
# Breakers of endpoints that left while not closed, per group, kept for their return (oldest forgotten first).
MAX_RETIRED = 1_000


@dataclass
class _Part:
    """Part of a batch bound for ``first`` (``UNROUTABLE`` when its owner was unknown).
    ``attempted`` once an endpoint was asked to take it: from then on it keeps its id."""

    first: str
    batch: Batch
    attempted: bool = False


@dataclass
class _Endpoint:
    name: str
    channel: grpc.aio.Channel
    client: Client
    breaker: CircuitBreaker

    async def close(self, grace: float | None = None) -> None:
        await self.client.close()
        await self.channel.close(grace)


@dataclass
class _Group:
    name: str
    resolver_config: ResolverConfig
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)
    retired: collections.OrderedDict[str, CircuitBreaker] = field(default_factory=collections.OrderedDict)
    ring: HashRing = field(default_factory=lambda: HashRing([]))
    resolver: Resolver | None = None
    wanted: list[str] = field(default_factory=list)  # the newest set the resolver reported
    reported: int = 0  # how many sets the resolver reported
    applied: int = 0  # the number of the set the ring holds
    updater: asyncio.Task[None] | None = None  # applying sets until ``applied == reported``

    def usable(self, name: str) -> bool:
        endpoint = self.endpoints.get(name)
        return endpoint is not None and endpoint.breaker.available()

    def any_usable(self) -> bool:
        return any(e.breaker.available() for e in self.endpoints.values())


class LoadBalancingExporter:
    reloadable_keys: ClassVar[frozenset[str]] = frozenset({"circuit_breaker.*", "routing.*"})

    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._helper = ExporterHelper(settings, config, self._send)
        self._groups = [_Group("primary", config.resolver)]
        if config.failover is not None:
            self._groups.append(_Group("failover", config.failover))
        self._round_robin = itertools.count()
        self._unfinished: collections.OrderedDict[str, list[_Part]] = collections.OrderedDict()
        self._updates: set[asyncio.Task[None]] = set()
        metrics = settings.metrics
        self._breaker_state = metrics.circuit_breaker_state
        self._routed = metrics.loadbalancer_routed
        self._endpoint_count = metrics.loadbalancer_endpoints

    @property
    def config(self) -> Config:
        return self._config

    def reconfigure(self, config: Config) -> None:
        self._config = config
        for group in self._groups:
            for breaker in [*(e.breaker for e in group.endpoints.values()), *group.retired.values()]:
                breaker.reconfigure(config.circuit_breaker)

    def _client_config(self, endpoint: str) -> ArrowClientConfig:
        c = self._config
        return ArrowClientConfig(
            endpoint=endpoint,
            tls=c.tls,
            compression=c.compression,
            headers=c.headers,
            auth=c.auth,
            max_send_msg_size_mib=c.max_send_msg_size_mib,
            arrow=c.arrow,
        )

    def _client(self, config: ArrowClientConfig, channel: grpc.aio.Channel) -> Client:
        if self._config.protocol == "otap":
            return OtapClient(self._settings, config, channel)
        return OtlpGrpcClient(self._settings, config, channel)

    async def start(self) -> None:
        for group in self._groups:
            group.resolver = Resolver(
                group.resolver_config,
                functools.partial(self._on_change, group),
                name=f"{self._settings.id}/{group.name}",
                metrics=self._settings.metrics,
                protocol="otap" if self._config.protocol == "otap" else "otlp_grpc",
                etcd_defaults=EtcdDefaults.of(self._settings.extensions),
            )
            await group.resolver.start()
            await asyncio.gather(*self._updates)
        await self._helper.start()

    def _on_change(self, group: _Group, names: list[str]) -> None:
        group.wanted = list(names)
        group.reported += 1
        if group.updater is None:
            task = asyncio.get_running_loop().create_task(self._update(group))
            group.updater = task
            self._updates.add(task)
            task.add_done_callback(self._updates.discard)
            task.add_done_callback(lambda done: done.cancelled() or done.exception())  # logged in _update

    async def _update(self, group: _Group) -> None:
        """Apply the newest reported set until the ring holds it (one task per group at a time).

        A set that cannot be applied (an endpoint's channel does not open: a TLS file is missing,
        say) is logged and leaves the ring as it was; the next reported set is tried afresh. At
        start the failure also fails ``start``, which awaits this task."""
        try:
            while group.applied != group.reported:
                number, names = group.reported, group.wanted
                await self._sync(group, names)
                group.applied = number
        except Exception:
            self._settings.logger.exception(
                "Upstream endpoints could not be applied; the previous ones stay in use.",
                extra={"group": group.name, "endpoints": group.wanted},
            )
            raise
        finally:
            group.updater = None

    def _breaker_changed(self, endpoint: str, state: BreakerState) -> None:
        self._breaker_state.labels(self._settings.id, endpoint).set(state.value)
        self._settings.logger.warning(
            "Circuit breaker of an upstream changed state.",
            extra={"endpoint": endpoint, "state": state.name.lower()},
        )

    async def _sync(self, group: _Group, names: list[str]) -> None:
        """Open clients for new endpoints (a returning one with the breaker it left with), swap
        the ring, then close removed ones."""
        exporter = self._settings.id
        for name in names:
            if name not in group.endpoints:
                config = self._client_config(name)
                channel = await open_channel(config)
                breaker = group.retired.pop(name, None) or CircuitBreaker(
                    self._config.circuit_breaker, functools.partial(self._breaker_changed, name)
                )
                group.endpoints[name] = _Endpoint(name, channel, self._client(config, channel), breaker)
                self._breaker_state.labels(exporter, name).set(breaker.state.value)
        removed = [group.endpoints.pop(n) for n in list(group.endpoints) if n not in names]
        for endpoint in removed:
            if endpoint.breaker.state is not BreakerState.CLOSED:
                group.retired[endpoint.name] = endpoint.breaker
        while len(group.retired) > MAX_RETIRED:
            group.retired.popitem(last=False)
        group.ring = HashRing(names)
        self._endpoint_count.labels(exporter, group.name).set(len(names))
        self._settings.logger.info(
            "Upstream endpoints changed.", extra={"group": group.name, "endpoints": names}
        )
        await asyncio.gather(*(e.close(grace=self._config.endpoint_timeout) for e in removed))

    def _active_group(self) -> _Group:
        """The primary group while any of its endpoints is healthy, else the failover group."""
        for group in self._groups:
            if group.any_usable():
                return group
        return self._groups[0]

    def _route(self, batch: Batch, group: _Group) -> list[_Part]:
        """The batch's parts by destination; split parts' ids derive from the batch's id."""
        mode = getattr(self._config.routing, batch.signal.value)
        if mode == "round_robin" or not group.endpoints:
            usable = [n for n in group.ring.endpoints if group.usable(n)] or group.ring.endpoints
            return [_Part(usable[next(self._round_robin) % len(usable)] if usable else UNROUTABLE, batch)]

        def owner(key: bytes) -> str | None:
            return group.ring.lookup(key_hash(key), group.usable)

        routed = route(batch, owner)
        if isinstance(routed, str):
            return [_Part(routed, batch)]
        return [
            _Part(
                name,
                Batch.from_message(
                    batch.signal, request, tenant=batch.tenant, batch_id=derived_id(batch.batch_id, name)
                ),
            )
            for name, request in routed.items()
        ]

    def _parts(self, batch: Batch, group: _Group) -> list[_Part]:
        """A new batch's parts; on a retry, the parts not yet delivered: those an endpoint was
        asked to take under the ids they were first given, the others routed again."""
        unfinished = self._unfinished.pop(batch.batch_id, None)
        if unfinished is None:
            return self._route(batch, group)
        parts: list[_Part] = []
        for part in unfinished:
            parts.extend([part] if part.attempted else self._route(part.batch, group))
        return parts

    async def _send(self, batch: Batch) -> None:
        group = self._active_group()
        parts = self._parts(batch, group)
        outcomes = await asyncio.gather(
            *(self._deliver(part, group) for part in parts), return_exceptions=True
        )
        failed = [
            part
            for part, outcome in zip(parts, outcomes, strict=True)
            if isinstance(outcome, BaseException) and not isinstance(outcome, PartialSuccess)
        ]
        errors = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, PartialSuccess)]
        for error in errors:
            if not isinstance(error, OrasiError):
                raise error
        partial = [o for o in outcomes if isinstance(o, PartialSuccess)]
        if partial and not errors:  # the parts delivered, some items of them rejected
            raise PartialSuccess.combine(partial)
        if errors:
            if any(isinstance(e, RetryableError) for e in errors):
                self._unfinished[batch.batch_id] = failed
                while len(self._unfinished) > MAX_UNFINISHED:
                    self._unfinished.popitem(last=False)
            raise next((e for e in errors if isinstance(e, RetryableError)), errors[0])

    def _candidates(self, first: str, group: _Group) -> Iterable[tuple[_Group, str]]:
        """``first``, then the group's other endpoints in ring order, then the failover group's."""
        names = group.ring.endpoints
        if first in names:
            start = names.index(first)
            names = names[start:] + names[:start]
        yield from ((group, n) for n in names)
        for other in self._groups:
            if other is not group:
                yield from ((other, n) for n in other.ring.endpoints)

    async def _deliver(self, part: _Part, group: _Group) -> None:
        last: OrasiError = Unavailable("no upstream endpoint is known")
        for candidate_group, name in self._candidates(part.first, group):
            endpoint = candidate_group.endpoints.get(name)
            if endpoint is None or not endpoint.breaker.allow():
                last = Unavailable(f"the circuit breaker of {name} is open")
                continue
            part.attempted = True
            try:
                async with asyncio.timeout(self._config.endpoint_timeout):
                    await endpoint.client.send(part.batch)
            except TimeoutError:
                endpoint.breaker.record_failure()
                last = Unavailable(f"{name} did not answer within {self._config.endpoint_timeout:g} s")
                continue
            except RetryableError as error:
                endpoint.breaker.record_failure()
                last = error
                continue
            except (PermanentError, PartialSuccess):
                endpoint.breaker.record_success()  # the endpoint works; the data is refused
                raise
            except asyncio.CancelledError:  # the caller's timeout, shutdown: no outcome, no probe kept
                endpoint.breaker.abandon()
                raise
            endpoint.breaker.record_success()
            self._routed.labels(self._settings.id, name).inc(part.batch.items)
            return
        raise last

    async def consume(self, batch: Batch) -> None:
        await self._helper.consume(batch)

    async def shutdown(self) -> None:
        await self._helper.shutdown()
        for group in self._groups:
            if group.resolver is not None:
                await group.resolver.stop()
        # no set is reported any more: let the last update finish (it may close removed endpoints)
        await asyncio.gather(*self._updates, return_exceptions=True)
        for group in self._groups:
            for endpoint in group.endpoints.values():
                await endpoint.close()
            group.endpoints.clear()


__all__ = ["LoadBalancingExporter"]
