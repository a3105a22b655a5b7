"""The services' fixed ports (ARCHITECTURE §9), defined once.

They are `orasi up`'s ports (each overridable with ``--port NAME=PORT``), and the admin ports are
also each service's default when its configuration names none (``service.telemetry.admin``).
"""

from __future__ import annotations

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
    "bridge.flight_sql": 9090,
    "bridge.admin": 13135,
}
"""``<service>.<port name>`` → port."""

SERVICES = tuple(dict.fromkeys(name.partition(".")[0] for name in PORTS))
"""The services of the product, upstream first: agent, gateway, bridge."""


def admin_port(service: str) -> int:
    """The port of ``service``'s /healthz, /readyz and /metrics when its configuration names none."""
    return PORTS[f"{service}.admin"]
