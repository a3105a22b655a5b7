"""Real `orasi agent`, `orasi gateway` and `orasi bridge` processes wired into a pipeline to the lake.

    app ─OTLP─▶ agent ─OTLP/gRPC─▶ gateway ─OTLP/gRPC─▶ bridge ─▶ Iceberg (PostgreSQL catalog,
                                                                  Parquet on SeaweedFS)
                                                         └─ REST query API (POST /api/v1/query)

Each service runs from a ``--config`` file written to the test's directory, on free loopback
ports, and is ready once its admin port's ``/readyz`` answers 200. Every process is stopped by
its own PID (SIGTERM, then SIGKILL past a deadline). The bridge's catalog and warehouse are a
LakeSpace of their own (integration/bridge/servers.py): a PostgreSQL schema and an S3 prefix.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml
from integration.bridge.servers import AWS_ENV, LakeSpace, ServersUnreachable, apply_aws_env, check_servers

from orasi_common.testing.agent_process import free_port, orasi_command

SIGNALS = ("traces", "metrics", "logs")
_counter = itertools.count()


def _live_logs() -> dict[str, Path] | None:
    """The shared conftest's registry of helper-process logs shown with a failing test, if any."""
    root = sys.modules.get("conftest")
    logs = getattr(root, "LIVE_LOGS", None)
    return logs if isinstance(logs, dict) else None


class ServiceStartError(RuntimeError):
    """A service exited or was not ready in time; the message carries its logs."""


