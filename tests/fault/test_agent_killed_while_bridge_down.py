"""An agent with a persistent queue is killed (SIGKILL) while its bridge is down.

Every span the agent acknowledged must reach the lake exactly once after the bridge comes up
and the agent restarts on the same write-ahead log: the log replays the unsent batches with their
batch ids, and the bridge's own log plus its committed-id record keep replays from doubling rows.
"""

from __future__ import annotations

from typing import Any

from fault.conftest import Services
from fault.harness import (
    SpanSender,
    assert_exactly_once,
    wait_for_commits,
    wait_for_lake,
    wait_until,
)
from orasi_common.testing.service_process import ServiceProcess

REQUESTS = 30
SENT = "orasi_exporter_sent_items_total"
RETRIES = "orasi_exporter_retries_total"


def _fill_agent_while_bridge_down(
    services: Services, sender: SpanSender, **agent_options: Any
) -> tuple[ServiceProcess, ServiceProcess]:
    """A bridge (configured, not started) and an agent that acknowledged REQUESTS requests."""
    bridge = services.bridge()  # configured (its port is reserved in the agent's config), not started
    agent = services.forwarder("agent", bridge.grpc_endpoint, **agent_options).start()
    for _ in range(REQUESTS):
        batch_id, seqs = sender.next_request()
        outcome = sender.send(agent.grpc_endpoint, batch_id, seqs)
        assert outcome.ok, f"the agent refused a request while it has room: {outcome}"
    assert len(sender.acked) == REQUESTS * sender.spans_per_request
    return bridge, agent


def test_acknowledged_spans_survive_agent_kill9_while_bridge_down(
    services: Services, sender: SpanSender
) -> None:
    bridge, agent = _fill_agent_while_bridge_down(services, sender)
    wait_until(lambda: agent.metric(RETRIES) >= 1, 15, "the agent to retry against the absent bridge")
    assert agent.metric(SENT) == 0
    queued = agent.metric("orasi_queue_size_batches")
    assert queued >= REQUESTS - 4  # at most num_consumers batches are out of the queue, in flight

    agent.kill9()
    bridge.start()
    agent.start()  # same configuration, ports and write-ahead log directory
    (replay,) = agent.logged("Replaying batches the write-ahead log kept from an earlier run.")
    assert replay["batches"] == REQUESTS

    count = wait_for_lake(bridge, sender, timeout=60)
    assert_exactly_once(count, sender)
    assert count.rows == REQUESTS * sender.spans_per_request
    # Each request kept its batch id from the client through the agent's log to the lake's commit.
    wait_for_commits(bridge, sender.run, timeout=30)
    committed = services.lake.committed_batch_ids()
    assert sorted(committed) == sorted(sender.acked_batches)
    wait_until(lambda: agent.metric(SENT) >= len(sender.acked), 10, "the agent to count its sends")


def test_acknowledged_spans_survive_agent_kill9_with_batch_processor(
    services: Services, sender: SpanSender
) -> None:
    """A pipeline that batches before the WAL queue (batch with wait_for_send → WAL queue).

    §3 promises that a receiver acknowledges only once the batch is in the durable queue; with
    the batch processor in front of it (wait_for_send), a kill right after the acknowledgements
    must still lose nothing.
    """
    bridge, agent = _fill_agent_while_bridge_down(
        services, sender, batch={"timeout": 0.2, "send_batch_size": 100_000, "wait_for_send": True}
    )
    agent.kill9()  # right after the last acknowledgement
    bridge.start()
    agent.start()
    count = wait_for_lake(bridge, sender, timeout=20)
    assert_exactly_once(count, sender)
