"""`orasi fleet` against the real etcd, with a real gateway and bridge registered in it: both
listed with their /readyz, a stopped one gone, a malformed record reported (exit 0), and an
etcd that does not answer (exit 2, one line)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from orasi_common.control.registration import prefix
from orasi_common.control.registry import etcd_client
from orasi_common.testing.service_process import (
    ServiceProcess,
    free_port,
    free_ports,
    orasi_command,
    start_on_free_ports,
)
from orasi_common.topology import forwarder, service
from orasi_common.version import __version__


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*orasi_command(), "fleet", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _fleet_json(etcd_url: str, region: str) -> dict[str, Any]:
    done = _fleet("--region", region, "--etcd", etcd_url, "--json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _registered(config: dict[str, Any], etcd_url: str, region: str, instance: str) -> dict[str, Any]:
    """``config`` with the etcd extension (listed last) registering ``instance`` in ``region``."""
    config.setdefault("extensions", {})["etcd"] = {
        "endpoints": [etcd_url],
        "region": region,
        "zone": "z1",
        "lease_ttl": 5,
        "instance": instance,
    }
    config["service"]["extensions"] = [*config["service"].get("extensions", []), "etcd"]
    return config


def _etcd(url: str, action: str, key: str, value: bytes = b"") -> None:
    async def run() -> None:
        client = etcd_client(url)
        try:
            if action == "put":
                await client.put(key.encode(), value)
            else:
                await client.delete_prefix(key.encode())
        finally:
            await client.close()

    asyncio.run(run())


def test_fleet_lists_the_registered_gateway_and_bridge(etcd_url: str, region: str, tmp_path: Path) -> None:
    lake = {"catalog_uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}

    def bridge() -> ServiceProcess:
        config = service(free_ports(), "otlp", {}, "lake", lake, query_api=True)
        return ServiceProcess.from_config("bridge", _registered(config, etcd_url, region, "b-1"), tmp_path)

    def gateway() -> ServiceProcess:
        config = service(free_ports(), "otap", {}, "otlp", forwarder("127.0.0.1:1", None))
        return ServiceProcess.from_config("gateway", _registered(config, etcd_url, region, "gw-1"), tmp_path)

    started = time.time()
    processes = [start_on_free_ports(bridge), start_on_free_ports(gateway)]
    try:
        listed = _fleet_json(etcd_url, region)
        assert listed["malformed"] == []
        assert [(i["region"], i["kind"], i["instance"]) for i in listed["instances"]] == [
            (region, "bridge", "b-1"),
            (region, "gateway", "gw-1"),
        ]
        for item, process in zip(listed["instances"], processes, strict=True):
            assert item["readyz"] == "200"
            assert (item["version"], item["zone"]) == (__version__, "z1")
            assert item["endpoints"]["admin"] == process.config["service"]["telemetry"]["admin"]["endpoint"]
            assert 0 <= item["age_seconds"] <= time.time() - started + 1
        assert (
            listed["instances"][0]["endpoints"]["query_http"]
            == (processes[0].config["extensions"]["query_api"]["endpoint"])
        )
        assert "query_http" not in listed["instances"][1]["endpoints"]  # null endpoints are left out
        everywhere = _fleet("--etcd", etcd_url, "--json")  # every region under /orasi/
        assert everywhere.returncode == 0, everywhere.stderr
        mine = [i for i in json.loads(everywhere.stdout)["instances"] if i["region"] == region]
        assert [(i["kind"], i["instance"], i["readyz"]) for i in mine] == [
            ("bridge", "b-1", "200"),
            ("gateway", "gw-1", "200"),
        ]

        processes.pop().terminate()  # the gateway revokes its lease on a graceful stop
        assert [i["instance"] for i in _fleet_json(etcd_url, region)["instances"]] == ["b-1"]

        _etcd(etcd_url, "put", prefix(region, "bridge") + "bad", b"not json")
        _etcd(etcd_url, "put", prefix(region) + "gateway", b"{}")  # a key without an instance
        listed = _fleet_json(etcd_url, region)
        assert [i["instance"] for i in listed["instances"]] == ["b-1"]
        assert [bad["key"] for bad in listed["malformed"]] == [
            prefix(region, "bridge") + "bad",
            prefix(region) + "gateway",
        ]
        assert "malformed registration record" in listed["malformed"][0]["error"]
        assert "is not a registration key" in listed["malformed"][1]["error"]

        table = _fleet("--region", region, "--etcd", etcd_url)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == [
            "REGION",
            "KIND",
            "INSTANCE",
            "VERSION",
            "ZONE",
            "AGE",
            "READYZ",
            "ENDPOINTS",
        ]
        assert lines[1].split()[:3] == [region, "bridge", "b-1"]
        assert lines[1].split()[6] == "200"
        assert lines[2].startswith(f"MALFORMED {prefix(region, 'bridge')}bad: malformed registration record")
        assert lines[3].startswith(f"MALFORMED {prefix(region)}gateway: ")
        assert len(lines) == 4
    finally:
        for process in processes:
            process.terminate()
        _etcd(etcd_url, "delete", prefix(region))
    assert _fleet_json(etcd_url, region) == {"instances": [], "malformed": []}


def test_unreachable_etcd_exits_2_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = _fleet("--etcd", url, "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"orasi fleet: etcd does not answer at {url} (")
    assert done.stderr.count("\n") == 1


def test_etcd_endpoints_default_to_the_environment() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [*orasi_command(), "fleet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "ORASI_ETCD_ENDPOINTS": url},
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"orasi fleet: etcd does not answer at {url} (")
