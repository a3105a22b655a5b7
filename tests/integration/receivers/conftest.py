"""Fixtures of the receivers' tests: a real bridge process on a lake of its own (PostgreSQL
catalog + SeaweedFS), with the receivers under test beside its OTLP receiver, read back through
its query API; every process a test starts is stopped by its PID.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fault.conftest import Services
from fault.harness import MEMORY_LIMITER, forwarder_config, query, wait_until

from integration.bridge.servers import AWS_ENV, LakeSpace
from orasi_common.testing.servers import servers_missing
from orasi_common.testing.service_process import ServiceProcess, free_port, free_ports
from orasi_common.topology import service

Rows = list[dict[str, Any]]


@pytest.fixture(scope="session")
def receiver_servers() -> None:
    problem = servers_missing("the receivers' lake tests")
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def lake(receiver_servers: None) -> Iterator[LakeSpace]:
    with LakeSpace.made() as space:
        yield space


def rows(process: ServiceProcess, sql: str) -> Rows:
    answer = query(process, sql)
    names = [column["name"] for column in answer["columns"]]
    return [dict(zip(names, row, strict=True)) for row in answer["rows"]]


def wait_rows(process: ServiceProcess, sql: str, done: Callable[[Rows], bool], timeout: float = 60.0) -> Rows:
    """The rows of ``sql`` once ``done(rows)`` holds (polling the lake); fails past ``timeout``."""
    found: Rows = []

    def check() -> bool:
        nonlocal found
        found = rows(process, sql)
        return done(found)

    try:
        wait_until(check, timeout, f"rows of {sql!r}", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; last rows: {found[:20]}") from None
    return found


class Processes(Services):
    """The fault tests' process builder, plus a bridge with the receivers under test."""

    def bridge_with(
        self, receivers: Mapping[str, Mapping[str, Any]], signals: tuple[str, ...]
    ) -> ServiceProcess:
        """A started bridge whose pipelines of ``signals`` take ``receivers`` (name → section,
        ports chosen by the caller) besides OTLP, and write to this test's lake (flushing every
        0.5 s, through its WAL)."""
        lake_exporter = self.lake.lake_config(region=AWS_ENV["AWS_REGION"], flush_interval=0.5)
        lake_exporter["wal"] = {"directory": str(self.workdir / f"bridge-wal-{len(self.processes)}")}
        config = service(
            free_ports(), "otlp", MEMORY_LIMITER, "lake", lake_exporter, signals=signals, query_api=True
        )
        return self._add("bridge", with_receivers(config, receivers, signals)).start()

    def forwarder_with(
        self,
        kind: str,
        upstream: ServiceProcess,
        receivers: Mapping[str, Mapping[str, Any]],
        signals: tuple[str, ...],
        **start: Any,
    ) -> ServiceProcess:
        """A started agent or gateway whose pipelines of ``signals`` take ``receivers`` besides
        OTLP and send to ``upstream`` over OTLP/gRPC through a persistent queue in the workdir."""
        config = forwarder_config(
            upstream.grpc_endpoint, free_ports(), wal_dir=self.workdir / f"{kind}-wal-{len(self.processes)}"
        )
        for pipeline in list(config["service"]["pipelines"]):
            config["service"]["pipelines"][signals[0]] = config["service"]["pipelines"].pop(pipeline)
        for signal in signals[1:]:
            config["service"]["pipelines"][signal] = dict(config["service"]["pipelines"][signals[0]])
        return self._add(kind, with_receivers(config, receivers, signals)).start(**start)


def with_receivers(
    config: dict[str, Any], receivers: Mapping[str, Mapping[str, Any]], signals: tuple[str, ...]
) -> dict[str, Any]:
    """``config`` with ``receivers`` (name → section) in its pipelines of ``signals``."""
    config["receivers"].update({name: dict(section) for name, section in receivers.items()})
    for signal in signals:
        pipeline = config["service"]["pipelines"][signal]
        pipeline["receivers"] = [*pipeline["receivers"], *receivers]
    return config


@pytest.fixture
def processes(tmp_path: Path, lake: LakeSpace) -> Iterator[Processes]:
    built = Processes(tmp_path, lake)
    try:
        yield built
    finally:
        built.close()


def endpoint() -> str:
    """A free loopback endpoint for a receiver under test."""
    return f"127.0.0.1:{free_port()}"


def now_ns() -> int:
    return time.time_ns()
