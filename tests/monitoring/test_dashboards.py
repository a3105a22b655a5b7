"""The four Grafana dashboards: valid JSON as scripts/dashboards.py writes it, a `region`
variable that every query filters by, sensible panels, and only metrics the services export
(that last part: test_against_orasi_up.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitoring.promql import DASHBOARDS, dashboard_queries, metric_names

NAMES = {"global-overview", "regional-details", "component-health", "data-flow"}
ROOT = Path(__file__).resolve().parents[2]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_the_four_dashboards_are_the_files_the_script_writes() -> None:
    assert {path.stem for path in DASHBOARDS} == NAMES
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_a_dashboard_is_valid_with_a_region_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == f"orasi-{path.stem}" and dashboard["title"].startswith("Orasi / ")
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    region = variables["region"]
    assert region["type"] == "query" and region["includeAll"] and region["allValue"] == ".*"
    assert "region" in region["definition"]
    assert variables["datasource"]["type"] == "datasource"

    panels = _panels(dashboard)
    assert len(panels) >= 8
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    for where, expr in dashboard_queries(path):
        assert metric_names(expr), where
        if not where.endswith("$region"):
            assert 'region=~"$region"' in expr, f"{where} does not filter by region: {expr}"


def test_the_dashboards_show_what_the_issue_asks_for() -> None:
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        used[path.stem] = set().union(*(metric_names(expr) for _, expr in dashboard_queries(path)))
    every = set().union(*used.values())
    for name in (
        "orasi_receiver_accepted_items_total",
        "orasi_receiver_refused_items_total",
        "orasi_exporter_sent_items_total",
        "orasi_queue_size_bytes",
        "orasi_queue_capacity_bytes",
        "orasi_circuit_breaker_state",
        "orasi_lake_commits_total",
        "http_request_duration_seconds_bucket",
        "orasi_storage_usage_percent",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert name in every, name
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= used["component-health"]
