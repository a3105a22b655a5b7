"""The rendered objects of every region, from the chart and from the kustomize overlays.

Both ways of deploying are held to the same topology: which objects exist where, who runs as
whom with what resources, which ports the probes hit (the ports of the configurations the pods
get, and orasi_common/ports.py's admin ports), and exactly which flows the NetworkPolicies allow.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import yaml

from orasi_common import cli
from orasi_common.config import load_config
from orasi_common.ports import admin_port

from .conftest import SOURCES, WORKLOADS, Object, Rendering, Tools, containers

VPC = {"us-east-1": "10.1.0.0/16", "us-west-2": "10.2.0.0/16", "eu-west-1": "10.3.0.0/16"}
HAS_BRIDGE = {"us-east-1": True, "us-west-2": True, "eu-west-1": False}
NAMESPACE = {"agent": "orasi-agents", "gateway": "orasi-gateway", "bridge": "orasi-system"}
WORKLOAD = {"agent": "DaemonSet", "gateway": "Deployment", "bridge": "StatefulSet"}
# The seed's resources: requests, limits.
RESOURCES = {
    "agent": ({"cpu": "250m", "memory": "512Mi"}, {"cpu": "1", "memory": "2Gi"}),
    "gateway": ({"cpu": "500m", "memory": "1Gi"}, {"cpu": "2", "memory": "4Gi"}),
    "bridge": ({"cpu": "1", "memory": "2Gi"}, {"cpu": "4", "memory": "8Gi"}),
}


def components(region: str) -> list[str]:
    return ["agent", "gateway", "bridge"] if HAS_BRIDGE[region] else ["agent", "gateway"]


def test_every_object_validates_strictly(tools: Tools, rendered: dict[tuple[str, str], Rendering]) -> None:
    paths = [r.path for r in rendered.values()]
    out = tools.run(tools.scripts / "kubernetes-validate", "--strict", "-k", "1.30.0", *paths)
    passed = out.count(" passed for resource ")
    assert passed == sum(len(r.objects) for r in rendered.values()), out


def test_kinds_per_namespace(rendering: Rendering) -> None:
    found = Counter((o["metadata"].get("namespace", ""), o["kind"]) for o in rendering.objects)
    expected = Counter(
        {("", "Namespace"): 3, ("", "ClusterRole"): 1, ("", "ClusterRoleBinding"): 1}
        | {("orasi-agents", k): 1 for k in ("ServiceAccount", "ConfigMap", "Service", "DaemonSet")}
        | {("orasi-agents", "NetworkPolicy"): 4}  # deny, dns, metrics, agent
        | {
            ("orasi-gateway", k): 1
            for k in ("ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler")
        }
        | {("orasi-gateway", "PodDisruptionBudget"): 1}
        # deny, dns, metrics, gateway, to-remote-bridges (+ to-bridge where the region has bridges)
        | {("orasi-gateway", "NetworkPolicy"): 6 if HAS_BRIDGE[rendering.region] else 5}
    )
    if HAS_BRIDGE[rendering.region]:
        expected |= Counter(
            {("orasi-system", k): 1 for k in ("ServiceAccount", "ConfigMap", "StatefulSet")}
            | {("orasi-system", "Service"): 3}  # headless, query, ingest
            | {("orasi-system", "NetworkPolicy"): 5}  # deny, dns, metrics, bridge, from-remote-gateways
        )
    else:
        expected[("orasi-system", "NetworkPolicy")] = 1  # the namespace exists, denying everything
    if rendering.source == "helm":  # values-<region>.yaml set etcd: one egress policy per service
        for component in components(rendering.region):
            expected[(NAMESPACE[component], "NetworkPolicy")] += 1
    assert found == expected


def test_tertiary_region_has_no_bridge(rendered: dict[tuple[str, str], Rendering]) -> None:
    for source in ("helm", "kustomize"):
        objects = rendered[source, "eu-west-1"].objects
        assert not [o for o in objects if o["metadata"].get("labels", {}).get("app") == "orasi-bridge"]
        assert not [o for o in objects if o["kind"] == "StatefulSet"]
        gateway = _env(rendered[source, "eu-west-1"].get("Deployment", "orasi-gateway"))
        assert gateway["ORASI_BRIDGE_HOSTNAME"] == "bridge.us-east-1.orasi.internal"
        assert gateway["ORASI_FAILOVER_BRIDGE_HOSTNAME"] == "bridge.us-west-2.orasi.internal"


def test_no_container_runs_as_root(rendering: Rendering) -> None:
    for workload in [o for o in rendering.objects if o["kind"] in WORKLOADS]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        for container in containers(workload):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert not context.get("privileged")


def _env(workload: Object) -> dict[str, Any]:
    (container,) = containers(workload)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _config(rendering: Rendering, component: str) -> tuple[str, dict[str, Any]]:
    configmap = rendering.get("ConfigMap", f"orasi-{component}-config")
    assert configmap["metadata"]["namespace"] == NAMESPACE[component]
    text = configmap["data"][f"{component}.yaml"]
    return text, yaml.safe_load(text)


def _port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def test_workloads_resources_probes_and_ports(rendering: Rendering) -> None:
    for component in components(rendering.region):
        workload = rendering.get(WORKLOAD[component], f"orasi-{component}")
        assert workload["metadata"]["namespace"] == NAMESPACE[component]
        (container,) = containers(workload)
        requests, limits = RESOURCES[component]
        assert container["resources"] == {"requests": requests, "limits": limits}
        _, config = _config(rendering, component)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        admin = _port(config["service"]["telemetry"]["admin"]["endpoint"])
        assert admin == admin_port(component)  # the same port as orasi_common/ports.py's
        assert ports["admin"] == admin
        # the bridges' otap receiver serves OTAP and OTLP on its gRPC port
        (receiver,) = {"bridge": ["otap"]}.get(component, ["otlp"])
        otlp = config["receivers"][receiver]["protocols"]
        assert ports["otlp-grpc"] == _port(otlp["grpc"]["endpoint"]) == 4317
        assert ports["otlp-http"] == _port(otlp["http"]["endpoint"]) == 4318
        if component == "bridge":
            query_api = config["extensions"]["query_api"]
            assert ports["query"] == _port(query_api["endpoint"]) == 8080
            assert ports["flight-sql"] == _port(query_api["flight_sql"]) == 9090
            service = {p["name"]: p for p in rendering.get("Service", "orasi-bridge-query")["spec"]["ports"]}
            assert service["flight-sql"] == {
                "name": "flight-sql",
                "port": 9090,
                "targetPort": "flight-sql",
                "protocol": "TCP",
            }
        for probe, path in (
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports[get["port"]] == admin, f"{component} {probe} does not hit the admin port"
        assert container["args"] == [component, "--config", f"/etc/orasi/{component}.yaml"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/etc/orasi"] == "config" and "/tmp" in mounts
        env = _env(workload)
        assert env["AWS_REGION"] == env["ORASI_REGION"] == rendering.region
        assert env["ORASI_ADMIN_PORT"] == str(admin)  # the image's HEALTHCHECK reads it


def test_agent_daemonset(rendering: Rendering) -> None:
    agent = rendering.get("DaemonSet", "orasi-agent")
    pod = agent["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["wal"]["hostPath"]["path"].startswith("/var/lib/orasi")
    # filelog (on by default): the node's pod logs read-only, a checkpoint on the node, group 0
    # (pod logs are 0640 root:root) as a supplemental group of the still non-root agent
    (container,) = containers(agent)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/var/log/pods", "/var/lib/docker/containers"):
        assert mounts[path]["readOnly"] is True
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    checkpoint = mounts["/var/lib/orasi/filelog"]
    assert not checkpoint.get("readOnly")
    assert volumes[checkpoint["name"]]["hostPath"]["path"] == "/var/lib/orasi/filelog"
    assert pod["securityContext"]["supplementalGroups"] == [0]
    _, config = _config(rendering, "agent")
    assert config["receivers"]["filelog"] == {
        "include": ["/var/log/pods/*/*/*.log"],
        "exclude": ["/var/log/pods/orasi-agents_orasi-agent-*/*/*.log"],
        "checkpoint_directory": "/var/lib/orasi/filelog",
    }
    assert config["service"]["pipelines"]["logs"]["receivers"] == ["otlp", "filelog"]
    env = _env(agent)
    assert env["K8S_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["K8S_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ORASI_GATEWAY_ENDPOINT"] == "orasi-gateway.orasi-gateway.svc.cluster.local:4317"
    assert pod["serviceAccountName"] == "orasi-agent"
    role = rendering.get("ClusterRole", "orasi-agent")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    binding = rendering.get("ClusterRoleBinding", "orasi-agent")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "orasi-agent", "namespace": "orasi-agents"}
    ]


def test_gateway_autoscaling_budget_and_load_balancer(rendering: Rendering) -> None:
    hpa = rendering.get("HorizontalPodAutoscaler", "orasi-gateway")
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert (
        rendering.get("PodDisruptionBudget", "orasi-gateway")["spec"]["selector"]["matchLabels"]["app"]
        == "orasi-gateway"
    )
    service = rendering.get("Service", "orasi-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert service["spec"]["loadBalancerSourceRanges"] == [VPC[rendering.region]]


@pytest.mark.parametrize(
    "where",
    [(source, region) for source in SOURCES for region, bridge in HAS_BRIDGE.items() if bridge],
    ids=lambda where: "-".join(where),
)
def test_bridge_statefulset_and_services(
    where: tuple[str, str], rendered: dict[tuple[str, str], Rendering]
) -> None:
    """Regions with a bridge (the tertiary's absence: test_tertiary_region_has_no_bridge)."""
    rendering = rendered[where]
    bridge = rendering.get("StatefulSet", "orasi-bridge")
    assert bridge["spec"]["serviceName"] == "orasi-bridge-headless"
    (claim,) = bridge["spec"]["volumeClaimTemplates"]
    (container,) = containers(bridge)
    data_mounts = {
        m["mountPath"] for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]
    }
    assert data_mounts == {"/var/lib/orasi", "/var/cache/orasi"}  # the WAL and the lake's cache
    assert rendering.get("Service", "orasi-bridge-headless")["spec"]["clusterIP"] == "None"
    assert rendering.get("Service", "orasi-bridge-query")["spec"]["type"] == "ClusterIP"
    env = _env(bridge)
    assert env["ORASI_CATALOG_URI"] == {"secretKeyRef": {"name": "orasi-catalog", "key": "uri"}}
    assert env["ORASI_BUCKET"] == f"orasi-telemetry-{rendering.region}"


