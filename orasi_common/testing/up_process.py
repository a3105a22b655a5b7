"""``orasi up`` as a real subprocess, for end-to-end and fault tests.

Every port of ``orasi up`` is overridden (``--port NAME=PORT`` for each name of ``up.PORTS``)
with a free one, so a test never touches the default ports. Stdout is collected line by line by
a thread (``orasi up: ready`` marks readiness); stderr, the JSON logs, goes to a file kept across
restarts. The process is stopped only by its own PID: ``terminate()`` (SIGTERM, then SIGKILL past
a deadline) or ``kill9()``; ``start()`` may be called again afterwards, on the same data
directory and ports.

    up = UpProcess.on_free_ports(tmp_path)
    up.start()
    up.wait_ready()
    ... send OTLP to 127.0.0.1:up.ports["agent.grpc"], query up.query(sql) ...
    up.terminate()
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from orasi_common.testing.agent_process import free_port, orasi_command
from orasi_common.up import PORTS

READY = "orasi up: ready"


class UpStartError(RuntimeError):
    """`orasi up` exited or did not become ready; the message carries its output."""


@dataclass
class UpProcess:
    """One `orasi up` process (restartable); stdout lines of the current start are in ``lines``."""

    data_dir: Path
    ports: dict[str, int]
    log_path: Path
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _log: IO[bytes] | None = None
    _reader: threading.Thread | None = None

    @classmethod
    def on_free_ports(cls, workdir: Path) -> UpProcess:
        """A process (not started) with its data directory and log under ``workdir``."""
        ports = {name: free_port() for name in PORTS}
        assert len(set(ports.values())) == len(ports)
        return cls(workdir / "data", ports, workdir / "orasi-up.stderr")

    def start(self) -> None:
        """Start (or start again, after it stopped) on the same data directory and ports."""
        assert self.process is None or self.process.poll() is not None, "orasi up is already running"
        overrides = [arg for name, port in self.ports.items() for arg in ("--port", f"{name}={port}")]
        self._log = self.log_path.open("ab")
        self.lines = []
        self.process = subprocess.Popen(
            [*orasi_command(), "up", "--data-dir", str(self.data_dir), *overrides],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        stdout, lines = self.process.stdout, self.lines
        assert stdout is not None
        self._reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
        self._reader.start()

    def output(self) -> str:
        """Stdout of the current start and the tail of the log (of every start)."""
        return "".join(self.lines) + "\n--- stderr ---\n" + self.log_path.read_text(errors="replace")[-8000:]

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not any(line.strip() == READY for line in self.lines):
            if self.process.poll() is not None:
                raise UpStartError(
                    f"orasi up exited with {self.process.returncode} before it was ready:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise UpStartError(f"orasi up did not print {READY!r} within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the exit code (SIGKILL past ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reap()
        return int(self.process.returncode)

    def kill9(self) -> None:
        """SIGKILL by PID, at once, and reap the process."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        if self._reader is not None:
            self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['bridge.query']}"

    def metric(self, service: str, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``, from the admin port of
        ``service`` (agent, gateway or bridge)."""
        response = httpx.get(f"http://127.0.0.1:{self.ports[f'{service}.admin']}/metrics", timeout=5)
        response.raise_for_status()
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def post(self, sql: str, fmt: str = "json") -> httpx.Response:
        """``POST /api/v1/query`` with ``sql`` (the default time range: the last hour)."""
        return httpx.post(f"{self.query_url}/api/v1/query", json={"sql": sql, "format": fmt}, timeout=30)

    def query(self, sql: str) -> list[list[Any]]:
        """The rows of ``sql``; an error answer fails."""
        response = self.post(sql)
        assert response.status_code == 200, f"query failed: HTTP {response.status_code}: {response.text}"
        rows: list[list[Any]] = response.json()["rows"]
        return rows


__all__ = ["READY", "UpProcess", "UpStartError"]
