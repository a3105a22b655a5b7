"""`orasi up --regions`: the services of each region, their ports, and where each gateway sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orasi_common.ports import PORTS
from orasi_common.up import REGION_PORT_STEP, region_configs, region_ports

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]


def section(sections: dict[str, dict[str, Any] | None], name: str) -> dict[str, Any]:
    found = sections[name]
    assert found is not None
    return found


def test_each_region_gets_its_own_ports_and_none_clash() -> None:
    tables = region_ports(PORTS, 3)
    assert tables[0] == PORTS
    assert tables[2]["agent.grpc"] == 4317 + 2 * REGION_PORT_STEP
    used = [port for table in tables for port in table.values()]
    assert len(used) == len(set(used))


def test_ports_that_would_clash_are_refused() -> None:
    with pytest.raises(ValueError, match="clash"):
        region_ports({"a.grpc": 5000, "b.grpc": 5010}, 2)


def test_bridges_in_the_first_two_regions_with_lakes_of_their_own(tmp_path: Path) -> None:
    configs = region_configs(tmp_path, PORTS, "127.0.0.1", REGIONS)
    assert [key for key in configs if key[1] == "bridge"] == [
        ("us-east-1", "bridge"),
        ("us-west-2", "bridge"),
    ]
    for region in REGIONS[:2]:
        lake = section(configs[(region, "bridge")].exporters, "lake")
        assert lake["region"] == region
        assert lake["catalog_uri"] == f"sqlite:///{tmp_path / region / 'catalog.db'}"
        assert lake["wal"]["directory"] == str(tmp_path / region / "wal" / "bridge")
        assert lake["global_dedup"] == {"store": f"sqlite:///{tmp_path / 'batch-claims.db'}"}
        # both lakes replicated into the one global lake beside them
        assert lake["replicate"] == {
            "to": f"file://{tmp_path / 'global' / 'warehouse'}",
            "catalog_uri": f"sqlite:///{tmp_path / 'global' / 'catalog.db'}",
            "interval": 60.0,
        }
    for (region, _), config in configs.items():
        assert section(config.extensions, "etcd")["region"] == region


def test_gateways_send_to_their_region_or_the_first_and_fail_over_to_the_other(tmp_path: Path) -> None:
    configs = region_configs(tmp_path, PORTS, "127.0.0.1", REGIONS, etcd="http://127.0.0.1:2379")

    def groups(region: str) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        """(region, role) of the resolver and of the failover group of ``region``'s gateway."""
        balancer = section(configs[(region, "gateway")].exporters, "loadbalancing")
        resolver, failover = balancer["resolver"]["etcd"], balancer["failover"]["etcd"]
        return (resolver["region"], resolver.get("role")), (failover["region"], failover.get("role"))

    assert groups("us-east-1") == (("us-east-1", None), ("us-west-2", None))
    assert groups("us-west-2") == (("us-west-2", None), ("us-east-1", None))
    # the region without bridges follows the roles (orasi dr promote), these regions until it is set
    assert groups("eu-west-1") == (("us-east-1", "primary"), ("us-west-2", "secondary"))
    agent = configs[("eu-west-1", "agent")]
    assert agent.processors["resource"] == {"attributes": {"cloud.region": "eu-west-1"}}


def test_without_etcd_the_groups_are_the_bridges_ports(tmp_path: Path) -> None:
    configs = region_configs(tmp_path, PORTS, "127.0.0.1", REGIONS)
    balancer = section(configs[("eu-west-1", "gateway")].exporters, "loadbalancing")
    assert balancer["resolver"] == {"static": {"endpoints": [f"127.0.0.1:{PORTS['bridge.grpc']}"]}}
    failover = PORTS["bridge.grpc"] + REGION_PORT_STEP
    assert balancer["failover"] == {"static": {"endpoints": [f"127.0.0.1:{failover}"]}}
