"""The topology builder: `orasi up`'s three configurations, pinned field by field.

The documents below were written down from `orasi up`'s configuration before it was built with
``orasi_common.topology``; a change to any of these fields must be deliberate (the durability
design rests on them: orasi_common/up.py, ``configs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orasi_common.topology import Ports, deep_merge, otlp_receiver
from orasi_common.up import PORTS, configs

DATA = Path("/srv/orasi-data")


def pipelines(receiver: str, processors: list[str], exporter: str) -> dict[str, Any]:
    return {
        signal: {"receivers": [receiver], "processors": processors, "exporters": [exporter]}
        for signal in ("traces", "metrics", "logs")
    }


def receiver(grpc: int, http: int) -> dict[str, Any]:
    return {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{grpc}"}, "http": {"endpoint": f"0.0.0.0:{http}"}}}


MEMORY_LIMITER = {"limit_mib": 2048, "spike_limit_mib": 512}
ETCD = {"etcd": {"endpoints": [], "region": "us-east-1"}}  # in-process registration (no --etcd)

UP = {
    "agent": {
        "receivers": {"otlp": receiver(4317, 4318)},
        "processors": {
            "memory_limiter": MEMORY_LIMITER,
            "resource": {},
            "batch": {"timeout": 0.05, "wait_for_send": True},
        },
        "exporters": {
            "otlp": {
                "endpoint": "127.0.0.1:4417",
                "tls": {"insecure": True},
                "compression": "none",
                "timeout": 10.0,
                "retry_on_failure": {"initial_interval": 0.5, "max_interval": 5, "max_elapsed_time": 0},
                "sending_queue": {"storage": {"directory": "/srv/orasi-data/wal/agent", "memory_mib": 16}},
            }
        },
        "extensions": ETCD,
        "service": {
            "pipelines": pipelines("otlp", ["memory_limiter", "resource", "batch"], "otlp"),
            "extensions": ["etcd"],
            "telemetry": {"admin": {"endpoint": "0.0.0.0:13133"}},
        },
    },
    "gateway": {
        "receivers": {"otap": receiver(4417, 4418)},
        "processors": {"memory_limiter": MEMORY_LIMITER},
        "exporters": {
            "otap": {
                "endpoint": "127.0.0.1:4517",
                "tls": {"insecure": True},
                "compression": "none",
                "timeout": 5.0,
                "retry_on_failure": {"enabled": False},
                "sending_queue": {"enabled": False},
            }
        },
        "extensions": ETCD,
        "service": {
            "pipelines": pipelines("otap", ["memory_limiter"], "otap"),
            "extensions": ["etcd"],
            "telemetry": {"admin": {"endpoint": "0.0.0.0:13134"}},
        },
    },
    "bridge": {
        "receivers": {"otap": receiver(4517, 4518)},
        "processors": {"memory_limiter": MEMORY_LIMITER},
        "exporters": {
            "lake": {
                "region": "local",
                "catalog_uri": "sqlite:////srv/orasi-data/catalog.db",
                "warehouse": "file:///srv/orasi-data/warehouse",
                "flush_interval": 5,
                "flush_size_mib": 48,
                "max_buffer_mib": 256,
                "wal": {"directory": "/srv/orasi-data/wal/bridge"},
                "maintenance": {"compact_interval": 600, "expire_interval": 3600, "max_file_rows": 65_536},
                "span_metrics": {"enabled": True, "allowed_lateness": 120},
            }
        },
        "extensions": {
            "query_api": {
                "endpoint": "0.0.0.0:8080",
                "lake": "lake",
                "flight_sql": "0.0.0.0:9090",
                "registry": {"store": "sqlite:////srv/orasi-data/registry.db"},
            },
            **ETCD,
        },
        "service": {
            "pipelines": pipelines("otap", ["memory_limiter"], "lake"),
            "extensions": ["query_api", "etcd"],
            "telemetry": {"admin": {"endpoint": "0.0.0.0:13135"}},
        },
    },
}


def test_orasi_up_configurations_are_the_pinned_ones() -> None:
    built = configs(DATA, PORTS, "0.0.0.0")
    assert list(built) == ["bridge", "gateway", "agent"]  # started downstream first
    for name, config in built.items():
        assert config.model_dump(mode="json", exclude_unset=True) == UP[name], name
        # The pipeline's order of processors is the order they run in.
        assert list(config.model_dump(mode="json", exclude_unset=True)["processors"]) == list(
            UP[name]["processors"]
        )


def test_ports_of_a_service_in_orasi_ups_table() -> None:
    ports = Ports.of(PORTS, "bridge", "0.0.0.0")
    assert (ports.grpc, ports.http, ports.admin, ports.query) == (4517, 4518, 13135, 8080)
    assert otlp_receiver(ports) == receiver(4517, 4518)


def test_each_service_forwards_to_the_address_the_next_one_listens_on() -> None:
    """On every address (0.0.0.0) the next hop is reached on loopback; on one address, there."""
    for host, reached in (("0.0.0.0", "127.0.0.1"), ("10.0.0.5", "10.0.0.5"), ("127.0.0.1", "127.0.0.1")):
        built = configs(DATA, PORTS, host)
        agent = built["agent"].model_dump(mode="json", exclude_unset=True)
        gateway = built["gateway"].model_dump(mode="json", exclude_unset=True)
        assert agent["exporters"]["otlp"]["endpoint"] == f"{reached}:4417", host
        assert gateway["exporters"]["otap"]["endpoint"] == f"{reached}:4517", host


def test_deep_merge_applies_overrides_recursively_and_none_removes() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1], "e": 3}
    merged = deep_merge(base, {"a": {"c": 20, "x": 9}, "d": [2], "e": None})
    assert merged == {"a": {"b": 1, "c": 20, "x": 9}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1], "e": 3}  # unchanged
