"""A region's bridges die and come back under load: failover, failback, each span in one lake once.

    load ─▶ gateway of eu-west-1 (otlp → loadbalancing, persistent queue)
                 │ resolver etcd{service: bridge, region: us-east-1}
                 │ failover etcd{service: bridge, region: us-west-2}
                 ▼
            bridge us-east-1 ─▶ lake E          bridge us-west-2 ─▶ lake W
            (each lake: its own catalog schema and warehouse prefix; both share the claims of
            batch ids, lake/global_dedup.py, in lake E's PostgreSQL schema)

Regions of the test's own on the shared etcd (``t<hex>-us-east-1``, ...), lease TTL 3 s.

1. us-east-1's bridge takes the traffic; us-west-2's none.
2. kill -9 of us-east-1's bridge: the gateway's breakers open and its registration expires; the
   traffic goes to us-west-2.
3. us-east-1's bridge comes back with a slow log (group commit every ``SLOW_FSYNC`` s, longer
   than the gateway's ``endpoint_timeout``): each part the gateway sends it is logged there and
   acknowledged too late, so the gateway sends it to us-west-2 as well, which commits it. That
   is the cross-region duplicate case, forced: a batch logged by the primary, unacknowledged,
   delivered to the secondary. The bridge is killed -9 again, its log holding those batches
   (it commits only every ``HOLD`` s, so none of them is committed).
4. It comes back with its normal log, replays it (the claims leave out what us-west-2 committed)
   and, once a probe of the gateway's breaker succeeds, takes the traffic again; us-west-2 stops
   receiving.
5. The load stops and both lakes are read: every acknowledged span is in exactly one of them,
   once; and the forced duplicates were left out by one of the two bridges (logged).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

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
    lake_count,
    routed,
    steady,
    wait_for_commits,
    wait_until,
    with_etcd,
)
from orasi_common.testing.service_process import ServiceProcess, free_ports

ETCD = "http://127.0.0.1:2379"
LEASE_TTL = 3
ENDPOINT_TIMEOUT = 2.0
SLOW_FSYNC = 3.0
"""Seconds the slow primary's log waits to sync (and so to acknowledge): > ENDPOINT_TIMEOUT."""
FLUSH = 1.0
HOLD = 300.0
"""The slow primary's flush interval: it commits nothing before it is killed."""
LEFT_OUT = "Batches another writer committed first were left out of this commit."
REPLAYED = "Replayed the lake writer's write-ahead log."


def lake_section(bridge: ServiceProcess) -> dict[str, Any]:
    assert bridge.config is not None
    section: dict[str, Any] = bridge.config["exporters"]["lake"]
    return section


def opened(gateway: ServiceProcess, endpoint: str) -> int:
    """How many times the gateway's breaker of ``endpoint`` opened."""
    return [state for _, state in breaker_changes(gateway, endpoint)].count("open")


def wal_bytes(directory: str) -> int:
    """Bytes in the log's files (written at each sync: the log buffers frames until then)."""
    return sum(path.stat().st_size for path in Path(directory).rglob("*") if path.is_file())


