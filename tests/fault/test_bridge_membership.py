"""Bridges join and leave a gateway's load balancer through etcd, under load, with one lake.

    load ─▶ gateway (otlp → loadbalancing, resolver etcd{service: bridge}, persistent queue)
                 │ consistent hash on trace id (every span its own trace here: all bridges share)
                 ▼
            bridge-0  bridge-1  bridge-2  (+ bridge-3 later) ─▶ one lake (catalog schema + prefix)
            each: own WAL and ports, `etcd` extension (lease TTL 3 s) on the shared etcd,
            in a region of this test's own

1. The gateway and the load start first (the gateway queues while no bridge is known); the
   three bridges start: each is routed to within 2 s of its registration appearing in etcd.
2. bridge-1 is killed with -9: its record leaves etcd and the gateway's endpoint count drops
   within lease TTL + 1 s; the other bridges' shares grow and the gateway keeps acknowledging.
3. bridge-1 starts again on its data directory (as a StatefulSet pod would: its log holds
   acknowledged batches, replayed into the lake) and a new bridge-3 joins: both are routed to
   within 2 s of registering.
4. The load stops; once the gateway's queue is empty, bridge-0 and bridge-2 (which flush only
   when they stop, see SURVIVOR_FLUSH) are stopped and the others hold no uncommitted rows: every
   acknowledged span is in the lake exactly once, and no batch id is in two commits (a part the
   gateway re-sent to another bridge while the killed one had logged it is committed once).

The 2 s and TTL + 1 s targets are the issue's; the watch that times them looks every 0.05 s, so a
measured latency is at most that much (plus one /metrics answer) late, and no margin is added.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
import uuid

import pytest

from fault.conftest import Services
from fault.harness import (
    BREAKER_CHANGED,
    QUEUED,
    FleetWatch,
    Load,
    SpanSender,
    assert_exactly_once,
    balancer_config,
    delete_region,
    in_ring_at,
    wait_for_commits,
    wait_for_lake,
    wait_until,
    with_etcd,
)
from orasi_common.testing.service_process import ServiceProcess, free_ports

ETCD = "http://127.0.0.1:2379"
LEASE_TTL = 3
JOIN_TARGET = 2.0  # registration → first items routed, seconds
LEAVE_TARGET = LEASE_TTL + 1.0  # kill -9 → out of etcd and out of the ring, seconds
FLUSH = 1.0
SURVIVOR_FLUSH = 300.0
"""The bridges that stay commit only when they stop, at the end: parts the gateway re-sent to them
when bridge-1 died are still buffered when bridge-1 comes back and replays its log, so if
bridge-1 had logged one of them before the kill (its acknowledgement lost), both hold it, bridge-1
commits it first and the survivor must leave it out (logged as LEFT_OUT). Whether a kill lands in
that window is chance (about one run in two here)."""
LEFT_OUT = "Batches another writer committed first were left out of this commit."
REPLAYED = "Replayed the lake writer's write-ahead log."


def start_all(processes: list[ServiceProcess]) -> None:
    """Start ``processes`` at the same time; return once all are ready."""
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        for started in [pool.submit(process.start) for process in processes]:
            started.result()


def assert_joined(
    watch: FleetWatch, gateway: ServiceProcess, bridges: dict[str, ServiceProcess], since: float
) -> dict[str, float]:
    """Each bridge registered after ``since`` and was routed to within the target; the latencies
    (seconds from registration to the first items it acknowledged)."""
    latencies, ring = {}, {}
    for instance, bridge in bridges.items():
        registered = watch.registered_at(instance, since)
        routed = watch.routed_after(bridge.grpc_endpoint, registered, timeout=JOIN_TARGET + 5)
        latencies[instance] = round(routed - registered, 3)
        taken = in_ring_at(gateway, bridge.grpc_endpoint, since)
        ring[instance] = None if taken is None else round(taken - registered, 3)
    late = {instance: latency for instance, latency in latencies.items() if latency > JOIN_TARGET}
    assert not late, (
        f"routed to later than {JOIN_TARGET} s after registering: {late} (in the gateway's ring after "
        f"{ring}; what the late ones accepted and refused, the gateway's breaker changes for them: "
        f"{ {instance: diagnosis(gateway, bridges[instance]) for instance in late} })"
    )
    return latencies


def diagnosis(gateway: ServiceProcess, bridge: ServiceProcess) -> dict[str, object]:
    """Why a bridge may have been routed to late: its receiver's counts, the gateway's breaker."""
    return {
        "accepted": bridge.metric("orasi_receiver_accepted_items_total"),
        "refused": bridge.metric("orasi_receiver_refused_items_total"),
        "breaker": [
            (record["ts"], record["state"])
            for record in gateway.logged(BREAKER_CHANGED)
            if record.get("endpoint") == bridge.grpc_endpoint
        ][-6:],
    }


@pytest.mark.timeout(150)
def test_bridges_join_and_leave_under_load_and_the_lake_has_every_span_once(
    services: Services, sender: SpanSender
) -> None:
    region = f"fault-{uuid.uuid4().hex[:10]}"
    gateway = ServiceProcess.from_config(
        "gateway",
        balancer_config(free_ports(), wal_dir=services.workdir / "gateway-wal"),
        services.workdir,
        label="gateway",
    )
    services.processes.append(gateway)
    with_etcd(gateway, ETCD, region, LEASE_TTL)

    def bridge(instance: str, flush_interval: float = FLUSH) -> ServiceProcess:
        made = services.bridge(flush_interval=flush_interval)
        return with_etcd(made, ETCD, region, LEASE_TTL, instance=instance)

    first_three = {
        f"bridge-{n}": bridge(f"bridge-{n}", SURVIVOR_FLUSH if n != 1 else FLUSH) for n in range(3)
    }
    killed = first_three["bridge-1"]
    survivors = [first_three["bridge-0"], first_three["bridge-2"]]
    try:
        gateway.start()
        with (
            FleetWatch(ETCD, region, gateway) as watch,
            Load(sender, lambda: gateway.grpc_endpoint, pause=0.05),
        ):
            # 1. Three bridges register and are routed to.
            began = time.monotonic()
            start_all(list(first_three.values()))
            joined = assert_joined(watch, gateway, first_three, began)

            # 2. One is killed with -9: out of etcd and of the ring within TTL + 1 s.
            killed.kill9()
            kill = time.monotonic()
            acked_at_kill = len(sender.acked)
            unregistered = watch.await_first(
                lambda s: "bridge-1" not in s.registered,
                kill,
                LEAVE_TARGET + 5,
                "bridge-1 to leave etcd",
                etcd=True,
            )
            out_of_ring = watch.await_first(
                lambda s: s.endpoints == 2, kill, LEAVE_TARGET + 5, "the gateway to drop bridge-1"
            )
            left = {"etcd": round(unregistered - kill, 3), "ring": round(out_of_ring - kill, 3)}
            assert max(left.values()) <= LEAVE_TARGET, f"bridge-1 left later than {LEAVE_TARGET} s: {left}"
            # Its share moves: the others keep receiving and the gateway keeps acknowledging.
            for survivor in survivors:
                watch.routed_after(survivor.grpc_endpoint, out_of_ring, timeout=10)
            wait_until(
                lambda: len(sender.acked) > acked_at_kill, 10, "the gateway to acknowledge after the kill"
            )

            # 3. The killed bridge comes back on its data directory, and a new one joins.
            newcomer = bridge("bridge-3")
            back = time.monotonic()
            start_all([killed, newcomer])
            rejoined = assert_joined(watch, gateway, {"bridge-1": killed, "bridge-3": newcomer}, back)
            assert watch.await_first(lambda s: s.endpoints == 4, back, 5, "four endpoints in the ring")

        load_stopped = time.monotonic()
        # 4. Settled: the gateway's queue is empty; the survivors commit what they hold as they
        # stop (SIGTERM), the others have committed everything.
        wait_until(lambda: gateway.metric(QUEUED) == 0, 60, "the gateway's queue to empty")
        with concurrent.futures.ThreadPoolExecutor(len(survivors)) as pool:
            codes = list(pool.map(lambda survivor: survivor.terminate(), survivors))
        assert codes == [0] * len(survivors), f"the survivors did not stop cleanly: {codes}"
        for process in (killed, newcomer):
            wait_for_commits(process, sender.run, timeout=60)
        # An idle bridge's queries follow the others' commits (each flush interval).
        count = wait_for_lake(newcomer, sender, timeout=30)
        phases = {
            "start bridges": round(kill - began, 1),
            "kill to restart": round(back - kill, 1),
            "restart to load stop": round(load_stopped - back, 1),
            "settle and count": round(time.monotonic() - load_stopped, 1),
        }
    finally:
        delete_region(ETCD, region)

    acked = len(sender.acked)
    assert acked > 0
    assert_exactly_once(count, sender)
    commits = collections.Counter(services.lake.committed_batch_ids())
    twice = sorted(batch_id for batch_id, n in commits.items() if n > 1)
    assert not twice, f"batch ids in more than one commit: {twice[:10]}"
    left_out = sum(
        len(process.logged(LEFT_OUT, start))
        for process in [*first_three.values(), newcomer]
        for start in range(1, process.starts + 1)
    )
    replayed = [
        (record.get("replayed_batches"), record.get("already_committed"))
        for record in killed.logged(REPLAYED, 2)
    ]
    print(
        f"joined {joined}, left {left}, rejoined {rejoined}; acknowledged {acked} spans, "
        f"in the lake {count.rows}; bridge-1's replay (batches, already committed) {replayed}; "
        f"commits leaving out batches another bridge committed: {left_out}; phases (s) {phases}"
    )