def test_secrets_are_referenced_never_embedded(rendering: Rendering) -> None:
    assert not rendering.of_kind("Secret")
    assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", rendering.path.read_text()), "a URL with a password"


def test_service_accounts_carry_their_irsa_role(rendering: Rendering) -> None:
    for component in components(rendering.region):
        account = rendering.get("ServiceAccount", f"orasi-{component}")
        arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn == f"arn:aws:iam::111122223333:role/orasi-{component}-{rendering.region}"
        workload = rendering.get(WORKLOAD[component], f"orasi-{component}")
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] == f"orasi-{component}"


def test_every_shipped_configuration_is_valid(
    rendered: dict[tuple[str, str], Rendering], monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any
) -> None:
    """`orasi validate-config` on every ConfigMap, with the environment its pod gets."""
    seen: set[tuple[str, str, str]] = set()
    for rendering in rendered.values():
        for component in components(rendering.region):
            text, _ = _config(rendering, component)
            env = {
                k: v if isinstance(v, str) else "from-a-secret"
                for k, v in _env(rendering.get(WORKLOAD[component], f"orasi-{component}")).items()
            }
            key = (component, text, repr(sorted(env.items())))
            if key in seen:
                continue
            seen.add(key)
            path = tmp_path / f"{len(seen)}-{component}.yaml"
            path.write_text(text)
            with monkeypatch.context() as patch:
                for name, value in env.items():
                    patch.setenv(name, value)
                assert cli.main(["validate-config", str(path), "--service", component]) == 0, (
                    capsys.readouterr().err
                )
            config = load_config(path, env)
            if component == "bridge":
                lake = config.exporters["lake"]
                assert lake is not None
                assert lake.get("warehouse") == f"s3://orasi-telemetry-{rendering.region}/warehouse"
                assert lake["wal"]["directory"] == "/var/lib/orasi/wal"
    assert len(seen) >= 5