@dataclass
class ServiceProcess:
    """One `orasi <service> --config FILE` subprocess."""

    service: str
    config: dict[str, Any]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    name: str = ""
    _log: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = f"{self.service}-{os.getpid()}-{next(_counter)}"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def admin_url(self) -> str:
        return "http://" + self.config["service"]["telemetry"]["admin"]["endpoint"]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, ready_timeout: float = 60.0) -> None:
        """Start (again, after a stop) and wait until ``/readyz`` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*orasi_command(), self.service, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **AWS_ENV, **self.env},
        )
        live = _live_logs()
        if live is not None:
            live[self.name] = self.log_path
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServiceStartError(
                        f"orasi {self.service} exited with {self.process.returncode} before it was ready:\n"
                        + self.log_text()[-8000:]
                    )
                try:
                    if client.get(self.admin_url + "/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"orasi {self.service} was not ready within {ready_timeout} s:\n"
                        + self.log_text()[-8000:]
                    )
                time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM this process and wait for its exit code (SIGKILL past ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.process.returncode)

    def stop(self) -> None:
        """terminate(), safe twice and without start(); forgets the log registration."""
        if self.process is not None:
            self.terminate()
        live = _live_logs()
        if live is not None:
            live.pop(self.name, None)


def otlp_receiver(grpc_port: int, http_port: int) -> dict[str, Any]:
    return {
        "protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
        }
    }


def forwarder(grpc_port: int) -> dict[str, Any]:
    return {
        "endpoint": f"127.0.0.1:{grpc_port}",
        "tls": {"insecure": True},
        "compression": "gzip",
        "timeout": 10,
        "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.5, "max_elapsed_time": 120},
    }


def service_part(admin_port: int, processors: list[str], exporter: str) -> dict[str, Any]:
    return {
        "telemetry": {"logs": {"level": "info"}, "admin": {"endpoint": f"127.0.0.1:{admin_port}"}},
        "pipelines": {
            signal: {"receivers": ["otlp"], "processors": processors, "exporters": [exporter]}
            for signal in SIGNALS
        },
    }


@dataclass
class Ports:
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    query: int = field(default_factory=free_port)


def agent_config(ports: Ports, upstream: Ports) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver(ports.grpc, ports.http)},
        "processors": {
            "memory_limiter": {"check_interval": 1, "limit_mib": 8192},
            "resource": {"detect": True},
            "batch": {"timeout": 0.05},
        },
        "exporters": {"otlp": forwarder(upstream.grpc)},
        "service": service_part(ports.admin, ["memory_limiter", "resource", "batch"], "otlp"),
    }


def gateway_config(ports: Ports, upstream: Ports) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver(ports.grpc, ports.http)},
        "processors": {
            "memory_limiter": {"check_interval": 1, "limit_mib": 8192},
            "batch": {"timeout": 0.05},
        },
        "exporters": {"otlp": forwarder(upstream.grpc)},
        "service": service_part(ports.admin, ["memory_limiter", "batch"], "otlp"),
    }


def bridge_config(ports: Ports, space: LakeSpace, flush_interval: float = 2.0) -> dict[str, Any]:
    lake = space.lake_config(region="e2e-region-1", flush_interval=flush_interval)
    part = service_part(ports.admin, ["memory_limiter"], "lake")
    return {
        "receivers": {"otlp": otlp_receiver(ports.grpc, ports.http)},
        "processors": {"memory_limiter": {"check_interval": 1, "limit_mib": 8192}},
        "exporters": {"lake": lake},
        "extensions": {"query_api": {"endpoint": f"127.0.0.1:{ports.query}", "lake": "lake"}},
        "service": {**part, "extensions": ["query_api"]},
    }


AGENT_ENV = {
    "ORASI_AGENT_ID": "e2e-lake-agent",
    "K8S_NODE_NAME": "e2e-lake-node",
    "ORASI_REGION": "e2e-region-1",
}


@dataclass
class Stack:
    """agent → gateway → bridge, all running."""

    space: LakeSpace
    agent: ServiceProcess
    gateway: ServiceProcess
    bridge: ServiceProcess
    agent_ports: Ports
    bridge_ports: Ports

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.agent, self.gateway, self.bridge]

    @property
    def agent_grpc(self) -> str:
        return f"127.0.0.1:{self.agent_ports.grpc}"

    @property
    def agent_http(self) -> str:
        return f"http://127.0.0.1:{self.agent_ports.http}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.bridge_ports.query}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_text()[-6000:]}" for p in self.processes)

    def query(self, sql: str, tenant: str, **body: Any) -> dict[str, Any]:
        return query(self.query_url, sql, tenant, **body)

    def wait_rows(
        self,
        sql: str,
        tenant: str,
        ready: Callable[[list[list[Any]]], bool],
        timeout: float = 45.0,
        **body: Any,
    ) -> dict[str, Any]:
        return wait_rows(self.query_url, sql, tenant, ready, timeout, self.logs, **body)


def query(url: str, sql: str, tenant: str | None = None, **body: Any) -> dict[str, Any]:
    """POST /api/v1/query; the JSON answer (raises on a non-200 answer, showing it)."""
    headers = {"X-Orasi-Tenant": tenant} if tenant else {}
    response = httpx.post(f"{url}/api/v1/query", json={"sql": sql, **body}, headers=headers, timeout=30)
    assert response.status_code == 200, f"{sql}: HTTP {response.status_code} {response.text}"
    answer: dict[str, Any] = response.json()
    return answer


def wait_rows(
    url: str,
    sql: str,
    tenant: str | None,
    ready: Callable[[list[list[Any]]], bool],
    timeout: float,
    logs: Callable[[], str],
    **body: Any,
) -> dict[str, Any]:
    """Poll the query until ``ready(rows)``; fail with the services' logs past the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = query(url, sql, tenant, **body)
            if ready(answer["rows"]):
                return answer
            last = f"rows {answer['rows'][:5]}"
        except (httpx.TransportError, AssertionError) as error:
            last = str(error)
        if time.monotonic() > deadline:
            pytest.fail(
                f"{sql!r} for tenant {tenant} never became ready ({last}) within {timeout} s\n{logs()}"
            )
        time.sleep(0.1)


def require_servers() -> None:
    apply_aws_env()
    problem = None
    try:
        check_servers()
    except ServersUnreachable as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    """agent → gateway → bridge on their own catalog schema and warehouse; all stopped at the end."""
    require_servers()
    space = LakeSpace()
    space.create()
    agent_ports, gateway_ports, bridge_ports = Ports(), Ports(), Ports()
    bridge = ServiceProcess("bridge", bridge_config(bridge_ports, space), workdir)
    gateway = ServiceProcess("gateway", gateway_config(gateway_ports, bridge_ports), workdir)
    agent = ServiceProcess("agent", agent_config(agent_ports, gateway_ports), workdir, AGENT_ENV)
    try:
        for process in (bridge, gateway, agent):  # downstream first
            process.start()
        yield Stack(space, agent, gateway, bridge, agent_ports, bridge_ports)
    finally:
        for process in (agent, gateway, bridge):  # each by its own PID; safe if never started
            process.stop()
        space.drop()
