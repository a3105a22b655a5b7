"""Registration of real `orasi` processes in a real etcd: the record, and its removal on a graceful
stop (at once), on kill -9 (within the lease TTL + 1 s) and its return after etcd lost it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aetcd

from orasi_common.control.registration import decode, key_of, prefix
from orasi_common.control.registry import EtcdRegistry
from orasi_common.testing.etcd import EtcdServer, put_raw, read_prefix
from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import Ports, forwarder, service
from orasi_common.version import __version__

TTL = 2


def _wait_until(condition: Any, timeout: float) -> float:
    """Seconds until ``condition()`` held (polled every 50 ms; an etcd that does not answer yet
    is a no); fails past ``timeout``."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(aetcd.ClientError):
            if condition():
                return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(0.05)


def _with_etcd(config: dict[str, Any], url: str, region: str, instance: str) -> dict[str, Any]:
    config.setdefault("extensions", {})["etcd"] = {
        "endpoints": [url],
        "region": region,
        "zone": "z1",
        "lease_ttl": TTL,
        "instance": instance,
    }
    config["service"]["extensions"] = [*config["service"].get("extensions", []), "etcd"]
    return config


def _gateway(ports: Ports, url: str, region: str, workdir: Path) -> ServiceProcess:
    config = service(ports, "otap", {}, "otlp", forwarder("127.0.0.1:1", None))
    return ServiceProcess.from_config("gateway", _with_etcd(config, url, region, "gw-1"), workdir)


def test_bridge_record_then_graceful_stop_removes_it_at_once(
    etcd_url: str, region: str, tmp_path: Path
) -> None:
    lake = {"catalog_uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}

    def make() -> ServiceProcess:
        ports = free_ports()
        config = service(ports, "otlp", {}, "lake", lake, query_api=True)
        return ServiceProcess.from_config("bridge", _with_etcd(config, etcd_url, region, "b-1"), tmp_path)

    key = key_of(region, "bridge", "b-1")
    bridge = start_on_free_ports(make)
    try:
        ports = bridge.config["service"]["telemetry"]["admin"]["endpoint"]
        receiver = bridge.config["receivers"]["otlp"]["protocols"]
        registered = read_prefix(etcd_url, prefix(region))
        assert list(registered) == [key]
        record = decode(registered[key])
        assert record.endpoints.model_dump() == {
            "otlp_grpc": receiver["grpc"]["endpoint"],
            "otlp_http": receiver["http"]["endpoint"],
            "otap": None,
            "query_http": bridge.config["extensions"]["query_api"]["endpoint"],
            "query_grpc": None,
            "admin": ports,
        }
        assert record.protocols == ("otlp_grpc", "otlp_http")
        assert (record.region, record.zone, record.version) == (region, "z1", __version__)
        assert 0 <= time.time() - record.started_at.timestamp() < 60
    finally:
        bridge.terminate()
    assert read_prefix(etcd_url, prefix(region)) == {}  # revoked at shutdown, not expired


def test_killed_gateway_disappears_within_the_lease_ttl(etcd_url: str, region: str, tmp_path: Path) -> None:
    ports = free_ports()
    key = key_of(region, "gateway", "gw-1")
    gateway = start_on_free_ports(lambda: _gateway(ports, etcd_url, region, tmp_path))
    try:
        record = decode(read_prefix(etcd_url, key)[key])
        assert record.endpoints.otap == f"127.0.0.1:{ports.grpc}"
        assert record.protocols == ("otap", "otlp_http")
        time.sleep(TTL)  # the lease has been kept alive past its first TTL
        assert key in read_prefix(etcd_url, key)
        gateway.kill9()
        assert key in read_prefix(etcd_url, key)  # nobody revoked it: it expires
        assert _wait_until(lambda: key not in read_prefix(etcd_url, key), TTL + 1) <= TTL + 1
    finally:
        gateway.stop()


def test_registers_again_after_etcd_lost_its_lease(region: str, tmp_path: Path) -> None:
    with EtcdServer(tmp_path).start() as etcd:
        ports = free_ports()
        key = key_of(region, "gateway", "gw-1")
        gateway = start_on_free_ports(lambda: _gateway(ports, etcd.url, region, tmp_path))
        try:
            first = decode(read_prefix(etcd.url, key)[key])
            marker = "/orasi/test/marker"
            put_raw(etcd.url, marker, b"gone after the wipe")
            etcd.stop()
            time.sleep(1)
            etcd.start(wipe=True)  # every lease and key gone
            # The marker proves the wipe; the gateway's key may already be back (it retries fast).
            assert read_prefix(etcd.url, marker) == {}
            _wait_until(lambda: key in read_prefix(etcd.url, key), 15)
            assert decode(read_prefix(etcd.url, key)[key]) == first
            assert gateway.running()
        finally:
            gateway.terminate()
        assert read_prefix(etcd.url, key) == {}


def test_a_registry_started_while_etcd_is_down_registers_once_it_answers(tmp_path: Path) -> None:
    async def scenario(etcd: EtcdServer) -> None:
        registry = EtcdRegistry([etcd.url], ttl=TTL, retry_interval=0.1)
        await registry.start()  # etcd is not running yet: start does not fail
        await registry.register("/orasi/r/services/gateway/g", b"v")
        await asyncio.to_thread(etcd.start)
        await asyncio.to_thread(_wait_until, lambda: read_prefix(etcd.url, "/orasi/") != {}, 10)
        assert await registry.snapshot("/orasi/") == {"/orasi/r/services/gateway/g": b"v"}
        await registry.shutdown()
        assert await asyncio.to_thread(read_prefix, etcd.url, "/orasi/") == {}

    with EtcdServer(tmp_path) as etcd:
        asyncio.run(scenario(etcd))
