"""`orasi up`: agent → gateway → bridge in one process, with embedded defaults.

The bridge keeps its Iceberg catalog in SQLite and its warehouse in a local directory under
``--data-dir``; nothing outside this process is needed. Ports are the public contract of
ARCHITECTURE §9, each overridable with ``--port NAME=PORT``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orasi_common.config.model import ServiceConfig
from orasi_common.service import Service

PORTS: dict[str, int] = {
    "agent.grpc": 4317,
    "agent.http": 4318,
    "agent.admin": 13133,
    "gateway.grpc": 4417,
    "gateway.http": 4418,
    "gateway.admin": 13134,
    "bridge.grpc": 4517,
    "bridge.http": 4518,
    "bridge.query": 8080,
    "bridge.admin": 13135,
}

_SIGNALS = ("traces", "metrics", "logs")


def _otlp_receiver(host: str, ports: Mapping[str, int], service: str) -> dict[str, Any]:
    return {
        "protocols": {
            "grpc": {"endpoint": f"{host}:{ports[f'{service}.grpc']}"},
            "http": {"endpoint": f"{host}:{ports[f'{service}.http']}"},
        }
    }


def _service_part(
    host: str, ports: Mapping[str, int], service: str, receiver: str, processors: list[str], exporter: str
) -> dict[str, Any]:
    return {
        "telemetry": {"admin": {"endpoint": f"{host}:{ports[f'{service}.admin']}"}},
        "pipelines": {
            signal: {"receivers": [receiver], "processors": processors, "exporters": [exporter]}
            for signal in _SIGNALS
        },
    }


def _forwarder(target: int) -> dict[str, Any]:
    return {
        "endpoint": f"127.0.0.1:{target}",
        "tls": {"insecure": True},
        "compression": "none",
        "retry_on_failure": {"initial_interval": 0.5, "max_interval": 5},
    }


_MEMORY_LIMITER = {"limit_mib": 2048, "spike_limit_mib": 512}


def configs(data_dir: Path, ports: Mapping[str, int], host: str) -> dict[str, ServiceConfig]:
    """The three services' configurations: agent → (OTLP) → gateway → (OTAP) → bridge.

    The gateway and the bridge receive with `otap`, which serves OTLP and OTAP on one port.
    """
    agent = {
        "receivers": {"otlp": _otlp_receiver(host, ports, "agent")},
        "processors": {"memory_limiter": _MEMORY_LIMITER, "resource": {}, "batch": {"timeout": 0.2}},
        "exporters": {"otlp": _forwarder(ports["gateway.grpc"])},
        "service": _service_part(
            host, ports, "agent", "otlp", ["memory_limiter", "resource", "batch"], "otlp"
        ),
    }
    gateway = {
        "receivers": {"otap": _otlp_receiver(host, ports, "gateway")},
        "processors": {"memory_limiter": _MEMORY_LIMITER, "batch": {"timeout": 0.2}},
        "exporters": {"otap": _forwarder(ports["bridge.grpc"])},
        "service": _service_part(host, ports, "gateway", "otap", ["memory_limiter", "batch"], "otap"),
    }
    bridge = {
        "receivers": {"otap": _otlp_receiver(host, ports, "bridge")},
        "processors": {"memory_limiter": _MEMORY_LIMITER},
        "exporters": {
            "lake": {
                "region": "local",
                "catalog_uri": f"sqlite:///{data_dir / 'catalog.db'}",
                "warehouse": f"file://{data_dir / 'warehouse'}",
                "flush_interval": 5,
            }
        },
        "extensions": {"query_api": {"endpoint": f"{host}:{ports['bridge.query']}", "lake": "lake"}},
        "service": {
            **_service_part(host, ports, "bridge", "otap", ["memory_limiter"], "lake"),
            "extensions": ["query_api"],
        },
    }
    return {
        name: ServiceConfig.model_validate(document)
        for name, document in (("bridge", bridge), ("gateway", gateway), ("agent", agent))
    }


def banner(ports: Mapping[str, int], host: str, data_dir: Path) -> str:
    """What `orasi up` prints once every service accepts data."""
    at = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    query_url = f"http://{at}:{ports['bridge.query']}"
    curl_body = '{"sql": "SELECT count(*) FROM spans"}'
    lines = [
        ("send OTLP to the agent", f"grpc {at}:{ports['agent.grpc']}"),
        ("", f"http http://{at}:{ports['agent.http']}/v1/traces|metrics|logs"),
        ("query the lake", 'orasi query "SELECT service_name, count(*) FROM spans GROUP BY 1"'),
        ("", f"curl -s {query_url}/api/v1/query -H 'Content-Type: application/json' -d '{curl_body}'"),
        ("API docs", f"{query_url}/docs"),
        ("agent health, metrics", f"http://{at}:{ports['agent.admin']}/readyz, /metrics"),
        ("gateway, bridge admin", f"ports {ports['gateway.admin']}, {ports['bridge.admin']}"),
        ("data directory", str(data_dir)),
        ("stop with", "Ctrl-C"),
    ]
    return "\n".join(
        ["orasi up: ready", *(f"  {label + ':' if label else '':24} {text}" for label, text in lines)]
    )


async def run_up(data_dir: Path, ports: Mapping[str, int], host: str) -> None:
    from orasi_agent.factories import FACTORIES as AGENT
    from orasi_bridge.factories import FACTORIES as BRIDGE
    from orasi_gateway.factories import FACTORIES as GATEWAY

    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    factories = {"bridge": BRIDGE, "gateway": GATEWAY, "agent": AGENT}
    services = [
        Service(name, config, factories[name]) for name, config in configs(data_dir, ports, host).items()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    try:
        for service in services:  # bridge first: downstream before upstream
            await service.start()
            started.append(service)
        print(banner(ports, host, data_dir), flush=True)
        await stop.wait()
    finally:
        logging.getLogger("orasi.up").info("Stopping: agent, then gateway, then bridge.")
        for service in reversed(started):
            await service.shutdown()
