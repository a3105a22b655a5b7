"""The disaster drill (issue 19): three regions under a steady load through their agents, every
bridge of the primary region killed -9, the time until every gateway that sent there delivers to
the secondary (RTO), the acknowledged spans lost (RPO), the time until the traffic is back once
the primary is healthy (failback, after ``SUCCESS_THRESHOLD`` successful breaker probes), and
every acknowledged span counted by span id through the federated query, and in the two lakes:
once, in one of them.

    load ─▶ agent us-east-1 ─▶ gateway us-east-1 ─┐ resolver etcd{bridge, us-east-1},
    load ─▶ agent eu-west-1 ─▶ gateway eu-west-1 ─┤ failover etcd{bridge, us-west-2}
    load ─▶ agent us-west-2 ─▶ gateway us-west-2 ──── resolver etcd{bridge, us-west-2},
                                                   │ failover etcd{bridge, us-east-1}
                                                   ▼
            bridge us-east-1 ─▶ lake E        bridge us-west-2 ─▶ lake W
            (their claims of batch ids shared: lake/global_dedup.py; each the other's peer
            in a federation: "scope": "global" on either reads both lakes)

The agents acknowledge into their write-ahead-logged queues; acknowledged means acknowledged by
an agent. Run it alone to read the figures: ``python -m pytest tests/fault/test_dr_drill.py -s``
(README, Regions).
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Iterable

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
    breaker_changes,
    delete_region,
    in_ring_at,
    lake_count,
    query,
    span_id,
    steady,
    wait_for_commits,
    wait_until,
    with_etcd,
)
from orasi_common.testing.service_process import ServiceProcess, free_ports

ETCD = "http://127.0.0.1:2379"
LEASE_TTL = 3
FLUSH = 1.0
SUCCESS_THRESHOLD = 3
"""Successful probes in a row after which a gateway's breaker of a returning bridge closes."""
RTO_TARGET = 30.0
FAILBACK_TARGET = 30.0


def endpoint_of(process: ServiceProcess) -> Callable[[], str]:
    return lambda: process.grpc_endpoint


def empty(processes: Iterable[ServiceProcess]) -> bool:
    return all(process.metric(QUEUED) == 0 for process in processes)


def federate(bridges: dict[str, ServiceProcess]) -> None:
    """Each bridge's lake named by its region, and every bridge a peer of each one's federation."""
    peers = []
    for region, bridge in bridges.items():
        assert bridge.config is not None
        bridge.config["exporters"]["lake"]["region"] = region
        peers.append({"region": region, "endpoint": bridge.config["extensions"]["query_api"]["endpoint"]})
    for bridge in bridges.values():
        assert bridge.config is not None
        bridge.config["extensions"]["query_api"]["federation"] = {"peers": peers, "timeout": 30}


