"""SIGTERM under load: the service exits 0 after a clean drain, and nothing acknowledged is lost.

The agent (persistent queue) stops its receivers, sends what it can before its shutdown deadline
and keeps the rest in its write-ahead log for the next start. The bridge, here without a WAL of
its own so that its drain is what is tested, commits every row it acknowledged before it exits.
"""

from __future__ import annotations

import time

import pytest

from fault.conftest import Services
from fault.harness import (
    Load,
    SpanSender,
    assert_exactly_once,
    lake_count,
    query_stats,
    wait_for_lake,
    wait_until,
)

COMMITS = "orasi_lake_commits_total"
REPLAY = "Replaying batches the write-ahead log kept from an earlier run."


@pytest.mark.timeout(180)
def test_sigterm_agent_under_load_exits_0_and_delivers_everything(
    services: Services, sender: SpanSender
) -> None:
    bridge = services.bridge(flush_interval=0.5).start()
    agent = services.forwarder("agent", bridge.grpc_endpoint).start()
    with Load(sender, lambda: agent.grpc_endpoint, threads=3, pause=0.01):
        wait_until(lambda: bridge.metric(COMMITS) >= 2, 30, "data to reach the lake")
        code = agent.terminate(timeout=60)
        assert code == 0, f"the agent exited with {code} on SIGTERM:\n{agent.log_text()[-4000:]}"
        acked_at_exit = set(sender.acked)
        in_lake = lake_count(bridge, sender).seqs
        deadline = time.monotonic() + 10
        while not acked_at_exit <= in_lake and time.monotonic() < deadline:
            time.sleep(0.5)
            in_lake = lake_count(bridge, sender).seqs
        # Whatever the agent could not send before its deadline is in its log: a restart sends it.
        left_behind = acked_at_exit - in_lake
        agent.start()
        replayed = sum(r["batches"] for r in agent.logged(REPLAY))
        assert replayed * sender.spans_per_request >= len(left_behind), (
            f"{len(left_behind)} acknowledged spans were neither delivered nor kept for the next start"
        )
        time.sleep(1)
    count = wait_for_lake(bridge, sender, timeout=60)
    assert_exactly_once(count, sender)


@pytest.mark.timeout(180)
def test_sigterm_bridge_under_load_exits_0_and_commits_what_it_acknowledged(
    services: Services, sender: SpanSender
) -> None:
    bridge = services.bridge(wal=False, flush_interval=5.0).start()  # long interval: rows are buffered
    agent = services.forwarder("agent", bridge.grpc_endpoint).start()
    with Load(sender, lambda: agent.grpc_endpoint, threads=3, pause=0.01):
        wait_until(
            lambda: bridge.metric("orasi_receiver_accepted_items_total") >= 2000, 30, "load on the bridge"
        )
        hot = query_stats(bridge, sender.run)["hot_rows"]
        assert hot > 0, "nothing was buffered at the SIGTERM: the test would not test the drain"
        code = bridge.terminate(timeout=60)
        assert code == 0, f"the bridge exited with {code} on SIGTERM:\n{bridge.log_text()[-4000:]}"
        assert "Service stopped." in bridge.log_text()
        time.sleep(1)  # the agent keeps acknowledging into its queue while the bridge is away
        bridge.start()
        wait_until(lambda: bridge.metric(COMMITS) >= 1, 30, "a commit after the restart")
    count = wait_for_lake(bridge, sender, timeout=60)
    assert_exactly_once(count, sender)
