"""``orasi agent`` as a real subprocess for integration and end-to-end tests.

``agent_config`` is the test agent's configuration (OTLP in on loopback, memory_limiter → resource
→ batch, OTLP/gRPC out to a sink), built with ``orasi_common.topology``; ``AgentProcess.launch``
starts one on free ports (new ports if one was taken meanwhile) and waits until it is ready. The
process is a ``ServiceProcess``: its log, signals, stop by PID and admin metrics are there.

    with OtlpSink() as sink, AgentProcess.launch(tmp_path, sink.endpoint) as agent:
        httpx.post(agent.http_url + "/v1/traces", ...)
        sink.wait_for_items(Signal.TRACES, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import Ports, deep_merge, forwarder, service


def agent_config(exporter_endpoint: str, ports: Ports, *, batch_timeout: float = 0.05) -> dict[str, Any]:
    """OTLP in on ``ports``, memory_limiter → resource (detecting) → batch, OTLP/gRPC (gzip) out to
    ``exporter_endpoint`` with quick retries and a bounded in-memory queue."""
    processors: dict[str, dict[str, Any]] = {
        "memory_limiter": {"check_interval": 1, "limit_mib": 8192},
        "resource": {"detect": True},
        "batch": {"timeout": batch_timeout},
    }
    exporter = forwarder(
        exporter_endpoint,
        "gzip",
        timeout=5,
        retry_on_failure={"initial_interval": 0.02, "max_interval": 0.2, "max_elapsed_time": 60},
        sending_queue={"num_consumers": 2, "max_size_mib": 16},
    )
    return service(ports, "otlp", processors, "otlp", exporter, log_level="info")


class AgentProcess(ServiceProcess):
    """An `orasi agent` with the test configuration (``agent_config``)."""

    @classmethod
    def launch(
        cls,
        workdir: Path,
        exporter_endpoint: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        batch_timeout: float = 0.05,
        env: Mapping[str, str] | None = None,
        attempts: int = 3,
        ready_timeout: float = 30.0,
    ) -> AgentProcess:
        """Configure (``overrides`` deep-merged into ``agent_config``), start on free ports and
        wait for readiness."""

        def make() -> AgentProcess:
            config = deep_merge(
                agent_config(exporter_endpoint, free_ports(), batch_timeout=batch_timeout), overrides or {}
            )
            return cls.from_config("agent", config, workdir, env=env)

        return start_on_free_ports(make, attempts, ready_timeout)


__all__ = ["AgentProcess", "agent_config"]
