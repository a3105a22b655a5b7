"""Orasi's topology as plain configuration: the one builder of the services' configurations.

    app ─OTLP─▶ agent ─▶ gateway ─▶ bridge ─▶ lake exporter (+ the query API)

``chain`` builds the three configurations of the agent → gateway → bridge chain from their ports
and the caller's choices (receivers, processors, the forwarding exporters' options, the `lake`
exporter); ``service`` builds one service's, and ``otlp_receiver``, ``service_section`` and
``forwarder`` the sections every configuration repeats. `orasi up` (``orasi_common.up.configs``),
the end-to-end tests, the fault harness and the test agent (``orasi_common.testing.agent_process``)
all build theirs here. The results are plain dicts, as a user writes them in YAML; validating them
is the service's (``ServiceConfig``). This module imports no service.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SIGNALS = ("traces", "metrics", "logs")
LOOPBACK = "127.0.0.1"
"""Where one service of the chain reaches the next when that one listens on every address."""
_EVERY_ADDRESS = ("0.0.0.0", "::", "")

Section = Mapping[str, Any]


@dataclass(frozen=True)
class Ports:
    """One service's ports on ``host`` (``query``: the bridge's REST query API, ``flight_sql``: its
    Arrow Flight SQL API; 0 where there is none)."""

    grpc: int
    http: int
    admin: int
    query: int = 0
    host: str = LOOPBACK
    flight_sql: int = 0

    @classmethod
    def of(cls, ports: Mapping[str, int], service: str, host: str = LOOPBACK) -> Ports:
        """``service``'s ports in a ``<service>.<port>`` table such as ``orasi_common.ports.PORTS``."""
        return cls(
            ports[f"{service}.grpc"],
            ports[f"{service}.http"],
            ports[f"{service}.admin"],
            ports.get(f"{service}.query", 0),
            host,
            ports.get(f"{service}.flight_sql", 0),
        )

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self.grpc}"

    @property
    def dial_host(self) -> str:
        """Where a neighbour on the same machine reaches these ports: their host, or loopback when
        they listen on every address."""
        return LOOPBACK if self.host in _EVERY_ADDRESS else self.host


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied recursively; a None override removes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def otlp_receiver(ports: Ports) -> dict[str, Any]:
    """An `otlp` (or `otap`) receiver's section: gRPC and HTTP on ``ports``."""
    return {
        "protocols": {
            "grpc": {"endpoint": ports.grpc_endpoint},
            "http": {"endpoint": f"{ports.host}:{ports.http}"},
        }
    }


def forwarder(endpoint: str, compression: str | None, **options: Any) -> dict[str, Any]:
    """An `otlp` or `otap` exporter's section sending to ``endpoint`` without TLS; ``options``
    (timeout, retry_on_failure, sending_queue, ...) are added as they are."""
    section: dict[str, Any] = {"endpoint": endpoint, "tls": {"insecure": True}}
    if compression is not None:
        section["compression"] = compression
    return {**section, **copy.deepcopy(options)}


def service_section(
    ports: Ports,
    receiver: str,
    processors: Iterable[str],
    exporter: str,
    *,
    signals: Iterable[str] = SIGNALS,
    log_level: str | None = None,
    extensions: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``service`` section: the admin endpoint, the log level (when given), one pipeline per
    signal (``receiver`` → ``processors`` → ``exporter``) and the extensions."""
    telemetry: dict[str, Any] = {"admin": {"endpoint": f"{ports.host}:{ports.admin}"}}
    if log_level is not None:
        telemetry = {"logs": {"level": log_level}, **telemetry}
    section: dict[str, Any] = {
        "telemetry": telemetry,
        "pipelines": {
            signal: {"receivers": [receiver], "processors": list(processors), "exporters": [exporter]}
            for signal in signals
        },
    }
    if extensions:
        section["extensions"] = list(extensions)
    return section


def service(
    ports: Ports,
    receiver: str,
    processors: Mapping[str, Section],
    exporter: str,
    exporter_config: Section,
    *,
    signals: Iterable[str] = SIGNALS,
    log_level: str | None = None,
    query_api: bool = False,
) -> dict[str, Any]:
    """One service's configuration: ``receiver`` (`otlp` or `otap`) on ``ports``, ``processors``
    (name → section, in pipeline order), one exporter; with ``query_api``, the bridge's query API
    on ``ports.query`` over that exporter (a `lake`), and Flight SQL on ``ports.flight_sql`` when set."""
    config: dict[str, Any] = {
        "receivers": {receiver: otlp_receiver(ports)},
        "processors": copy.deepcopy(dict(processors)),
        "exporters": {exporter: copy.deepcopy(dict(exporter_config))},
    }
    extensions = []
    if query_api:
        config["extensions"] = {"query_api": {"endpoint": f"{ports.host}:{ports.query}", "lake": exporter}}
        if ports.flight_sql:
            config["extensions"]["query_api"]["flight_sql"] = f"{ports.host}:{ports.flight_sql}"
        extensions.append("query_api")
    config["service"] = service_section(
        ports, receiver, processors, exporter, signals=signals, log_level=log_level, extensions=extensions
    )
    return config


def chain(
    agent: Ports,
    gateway: Ports,
    bridge: Ports,
    lake: Section,
    *,
    processors: Mapping[str, Mapping[str, Section]],
    forwarding: Mapping[str, Section],
    receivers: Mapping[str, str] | None = None,
    gateway_exporter: str = "otlp",
    compression: str | None = "none",
    log_level: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The configurations of agent → gateway → bridge, bridge first (the order to start them in).

    - agent: ``receivers["agent"]`` (default `otlp`), ``processors["agent"]``, an `otlp` exporter
      to the gateway with the options ``forwarding["agent"]``;
    - gateway: ``receivers["gateway"]``, ``processors["gateway"]``, a ``gateway_exporter``
      (`otlp` or `otap`) to the bridge with the options ``forwarding["gateway"]``;
    - bridge: ``receivers["bridge"]``, ``processors["bridge"]``, the `lake` exporter (``lake``,
      its whole section) and the query API.

    ``compression`` is the forwarding exporters' (None: their default).
    """
    receiver = {"agent": "otlp", "gateway": "otlp", "bridge": "otlp", **(receivers or {})}

    def forward(name: str, upstream: Ports) -> dict[str, Any]:
        return forwarder(f"{upstream.dial_host}:{upstream.grpc}", compression, **forwarding.get(name, {}))

    def build(name: str, ports: Ports, exporter: str, section: Section, **options: Any) -> dict[str, Any]:
        return service(
            ports, receiver[name], processors[name], exporter, section, log_level=log_level, **options
        )

    return {
        "bridge": build("bridge", bridge, "lake", lake, query_api=True),
        "gateway": build("gateway", gateway, gateway_exporter, forward("gateway", bridge)),
        "agent": build("agent", agent, "otlp", forward("agent", gateway)),
    }


__all__ = [
    "LOOPBACK",
    "SIGNALS",
    "Ports",
    "chain",
    "deep_merge",
    "forwarder",
    "otlp_receiver",
    "service",
    "service_section",
]
