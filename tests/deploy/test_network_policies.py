"""Every flow the NetworkPolicies allow, against the topology written out by hand.

A flow is (namespace, pods, direction, peer, protocol, port); each namespace denies everything
else. Regions: us-east-1 and us-west-2 run all three services and take each other's and
eu-west-1's gateways' data; eu-west-1's gateways send to both other regions' bridges.
"""

from __future__ import annotations

from typing import Any

import yaml

from .conftest import CHART, Rendering, Tools, render_helm
from .test_manifests import HAS_BRIDGE, VPC

Flow = tuple[str, str, str, str, str, int]
REMOTE_BRIDGES = {
    "us-east-1": ["us-west-2"],
    "us-west-2": ["us-east-1"],
    "eu-west-1": ["us-east-1", "us-west-2"],
}
REMOTE_GATEWAYS = {
    "us-east-1": ["us-west-2", "eu-west-1"],
    "us-west-2": ["us-east-1", "eu-west-1"],
    "eu-west-1": [],
}
DNS = "kube-system/kube-dns"
MONITORING = "monitoring/*"


def _peer(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        assert set(peer["ipBlock"]) == {"cidr"}
        return f"cidr:{peer['ipBlock']['cidr']}"
    namespace = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name", "*")
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    return f"{namespace}/{pods.get('app', pods.get('k8s-app', '*'))}"


def allowed_flows(rendering: Rendering) -> set[Flow]:
    flows: set[Flow] = set()
    for policy in rendering.of_kind("NetworkPolicy"):
        namespace = policy["metadata"]["namespace"]
        spec = policy["spec"]
        pods = spec["podSelector"].get("matchLabels", {}).get("app", "*")
        for direction, key, peers in (("in", "ingress", "from"), ("out", "egress", "to")):
            rules = spec.get(key) or []
            if not rules:
                if direction.replace("in", "Ingress").replace("out", "Egress") in spec["policyTypes"]:
                    flows.add((namespace, pods, direction, "deny", "", 0))
                continue
            for rule in rules:
                for peer in rule[peers]:
                    for port in rule["ports"]:
                        flows.add((namespace, pods, direction, _peer(peer), port["protocol"], port["port"]))
    return flows


def expected_flows(region: str, etcd: bool) -> set[Flow]:
    """``etcd``: the values set etcd (helm's regions), so every service reaches it in the VPC."""
    vpc = VPC[region]
    agents, gateways, system = "orasi-agents", "orasi-gateway", "orasi-system"
    flows: set[Flow] = {
        (ns, "*", d, "deny", "", 0) for ns in (agents, gateways, system) for d in ("in", "out")
    }
    services = [(agents, "orasi-agent", 13133), (gateways, "orasi-gateway", 13134)]
    if HAS_BRIDGE[region]:
        services.append((system, "orasi-bridge", 13135))
    for ns, app, admin in services:
        flows |= {(ns, app, "out", DNS, proto, 53) for proto in ("UDP", "TCP")}
        flows.add((ns, app, "in", MONITORING, "TCP", admin))
        if etcd:
            flows.add((ns, app, "out", f"cidr:{vpc}", "TCP", 2379))
    # apps anywhere → agent; agent → gateway; agent → Kubernetes API (pod metadata)
    flows |= {(agents, "orasi-agent", "in", "*/*", "TCP", port) for port in (4317, 4318)}
    flows.add((agents, "orasi-agent", "out", f"{gateways}/orasi-gateway", "TCP", 4317))
    flows.add((agents, "orasi-agent", "out", f"cidr:{vpc}", "TCP", 443))
    # agents and senders in the VPC (through the NLB) → gateway → bridges, here and elsewhere
    for peer in (f"{agents}/orasi-agent", f"cidr:{vpc}"):
        flows |= {(gateways, "orasi-gateway", "in", peer, "TCP", port) for port in (4317, 4318)}
    flows |= {
        (gateways, "orasi-gateway", "out", f"cidr:{VPC[r]}", "TCP", 4317) for r in REMOTE_BRIDGES[region]
    }
    if HAS_BRIDGE[region]:
        flows.add((gateways, "orasi-gateway", "out", f"{system}/orasi-bridge", "TCP", 4317))
        flows.add((system, "orasi-bridge", "in", f"{gateways}/orasi-gateway", "TCP", 4317))
        flows |= {
            (system, "orasi-bridge", "in", f"cidr:{VPC[r]}", "TCP", 4317) for r in REMOTE_GATEWAYS[region]
        }
        # the query APIs: REST and Jaeger, Arrow Flight SQL
        flows |= {(system, "orasi-bridge", "in", MONITORING, "TCP", port) for port in (8080, 9090)}
        flows.add((system, "orasi-bridge", "out", "cidr:0.0.0.0/0", "TCP", 443))  # S3, STS
        flows.add((system, "orasi-bridge", "out", f"cidr:{vpc}", "TCP", 5432))  # the catalog
    return flows


def test_network_policies_allow_exactly_the_topology(rendering: Rendering) -> None:
    found, expected = (
        allowed_flows(rendering),
        expected_flows(rendering.region, etcd=rendering.source == "helm"),
    )
    assert found - expected == set(), "flows allowed beyond the topology"
    assert expected - found == set(), "flows of the topology not allowed"


def test_every_namespace_denies_by_default(rendering: Rendering) -> None:
    denies = {
        p["metadata"]["namespace"]
        for p in rendering.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
    }
    assert denies == {"orasi-agents", "orasi-gateway", "orasi-system"}


def test_optional_receivers_open_their_ports_to_their_senders(tools: Tools) -> None:
    """Each optional receiver's port is allowed from that service's senders, and nothing else
    changes: syslog (TCP and UDP) on agents and gateways, remote write and Zipkin on gateways and
    bridges (from bridge.receiverNamespaces)."""
    base = ["-f", str(CHART / "values-us-east-1.yaml")]
    enabled = [
        "--set",
        "agent.receivers.syslog.enabled=true,gateway.receivers.syslog.enabled=true,"
        "gateway.receivers.prometheus_remote_write.enabled=true,gateway.receivers.zipkin.enabled=true,"
        "bridge.receivers.prometheus_remote_write.enabled=true,bridge.receivers.zipkin.enabled=true",
    ]

    def flows(*args: str) -> set[Flow]:
        objects = [o for o in yaml.safe_load_all(render_helm(tools, *base, *args)) if o]
        return allowed_flows(Rendering("helm", "us-east-1", CHART, objects))

    added = flows(*enabled) - flows()
    vpc = f"cidr:{VPC['us-east-1']}"
    agents, gateways, system = "orasi-agents", "orasi-gateway", "orasi-system"
    expected = {(agents, "orasi-agent", "in", "*/*", proto, 5514) for proto in ("TCP", "UDP")}
    for peer in (f"{agents}/orasi-agent", vpc):
        expected |= {(gateways, "orasi-gateway", "in", peer, proto, 5514) for proto in ("TCP", "UDP")}
        expected |= {(gateways, "orasi-gateway", "in", peer, "TCP", port) for port in (9201, 9411)}
    expected |= {(system, "orasi-bridge", "in", MONITORING, "TCP", port) for port in (9201, 9411)}
    assert added == expected
