"""``orasi agent`` as a real subprocess, for integration and end-to-end tests.

The agent is started from a configuration written to a working directory, listens on free
loopback ports, and is ready once ``GET /readyz`` on its admin port answers 200. Its stderr (the
JSON logs) goes to a file, so that a failing test can show it. Stop it with ``stop()``, which
ends only the process this object started: SIGTERM, wait, SIGKILL past the deadline.

    with OtlpSink() as sink, AgentProcess.launch(tmp_path, sink.endpoint) as agent:
        httpx.post(agent.http_url + "/v1/traces", ...)
        sink.wait_for_items(Signal.TRACES, 1)
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.topology import deep_merge

DEFAULT_PROCESSORS = ("memory_limiter", "resource", "batch")
SIGNALS = ("traces", "metrics", "logs")

_counter = itertools.count()


# Ports for servers under test come from below the kernel's ephemeral range (32768 and up by
# default), where outgoing connections take their local ports: a port handed out here cannot
# be taken by a client connection before the server under test binds it.
_PORTS = range(20000, 32000)
_ports_handed: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now, not handed out before by this process."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(_PORTS)
        if port in _ports_handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _ports_handed.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


def agent_config(
    exporter_endpoint: str,
    *,
    grpc_port: int,
    http_port: int,
    admin_port: int,
    processors: Sequence[str] = DEFAULT_PROCESSORS,
    batch_timeout: float = 0.05,
) -> dict[str, Any]:
    """A test configuration: OTLP in on loopback, ``processors``, OTLP/gRPC out to a sink."""
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": 1, "limit_mib": 8192},
            "resource": {"detect": True},
            "batch": {"timeout": batch_timeout},
        },
        "exporters": {
            "otlp": {
                "endpoint": exporter_endpoint,
                "tls": {"insecure": True},
                "compression": "gzip",
                "timeout": 5,
                "retry_on_failure": {
                    "initial_interval": 0.02,
                    "max_interval": 0.2,
                    "max_elapsed_time": 60,
                },
                "sending_queue": {"num_consumers": 2, "max_size_mib": 16},
            }
        },
        "service": {
            "telemetry": {"logs": {"level": "info"}, "admin": {"endpoint": f"127.0.0.1:{admin_port}"}},
            "pipelines": {
                signal_name: {"receivers": ["otlp"], "processors": list(processors), "exporters": ["otlp"]}
                for signal_name in SIGNALS
            },
        },
    }


def orasi_command() -> list[str]:
    """The `orasi` entry point of this environment (falls back to ``python -m``)."""
    found = shutil.which("orasi", path=str(Path(sys.executable).parent)) or shutil.which("orasi")
    return [found] if found else [sys.executable, "-m", "orasi_common.cli"]


class AgentStartError(RuntimeError):
    """The agent exited or did not become ready; the message carries its stderr."""


@dataclass
class AgentProcess:
    """One agent subprocess. ``config`` is complete (ports included) before ``start()``."""

    config: dict[str, Any]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = "agent"
    process: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    _stderr: IO[bytes] | None = None

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def launch(
        cls,
        workdir: Path,
        exporter_endpoint: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        processors: Sequence[str] = DEFAULT_PROCESSORS,
        batch_timeout: float = 0.05,
        env: Mapping[str, str] | None = None,
        attempts: int = 3,
        ready_timeout: float = 30.0,
    ) -> AgentProcess:
        """Configure, start and wait for readiness, retrying on fresh ports if one was taken."""
        last: AgentStartError | None = None
        for _ in range(attempts):
            config = agent_config(
                exporter_endpoint,
                grpc_port=free_port(),
                http_port=free_port(),
                admin_port=free_port(),
                processors=processors,
                batch_timeout=batch_timeout,
            )
            agent = cls(deep_merge(config, overrides or {}), workdir, dict(env or {}))
            try:
                agent.start(ready_timeout)
                return agent
            except AgentStartError as error:
                agent.stop()
                last = error
                if "address already in use" not in str(error).lower() and "cannot listen" not in str(error):
                    raise
        assert last is not None
        raise last

    # --- addresses ------------------------------------------------------------------------

    def _endpoint(self, *keys: str) -> str:
        node: Any = self.config
        for key in keys:
            node = node[key]
        return str(node)

    @property
    def grpc_endpoint(self) -> str:
        return self._endpoint("receivers", "otlp", "protocols", "grpc", "endpoint")

    @property
    def http_url(self) -> str:
        return "http://" + self._endpoint("receivers", "otlp", "protocols", "http", "endpoint")

    @property
    def admin_url(self) -> str:
        return "http://" + self._endpoint("service", "telemetry", "admin", "endpoint")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, ready_timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = f"agent-{os.getpid()}-{next(_counter)}"
        config_path = self.workdir / f"{self.name}.yaml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [*orasi_command(), "agent", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env={**os.environ, **self.env},
        )
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/readyz`` until it answers 200; raise AgentStartError past ``timeout``."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise AgentStartError(
                        f"the agent exited with {self.process.returncode} before it was ready:\n"
                        + self.stderr_text()
                    )
                try:
                    if client.get(self.admin_url + "/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AgentStartError(
                        f"the agent was not ready within {timeout} s:\n" + self.stderr_text()
                    )
                time.sleep(0.02)

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit (raises subprocess.TimeoutExpired past ``timeout``)."""
        assert self.process is not None
        self.returncode = self.process.wait(timeout)
        return self.returncode

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; safe twice. Returns the exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            self.returncode = self.process.returncode
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return self.returncode

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- admin endpoints ------------------------------------------------------------------

    def admin_get(self, path: str) -> httpx.Response:
        return httpx.get(self.admin_url + path, timeout=5.0)

    def metric_samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample of ``/metrics``: (sample name, labels, value)."""
        response = self.admin_get("/metrics")
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                yield sample.name, dict(sample.labels), float(sample.value)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
        return sum(
            value
            for sample_name, sample_labels, value in self.metric_samples()
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def wait_for_metric(self, name: str, expected: float, timeout: float = 10.0, **labels: str) -> float:
        """Poll ``/metrics`` until ``name`` (summed over ``labels``) reaches ``expected``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= expected:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}{labels} is {value}, expected {expected}")
            time.sleep(0.02)


__all__ = [
    "AgentProcess",
    "AgentStartError",
    "agent_config",
    "deep_merge",
    "free_port",
    "orasi_command",
]
