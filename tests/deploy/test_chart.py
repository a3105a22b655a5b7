"""The chart as a chart: lint, its schema, its defaults built from examples/, the optional
monitoring objects, and the kustomize base rendered from it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orasi_common.ports import PORTS

from .conftest import CHART, REGIONS, ROOT, Tools, render_helm


@pytest.mark.parametrize("region", REGIONS)
def test_helm_lint(tools: Tools, region: str) -> None:
    out = tools.run(tools.helm, "lint", "--strict", CHART, "-f", str(CHART / f"values-{region}.yaml"))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("region=mars", "region"),
        ("agent.bogus=1", "bogus"),
        ("bridge.bucket=Not_A_Bucket", "bucket"),
        ("gateway.serviceAccount.roleArn=role/x", "roleArn"),
    ],
)
def test_schema_rejects_bad_values(tools: Tools, value: str, complaint: str) -> None:
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", value], capture_output=True, text=True
    )
    assert done.returncode != 0 and complaint in done.stderr, done.stderr


def test_service_config_is_deep_merged_into_the_defaults(tools: Tools) -> None:
    text = render_helm(
        tools, "--show-only", "templates/agent.yaml", "--set", "agent.config.processors.batch.timeout=1"
    )
    (configmap,) = [o for o in yaml.safe_load_all(text) if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(configmap["data"]["agent.yaml"])
    assert config["processors"]["batch"]["timeout"] == 1
    assert config["processors"]["batch"]["send_batch_size"] == 8192  # the rest of the default stays
    assert config["exporters"]["otlp"]["sending_queue"]["storage"]["max_size_mib"] == 1024


def test_default_configs_are_the_examples() -> None:
    for service in ("agent", "bridge"):
        assert (CHART / "files" / "config" / f"{service}.yaml").read_text() == (
            ROOT / "examples" / f"{service}.yaml"
        ).read_text()
    gateway = yaml.safe_load((CHART / "files" / "config" / "gateway.yaml").read_text())
    example = yaml.safe_load((ROOT / "examples" / "gateway.yaml").read_text())
    # The one difference: the loadbalancing exporter (DNS over the bridges, a failover group).
    assert {k: v for k, v in gateway.items() if k != "exporters"} | {"service": None} == {
        k: v for k, v in example.items() if k != "exporters"
    } | {"service": None}
    assert list(gateway["exporters"]) == ["loadbalancing"]
    for name, pipeline in gateway["service"]["pipelines"].items():
        assert pipeline == example["service"]["pipelines"][name] | {"exporters": ["loadbalancing"]}
    assert gateway["service"]["telemetry"] == example["service"]["telemetry"]


def _gateway_config(tools: Tools, *args: str) -> dict[str, Any]:
    text = render_helm(tools, "--show-only", "templates/gateway.yaml", *args)
    (configmap,) = [o for o in yaml.safe_load_all(text) if o["kind"] == "ConfigMap"]
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["gateway.yaml"])
    return config


def test_etcd_values_switch_registration_and_discovery(tools: Tools) -> None:
    """No etcd: the headless Service's DNS and no extension; with etcd, the registration (lease
    TTL from the values), the etcd resolver, and a user's own extensions keep etcd last."""
    plain = _gateway_config(tools)
    assert list(plain["exporters"]["loadbalancing"]["resolver"]) == ["dns"]
    assert "extensions" not in plain and "extensions" not in plain["service"]
    etcd = ["--set", "etcd.endpoints={http://10.0.0.5:2379}", "--set", "etcd.leaseTtl=4"]
    config = _gateway_config(tools, *etcd, "--set", "gateway.config.service.extensions={etcd,health}")
    assert config["extensions"]["etcd"]["endpoints"] == ["http://10.0.0.5:2379"]
    assert config["extensions"]["etcd"]["lease_ttl"] == 4
    assert config["service"]["extensions"] == ["health", "etcd"]
    assert config["exporters"]["loadbalancing"]["resolver"] == {
        "etcd": {"service": "bridge", "protocol": "otlp_grpc"}
    }
    elsewhere = _gateway_config(tools, *etcd, "--set", "gateway.bridgeHostname=bridge.other.internal")
    assert list(elsewhere["exporters"]["loadbalancing"]["resolver"]) == ["dns"]
    assert elsewhere["service"]["extensions"] == ["etcd"]


@pytest.mark.parametrize(
    ("value", "complaint"), [("https://e:2379", "endpoints"), ("http://e:2379/x", "endpoints")]
)
def test_schema_rejects_etcd_urls_the_client_cannot_use(tools: Tools, value: str, complaint: str) -> None:
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", f"etcd.endpoints={{{value}}}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and complaint in done.stderr, done.stderr


def test_the_etcd_example_is_what_the_chart_renders(tools: Tools) -> None:
    """examples/gateway-etcd.yaml: the chart's gateway with etcd, bar the environment's names."""
    example = yaml.safe_load((ROOT / "examples" / "gateway-etcd.yaml").read_text())
    rendered = _gateway_config(tools, "--set", "etcd.endpoints={http://10.0.0.5:2379}")
    assert rendered["exporters"] == example["exporters"]
    assert rendered["service"] == example["service"]
    assert set(rendered["extensions"]["etcd"]) - {"instance"} == set(example["extensions"]["etcd"])


def test_optional_service_monitors_and_prometheus_rule(tools: Tools) -> None:
    text = render_helm(
        tools,
        "-f",
        str(CHART / "values-us-east-1.yaml"),
        "--set",
        "monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true",
    )
    objects = [o for o in yaml.safe_load_all(text) if o]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["namespace"] for m in monitors} == {"orasi-agents", "orasi-gateway", "orasi-system"}
    for monitor in monitors:
        app = monitor["spec"]["selector"]["matchLabels"]["app"]
        (service,) = [
            o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == f"{app}-metrics"
        ]
        assert service["spec"]["ports"][0]["port"] == PORTS[f"{app.removeprefix('orasi-')}.admin"]
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    rules = yaml.safe_load((CHART / "files" / "monitoring" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]


def test_kustomize_base_is_the_rendered_chart(tmp_path: Path) -> None:
    subprocess.run([ROOT / "scripts" / "render-k8s-base.sh", tmp_path], check=True, capture_output=True)
    for part in ("base", "components/bridge"):
        committed = (ROOT / "k8s" / part / "resources.yaml").read_text()
        assert (tmp_path / part / "resources.yaml").read_text() == committed, (
            f"k8s/{part}/resources.yaml is stale: run scripts/render-k8s-base.sh"
        )


def test_values_schema_is_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"region", "agent", "gateway", "bridge"}


def test_dockerfile_lints_and_exposes_the_real_ports(tools: Tools) -> None:
    dockerfile = ROOT / "docker" / "Dockerfile"
    out = tools.run(tools.scripts / "hadolint", "-f", "json", dockerfile)
    assert json.loads(out) == []
    text = dockerfile.read_text()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == set(PORTS.values())
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ")
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\} AS ", text, re.M)) == 2


def test_github_workflow() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"]
    assert {"build", "test", "images", "deploy"} <= set(jobs)
    for name, job in jobs.items():
        assert "runs-on" in job and job["steps"], name
        for need in [job.get("needs", [])] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert need in jobs, f"{name} needs an unknown job {need}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{name}: a step has both or neither of uses/run"
    regions = jobs["deploy"]["strategy"]["matrix"]["region"]
    assert regions == list(REGIONS)
