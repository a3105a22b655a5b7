"""Fixtures of the fault tests: the real servers, one lake per test, processes stopped by PID.

``services`` builds `orasi` processes (``services.bridge(...)``, ``services.forwarder(...)``);
every one still running when the test ends is stopped by its PID, and the logs of those running
are attached to the report of a failing test (``service_process.LIVE_LOGS``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.bridge.servers import AWS_ENV, LakeSpace

from fault.harness import SpanSender, bridge_config, forwarder_config, with_etcd
from orasi_common.testing.disk import tmpfs
from orasi_common.testing.servers import servers_missing
from orasi_common.testing.service_process import ServiceProcess, free_ports
from orasi_common.topology import Ports


@pytest.fixture(scope="session")
def fault_servers() -> None:
    """SeaweedFS and PostgreSQL answer; otherwise every fault test fails (never skips)."""
    problem = servers_missing("the fault tests")
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def lake(fault_servers: None) -> Iterator[LakeSpace]:
    with LakeSpace.made() as space:
        yield space


class Services:
    """Builds the processes of one test; ``close()`` stops those still running, by PID."""

    def __init__(self, workdir: Path, lake: LakeSpace) -> None:
        self.workdir = workdir
        self.lake = lake
        self.processes: list[ServiceProcess] = []

    def _add(self, kind: str, config: dict[str, Any]) -> ServiceProcess:
        process = ServiceProcess.from_config(
            kind, config, self.workdir, label=f"{kind}-{len(self.processes) + 1}", env=AWS_ENV
        )
        self.processes.append(process)
        return process

    def bridge(self, *, wal: bool = True, ports: Ports | None = None, **kwargs: Any) -> ServiceProcess:
        """A bridge (not started) writing to this test's lake, with its WAL in the workdir."""
        wal_dir = self.workdir / f"bridge-wal-{len(self.processes)}" if wal else None
        return self._add("bridge", bridge_config(self.lake, ports or free_ports(), wal_dir=wal_dir, **kwargs))

    def forwarder(
        self,
        kind: str,
        upstream: str,
        *,
        wal_dir: Path | None = None,
        ports: Ports | None = None,
        **kwargs: Any,
    ) -> ServiceProcess:
        """An agent or gateway (not started) with a persistent queue in ``wal_dir`` (default: workdir)."""
        wal_dir = wal_dir or self.workdir / f"{kind}-wal-{len(self.processes)}"
        return self._add(kind, forwarder_config(upstream, ports or free_ports(), wal_dir=wal_dir, **kwargs))

    @contextlib.contextmanager
    def region_bridges(
        self, etcd: str, east: str, west: str, lease_ttl: int, flush_interval: float
    ) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
        """Two bridges (not started), registered in ``etcd`` as ``bridge-east`` of region ``east``
        (this test's lake) and ``bridge-west`` of ``west`` (a lake of its own for the block),
        sharing their claims of batch ids (``global_dedup``, in the first lake's catalog)."""
        claims = {"store": self.lake.catalog_uri}
        primary = with_etcd(
            self.bridge(flush_interval=flush_interval), etcd, east, lease_ttl, instance="bridge-east"
        )
        assert primary.config is not None
        primary.config["exporters"]["lake"]["global_dedup"] = claims
        with LakeSpace.made() as west_lake:
            wal_dir = self.workdir / "bridge-west-wal"
            config = bridge_config(west_lake, free_ports(), wal_dir=wal_dir, flush_interval=flush_interval)
            config["exporters"]["lake"]["global_dedup"] = claims
            secondary = ServiceProcess.from_config(
                "bridge", config, self.workdir, label="bridge-us-west-2", env=AWS_ENV
            )
            self.processes.append(secondary)
            yield primary, with_etcd(secondary, etcd, west, lease_ttl, instance="bridge-west")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def services(tmp_path: Path, lake: LakeSpace) -> Iterator[Services]:
    built = Services(tmp_path, lake)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def sender() -> Iterator[SpanSender]:
    made = SpanSender()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (a disk that really fills up, even for root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    with tmpfs(tmp_path / "small-disk", "4m") as mount_point:
        yield mount_point
