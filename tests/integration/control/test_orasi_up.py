"""`orasi up --etcd URL` registers its three services in a real etcd, and removes them on SIGTERM."""

from __future__ import annotations

from pathlib import Path

from orasi_common.control.registration import decode, parse_key, prefix
from orasi_common.testing.etcd import read_prefix
from orasi_common.testing.service_process import start_on_free_ports
from orasi_common.testing.up_process import UpProcess


def test_orasi_up_registers_agent_gateway_and_bridge(etcd_url: str, region: str, tmp_path: Path) -> None:
    def make() -> UpProcess:
        up = UpProcess.on_free_ports(tmp_path, args=["--etcd", etcd_url])
        up.env = {"ORASI_REGION": region}
        return up

    up = start_on_free_ports(make, ready_timeout=90)
    try:
        registered = read_prefix(etcd_url, prefix(region))
        records = {parse_key(key).kind: decode(value) for key, value in registered.items()}
        assert sorted(records) == ["agent", "bridge", "gateway"]
        ports = up.ports
        assert records["agent"].endpoints.otlp_grpc == f"127.0.0.1:{ports['agent.grpc']}"
        assert records["gateway"].endpoints.otap == f"127.0.0.1:{ports['gateway.grpc']}"
        assert records["bridge"].endpoints.otap == f"127.0.0.1:{ports['bridge.grpc']}"
        assert records["bridge"].endpoints.query_http == f"127.0.0.1:{ports['bridge.query']}"
        for kind, record in records.items():
            assert record.endpoints.admin == f"127.0.0.1:{ports[f'{kind}.admin']}"
            assert record.region == region
    finally:
        up.terminate()
    assert read_prefix(etcd_url, prefix(region)) == {}
