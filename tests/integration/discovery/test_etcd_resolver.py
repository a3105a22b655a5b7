"""The `etcd` resolver against a real etcd: records in, records out (deleted and expired), a
malformed record, etcd stopped and restarted, and a compaction past the watcher's revision."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aetcd
import pytest

from orasi_common.control.registration import key_of
from orasi_common.discovery.etcd import EtcdResolverConfig
from orasi_common.discovery.resolvers import Resolver, ResolverConfig
from orasi_common.telemetry.metrics import Metrics
from orasi_common.testing.etcd import EtcdServer
from tests.integration.discovery.proxy import TcpProxy
from tests.integration.discovery.records import etcd_client, registration

NAME = "lb/primary"
_regions = itertools.count(1)


def record(host: str, grpc_port: int, otap_port: int | None = None) -> bytes:
    return registration(f"{host}:{grpc_port}", f"{host}:{otap_port}" if otap_port is not None else None)


async def eventually(check: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``check()`` held; fails after ``within`` seconds."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"resolver": NAME})


# Etcd of the test's own: stopping, restarting or compacting the shared one would disturb the
# other tests that watch it.
@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path).start() as etcd:
        yield etcd


@pytest.fixture
async def etcd_proxy(own_etcd: EtcdServer) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", own_etcd.client_port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


class Watched:
    """A started resolver, the sets it reported, and a direct etcd client for the test."""

    def __init__(self, resolver: Resolver, metrics: Metrics, client: aetcd.Client, region: str) -> None:
        self.resolver = resolver
        self.metrics = metrics
        self.client = client
        self.region = region
        self.reported: list[list[str]] = []

    def key(self, instance: str, kind: str = "bridge") -> bytes:
        return key_of(self.region, kind, instance).encode()

    async def close(self) -> None:
        """Stop the resolver and remove what the test wrote (the shared etcd outlives the test)."""
        await self.resolver.stop()
        with contextlib.suppress(aetcd.ClientError):
            await self.client.delete_prefix(f"/orasi/{self.region}/".encode())
        await self.client.close()

    @property
    def up(self) -> float | None:
        return gauge(self.metrics, "orasi_discovery_up")

    @property
    def malformed(self) -> float | None:
        return gauge(self.metrics, "orasi_discovery_malformed_records_total")


async def watched(
    etcd_url: str, client_url: str, *, protocol: str = "otlp_grpc", retry_interval: float = 0.2
) -> Watched:
    region = f"test-{next(_regions)}-{time.monotonic_ns()}"
    config = ResolverConfig(
        etcd=EtcdResolverConfig(
            service="bridge", region=region, endpoints=[etcd_url], retry_interval=retry_interval, timeout=2
        )
    )
    metrics = Metrics("gateway")
    client = etcd_client(client_url)
    holder: list[Watched] = []
    resolver = Resolver(
        config,
        lambda endpoints: holder[0].reported.append(endpoints),
        name=NAME,
        metrics=metrics,
        protocol=protocol,  # type: ignore[arg-type]
    )
    holder.append(Watched(resolver, metrics, client, region))
    await resolver.start()
    return holder[0]


@pytest.fixture
async def on_shared_etcd(shared_etcd: str) -> AsyncIterator[Watched]:
    w = await watched(shared_etcd, shared_etcd)
    try:
        yield w
    finally:
        await w.close()


async def test_records_appear_and_leave_when_deleted_or_expired(on_shared_etcd: Watched) -> None:
    w = on_shared_etcd
    assert w.resolver.endpoints == [] and w.up == 1
    await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
    lease = await w.client.lease(2)
    await w.client.put(w.key("b2"), record("10.0.0.2", 4317), lease=lease)
    await w.client.put(w.key("g1", kind="gateway"), record("10.0.0.9", 4317))  # another kind
    await eventually(lambda: w.resolver.endpoints == ["10.0.0.1:4317", "10.0.0.2:4317"], 2, "both join")

    await w.client.delete(w.key("b1"))
    await eventually(lambda: w.resolver.endpoints == ["10.0.0.2:4317"], 2, "b1 leaves")
    # b2's lease is not kept alive: it expires (TTL 2 s; etcd may round it up) and b2 leaves
    await eventually(lambda: w.resolver.endpoints == [], 6, "b2's lease expires")
    assert w.reported == [["10.0.0.1:4317"], ["10.0.0.1:4317", "10.0.0.2:4317"], ["10.0.0.2:4317"], []]
    assert w.malformed in (None, 0)


async def test_a_malformed_record_is_skipped_and_counted(on_shared_etcd: Watched) -> None:
    w = on_shared_etcd
    await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
    await w.client.put(w.key("bad"), b"{not json")
    await w.client.put(w.key("b3") + b"/deeper", record("10.0.0.3", 4317))  # not an instance key
    await w.client.put(w.key("b2"), record("10.0.0.2", 4317))
    await eventually(lambda: w.resolver.endpoints == ["10.0.0.1:4317", "10.0.0.2:4317"], 2, "valid ones")
    assert w.malformed == 2
    # a valid record turning malformed leaves the set; fixed again, it comes back
    await w.client.put(w.key("b1"), b'{"endpoints": {}}')
    await eventually(lambda: w.resolver.endpoints == ["10.0.0.2:4317"], 2, "b1 malformed")
    assert w.malformed == 3
    await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
    await eventually(lambda: w.resolver.endpoints == ["10.0.0.1:4317", "10.0.0.2:4317"], 2, "b1 fixed")
    assert w.up == 1


async def test_the_otap_endpoint_of_each_record_for_an_otap_exporter(shared_etcd: str) -> None:
    w = await watched(shared_etcd, shared_etcd, protocol="otap")
    try:
        await w.client.put(w.key("b1"), record("10.0.0.1", 4317, 4417))
        await w.client.put(w.key("b2"), record("10.0.0.2", 4317))  # serves no OTAP: not an upstream
        await w.client.put(w.key("b3"), record("10.0.0.3", 4317, 4417))
        await eventually(lambda: w.resolver.endpoints == ["10.0.0.1:4417", "10.0.0.3:4417"], 2, "otap")
    finally:
        await w.close()


async def test_etcd_stopped_keeps_the_last_set_and_the_watch_resumes(
    own_etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orasi.discovery")
    w = await watched(own_etcd.url, own_etcd.url)
    try:
        await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
        await w.client.put(w.key("b2"), record("10.0.0.2", 4317))
        await eventually(lambda: len(w.resolver.endpoints) == 2, 2, "both join")
        assert w.up == 1
        await w.client.close()

        own_etcd.stop()
        await eventually(lambda: w.up == 0, 10, "the gauge says etcd is unreachable")
        await asyncio.sleep(1.0)  # several reconnection attempts fail meanwhile
        assert w.resolver.endpoints == ["10.0.0.1:4317", "10.0.0.2:4317"]  # the last known set
        revision = w.resolver.etcd.revision if w.resolver.etcd else None

        own_etcd.start()
        await eventually(lambda: w.up == 1, 10, "the gauge says etcd answers again")
        await w.client.put(w.key("b3"), record("10.0.0.3", 4317))
        await w.client.delete(w.key("b1"))
        await eventually(
            lambda: w.resolver.endpoints == ["10.0.0.2:4317", "10.0.0.3:4317"], 2, "the watch resumed"
        )
        assert w.resolver.etcd is not None
        assert w.resolver.etcd.resyncs == 0  # resumed from its revision, not listed again
        assert revision is not None and w.resolver.etcd.revision == revision + 2
        messages = [r.getMessage() for r in caplog.records]
        assert (
            messages.count("etcd is unreachable; keeping the last known endpoints until it answers again.")
            == 1
        )
        assert messages.count("etcd answers; discovery resumes.") == 1
    finally:
        await w.close()


async def test_a_compaction_past_the_watchers_revision_forces_a_clean_resync(
    own_etcd: EtcdServer, etcd_proxy: TcpProxy
) -> None:
    w = await watched(etcd_proxy.url, own_etcd.url)
    try:
        await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
        await w.client.put(w.key("b2"), record("10.0.0.2", 4317))
        await eventually(lambda: len(w.resolver.endpoints) == 2, 2, "both join")

        etcd_proxy.cut()  # the resolver loses etcd; etcd itself keeps running
        await eventually(lambda: w.up == 0, 10, "the resolver notices")
        await w.client.delete(w.key("b1"))  # an event the resolver never sees: only a resync
        await w.client.put(w.key("b3"), record("10.0.0.3", 4317))
        revision = (await w.client.put(b"/elsewhere", b"x")).header.revision
        await w.client.compact(revision, physical=True)

        etcd_proxy.restore()
        await eventually(
            lambda: w.resolver.endpoints == ["10.0.0.2:4317", "10.0.0.3:4317"], 10, "a clean resync"
        )
        assert w.resolver.etcd is not None and w.resolver.etcd.resyncs == 1
        assert w.up == 1
        # and it watches again after the resync
        await w.client.put(w.key("b4"), record("10.0.0.4", 4317))
        await eventually(lambda: "10.0.0.4:4317" in w.resolver.endpoints, 2, "watching again")
    finally:
        await w.close()


async def test_etcd_unreachable_at_start_does_not_fail_the_start_and_is_waited_for(
    own_etcd: EtcdServer,
) -> None:
    own_etcd.stop()
    w = await watched(own_etcd.url, own_etcd.url)  # returns: a service starts without etcd
    try:
        assert w.resolver.endpoints == [] and w.up == 0
        own_etcd.start()
        await w.client.put(w.key("b1"), record("10.0.0.1", 4317))
        await eventually(lambda: w.resolver.endpoints == ["10.0.0.1:4317"], 5, "listed once etcd answers")
        assert w.up == 1
    finally:
        await w.close()