ETCD = "http://etcd.orasi-system.svc:2379"  # the regional etcd of values-<region>.yaml (an example)


def test_control_plane_registration_and_discovery(rendering: Rendering) -> None:
    """Helm's regions set `etcd.endpoints`: every service registers (region, pod IP, pod name) with
    the etcd extension listed last, and the gateways of a region with bridges find them in etcd
    (the record's otap endpoint, which the bridges' otap receiver registers). The kustomize base
    is rendered without etcd (k8s/base-values.yaml): DNS discovery, no extension."""
    with_etcd = rendering.source == "helm"
    for component in components(rendering.region):
        workload = rendering.get(WORKLOAD[component], f"orasi-{component}")
        env = _env(workload)
        assert env["K8S_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env.get("ORASI_ETCD_ENDPOINTS") == (ETCD if with_etcd else None)
        _, config = _config(rendering, component)
        extensions = config["service"].get("extensions", [])
        if not with_etcd:
            assert "etcd" not in config.get("extensions", {}) and "etcd" not in extensions
            continue
        assert config["extensions"]["etcd"] == {
            "endpoints": [ETCD],
            "region": "${env:ORASI_REGION}",
            "lease_ttl": 10,
            "instance": "${env:K8S_POD_NAME}",
            "advertise_host": "${env:K8S_POD_IP}",
        }
        assert extensions[-1] == "etcd" and extensions.count("etcd") == 1, extensions
        if component == "bridge":
            assert extensions == ["query_api", "etcd"]
    resolver = _config(rendering, "gateway")[1]["exporters"]["loadbalancing"]["resolver"]
    if with_etcd and HAS_BRIDGE[rendering.region]:
        # protocol otap dials each record's `otap` endpoint (the default for an OTAP exporter)
        assert resolver == {"etcd": {"service": "bridge"}}
        (bridge_receiver,) = _config(rendering, "bridge")[1]["receivers"]
        assert bridge_receiver == "otap"  # which registers its gRPC port as otap
    else:  # each region has its own etcd: a region without bridges finds another's by DNS
        assert list(resolver) == ["dns"]