@pytest.mark.timeout(240)
def test_a_region_fails_over_and_back_and_each_span_is_in_one_lake_once(
    services: Services, sender: SpanSender
) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    east, west, europe = f"{run}-us-east-1", f"{run}-us-west-2", f"{run}-eu-west-1"
    gateway = ServiceProcess.from_config(
        "gateway",
        balancer_config(free_ports(), wal_dir=services.workdir / "gateway-wal"),
        services.workdir,
        label="gateway-eu-west-1",
    )
    assert gateway.config is not None
    balancer = gateway.config["exporters"]["loadbalancing"]
    balancer["resolver"] = {"etcd": {"service": "bridge", "region": east}}
    balancer["failover"] = {"etcd": {"service": "bridge", "region": west}}
    balancer["endpoint_timeout"] = ENDPOINT_TIMEOUT
    services.processes.append(gateway)
    with_etcd(gateway, ETCD, europe, LEASE_TTL)

    with services.region_bridges(ETCD, east, west, LEASE_TTL, FLUSH) as (primary, secondary):
        wal = lake_section(primary)["wal"]
        try:
            primary.start()
            secondary.start()
            gateway.start()
            with (
                FleetWatch(ETCD, east, gateway) as watch,
                Load(sender, lambda: gateway.grpc_endpoint, pause=0.05),
            ):
                # 1. The primary region takes the traffic.
                began = time.monotonic()
                watch.routed_after(primary.grpc_endpoint, began, timeout=30)
                assert routed(gateway, secondary.grpc_endpoint) == 0

                # 2. kill -9: the traffic fails over to us-west-2.
                primary.kill9()
                killed = time.monotonic()
                failover = watch.routed_after(secondary.grpc_endpoint, killed, timeout=30) - killed

                # 3. Back with a slow log: what it logs, the gateway also delivers to us-west-2.
                wal["fsync_interval"] = SLOW_FSYNC
                lake_section(primary)["flush_interval"] = HOLD
                opens = opened(gateway, primary.grpc_endpoint)
                primary.start()
                # Two attempts timed out (the breaker opened twice), then the log synced them.
                wait_until(
                    lambda: opened(gateway, primary.grpc_endpoint) >= opens + 2,
                    60,
                    "two parts the gateway gave up on the slow primary",
                )
                logged = wal_bytes(wal["directory"])
                wait_until(
                    lambda: wal_bytes(wal["directory"]) > logged,
                    2 * SLOW_FSYNC + 5,
                    "the slow log to sync them",
                )
                watch.routed_after(secondary.grpc_endpoint, time.monotonic(), timeout=10)
                primary.kill9()  # its log holds parts us-west-2 was given too

                # 4. Back with its normal log: replay, then failback once a probe succeeds.
                wal["fsync_interval"] = 0.0
                lake_section(primary)["flush_interval"] = FLUSH
                restarted = time.monotonic()
                primary.start()
                failback = watch.routed_after(primary.grpc_endpoint, restarted, timeout=60) - restarted
                wait_until(
                    lambda: steady(gateway, secondary.grpc_endpoint, 2.0), 30, "us-west-2 to stop receiving"
                )

            # 5. Settled: every acknowledged span in exactly one lake, once.
            wait_until(lambda: gateway.metric(QUEUED) == 0, 60, "the gateway's queue to empty")
            for bridge in (primary, secondary):
                wait_for_commits(bridge, sender.run, timeout=60)
            in_east, in_west = lake_count(primary, sender), lake_count(secondary, sender)
        finally:
            secondary.stop()
            delete_region(ETCD, east)
            delete_region(ETCD, west)
            delete_region(ETCD, europe)

    both = sorted(in_east.seqs & in_west.seqs)
    assert not both, f"{len(both)} spans are in both lakes, e.g. {both[:20]}"
    union = LakeCount(
        in_east.rows + in_west.rows, in_east.seqs | in_west.seqs, {**in_east.partial, **in_west.partial}
    )
    assert len(sender.acked) > 0 and in_east.rows > 0 and in_west.rows > 0
    assert_exactly_once(union, sender)
    replayed = [record.get("replayed_batches") for record in primary.logged(REPLAYED, 3)]
    left_out = {
        bridge.label: sum(
            record.get("batches", 0)
            for start in range(1, bridge.starts + 1)
            for record in bridge.logged(LEFT_OUT, start)
        )
        for bridge in (primary, secondary)
    }
    assert sum(left_out.values()) > 0, (
        f"no bridge left out a batch the other region's lake claimed (replayed {replayed})"
    )
    print(
        f"failover after the kill {failover:.2f} s, failback after the restart {failback:.2f} s; "
        f"acknowledged {len(sender.acked)} spans, lake E {in_east.rows}, lake W {in_west.rows}; "
        f"the primary's last replay {replayed} batches; left out as claimed by the other lake {left_out}"
    )
