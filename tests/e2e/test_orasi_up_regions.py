"""`orasi up --regions A,B,C --etcd URL`: three regions in one process, registered in the real etcd.

Regions of the test's own (``t<hex>-us-east-1``, ...) on the shared etcd. Spans sent to each
region's agent land in the lake of their region's bridge, eu-west-1's (which has no bridge) in
us-east-1's; a global query through either bridge sees both lakes, and every row says where it
was produced (``region``, from its resource's ``cloud.region``) and stored (``lake_region``).
`orasi fleet` lists every region's services.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from orasi_common.testing.service_process import orasi_command, start_on_free_ports
from orasi_common.testing.up_process import READY, UpProcess
from orasi_common.up import REGION_PORT_STEP

ETCD = "http://127.0.0.1:2379"
SPANS = 10


@pytest.fixture
def regions() -> Iterator[list[str]]:
    run = f"t{uuid.uuid4().hex[:8]}"
    names = [f"{run}-us-east-1", f"{run}-us-west-2", f"{run}-eu-west-1"]
    yield names
    # the services revoke their leases when they stop; nothing else was written


@pytest.fixture
def up(tmp_path: Path, regions: list[str]) -> Iterator[UpProcess]:
    args = ["--regions", ",".join(regions), "--etcd", ETCD]
    process = start_on_free_ports(lambda: UpProcess.on_free_ports(tmp_path, args=args), 3, 120.0)
    try:
        yield process
    finally:
        process.stop()


def port(up: UpProcess, name: str, region_number: int) -> int:
    return up.ports[name] + REGION_PORT_STEP * region_number


def send_spans(endpoint: str, run: str, label: str) -> None:
    spans = [
        trace_pb2.Span(
            trace_id=uuid.uuid4().bytes,
            span_id=uuid.uuid4().bytes[:8],
            name="op",
            start_time_unix_nano=time.time_ns(),
            end_time_unix_nano=time.time_ns() + 1000,
            attributes=[
                common_pb2.KeyValue(key="run", value=common_pb2.AnyValue(string_value=run)),
                common_pb2.KeyValue(key="sent_to", value=common_pb2.AnyValue(string_value=label)),
            ],
        )
        for _ in range(SPANS)
    ]
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="app"))
    )
    resource_spans.scope_spans.add().spans.extend(spans)
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        export(request, timeout=30)


def global_rows(query_url: str, run: str) -> list[list[Any]]:
    sql = (
        "SELECT lake_region, region, attributes['sent_to'], count(*) "
        f"FROM spans WHERE attributes['run'] = '{run}' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    response = httpx.post(f"{query_url}/api/v1/query", json={"sql": sql, "scope": "global"}, timeout=30)
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


@pytest.mark.timeout(240)
def test_three_regions_store_each_row_in_its_lake_and_fleet_lists_them(
    up: UpProcess, regions: list[str]
) -> None:
    deadline = time.monotonic() + 60  # ready once the first agent answers; the banner once all do
    while READY not in (banner := up.log_of()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert READY in banner, banner
    east, west, europe = regions
    run = uuid.uuid4().hex
    for number, region in enumerate(regions):
        send_spans(f"127.0.0.1:{port(up, 'agent.grpc', number)}", run, region)

    # stored in (lake_region), produced in (region), sent to: eu-west-1's went to us-east-1
    expected = sorted([[east, east, east, SPANS], [east, europe, europe, SPANS], [west, west, west, SPANS]])
    for number in (0, 1):  # either bridge answers the global query with both lakes
        url = f"http://127.0.0.1:{port(up, 'bridge.query', number)}"
        deadline = time.monotonic() + 60
        while (rows := global_rows(url, run)) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert rows == expected
    assert (up.data_dir / east / "catalog.db").exists() and (up.data_dir / west / "catalog.db").exists()
    assert not (up.data_dir / europe / "catalog.db").exists()

    kinds: dict[str, list[str]] = {}
    for region in regions:
        listed = subprocess.run(
            [*orasi_command(), "fleet", "--etcd", ETCD, "--region", region, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        instances = json.loads(listed.stdout)["instances"]
        assert all(item["readyz"] == "200" for item in instances), instances
        kinds[region] = sorted(item["kind"] for item in instances)
    assert kinds == {
        east: ["agent", "bridge", "gateway"],
        west: ["agent", "bridge", "gateway"],
        europe: ["agent", "gateway"],
    }


def test_orasi_up_refuses_repeated_regions(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*orasi_command(), "up", "--data-dir", str(tmp_path), "--regions", "a,b,a"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "distinct region names" in completed.stderr
