"""Live settings of real `orasi` processes through a real etcd (issue 14).

    orasi config set ──► /orasi/<region>/config/<kind>/<component> ──► etcd extension of every
    (or a raw put)                                                     instance ──► reconfigure

The agent under test runs memory_limiter → resource → batch → OTLP out to a sink (``agent_config``,
batch timeout 0.05 s). Batch changes are proven by what the sink receives: with
``send_batch_size=3, timeout=30`` single-span requests arrive three at a time, and nothing arrives
before the third; the file's 0.05 s timeout sends one span at once. The memory limiter's by the
HTTP status of an export (503 while it refuses), the load balancer's breaker by its state gauge.
``history`` is read from an etcd of the test's own, which it compacts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.small_requests import spans
from orasi_common.control.registry import etcd_client
from orasi_common.control.settings import settings_key
from orasi_common.control.settings_cli import Settings
from orasi_common.pdata import Signal
from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.etcd import EtcdServer, put_raw
from orasi_common.testing.service_process import (
    ServiceProcess,
    free_port,
    free_ports,
    orasi_command,
    start_on_free_ports,
)
from orasi_common.testing.sink import OtlpSink
from orasi_common.topology import service

APPLIED = "Applied live settings."
REFUSED = "Refused live settings; the component keeps its current values."
DELETED = "Live settings deleted; the component runs with its file configuration again."
UPDATES = "orasi_config_updates_total"


def _etcd(url: str, region: str) -> dict[str, Any]:
    return {
        "extensions": {"etcd": {"endpoints": [url], "region": region, "lease_ttl": 2}},
        "service": {"extensions": ["etcd"]},
    }


def orasi_config(url: str, region: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*orasi_command(), "config", *args, "--etcd", url, "--region", region],
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return result


def export(agent: ServiceProcess, name: str) -> int:
    """One single-span request to the agent's OTLP/HTTP receiver; its HTTP status."""
    response = httpx.post(
        agent.http_url + "/v1/traces",
        content=spans(1, name).SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=5,
    )
    return response.status_code


def sizes(sink: OtlpSink) -> list[int]:
    return [r.items for r in sink.received if r.signal is Signal.TRACES]


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as started:
        yield started


@pytest.fixture
def launch(
    etcd_url: str, region: str, sink: OtlpSink, tmp_path: Path
) -> Iterator[Callable[[], AgentProcess]]:
    agents: list[AgentProcess] = []

    def start() -> AgentProcess:
        agent = AgentProcess.launch(
            tmp_path / f"agent-{len(agents)}", sink.endpoint, overrides=_etcd(etcd_url, region)
        )
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def test_batch_settings_apply_without_restart_revert_on_delete_and_survive_a_restart(
    etcd_url: str, region: str, sink: OtlpSink, launch: Callable[[], AgentProcess]
) -> None:
    agent = launch()
    pid = agent.pid
    done = orasi_config(etcd_url, region, "set", "agent/batch", "send_batch_size=3", "timeout=30")
    assert done.returncode == 0, done.stderr
    applied = wait_until(lambda: agent.logged(APPLIED), 10, "the agent applied the change")

    for index in range(6):
        assert export(agent, f"live-{index}") == 200
    wait_until(lambda: sum(sizes(sink)) == 6, 10, "six spans reached the sink")
    assert sizes(sink) == [3, 3]  # sent by size, three at a time: the new send_batch_size
    assert agent.pid == pid and agent.running()
    assert len(applied) == 1  # once, for the three pipelines' batch processors
    assert applied[0]["component"] == "batch" and applied[0]["keys"] == ["send_batch_size", "timeout"]
    assert applied[0]["instances"] == 3
    assert agent.metric(UPDATES, component="batch", outcome="applied") == 1

    done = orasi_config(etcd_url, region, "set", "agent/batch", "send_batch_size=2")  # merged
    assert done.returncode == 0, done.stderr
    assert orasi_config(etcd_url, region, "get", "agent/batch").stdout == "send_batch_size: 2\ntimeout: 30\n"
    history = orasi_config(etcd_url, region, "history", "agent/batch")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    revisions = [int(line.split("\t")[0]) for line in lines[:2]]
    assert [line.split("\t")[1] for line in lines[:2]] == [
        '{"send_batch_size": 2, "timeout": 30}',
        '{"send_batch_size": 3, "timeout": 30}',
    ]
    assert revisions[0] > revisions[1] and lines[2] == f"(created at revision {revisions[1]})"
    wait_until(lambda: agent.metric("orasi_config_revision", component="batch") == revisions[0], 10, "rev")

    # A restarted agent comes up with the stored value: two spans wait for a third.
    agent.stop()
    sink.received.clear()
    agent = launch()
    wait_until(lambda: agent.logged(APPLIED), 5, "the stored value is applied at start")
    assert export(agent, "restart-0") == 200
    time.sleep(0.5)  # ten times the file's batch timeout: under it the span would be sent
    assert sizes(sink) == []
    assert export(agent, "restart-1") == 200
    wait_until(lambda: sizes(sink) == [2], 10, "both spans, sent by size")

    # Deleting the key reverts to the file's timeout (0.05 s): one span is sent at once.
    assert orasi_config(etcd_url, region, "delete", "agent/batch").returncode == 0
    wait_until(lambda: agent.logged(DELETED), 10, "the agent reverted")
    assert export(agent, "reverted") == 200
    wait_until(lambda: sizes(sink) == [2, 1], 5, "the single span, sent by the file's timeout")


