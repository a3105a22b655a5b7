"""The gateway's `loadbalancing` exporter with an `etcd` resolver, under load: upstreams that
register are routed to within 2 s (the resolver taking etcd's address and the region from the
gateway's etcd extension), one that deregisters gets nothing more and only its share of
the traces moves, and every acknowledged span arrives exactly once.

    OTLP load ──▶ gateway (otlp → loadbalancing, resolver etcd) ──▶ sinks registered in etcd
"""

from __future__ import annotations

import asyncio
import collections
import time

from integration.otap_data import eventually, free_port, receiver_part, running_service, service_config
from integration.test_loadbalancing import (
    Gateway,
    Sender,
    lb_exporter,
    sinks,
    span_names,
    spans_at,
    wait_spans,
)
from orasi_common.control.registration import key_of
from orasi_common.pdata import Signal
from orasi_common.testing.sink import OtlpSink
from orasi_gateway.factories import FACTORIES as GATEWAY
from orasi_gateway.loadbalancing.ring import HashRing, key_hash
from tests.integration.discovery.records import etcd_client, registration


async def test_registered_upstreams_join_and_leave_the_ring_under_load(shared_etcd: str) -> None:
    region = f"lb-{time.monotonic_ns()}"
    etcd = etcd_client(shared_etcd)
    exporter = lb_exporter([])
    # region and endpoints unset: the resolver takes the gateway's etcd extension's
    exporter["resolver"] = {"etcd": {"service": "bridge"}}
    grpc_port = free_port()
    config = service_config(("otlp", receiver_part(grpc_port)), ("loadbalancing", exporter), free_port())
    config["extensions"] = {"etcd": {"endpoints": [shared_etcd], "region": region}}
    config["service"]["extensions"] = ["etcd"]
    try:
        with sinks(3) as upstreams:
            a, b, c = upstreams
            for name, sink in (("a", a), ("b", b)):
                await etcd.put(key_of(region, "bridge", name).encode(), registration(sink.endpoint))
            async with running_service("gateway", config, GATEWAY) as running:
                gw = Gateway(running, f"127.0.0.1:{grpc_port}")
                sender = Sender(gw.endpoint)
                async with sender.steady_load():
                    await eventually(lambda: a.items(Signal.TRACES) and b.items(Signal.TRACES), 10, "a and b")
                    await etcd.put(key_of(region, "bridge", "c").encode(), registration(c.endpoint))
                    joined = time.monotonic()
                    await eventually(lambda: c.items(Signal.TRACES) > 0, 2, "c routed to after registering")
                    print(
                        f"first spans at the new upstream {time.monotonic() - joined:.2f} s after registering"
                    )

                    await etcd.delete(key_of(region, "bridge", "a").encode())
                    left = time.monotonic()
                    while await endpoints(gw) != 2:
                        assert time.monotonic() - left < 2, "a is still in the ring 2 s after it left"
                        await asyncio.sleep(0.02)
                    a_final = await settled(a)  # requests already on their way to a land
                    acknowledged = len(sender.acknowledged)
                    await eventually(
                        lambda: len(sender.acknowledged) > acknowledged + 20, 10, "the load goes on"
                    )
                    assert a.items(Signal.TRACES) == a_final, "a got spans after it left the ring"
                assert sender.refused == 0
                expected = set(span_names(sender.acknowledged))
                await wait_spans(upstreams, expected)
    finally:
        await etcd.delete_prefix(f"/orasi/{region}/".encode())
        await etcd.close()

    counts = collections.Counter(name for sink in upstreams for _, name in spans_at(sink))
    assert expected <= set(counts), f"{len(expected - set(counts))} acknowledged spans never arrived"
    assert [name for name, n in counts.items() if n != 1] == [], "duplicated spans"
    # after a left, b kept every trace the ring of {b, c} gives it: only a's share moved to b
    ring = HashRing([b.endpoint, c.endpoint])
    late_at_c = {tid for tid, _ in spans_at(c)}
    foreign = [t.hex() for t in late_at_c if ring.lookup(key_hash(t)) == b.endpoint]
    assert late_at_c and not foreign, f"{len(foreign)} of b's traces at c: {foreign[:3]}"


async def settled(sink: OtlpSink) -> int:
    """The sink's span count once it stayed the same for 0.5 s (within 5 s)."""
    deadline = time.monotonic() + 5
    count = sink.items(Signal.TRACES)
    while True:
        await asyncio.sleep(0.5)
        now = sink.items(Signal.TRACES)
        if now == count:
            return count
        assert time.monotonic() < deadline, "the upstream that left still receives spans after 5 s"
        count = now


async def endpoints(gw: Gateway) -> float:
    """The load balancer's count of primary endpoints, from the gateway's /metrics."""
    samples = await gw.running.metric_samples()
    return next(
        value
        for name, labels, value in samples
        if name == "orasi_loadbalancer_endpoints" and labels.get("group") == "primary"
    )
