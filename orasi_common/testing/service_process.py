"""A real ``orasi`` subprocess, for tests and benchmarks: the one process runner.

``ServiceProcess`` runs ``orasi <argv>`` (``agent|gateway|bridge --config FILE``, or ``up ...``)
and is ready once ``GET /readyz`` on its admin port answers 200; for ``orasi up`` that is the
agent's admin port, which starts last. Stdout and stderr go to one log file, kept across
restarts, each start opened by a ``===== start #N =====`` line. The process is stopped only by
its own PID: ``terminate()`` (SIGTERM, then SIGKILL past a deadline), ``kill9()``, or ``stop()``
for cleanup (safe twice, safe without a start); ``start()`` may be called again afterwards, with
the same arguments, ports and data.

While a process runs, its log is listed in ``LIVE_LOGS``, which the test suite attaches to the
report of a failing test.

    with ServiceProcess.from_config("agent", config, tmp_path).start() as agent:
        ... send to the agent's ports ...
        agent.wait_for_metric("orasi_receiver_accepted_items_total", 10, signal="traces")
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.topology import Ports

LIVE_LOGS: dict[str, Path] = {}
"""Label → log file of every process started here and not yet stopped (and of other helper
processes a test registers)."""

_labels = itertools.count(1)

# Ports for servers under test come from below the kernel's ephemeral range (32768 and up by
# default), where outgoing connections take their local ports: a port handed out here cannot
# be taken by a client connection before the server under test binds it.
_PORTS = range(20000, 32000)
_ports_handed: set[int] = set()


def _worker_ports() -> range:
    """``_PORTS``, or under pytest-xdist this worker's own share of it (``gw<i>`` of
    ``PYTEST_XDIST_WORKER_COUNT``): two workers never hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return _PORTS
    share = len(_PORTS) // count
    start = _PORTS.start + int(worker[2:]) * share
    return range(start, start + share)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now, not handed out before by this process."""
    rng = random.Random()
    ports = _worker_ports()
    for _ in range(1000):
        port = rng.choice(ports)
        if port in _ports_handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _ports_handed.add(port)
        return port
    raise RuntimeError(f"no free port in {ports}")


def free_ports(host: str = "127.0.0.1") -> Ports:
    """A service's ports (gRPC, HTTP, admin, query), each free now."""
    return Ports(free_port(host), free_port(host), free_port(host), free_port(host), host)


def orasi_command() -> list[str]:
    """The `orasi` entry point of this environment (falls back to ``python -m``)."""
    found = shutil.which("orasi", path=str(Path(sys.executable).parent)) or shutil.which("orasi")
    return [found] if found else [sys.executable, "-m", "orasi_common.cli"]


def admin_url_of(config: Mapping[str, Any]) -> str:
    """The admin port's URL of a service configuration."""
    return "http://" + str(config["service"]["telemetry"]["admin"]["endpoint"])


def port_in_use(error: BaseException) -> bool:
    """Whether a start failed because a port was taken between choosing it and binding it."""
    text = str(error).lower()
    return "address already in use" in text or "cannot listen" in text


