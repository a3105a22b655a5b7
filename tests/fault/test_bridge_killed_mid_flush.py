"""The bridge is killed (SIGKILL) at random moments while it flushes to Iceberg under load.

client → agent (persistent queue) → bridge (lake WAL, 0.3 s flushes). After each kill the bridge
restarts on the same ports and write-ahead log; the agent's retries and the bridge's replay must
leave every span the agent acknowledged in the lake exactly once: a batch committed just before
the kill is recognised by its batch id (Iceberg snapshot summaries) when it is replayed or resent.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from fault.conftest import Services
from fault.harness import (
    Load,
    SpanSender,
    assert_exactly_once,
    query,
    wait_for_commits,
    wait_for_lake,
    wait_until,
)
from orasi_common.testing.service_process import ServiceProcess

COMMITS = "orasi_lake_commits_total"
KILLS = 3
REQUESTS = 10
REPLAYED = "Replayed the lake writer's write-ahead log."


def assert_each_batch_committed_once(services: Services, bridge: ServiceProcess, sender: SpanSender) -> None:
    """Every acknowledged request's batch id is in exactly one Iceberg commit."""
    wait_for_commits(bridge, sender.run, timeout=60)
    committed = services.lake.committed_batch_ids()
    twice = sorted({i for i in committed if committed.count(i) > 1})
    assert not twice, f"batches committed more than once: {twice[:10]}"
    assert sender.acked_batches <= set(committed)


def test_bridge_kill9_during_flushes_loses_and_duplicates_nothing(
    services: Services, sender: SpanSender
) -> None:
    rng = random.Random()
    bridge = services.bridge(flush_interval=0.3).start()
    agent = services.forwarder("agent", bridge.grpc_endpoint).start()
    delays = []
    with Load(sender, lambda: agent.grpc_endpoint, threads=2, pause=0.01):
        for kill in range(KILLS):
            # A few commits of this process first, then a kill at a random point of a flush cycle.
            wait_until(lambda: bridge.metric(COMMITS) >= 2, 60, f"two commits before kill #{kill + 1}")
            delays.append(round(rng.uniform(0.0, 0.3), 3))
            time.sleep(delays[-1])
            bridge.kill9()
            bridge.start()
        wait_until(lambda: bridge.metric(COMMITS) >= 1, 60, "a commit after the last restart")
    acked = len(sender.acked)
    assert acked > 0
    count = wait_for_lake(bridge, sender, timeout=90)
    assert_exactly_once(count, sender)
    assert_each_batch_committed_once(services, bridge, sender)
    # span_metrics_1m, committed just before the spans at each flush, counts every span once too
    # (a kill between its commit and the spans' is repaired by the replay).
    [[derived, spans]] = query(
        bridge, "SELECT (SELECT sum(span_count) FROM span_metrics_1m), (SELECT count(*) FROM spans)"
    )["rows"]
    assert derived == spans
    replays = sum(len(bridge.logged(REPLAYED, start)) for start in range(2, bridge.starts + 1))
    assert replays >= 1, (
        f"no restart found anything to replay (kill delays {delays}): the kills missed every flush"
    )


def test_bridge_crash_between_commit_and_log_trim_writes_nothing_twice(
    services: Services, sender: SpanSender
) -> None:
    """The crash lands after an Iceberg commit but before the log records that the commit is done.

    That window is a few instructions wide, so the test recreates its disk state instead of
    racing for it: the bridge's write-ahead log is copied while the batches are acknowledged but
    not yet committed, the bridge commits, is killed, and its log is put back as the copy. The
    replay then finds every batch already in the lake (batch ids in the snapshot summaries) and
    must skip them all.
    """
    bridge = services.bridge(flush_interval=5.0).start()
    wal_dir = Path(bridge.config["exporters"]["lake"]["wal"]["directory"])
    for _ in range(REQUESTS):
        sender.send_until_acked(lambda: bridge.grpc_endpoint, deadline=time.monotonic() + 30)
    snapshot = services.workdir / "bridge-wal-before-commit"
    shutil.copytree(wal_dir, snapshot)
    assert bridge.metric(COMMITS) == 0, "the bridge committed before the log was copied"
    assert list(snapshot.rglob("*.wal")), "the acknowledged batches are not in the bridge's log"

    wait_for_commits(bridge, sender.run, timeout=30)
    assert bridge.metric(COMMITS) >= 1
    bridge.kill9()
    shutil.rmtree(wal_dir)
    shutil.copytree(snapshot, wal_dir)
    bridge.start()

    (replay,) = bridge.logged(REPLAYED)
    assert (replay["replayed_batches"], replay["already_committed"]) == (0, REQUESTS), replay
    count = wait_for_lake(bridge, sender, timeout=30)
    assert_exactly_once(count, sender)
    assert count.rows == REQUESTS * sender.spans_per_request
    assert_each_batch_committed_once(services, bridge, sender)
