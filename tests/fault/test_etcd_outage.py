"""etcd goes away under load, with real services: the fleet keeps serving, then finds itself again.

    load ─▶ gateway (loadbalancing, resolver etcd{service: bridge}) ─▶ bridges ─▶ one lake
               │ etcd through a TCP proxy                               │ etcd directly
               └──────────────────────────▶ etcd of this test ◀────────┘ (lease TTL 3 s)

1. etcd is stopped (``HOLD`` s past the gateway's noticing it, longer than the lease TTL: a
   fixed 20 s showed nothing more): the gateway keeps routing to both bridges with the endpoints it
   last knew (acknowledgements go on; ``orasi_discovery_up`` is 0; one log line). etcd restarts
   on the same data directory and ports: the gauge is 1 again, the bridges register under new
   leases (their sessions were lost), and the watch resumes: a bridge started after the restart
   is routed to within 2 s.
2. The gateway alone is cut off from etcd (the proxy): meanwhile a bridge is killed with -9 (its
   lease expires, its key goes), another joins and etcd is compacted past the gateway's revision.
   Reconnected, the gateway lists the prefix again (logged) and its endpoint set is exactly the
   registered bridges.
3. The killed bridge's write-ahead log is replayed (it starts once more, outside the fleet, as
   its StatefulSet pod would), and every acknowledged span is in the lake exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from integration.discovery.proxy import TcpProxy

from fault.conftest import Services
from fault.harness import (
    QUEUED,
    ROUTED,
    Load,
    SpanSender,
    assert_exactly_once,
    balancer_config,
    etcd_call,
    lake_count,
    wait_for_commits,
    wait_until,
    with_etcd,
)
from orasi_common.control.registration import key_of, prefix
from orasi_common.testing.etcd import EtcdServer
from orasi_common.testing.service_process import ServiceProcess, free_ports

LEASE_TTL = 3  # the bridges' leases expire during the outage: they must register again
HOLD = 6.0  # the outage goes on this long once the gateway saw it: twice the lease TTL
RESOLVER = "loadbalancing/primary"
UP = "orasi_discovery_up"
UNREACHABLE = "etcd is unreachable; keeping the last known endpoints until it answers again."
RESUMED = "etcd answers; discovery resumes."
RESYNC = "The watch's revision was compacted; listing the prefix again."
ENDPOINTS_CHANGED = "Upstream endpoints changed."


class ThreadedProxy:
    """The discovery tests' ``TcpProxy`` on an event loop of its own thread (this test is sync)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxy = TcpProxy(target)
        self.url = self._proxy.url
        self._run(self._proxy.start())

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.restore)

    def close(self) -> None:
        self._run(self._proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def registered_bridges(url: str, region: str) -> dict[str, int]:
    """The bridges' registration keys in ``region`` → the lease each lives under."""

    async def read(client: Any) -> dict[str, int]:
        listing = await client.get_prefix(prefix(region, "bridge").encode())
        return {kv.key.decode(): kv.lease for kv in listing}

    result: dict[str, int] = etcd_call(url, read)
    return result


def churn_and_compact(url: str, region: str, writes: int = 200) -> int:
    """``writes`` puts beside the registrations, then a compaction to the latest revision."""

    async def work(client: Any) -> int:
        revision = 0
        for n in range(writes):
            reply = await client.put(f"/orasi/{region}/noise/{n % 10}".encode(), str(n).encode())
            revision = reply.header.revision
        await client.compact(revision, physical=True)
        return revision

    compacted: int = etcd_call(url, work)
    return compacted


def gateway(services: Services, etcd_url: str, region: str) -> ServiceProcess:
    """The harness's load-balancing gateway (persistent queue), registered through ``etcd_url``."""
    config = balancer_config(free_ports(), wal_dir=services.workdir / "gateway-wal")
    process = ServiceProcess.from_config("gateway", config, services.workdir, label="gateway")
    services.processes.append(process)
    return with_etcd(process, etcd_url, region, LEASE_TTL)


def routed(gw: ServiceProcess, bridge: ServiceProcess) -> float:
    return gw.metric(ROUTED, endpoint=bridge.grpc_endpoint)


def discovery_logged(gw: ServiceProcess, message: str) -> list[dict[str, Any]]:
    """The gateway resolver's log records with ``message`` (the etcd extension's live settings
    watch logs the same sentences about its own prefix)."""
    return [record for record in gw.logged(message) if record.get("resolver") == RESOLVER]


def endpoint_sets(gw: ServiceProcess) -> list[list[str]]:
    """The endpoint sets the gateway's load balancer took, in order."""
    return [record["endpoints"] for record in gw.logged(ENDPOINTS_CHANGED)]


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of this test's own (it is stopped and compacted), stopped by its PID at the end."""
    directory = tmp_path / "etcd"
    directory.mkdir()
    with EtcdServer(directory).start() as etcd:
        yield etcd


@pytest.fixture
def proxy(own_etcd: EtcdServer) -> Iterator[ThreadedProxy]:
    made = ThreadedProxy(("127.0.0.1", own_etcd.client_port))
    try:
        yield made
    finally:
        made.close()


@pytest.mark.timeout(240)
def test_etcd_outage_and_compaction_under_load(
    services: Services, sender: SpanSender, own_etcd: EtcdServer, proxy: ThreadedProxy
) -> None:
    region = f"fault-{uuid.uuid4().hex[:10]}"

    def key(instance: str) -> str:
        return key_of(region, "bridge", instance)

    def bridge(instance: str) -> ServiceProcess:
        process = services.bridge(flush_interval=0.5)
        return with_etcd(process, own_etcd.url, region, LEASE_TTL, instance=instance).start()

    b1, b2 = bridge("b1"), bridge("b2")
    gw = gateway(services, proxy.url, region).start()
    wait_until(lambda: len(registered_bridges(own_etcd.url, region)) == 2, 5, "both bridges to register")

    with Load(sender, lambda: gw.grpc_endpoint, threads=2, pause=0.02):
        wait_until(lambda: routed(gw, b1) > 0 and routed(gw, b2) > 0, 10, "the gateway to route to both")
        assert gw.metric(UP, resolver=RESOLVER) == 1
        leases = registered_bridges(own_etcd.url, region)

        # --- 1. etcd stopped --------------------------------------------------------------
        own_etcd.stop()
        wait_until(lambda: gw.metric(UP, resolver=RESOLVER) == 0, 10, "orasi_discovery_up to drop to 0")
        before = len(sender.acked), routed(gw, b1), routed(gw, b2)
        time.sleep(HOLD)
        assert len(sender.acked) > before[0], "the gateway stopped acknowledging while etcd was down"
        assert routed(gw, b1) > before[1] and routed(gw, b2) > before[2], (
            "the gateway stopped routing to a bridge it knew while etcd was down"
        )
        assert gw.metric("orasi_loadbalancer_endpoints", group="primary") == 2
        assert len(discovery_logged(gw, UNREACHABLE)) == 1, "the outage is logged once"

        own_etcd.start()  # same data directory and ports
        wait_until(lambda: gw.metric(UP, resolver=RESOLVER) == 1, 10, "orasi_discovery_up back to 1")
        keys = wait_until(
            lambda: (
                (now := registered_bridges(own_etcd.url, region)).keys() == leases.keys()
                and all(now[k] != leases[k] for k in now)
                and now
            ),
            10,
            "both bridges to register again under new leases",
        )
        assert keys.keys() == {key("b1"), key("b2")}
        # log lines are written just after what they report, so they may trail it a little
        wait_until(lambda: discovery_logged(gw, RESUMED), 5, "the gateway to log that discovery resumed")
        assert len(discovery_logged(gw, RESUMED)) == 1 and len(discovery_logged(gw, UNREACHABLE)) == 1
        for b in (b1, b2):
            wait_until(lambda b=b: b.logged("Registered in etcd."), 5, f"{b.label} to log its registration")

        # the watch resumed: a bridge started now is routed to within 2 s of being ready (it
        # registers as it starts, just before it answers /readyz)
        b3 = bridge("b3")
        joined = time.monotonic()
        wait_until(
            lambda: routed(gw, b3) > 0, 2, "the gateway to route to the bridge started after the restart"
        )
        print(f"third bridge routed to {time.monotonic() - joined:.2f} s after it was ready")

        # --- 2. the gateway cut off while a bridge leaves, one joins and etcd compacts ------
        proxy.cut()
        wait_until(lambda: gw.metric(UP, resolver=RESOLVER) == 0, 10, "the gateway to lose etcd")
        b2.kill9()
        b4 = bridge("b4")
        wait_until(
            lambda: registered_bridges(own_etcd.url, region).keys() == {key(b) for b in ("b1", "b3", "b4")},
            LEASE_TTL + 5,
            "the killed bridge's lease to expire",
        )
        compacted = churn_and_compact(own_etcd.url, region)
        expected = sorted(b.grpc_endpoint for b in (b1, b3, b4))
        stale = sorted(b.grpc_endpoint for b in (b1, b2, b3))
        assert endpoint_sets(gw)[-1] == stale, "the gateway's endpoints changed while it was cut off"

        proxy.restore()
        wait_until(lambda: discovery_logged(gw, RESYNC), 15, "the gateway to resync after the compaction")
        wait_until(lambda: endpoint_sets(gw)[-1] == expected, 5, "the gateway's endpoints after the resync")
        resync = discovery_logged(gw, RESYNC)
        assert len(resync) == 1 and resync[0]["compacted"] == compacted, resync
        assert gw.metric(UP, resolver=RESOLVER) == 1
        after = {b.label: routed(gw, b) for b in (b1, b3, b4)}
        wait_until(
            lambda: all(routed(gw, b) > after[b.label] for b in (b1, b3, b4)),
            5,
            "the gateway to route to every registered bridge, the one that joined included",
        )
        assert gw.metric("orasi_loadbalancer_endpoints", group="primary") == 3

    # Everything the gateway acknowledged is delivered and committed: count it through b1. What
    # b2 acknowledged before it was killed is in its write-ahead log: it replays it, unregistered.
    wait_until(lambda: gw.metric(QUEUED) == 0, 60, "the gateway's queue to empty")
    assert b2.config is not None
    del b2.config["extensions"]["etcd"]
    b2.config["service"]["extensions"].remove("etcd")
    b2.start()
    for b in (b1, b2, b3, b4):
        wait_for_commits(b, sender.run, timeout=60)
    # A query sees the snapshot its bridge last committed: one commit of b1 after everyone else's
    # shows every bridge's data.
    nudge = SpanSender(spans_per_request=1)
    try:
        nudge.send_until_acked(lambda: b1.grpc_endpoint, deadline=time.monotonic() + 30)
    finally:
        nudge.close()
    wait_for_commits(b1, nudge.run, timeout=60)
    assert len(sender.acked) > 0
    assert_exactly_once(lake_count(b1, sender), sender)
    committed = services.lake.committed_batch_ids()
    twice = sorted({i for i in committed if committed.count(i) > 1})
    assert not twice, f"batch ids in more than one commit: {twice[:10]}"
