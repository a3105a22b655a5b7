"""``orasi up`` as a real subprocess, for end-to-end and fault tests.

Every port of ``orasi up`` is overridden (``--port NAME=PORT`` for each name of ``PORTS``) with a
free one, so a test never touches the default ports. It is a ``ServiceProcess``: ready once the
agent's ``/readyz`` answers (the agent starts last), its stdout (the banner) and stderr (the JSON
logs) in one log kept across restarts, stopped by its own PID; ``start()`` may be called again
afterwards, on the same data directory and ports.

    up = UpProcess.launch(tmp_path)
    ... send OTLP to 127.0.0.1:up.ports["agent.grpc"], query up.query(sql) ...
    up.terminate()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orasi_common.ports import PORTS
from orasi_common.testing.service_process import ServiceProcess, free_port, metric_value, start_on_free_ports

READY = "orasi up: ready"


@dataclass
class UpProcess(ServiceProcess):
    """One `orasi up` process on ``ports`` (``<service>.<port>`` → port) and ``data_dir``."""

    data_dir: Path = Path()
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def on_free_ports(
        cls, workdir: Path, data_dir: Path | None = None, args: Sequence[str] = ()
    ) -> UpProcess:
        """A process (not started) on free ports, its data directory ``workdir/data`` by default;
        ``args`` are more arguments of ``orasi up`` (e.g. ``--etcd URL``)."""
        ports = {name: free_port() for name in PORTS}
        data_dir = data_dir or workdir / "data"
        overrides = [arg for name, port in ports.items() for arg in ("--port", f"{name}={port}")]
        argv = ["up", "--data-dir", str(data_dir), *overrides, *args]
        admin_url = f"http://127.0.0.1:{ports['agent.admin']}"
        return cls(
            argv, admin_url, workdir, label=f"orasi-up-{ports['agent.admin']}", data_dir=data_dir, ports=ports
        )

    @classmethod
    def launch(cls, workdir: Path, attempts: int = 3, ready_timeout: float = 90.0) -> UpProcess:
        """Started on free ports and ready (on new ports when one was taken meanwhile)."""
        return start_on_free_ports(lambda: cls.on_free_ports(workdir), attempts, ready_timeout)

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['bridge.query']}"

    def service_metric(self, service: str, name: str, **labels: str) -> float:
        """``metric`` on the admin port of ``service`` (agent, gateway or bridge)."""
        return metric_value(f"http://127.0.0.1:{self.ports[f'{service}.admin']}", name, **labels)

    def post(self, sql: str, fmt: str = "json") -> httpx.Response:
        """``POST /api/v1/query`` with ``sql`` (the default time range: the last hour)."""
        return httpx.post(f"{self.query_url}/api/v1/query", json={"sql": sql, "format": fmt}, timeout=30)

    def query(self, sql: str) -> list[list[Any]]:
        """The rows of ``sql``; an error answer fails."""
        response = self.post(sql)
        assert response.status_code == 200, f"query failed: HTTP {response.status_code}: {response.text}"
        rows: list[list[Any]] = response.json()["rows"]
        return rows


__all__ = ["READY", "UpProcess"]
