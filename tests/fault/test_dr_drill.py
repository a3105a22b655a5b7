"""The disaster drill (issue 19): three regions under a steady load, every bridge of the primary
region killed -9, the time until every gateway that sent there delivers to the secondary (RTO),
the acknowledged spans lost (RPO), the time back once the primary is healthy (failback), and
every acknowledged span counted in the two lakes: once, in one of them.

    load ─▶ gateway us-east-1 ─┐ resolver etcd{bridge, us-east-1}, failover etcd{bridge, us-west-2}
    load ─▶ gateway eu-west-1 ─┤ (the region without bridges: the same groups)
    load ─▶ gateway us-west-2 ──── resolver etcd{bridge, us-west-2}, failover etcd{bridge, us-east-1}
                                ▼
            bridge us-east-1 ─▶ lake E        bridge us-west-2 ─▶ lake W
            (their claims of batch ids shared: lake/global_dedup.py)

Each gateway acknowledges into its persistent queue (the agents' logs in front of them are
tested on their own: tests/fault/test_agent_crash.py and others). Run it alone to read the
figures: ``python -m pytest tests/fault/test_dr_drill.py -s`` (README, Regions).
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable

import pytest

from fault.conftest import Services
from fault.harness import (
    QUEUED,
    FleetWatch,
    LakeCount,
    Load,
    SpanSender,
    assert_exactly_once,
    balancer_config,
    delete_region,
    lake_count,
    steady,
    wait_for_commits,
    wait_until,
    with_etcd,
)
from orasi_common.testing.service_process import ServiceProcess, free_ports

ETCD = "http://127.0.0.1:2379"
LEASE_TTL = 3
FLUSH = 1.0
RTO_TARGET = 30.0
FAILBACK_TARGET = 30.0


def endpoint_of(process: ServiceProcess) -> Callable[[], str]:
    return lambda: process.grpc_endpoint


def empty(gateway: ServiceProcess) -> bool:
    return bool(gateway.metric(QUEUED) == 0)


@pytest.mark.timeout(240)
def test_losing_the_primary_region(services: Services) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    east, west = f"{run}-us-east-1", f"{run}-us-west-2"

    def gateway(label: str, home: str, other: str, region: str) -> ServiceProcess:
        process = ServiceProcess.from_config(
            "gateway",
            balancer_config(free_ports(), wal_dir=services.workdir / f"{label}-wal"),
            services.workdir,
            label=label,
        )
        assert process.config is not None
        balancer = process.config["exporters"]["loadbalancing"]
        balancer["resolver"] = {"etcd": {"service": "bridge", "region": home}}
        balancer["failover"] = {"etcd": {"service": "bridge", "region": other}}
        services.processes.append(process)
        return with_etcd(process, ETCD, region, LEASE_TTL)

    gateways = {
        "us-east-1": gateway("gateway-us-east-1", east, west, east),
        "eu-west-1": gateway("gateway-eu-west-1", east, west, f"{run}-eu-west-1"),
        "us-west-2": gateway("gateway-us-west-2", west, east, west),
    }
    senders = {region: SpanSender() for region in gateways}  # a run id (hex) each
    with services.region_bridges(ETCD, east, west, LEASE_TTL, FLUSH) as (primary, secondary):
        try:
            primary.start()
            secondary.start()
            for process in gateways.values():
                process.start()
            failing_over = {region: gateways[region] for region in ("us-east-1", "eu-west-1")}
            with contextlib.ExitStack() as running:
                watches = {
                    region: running.enter_context(FleetWatch(ETCD, east, process))
                    for region, process in failing_over.items()
                }
                for region, process in gateways.items():
                    running.enter_context(Load(senders[region], endpoint_of(process), pause=0.05))
                began = time.monotonic()
                for watch in watches.values():
                    watch.routed_after(primary.grpc_endpoint, began, timeout=30)

                # kill -9 of every bridge of us-east-1: RTO per gateway that sent there.
                primary.kill9()
                killed = time.monotonic()
                rto = {
                    region: watch.routed_after(secondary.grpc_endpoint, killed, timeout=60) - killed
                    for region, watch in watches.items()
                }
                acknowledged = {region: len(sender.acked) for region, sender in senders.items()}
                wait_until(
                    lambda: all(len(s.acked) > acknowledged[r] + 100 for r, s in senders.items()),
                    30,
                    "every region's load to go on during the outage",
                )

                # us-east-1 comes back: failback per gateway, then us-west-2 gets nothing of theirs.
                restarted = time.monotonic()
                primary.start()
                failback = {
                    region: watch.routed_after(primary.grpc_endpoint, restarted, timeout=60) - restarted
                    for region, watch in watches.items()
                }
                # both gateways watched over the same window
                back = functools.partial(steady, failing_over.values(), secondary.grpc_endpoint, 2.0)
                wait_until(back, 30, f"the gateways of {sorted(failing_over)} to stop sending to us-west-2")

            for process in gateways.values():
                wait_until(functools.partial(empty, process), 60, f"{process.label}'s queue to empty")
            for bridge in (primary, secondary):
                for sender in senders.values():
                    wait_for_commits(bridge, sender.run, timeout=60)
            counts = {
                region: (lake_count(primary, sender), lake_count(secondary, sender))
                for region, sender in senders.items()
            }
        finally:
            secondary.stop()
            for region in (east, west, f"{run}-eu-west-1"):
                delete_region(ETCD, region)

    lost = {}
    for region, (in_east, in_west) in counts.items():
        sender = senders[region]
        both = sorted(in_east.seqs & in_west.seqs)
        assert not both, f"{region}: {len(both)} spans are in both lakes, e.g. {both[:20]}"
        union = LakeCount(
            in_east.rows + in_west.rows, in_east.seqs | in_west.seqs, {**in_east.partial, **in_west.partial}
        )
        lost[region] = len(sender.acked - union.seqs)
        assert_exactly_once(union, sender)
    print(
        "\nDR drill: "
        + "; ".join(f"RTO {region} {seconds:.1f} s" for region, seconds in rto.items())
        + "; "
        + "; ".join(f"failback {region} {seconds:.1f} s" for region, seconds in failback.items())
        + f"; RPO {sum(lost.values())} acknowledged spans lost of "
        + f"{sum(len(s.acked) for s in senders.values())}; duplicates 0"
    )
    assert max(rto.values()) <= RTO_TARGET, rto
    assert max(failback.values()) <= FAILBACK_TARGET, failback
