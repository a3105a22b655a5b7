"""The alert rules and the scrape configuration, checked by promtool and read as the chart reads
them: `promtool check rules`, `promtool test rules` (every alert has a firing and a quiet case),
and the labels the rules group by are the labels the scrape configuration sets."""

from __future__ import annotations

import subprocess

import yaml

from monitoring.promql import RULE_TESTS, RULES, SCRAPE, metric_names, rules, tool

ALERTS = {
    # The seed's three.
    "OrasiHighRequestLatency",
    "OrasiHighErrorRate",
    "OrasiStorageAlmostFull",
    # Orasi's own.
    "OrasiItemsRefused",
    "OrasiItemsDropped",
    "OrasiQueueAlmostFull",
    "OrasiCircuitBreakerOpen",
    "OrasiWalCorruptSegment",
    "OrasiLakeCommitsFailing",
    "OrasiLakeMaintenanceFailing",
    "OrasiStreamProcessorFailing",
    "OrasiStreamTailDecidingEarly",
    "OrasiNoDataReceived",
    "OrasiMalformedInput",
    "OrasiOtapSchemaResets",
    # The control plane's.
    "OrasiDiscoveryDown",
    "OrasiMalformedRegistrations",
    "OrasiNoUpstreamEndpoints",
    "OrasiLiveSettingRefused",
    "OrasiRateLimitBackendDown",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_the_alerts_are_the_ones_documented_and_each_has_a_unit_test() -> None:
    assert set(rules()) == ALERTS
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert tested == ALERTS
    outcomes: dict[str, set[bool]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                outcomes.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    quiet_or_loud = {alert for alert, seen in outcomes.items() if seen != {True, False}}
    assert not quiet_or_loud, f"these alerts need a case that fires and a case that does not: {quiet_or_loud}"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for name, rule in rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert metric_names(rule["expr"]), name


def _relabelled_targets() -> set[str]:
    (job,) = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    return {step["target_label"] for step in job["relabel_configs"] if "target_label" in step}


def test_the_labels_the_rules_use_are_set_by_the_scrape_configuration() -> None:
    # region and component are what every rule groups by; pod names the target in annotations.
    assert {"region", "component", "pod", "namespace"} <= _relabelled_targets()
    (job,) = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert set(discovery["namespaces"]["names"]) == {"orasi-agents", "orasi-gateway", "orasi-system"}
    steps = job["relabel_configs"]
    keep = {step["source_labels"][0]: step["regex"] for step in steps if step.get("action") == "keep"}
    assert keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "orasi"
    assert keep["__meta_kubernetes_pod_label_app_kubernetes_io_component"] == "agent|gateway|bridge"