def federated_copies(bridge: ServiceProcess, sender: SpanSender) -> dict[str, int]:
    """Span id (hex) → copies of it among the sender's spans, by a global query to ``bridge``
    (every region must have answered)."""
    answer = query(
        bridge,
        f"SELECT span_id, count(*) FROM spans WHERE attributes['run'] = '{sender.run}' GROUP BY span_id",
        scope="global",
    )
    regions = answer["stats"]["regions"]
    failed = {region: s["error"] for region, s in regions.items() if s.get("error")}
    assert sorted(regions) == ["us-east-1", "us-west-2"] and not failed, f"the regions' answers: {regions}"
    return {str(span): int(copies) for span, copies in answer["rows"]}


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
        balancer["circuit_breaker"]["success_threshold"] = SUCCESS_THRESHOLD
        services.processes.append(process)
        return with_etcd(process, ETCD, region, LEASE_TTL)

    gateways = {
        "us-east-1": gateway("gateway-us-east-1", east, west, east),
        "eu-west-1": gateway("gateway-eu-west-1", east, west, f"{run}-eu-west-1"),
        "us-west-2": gateway("gateway-us-west-2", west, east, west),
    }
    agents = {
        region: services.forwarder(
            "agent", process.grpc_endpoint, wal_dir=services.workdir / f"agent-{region}-wal"
        )
        for region, process in gateways.items()
    }
    senders = {region: SpanSender() for region in agents}  # a run id (hex) each
    with services.region_bridges(ETCD, east, west, LEASE_TTL, FLUSH) as (primary, secondary):
        federate({"us-east-1": primary, "us-west-2": secondary})
        try:
            primary.start()
            secondary.start()
            for process in [*gateways.values(), *agents.values()]:
                process.start()
            failing_over = {region: gateways[region] for region in ("us-east-1", "eu-west-1")}
            with contextlib.ExitStack() as running:
                watches = {
                    region: running.enter_context(FleetWatch(ETCD, east, process))
                    for region, process in failing_over.items()
                }
                for region, agent in agents.items():
                    running.enter_context(Load(senders[region], endpoint_of(agent), pause=0.05))
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

                # us-east-1 comes back: its breakers let probes through, then everything returns.
                restarted = time.monotonic()
                primary.start()
                first_back = {
                    region: watch.routed_after(primary.grpc_endpoint, restarted, timeout=60)
                    for region, watch in watches.items()
                }
                # both gateways watched over the same window
                back = functools.partial(steady, failing_over.values(), secondary.grpc_endpoint, 2.0)
                wait_until(back, 30, f"the gateways of {sorted(failing_over)} to stop sending to us-west-2")
                failback = {
                    region: max(first_back[region], watch.last_routed(secondary.grpc_endpoint) or 0.0)
                    - restarted
                    for region, watch in watches.items()
                }

            for stage in (agents, gateways):
                wait_until(
                    functools.partial(empty, stage.values()), 60, f"the queues of {sorted(stage)} to empty"
                )
            for bridge in (primary, secondary):
                for sender in senders.values():
                    wait_for_commits(bridge, sender.run, timeout=60)
            counts = {
                region: (lake_count(primary, sender), lake_count(secondary, sender))
                for region, sender in senders.items()
            }
            federated = {region: federated_copies(secondary, sender) for region, sender in senders.items()}
        finally:
            secondary.stop()
            for region in (east, west, f"{run}-eu-west-1"):
                delete_region(ETCD, region)

    # The returning bridge was probed: its breaker went on from open through half-open to closed;
    # ``probes``: from its return into the gateway's ring to that breaker closing.
    probes = {}
    for region, process in failing_over.items():
        changes = breaker_changes(process, primary.grpc_endpoint)
        states = [state for _, state in changes]
        assert "open" in states and states[-2:] == ["half_open", "closed"], (region, changes)
        returned = in_ring_at(process, primary.grpc_endpoint, restarted)
        assert returned is not None, f"{region}: the gateway never took us-east-1 back into its ring"
        probes[region] = changes[-1][0] - returned

    lost = {}
    for region, sender in senders.items():
        copies = federated[region]
        acked = {span_id(seq).hex() for seq in sender.acked}
        lost[region] = len(acked - copies.keys())
        twice = sorted(span for span, n in copies.items() if n != 1)
        assert not twice, (
            f"{region}: {len(twice)} spans are not once in the federated answer, e.g. {twice[:20]}"
        )
        strangers = sorted(copies.keys() - {span_id(seq).hex() for seq in sender.attempted})
        assert not strangers, f"{region}: spans nobody sent are in the federated answer: {strangers[:20]}"
        in_east, in_west = counts[region]
        both = sorted(in_east.seqs & in_west.seqs)
        assert not both, f"{region}: {len(both)} spans are in both lakes, e.g. {both[:20]}"
        union = LakeCount(
            in_east.rows + in_west.rows, in_east.seqs | in_west.seqs, {**in_east.partial, **in_west.partial}
        )
        assert_exactly_once(union, sender)
    print(
        "\nDR drill: "
        + "; ".join(f"RTO {region} {seconds:.1f} s" for region, seconds in rto.items())
        + "; "
        + "; ".join(
            f"failback {region} {seconds:.1f} s ({SUCCESS_THRESHOLD} probes in {probes[region]:.2f} s)"
            for region, seconds in failback.items()
        )
        + f"; RPO {sum(lost.values())} acknowledged spans lost of "
        + f"{sum(len(s.acked) for s in senders.values())} (federated count); duplicates 0"
    )
    assert sum(lost.values()) == 0, lost
    assert max(rto.values()) <= RTO_TARGET, rto
    assert max(failback.values()) <= FAILBACK_TARGET, failback
