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

from orasi_bridge.lake.config import Config as LakeConfig
from orasi_bridge.lake.config import ReplicateConfig
from orasi_common import cli
from orasi_common.ports import PORTS
from orasi_common.receivers.prometheus_remote_write import config as remote_write_config
from orasi_common.receivers.syslog.config import TcpConfig, UdpConfig
from orasi_common.receivers.zipkin import config as zipkin_config
from orasi_common.transport.endpoint import split_endpoint

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
        ("auth.jwt.defaultScopes={ingest,forward}", "defaultScopes"),
        ("auth.jwt.tokenExpirationSeconds=300", "tokenExpirationSeconds"),
        ("auth.jwt.subjects.app.scopes={write}", "subjects.app.scopes"),
        ("auth.jwt.subjects.app.tenant=a", "tenant"),
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


def _configs_and_objects(tools: Tools, *args: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    objects = [o for o in yaml.safe_load_all(render_helm(tools, *args)) if o]
    configs = {
        name.removesuffix(".yaml"): yaml.safe_load(text)
        for o in objects
        if o["kind"] == "ConfigMap"
        for name, text in o["data"].items()
    }
    return configs, objects


def _ports(objects: list[dict[str, Any]], kind: str, name: str) -> set[tuple[str, int, str]]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if kind == "Service":
        return {(p["name"], p["port"], p["protocol"]) for p in found["spec"]["ports"]}
    (container,) = found["spec"]["template"]["spec"]["containers"]
    return {(p["name"], p["containerPort"], p["protocol"]) for p in container["ports"]}


OPTIONAL = {
    # (service, receiver) → (pipeline, its ports)
    ("agent", "syslog"): ("logs", {("syslog-tcp", 5514, "TCP"), ("syslog-udp", 5514, "UDP")}),
    ("gateway", "syslog"): ("logs", {("syslog-tcp", 5514, "TCP"), ("syslog-udp", 5514, "UDP")}),
    ("gateway", "prometheus_remote_write"): ("metrics", {("remote-write", 9201, "TCP")}),
    ("gateway", "zipkin"): ("traces", {("zipkin", 9411, "TCP")}),
    ("bridge", "prometheus_remote_write"): ("metrics", {("remote-write", 9201, "TCP")}),
    ("bridge", "zipkin"): ("traces", {("zipkin", 9411, "TCP")}),
}
WORKLOAD = {"agent": ("DaemonSet", "orasi-agent"), "gateway": ("Deployment", "orasi-gateway")}
WORKLOAD["bridge"] = ("StatefulSet", "orasi-bridge")
SERVICE = {"agent": "orasi-agent", "gateway": "orasi-gateway", "bridge": "orasi-bridge-headless"}


def test_optional_receivers_are_off_by_default(tools: Tools) -> None:
    configs, _ = _configs_and_objects(tools)
    for service, receiver in OPTIONAL:
        assert receiver not in configs[service]["receivers"], (service, receiver)


@pytest.mark.parametrize(("service", "receiver"), list(OPTIONAL), ids=lambda v: str(v))
def test_an_optional_receiver_joins_its_pipeline_with_its_ports(
    tools: Tools,
    service: str,
    receiver: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`<service>.receivers.<receiver>.enabled`: the receiver in its pipeline (after the others),
    its container ports, its Service ports, and a configuration the service accepts."""
    pipeline, ports = OPTIONAL[service, receiver]
    plain_configs, plain = _configs_and_objects(tools)
    configs, objects = _configs_and_objects(tools, "--set", f"{service}.receivers.{receiver}.enabled=true")
    config = configs[service]
    before = plain_configs[service]["service"]["pipelines"][pipeline]["receivers"]
    assert config["service"]["pipelines"][pipeline]["receivers"] == [*before, receiver]
    assert _ports(objects, *WORKLOAD[service]) - _ports(plain, *WORKLOAD[service]) == ports
    added = _ports(objects, "Service", SERVICE[service]) - _ports(plain, "Service", SERVICE[service])
    assert added == ports
    path = tmp_path / f"{service}.yaml"
    path.write_text(yaml.safe_dump(config))
    kind, name = WORKLOAD[service]
    (workload,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    for variable in container["env"]:  # the pod's environment (a Secret's or the API's: a stand-in)
        monkeypatch.setenv(variable["name"], variable.get("value", "from-elsewhere"))
    assert cli.main(["validate-config", str(path), "--service", service]) == 0, capsys.readouterr().err


def test_jwt_values_mount_the_jwks_and_gate_each_listed_service(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auth.jwt` (off by default): the JWKS from a ConfigMap or Secret mounted read-only, the `auth`
    extension first in each listed service, gating the agent's and gateway's OTLP and push receivers,
    the bridge's OTAP receiver and query API; configurations the services accept (the hops' tokens:
    test_chart_jwt.py)."""
    plain, _ = _configs_and_objects(tools)
    assert all("auth" not in (c.get("extensions") or {}) for c in plain.values())
    on = ("--set", "auth.jwt.enabled=true", "--set", "auth.jwt.services={agent,gateway,bridge}")
    configs, objects = _configs_and_objects(
        tools, *on, "--set", "auth.jwt.configMap=jwks", "--set", "gateway.receivers.zipkin.enabled=true"
    )
    gated = {"agent": ["otlp"], "gateway": ["otlp", "zipkin"], "bridge": ["otap"]}
    for service, receivers in gated.items():
        config = configs[service]
        assert config["service"]["extensions"][0] == "auth"
        assert config["extensions"]["auth"]["jwt"]["jwks_file"] == "/etc/orasi-jwks/jwks.json"
        assert [r for r, c in config["receivers"].items() if "auth" in c] == receivers, service
        assert ("auth" in config["extensions"].get("query_api", {})) == (service == "bridge")
        kind, name = WORKLOAD[service]
        (workload,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        pod = workload["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "jwks"]
        assert volume["configMap"] == {"name": "jwks", "items": [{"key": "jwks.json", "path": "jwks.json"}]}
        (container,) = pod["containers"]
        assert {"name": "jwks", "mountPath": "/etc/orasi-jwks", "readOnly": True} in container["volumeMounts"]
        for variable in container["env"]:
            monkeypatch.setenv(variable["name"], variable.get("value", "from-elsewhere"))
        path = tmp_path / f"{service}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert cli.main(["validate-config", str(path), "--service", service]) == 0, capsys.readouterr().err
    _, objects = _configs_and_objects(tools, *on, "--set", "auth.jwt.secret=jwks")
    (gateway,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "orasi-gateway"
    ]
    (volume,) = [v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "jwks"]
    assert volume["secret"]["secretName"] == "jwks"
    done = subprocess.run([tools.helm, "template", "orasi", CHART, *on], capture_output=True, text=True)
    assert done.returncode != 0 and "set auth.jwt.configMap or auth.jwt.secret" in done.stderr


def test_filelog_can_be_turned_off(tools: Tools) -> None:
    configs, objects = _configs_and_objects(tools, "--set", "agent.filelog.enabled=false")
    assert "filelog" not in configs["agent"]["receivers"]
    assert configs["agent"]["service"]["pipelines"]["logs"]["receivers"] == ["otlp"]
    (agent,) = [o for o in objects if o["kind"] == "DaemonSet"]
    pod = agent["spec"]["template"]["spec"]
    assert "supplementalGroups" not in pod["securityContext"]
    assert {v["name"] for v in pod["volumes"]} == {"config", "wal", "tmp"}


def test_replicate_values_schedule_replication_to_the_global_lake(tools: Tools) -> None:
    """Off by default; with bridge.replicate.to the lake exporter's replicate section, a valid one."""
    configs, _ = _configs_and_objects(tools)
    assert "replicate" not in configs["bridge"]["exporters"]["lake"]
    to, catalog = "s3://orasi-telemetry-global/warehouse", "glue://us-east-1"
    values = f"bridge.replicate.to={to},bridge.replicate.catalogUri={catalog},bridge.replicate.interval=10m"
    configs, _ = _configs_and_objects(tools, "--set", values)
    section = configs["bridge"]["exporters"]["lake"]["replicate"]
    assert section == {"to": to, "catalog_uri": catalog, "interval": "10m"}
    assert ReplicateConfig.model_validate(section).interval == 600


def test_redis_values_wire_the_registry_cache(tools: Tools) -> None:
    """No Redis by default (the registry caches in each bridge, on the catalog's PostgreSQL); with
    redis.url (or a Secret) the registry's redis is ORASI_REDIS_URL, and the bridges may reach
    redis.cidrs on redis.port."""
    configs, _ = _configs_and_objects(tools)
    assert "registry" not in configs["bridge"]["extensions"]["query_api"]
    for values, env in (
        ("redis.url=redis://redis.orasi-system:6379/0", {"value": "redis://redis.orasi-system:6379/0"}),
        (
            "redis.secretName=orasi-redis",
            {"valueFrom": {"secretKeyRef": {"name": "orasi-redis", "key": "url"}}},
        ),
    ):
        configs, objects = _configs_and_objects(tools, "--set", f"{values},redis.cidrs={{10.9.0.0/16}}")
        registry = configs["bridge"]["extensions"]["query_api"]["registry"]
        assert registry == {"redis": "${env:ORASI_REDIS_URL}"}
        (bridge,) = [o for o in objects if o["kind"] == "StatefulSet"]
        (container,) = bridge["spec"]["template"]["spec"]["containers"]
        (redis,) = [e for e in container["env"] if e["name"] == "ORASI_REDIS_URL"]
        assert {k: v for k, v in redis.items() if k != "name"} == env
        (policy,) = [
            o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "orasi-bridge"
        ]
        assert {
            "to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}],
            "ports": [{"protocol": "TCP", "port": 6379}],
        } in (policy["spec"]["egress"])
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", "redis.url=redis://u:secret@r:6379/0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "url" in done.stderr, done.stderr


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
    # the bridges' otap receiver registers the record's otap endpoint, the resolver's default
    assert config["exporters"]["loadbalancing"]["resolver"] == {"etcd": {"service": "bridge"}}
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
    exposed = {p for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    # orasi up's ports, and the optional receivers' defaults (syslog over TCP and UDP)
    optional = {
        f"{split_endpoint(TcpConfig().endpoint)[1]}/tcp",
        f"{split_endpoint(UdpConfig().endpoint)[1]}/udp",
        str(split_endpoint(remote_write_config.DEFAULT_ENDPOINT)[1]),
        str(split_endpoint(zipkin_config.DEFAULT_ENDPOINT)[1]),
    }
    assert exposed == {str(p) for p in PORTS.values()} | optional
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


def test_stream_values_become_the_lake_exporters_stream(tools: Tools) -> None:
    """No processors by default; bridge.stream is the lake exporter's stream section, a valid one."""
    configs, _ = _configs_and_objects(tools)
    assert "stream" not in configs["bridge"]["exporters"]["lake"]
    stream = [
        {"type": "filter", "signals": ["traces"], "drop_where": "name = 'GET /healthz'"},
        {"type": "redact", "action": "hash", "salt_env": "ORASI_REDACT_SALT"},
    ]
    configs, _ = _configs_and_objects(tools, "--set-json", f"bridge.stream={json.dumps(stream)}")
    lake = configs["bridge"]["exporters"]["lake"]
    assert lake["stream"] == stream
    assert [processor.type for processor in LakeConfig.model_validate(lake).stream] == ["filter", "redact"]


def test_span_metrics_values_become_the_lake_exporters_span_metrics(tools: Tools) -> None:
    """span_metrics_1m on by default with 120 s of lateness; bridge.spanMetrics sets both."""
    configs, _ = _configs_and_objects(tools)
    lake = configs["bridge"]["exporters"]["lake"]
    assert lake["span_metrics"] == {"enabled": True, "allowed_lateness": 120}
    values = json.dumps({"enabled": False, "allowedLateness": 30})
    configs, _ = _configs_and_objects(tools, "--set-json", f"bridge.spanMetrics={values}")
    lake = configs["bridge"]["exporters"]["lake"]
    assert lake["span_metrics"] == {"enabled": False, "allowed_lateness": 30}
    assert LakeConfig.model_validate(lake).span_metrics.allowed_lateness == 30


def test_rate_limit_values_limit_each_listed_service(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rateLimits` (off by default): the `ratelimit` extension in each listed service, limiting the
    agent's and gateway's OTLP and push receivers and the bridge's query API, shared through
    `redis` when it is set (ORASI_REDIS_URL and an egress to redis.cidrs); configurations the
    services accept."""
    plain, _ = _configs_and_objects(tools)
    assert all("ratelimit" not in (c.get("extensions") or {}) for c in plain.values())
    limits = {"default": {"items_per_second": 1000, "concurrent_queries": 4}, "tenants": {"acme": {}}}
    on = ["--set-json", f"rateLimits={json.dumps({'enabled': True, **limits})}"]
    configs, objects = _configs_and_objects(tools, *on, "--set", "gateway.receivers.zipkin.enabled=true")
    assert "ratelimit" not in configs["agent"].get("extensions", {})  # services: gateway, bridge
    for service, receivers in {"gateway": ["otlp", "zipkin"], "bridge": []}.items():
        config = configs[service]
        assert config["extensions"]["ratelimit"] == limits  # no redis: in each pod
        assert config["service"]["extensions"][0] == "ratelimit"
        assert [r for r, c in config["receivers"].items() if "rate_limit" in c] == receivers, service
        assert ("rate_limit" in config["extensions"].get("query_api", {})) == (service == "bridge")
        path = tmp_path / f"{service}.yaml"
        path.write_text(yaml.safe_dump(config))
        kind, name = WORKLOAD[service]
        (workload,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        for variable in workload["spec"]["template"]["spec"]["containers"][0]["env"]:
            monkeypatch.setenv(variable["name"], variable.get("value", "from-elsewhere"))
        assert cli.main(["validate-config", str(path), "--service", service]) == 0, capsys.readouterr().err
    shared = ("--set", "redis.url=redis://redis.orasi-system:6379/0,redis.cidrs={10.9.0.0/16}")
    configs, objects = _configs_and_objects(tools, *on, *shared)
    assert configs["gateway"]["extensions"]["ratelimit"]["redis"] == {"url": "${env:ORASI_REDIS_URL}"}
    (gateway,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "orasi-gateway"
    ]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert {"name": "ORASI_REDIS_URL", "value": "redis://redis.orasi-system:6379/0"} in container["env"]
    (policy,) = [
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "orasi-gateway-redis"
    ]
    assert policy["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 6379}]}
    ]
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", "rateLimits.default.items_per_second=0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "items_per_second" in done.stderr, done.stderr
