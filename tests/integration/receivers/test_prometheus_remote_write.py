"""Debian's Prometheus scrapes a real bridge's `/metrics` and remote-writes what it scraped into the
bridge's `prometheus_remote_write` receiver; the points land in the lake typed and valued as
Prometheus holds them (checked against Prometheus's own query API at the same timestamps).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from fault.harness import wait_until

from integration.receivers.conftest import Processes, endpoint, wait_rows
from orasi_common.testing.service_process import free_port, stop_process

SQL = (
    "SELECT metric_name, metric_type, is_monotonic, aggregation_temporality, time_unix_nano, value, "
    "count, sum, bucket_counts, explicit_bounds, attributes, resource_attributes, service_name "
    "FROM metric_points WHERE metric_name IN ('up', 'orasi_build_info', "
    "'orasi_receiver_accepted_items_total', 'http_request_duration_seconds')"
)


NAMES = {"up", "orasi_build_info", "orasi_receiver_accepted_items_total", "http_request_duration_seconds"}
ACCEPTED = "orasi_receiver_accepted_items_total"


def start_prometheus(workdir: Path, target: str, remote_write: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed: apt-get install -y prometheus (SERVERS.md)"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "orasi", "static_configs": [{"targets": [target]}]}],
        "remote_write": [
            {
                "url": f"http://{remote_write}/api/v1/write",
                "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
                "metadata_config": {"send": True, "send_interval": "1s"},
            }
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    web = f"127.0.0.1:{free_port()}"
    with (workdir / "prometheus.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    return process, f"http://{web}"


def prometheus_value(url: str, selector: str, time_ns: int) -> float:
    response = httpx.get(f"{url}/api/v1/query", params={"query": selector, "time": time_ns / 1e9}, timeout=10)
    response.raise_for_status()
    (result,) = response.json()["data"]["result"]
    return float(result["value"][1])


def selector(name: str, labels: dict[str, str]) -> str:
    matchers = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{matchers}}}"


def test_prometheus_scrapes_orasi_and_remote_writes_into_the_lake(
    processes: Processes, tmp_path: Path
) -> None:
    receiver = endpoint()
    bridge = processes.bridge_with({"prometheus_remote_write": {"endpoint": receiver}}, ("metrics",))
    target = bridge.admin_url.removeprefix("http://")
    prometheus, prometheus_url = start_prometheus(tmp_path, target, receiver)
    try:
        found = wait_rows(
            bridge,
            SQL,
            lambda rows: {r["metric_name"] for r in rows} >= NAMES,
            timeout=90,
        )
        by_name: dict[str, list[dict[str, Any]]] = {}
        for row in found:
            by_name.setdefault(row["metric_name"], []).append(row)
        for row in found:  # job → service.name, instance → service.instance.id
            assert row["service_name"] == "orasi"
            assert row["resource_attributes"]["service.instance.id"] == target
        up = by_name["up"][0]
        assert (up["metric_type"], up["value"]) == ("gauge", 1.0)
        build = by_name["orasi_build_info"][0]
        assert build["metric_type"] == "gauge"
        assert build["attributes"]["service"] == "bridge"

        counter = next(r for r in by_name[ACCEPTED] if r["attributes"].get("transport") == "http")
        assert counter["metric_type"] == "sum"
        assert counter["is_monotonic"] is True
        assert counter["aggregation_temporality"] == "CUMULATIVE"
        histogram = max(by_name["http_request_duration_seconds"], key=lambda r: r["count"])
        assert histogram["metric_type"] == "histogram"
        assert histogram["explicit_bounds"][:3] == [0.005, 0.01, 0.025]  # prometheus_client's default
        assert len(histogram["bucket_counts"]) == len(histogram["explicit_bounds"]) + 1
        assert sum(histogram["bucket_counts"]) == histogram["count"] > 0

        # the values are Prometheus's own at the same instants
        assert (
            prometheus_value(
                prometheus_url,
                selector(counter["metric_name"], counter["attributes"]),
                counter["time_unix_nano"],
            )
            == counter["value"]
        )
        labels, at = histogram["attributes"], histogram["time_unix_nano"]
        family = "http_request_duration_seconds"
        assert prometheus_value(prometheus_url, selector(f"{family}_count", labels), at) == histogram["count"]
        assert prometheus_value(prometheus_url, selector(f"{family}_sum", labels), at) == histogram["sum"]
        first_bucket = prometheus_value(
            prometheus_url,
            selector("http_request_duration_seconds_bucket", {**labels, "le": "0.005"}),
            histogram["time_unix_nano"],
        )
        assert histogram["bucket_counts"][0] == first_bucket

        # remote write kept going without refusals
        wait_until(
            lambda: bridge.metric(ACCEPTED, receiver="prometheus_remote_write") > 0,
            10,
            "accepted remote-write points",
        )
        assert bridge.metric("orasi_receiver_refused_items_total", receiver="prometheus_remote_write") == 0
    finally:
        stop_process(prometheus, timeout=20)