def metric_samples(admin_url: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample of ``/metrics`` on the admin port at ``admin_url``: (name, labels, value)."""
    response = httpx.get(admin_url + "/metrics", timeout=5.0)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)


def metric_value(admin_url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    return sum(
        value
        for sample_name, sample_labels, value in metric_samples(admin_url)
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


class ServiceStartError(AssertionError):
    """The process exited or was not ready in time; the message carries its log."""


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM ``process`` by its PID and wait for its exit code; SIGKILL past ``timeout``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return int(process.returncode)


P = TypeVar("P", bound="ServiceProcess")


def start_on_free_ports(make: Callable[[], P], attempts: int = 3, ready_timeout: float = 60.0) -> P:
    """``make()`` started, ``make`` choosing free ports; when one was taken between choosing it
    and binding it (``port_in_use``), stopped and made again, ``attempts`` times at most."""
    for attempt in range(1, attempts + 1):
        process = make()
        try:
            return process.start(ready_timeout)
        except ServiceStartError as error:
            process.stop()
            if attempt == attempts or not port_in_use(error):
                raise
    raise AssertionError("unreachable")


@dataclass
class ServiceProcess:
    """One ``orasi`` subprocess; ``config`` (when set) is written to ``config_path`` at each start."""

    argv: Sequence[str]
    admin_url: str
    workdir: Path
    label: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or f"{self.argv[0]}-{os.getpid()}-{next(_labels)}"

    @classmethod
    def from_config(
        cls,
        service: str,
        config: Mapping[str, Any],
        workdir: Path,
        *,
        label: str = "",
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """``orasi <service> --config FILE`` with ``config`` (its admin endpoint included)."""
        process = cls([service], admin_url_of(config), workdir, label, dict(env or {}), dict(config))
        process.argv = [service, "--config", str(process.config_path)]
        return process

    # --- files and state ------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.label}.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.label}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.label} was never started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_of(self, start: int | None = None) -> str:
        """What one start (default: the latest) wrote: its stdout and stderr."""
        runs = self.log_text().split("===== start #")
        marker = f"{start or self.starts} =====\n"
        return next((run.removeprefix(marker) for run in runs if run.startswith(marker)), "")

    def log_records(self, start: int | None = None) -> list[dict[str, Any]]:
        """The JSON log records of one start (default: the latest), in order."""
        records = []
        for line in self.log_of(start).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records

    def logged(self, message: str, start: int | None = None) -> list[dict[str, Any]]:
        """The records of one start whose message is ``message``."""
        return [record for record in self.log_records(start) if record.get("msg") == message]

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, ready_timeout: float = 60.0) -> Self:
        """Start (or start again, once it exited) and wait until it is ready."""
        assert not self.running(), f"{self.label} is already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._close_log()
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [*orasi_command(), *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **self.env},
        )
        LIVE_LOGS[self.label] = self.log_path
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/readyz`` until it answers 200; ServiceStartError when the process exits first
        or past ``timeout``."""
        assert self.process is not None, f"{self.label} was never started"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServiceStartError(
                        f"{self.label} exited with {self.process.returncode} before it was ready:\n"
                        + self.log_text()[-8000:]
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.admin_url + "/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"{self.label} was not ready within {timeout} s:\n" + self.log_text()[-8000:]
                    )
                time.sleep(0.02)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this process, by its PID."""
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code, once it exited (subprocess.TimeoutExpired past ``timeout``)."""
        assert self.process is not None, f"{self.label} was never started"
        code = self.process.wait(timeout)
        self._close_log()
        return code

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code; SIGKILL past ``timeout``."""
        assert self.process is not None, f"{self.label} was never started"
        code = stop_process(self.process, timeout)
        self._close_log()
        return code

    def kill9(self) -> None:
        """SIGKILL at once, by PID, and reap the process."""
        self.send_signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """For cleanup: terminate() when running; safe twice and without a start."""
        if self.process is not None:
            self.terminate(timeout)
        LIVE_LOGS.pop(self.label, None)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses, from the configuration ------------------------------------------------

    def _receiver_endpoint(self, protocol: str) -> str:
        assert self.config is not None, f"{self.label} has no configuration"
        receiver = next(iter(self.config["receivers"].values()))
        return str(receiver["protocols"][protocol]["endpoint"])

    @property
    def grpc_endpoint(self) -> str:
        """The gRPC endpoint (host:port) of the configuration's (first) receiver."""
        return self._receiver_endpoint("grpc")

    @property
    def http_url(self) -> str:
        """The HTTP URL of the configuration's (first) receiver."""
        return "http://" + self._receiver_endpoint("http")

    @property
    def query_url(self) -> str:
        """The URL of the bridge's query API (its `query_api` extension)."""
        assert self.config is not None, f"{self.label} has no configuration"
        return "http://" + str(self.config["extensions"]["query_api"]["endpoint"])

    # --- the admin port -------------------------------------------------------------------

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.admin_url + path, timeout=5.0)

    def metric_samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample of ``/metrics``: (sample name, labels, value)."""
        return metric_samples(self.admin_url)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
        return metric_value(self.admin_url, name, **labels)

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
    "LIVE_LOGS",
    "ServiceProcess",
    "ServiceStartError",
    "admin_url_of",
    "free_port",
    "free_ports",
    "metric_samples",
    "metric_value",
    "orasi_command",
    "port_in_use",
    "start_on_free_ports",
    "stop_process",
]