def test_invalid_settings_are_refused_counted_and_the_running_value_kept(
    etcd_url: str, region: str, sink: OtlpSink, launch: Callable[[], AgentProcess]
) -> None:
    agent = launch()
    pid = agent.pid
    key = settings_key(region, "agent", "batch")
    done = orasi_config(etcd_url, region, "set", "agent/batch", "send_batch_size=2", "timeout=30")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: agent.logged(APPLIED), 10, "the valid change applied")

    # The CLI refuses bad values before writing, each with its key's path.
    done = orasi_config(
        etcd_url, region, "set", "agent/batch", "send_batch_size=-1", "wait_for_send=true", "timeout=soon"
    )
    assert done.returncode == 2, done.stderr
    for message in (
        "batch.send_batch_size: Input should be greater than or equal to 1",
        "batch.wait_for_send: not reloadable",
        "batch.timeout: Input should be a valid number",
    ):
        assert message in done.stderr, done.stderr

    # Written directly, bypassing those checks, they are refused by the agent.
    bad = [b"send_batch_size: -1\n", b"wait_for_send: true\n", b'{"send_batch_size": "many"}', b"[1, 2]"]
    for count, value in enumerate(bad, 1):
        put_raw(etcd_url, key, value)
        agent.wait_for_metric(UPDATES, count, component="batch", outcome="refused")
    refused = agent.logged(REFUSED)
    assert len(refused) == len(bad)  # once per bad revision
    assert [r["problems"] for r in refused] == [
        ["batch.send_batch_size: Input should be greater than or equal to 1"],
        [
            "batch.wait_for_send: not reloadable (reloadable: send_batch_max_size, send_batch_size, "
            "send_batch_size_mib, timeout)"
        ],
        ["batch.send_batch_size: Input should be a valid integer, unable to parse string as an integer"],
        ["batch: not a YAML or JSON object, got list"],
    ]
    assert agent.metric(UPDATES, component="batch", outcome="applied") == 1
    done = orasi_config(etcd_url, region, "set", "agent/batch", "timeout=1")
    assert done.returncode == 2 and "not a YAML or JSON object, got list" in done.stderr
    assert "--replace" in done.stderr
    # The valid value is still in effect: spans go two at a time.
    for index in range(4):
        assert export(agent, f"kept-{index}") == 200
    wait_until(lambda: sum(sizes(sink)) == 4, 10, "four spans")
    assert sizes(sink) == [2, 2]
    assert agent.pid == pid and agent.running()

    # memory_limiter: a limit below what the process uses refuses data (503); deleting it reverts.
    done = orasi_config(etcd_url, region, "set", "agent/memory_limiter", "limit_mib=2", "spike_limit_mib=1")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: export(agent, "over") == 503, 10, "the memory limiter refuses")
    assert agent.metric("orasi_processor_refused_items_total", processor="memory_limiter") >= 1
    assert orasi_config(etcd_url, region, "delete", "agent/memory_limiter").returncode == 0
    wait_until(lambda: export(agent, "under") == 200, 10, "the memory limiter accepts again")
    assert agent.pid == pid and agent.running()


