"""Fixtures of the fault tests: the real servers, one lake per test, processes stopped by PID.

``services`` builds `orasi` processes (``services.bridge(...)``, ``services.forwarder(...)``);
every one still running when the test ends is stopped by its PID, and the logs of all of them
are attached to the report of a failing test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fault.harness import (
    LakeSpace,
    OrasiProcess,
    Ports,
    SpanSender,
    bridge_config,
    check_servers,
    forwarder_config,
)
from orasi_common.testing.servers import START_HINT


@pytest.fixture(scope="session")
def fault_servers() -> None:
    """SeaweedFS and PostgreSQL answer; otherwise every fault test fails (never skips)."""
    problems = check_servers()
    if problems:
        pytest.fail(
            "the fault tests need real servers: " + "; ".join(problems) + f" — {START_HINT}", pytrace=False
        )


@pytest.fixture
def lake(fault_servers: None) -> Iterator[LakeSpace]:
    space = LakeSpace()
    space.create()
    try:
        yield space
    finally:
        space.drop()


class Services:
    """Builds the processes of one test; ``close()`` stops those still running, by PID."""

    def __init__(self, workdir: Path, lake: LakeSpace, register: Callable[[str, Path], None]) -> None:
        self.workdir = workdir
        self.lake = lake
        self._register = register
        self.processes: list[OrasiProcess] = []

    def _add(self, process: OrasiProcess) -> OrasiProcess:
        self.processes.append(process)
        self._register(process.label, process.log_path)
        return process

    def bridge(self, *, wal: bool = True, ports: Ports | None = None, **kwargs: Any) -> OrasiProcess:
        """A bridge (not started) writing to this test's lake, with its WAL in the workdir."""
        ports = ports or Ports.fresh()
        wal_dir = self.workdir / f"bridge-wal-{len(self.processes)}" if wal else None
        config = bridge_config(self.lake, ports, wal_dir=wal_dir, **kwargs)
        return self._add(OrasiProcess("bridge", config, ports, self.workdir))

    def forwarder(
        self,
        kind: str,
        upstream: str,
        *,
        wal_dir: Path | None = None,
        ports: Ports | None = None,
        **kwargs: Any,
    ) -> OrasiProcess:
        """An agent or gateway (not started) with a persistent queue in ``wal_dir`` (default: workdir)."""
        ports = ports or Ports.fresh()
        wal_dir = wal_dir or self.workdir / f"{kind}-wal-{len(self.processes)}"
        config = forwarder_config(upstream, ports, wal_dir=wal_dir, **kwargs)
        return self._add(OrasiProcess(kind, config, ports, self.workdir))

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def services(
    tmp_path: Path, lake: LakeSpace, show_log_on_failure: Callable[[str, Path], None]
) -> Iterator[Services]:
    built = Services(tmp_path, lake, show_log_on_failure)
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
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test: {result.stderr.strip()}", pytrace=False)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
