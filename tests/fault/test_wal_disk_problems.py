"""The agent's write-ahead log cannot be written: its disk is full, or its directory is gone.

The agent must refuse new data with a retryable status (UNAVAILABLE / RESOURCE_EXHAUSTED) that
says why, stay up (``/healthz`` answers; a restart on the still-full disk comes up too, so no
crash loop), keep what it had acknowledged, and accept again as soon as the disk has room.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx

from fault.conftest import Services
from fault.harness import Outcome, SpanSender, assert_exactly_once, traces_request, wait_for_lake

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _first_refusal(sender: SpanSender, endpoint: str, attempts: int = 50) -> Outcome:
    for _ in range(attempts):
        batch_id, seqs = sender.next_request()
        outcome = sender.send(endpoint, batch_id, seqs)
        if not outcome.ok:
            return outcome
    raise AssertionError(f"the agent acknowledged {attempts} requests with its WAL disk full")


def _assert_up(agent_health: int, running: bool) -> None:
    assert running, "the agent exited"
    assert agent_health == 200


def test_full_wal_disk_refuses_retryably_stays_up_and_resumes(
    services: Services, sender: SpanSender, small_filesystem: Path
) -> None:
    """The bridge is down, so the agent's queue grows until it fills the (4 MiB) disk it lives on.

    The queue's own bound (256 MiB) is far away: what refuses is the filesystem (ENOSPC). Once the
    bridge is back the agent delivers, deletes what was delivered, and takes data again.
    """
    bridge = services.bridge()  # configured, not started
    agent = services.forwarder("agent", bridge.grpc_endpoint, wal_dir=small_filesystem / "wal").start()
    sender.spans_per_request = 200  # ~25 KB requests: the disk fills after ~150 of them
    refused = _first_refusal(sender, agent.grpc_endpoint, attempts=1000)
    assert refused.code in RETRYABLE, refused
    assert "write-ahead log" in refused.details and "No space left" in refused.details, refused.details
    acked_on_full_disk = len(sender.acked)
    assert acked_on_full_disk > 0

    # OTLP/HTTP is refused the same way, with a retryable status.
    batch_id, seqs = sender.next_request()
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=traces_request(sender.run, seqs),
        headers={"content-type": "application/x-protobuf", "x-orasi-batch-id": batch_id},
        timeout=10,
    )
    assert response.status_code in (429, 503), (response.status_code, response.text)
    time.sleep(1)
    _assert_up(agent.get("/healthz").status_code, agent.running())

    # A restart on the still-full disk comes up and refuses the same way (no crash loop).
    agent.kill9()
    agent.start()
    _assert_up(agent.get("/healthz").status_code, agent.running())
    refused = _first_refusal(sender, agent.grpc_endpoint)
    assert refused.code in RETRYABLE, refused

    # The bridge comes back: the agent delivers, its log gives the space back, it accepts again.
    bridge.start()
    for _ in range(5):
        sender.send_until_acked(lambda: agent.grpc_endpoint, deadline=time.monotonic() + 60)
    count = wait_for_lake(bridge, sender, timeout=60)
    assert_exactly_once(count, sender)
    assert len(sender.acked) == acked_on_full_disk + 5 * sender.spans_per_request


def test_wal_directory_replaced_by_a_file_refuses_and_resumes(services: Services, sender: SpanSender) -> None:
    """Works as root too: no permission bit stops root, but a regular file is not a directory."""
    bridge = services.bridge().start()
    wal_root = services.workdir / "agent-wal"
    agent = services.forwarder("agent", bridge.grpc_endpoint, wal_dir=wal_root).start()
    log_dir = wal_root / "otlp"  # the exporter's own log directory
    assert log_dir.is_dir()
    moved = wal_root / "moved-away"
    log_dir.rename(moved)
    log_dir.write_bytes(b"this is not a directory")

    refused = _first_refusal(sender, agent.grpc_endpoint)
    assert refused.code in RETRYABLE, refused
    assert "write-ahead log" in refused.details, refused.details
    time.sleep(0.5)
    _assert_up(agent.get("/healthz").status_code, agent.running())

    log_dir.unlink()
    moved.rename(log_dir)
    for _ in range(5):
        sender.send_until_acked(lambda: agent.grpc_endpoint, deadline=time.monotonic() + 30)
    count = wait_for_lake(bridge, sender, timeout=60)
    assert_exactly_once(count, sender)
    assert len(sender.acked) == 5 * sender.spans_per_request