def test_loadbalancer_breaker_settings_apply_to_existing_breakers(
    etcd_url: str, region: str, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: every send fails
    exporter = {
        "resolver": {"static": {"endpoints": [dead]}},
        "tls": {"insecure": True},
        "circuit_breaker": {"failure_threshold": 1000, "open_duration": 30},
        "endpoint_timeout": 1,
        "shutdown_timeout": 0.2,  # the span never leaves: do not wait for it when the test ends
        "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.1, "max_elapsed_time": 60},
    }

    def make() -> ServiceProcess:
        config = service(free_ports(), "otlp", {}, "loadbalancing", exporter, signals=["traces"])
        config["extensions"] = _etcd(etcd_url, region)["extensions"]
        config["service"]["extensions"] = ["etcd"]
        return ServiceProcess.from_config("gateway", config, tmp_path)

    gateway = start_on_free_ports(make)
    try:
        pid = gateway.pid
        assert export(gateway, "retried") == 200  # queued; retried against the dead endpoint
        gateway.wait_for_metric("orasi_exporter_retries_total", 3, exporter="loadbalancing")
        state = "orasi_circuit_breaker_state"
        assert gateway.metric(state, endpoint=dead) == 0  # closed: 1000 failures needed
        done = orasi_config(
            etcd_url,
            region,
            "set",
            "gateway/loadbalancing",
            "circuit_breaker.failure_threshold=2",
            "routing.traces=round_robin",
        )
        assert done.returncode == 0, done.stderr
        wait_until(lambda: gateway.metric(state, endpoint=dead) == 1, 10, "the breaker opened")
        applied = gateway.logged(APPLIED)
        assert [r["keys"] for r in applied] == [["circuit_breaker.failure_threshold", "routing.traces"]]
        assert gateway.pid == pid and gateway.running()
    finally:
        gateway.stop()


def test_history_is_newest_first_and_says_where_a_compaction_cut_it(tmp_path: Path) -> None:
    """On an etcd of the test's own: a compaction must not disturb the other tests' watches."""

    async def scenario(url: str) -> None:
        key = settings_key("r1", "gateway", "batch")
        client = etcd_client(url)
        try:
            revisions: list[int] = []
            for n in (1, 2, 3):
                put = await client.put(key.encode(), f"timeout: {n}\n".encode())
                revisions.append(put.header.revision)
            history = await Settings([url]).history(key)
            assert [(v.revision, v.value) for v in history.versions] == [
                (revisions[2], b"timeout: 3\n"),
                (revisions[1], b"timeout: 2\n"),
                (revisions[0], b"timeout: 1\n"),
            ]
            assert (history.compacted, history.created) == (None, revisions[0])
            await client.compact(revisions[1])
            history = await Settings([url]).history(key)
            assert [v.revision for v in history.versions] == revisions[:0:-1]
            assert history.compacted == revisions[0]
        finally:
            await client.close()

    with EtcdServer(tmp_path).start() as etcd:
        asyncio.run(scenario(etcd.url))
