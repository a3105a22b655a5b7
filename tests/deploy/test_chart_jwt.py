"""The chart's `auth.jwt` values and the hops between the services: a service that checks JWTs takes
its upstream hop's traffic only with that hop's projected service-account token (audience
`auth.jwt.audience`, rotated by the kubelet), whose subject it grants `forward` (ingest as the
tenant each batch names); every other subject keeps `defaultScopes`, pinned to its own tenant.
`auth.jwt.trustedIssuers` adds other clusters' issuers, each its own `jwt` section (its JWKS
mounted, its subjects): how a region's bridges take the gateways of the regions exporting there,
as values-<region>.yaml set it up."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, REGIONS, Tools, render_helm
from .test_chart import WORKLOAD, _configs_and_objects
from .test_chart_tls import _pod, _validates

TOKEN_FILE = "/var/run/secrets/orasi/token"
TOKEN_MOUNT = {"name": "orasi-token", "mountPath": "/var/run/secrets/orasi", "readOnly": True}
AGENT = "system:serviceaccount:orasi-agents:orasi-agent"
GATEWAY = "system:serviceaccount:orasi-gateway:orasi-gateway"
FORWARD = {"scopes": ["forward"]}
EXPORTER = {"agent": "otlp", "gateway": "loadbalancing"}  # each hop's exporter into the next service
INTO = {"agent": "gateway", "gateway": "bridge"}


def _on(*services: str) -> tuple[str, ...]:
    listed = ",".join(services)
    return ("--set", "auth.jwt.enabled=true", "--set", f"auth.jwt.services={{{listed}}}")


def _token_volumes(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in pod["volumes"] if v["name"] == "orasi-token"]


def _gated(config: dict[str, Any]) -> list[str]:
    return [name for name, receiver in config["receivers"].items() if "auth" in receiver]


def test_no_hop_sends_a_token_by_default(tools: Tools) -> None:
    configs, objects = _configs_and_objects(tools)
    for hop, exporter in EXPORTER.items():
        assert "auth" not in configs[hop]["exporters"][exporter], hop
        assert _token_volumes(_pod(objects, hop)) == [], hop
    assert _gated(configs["bridge"]) == []


@pytest.mark.parametrize(
    "services",
    [("agent",), ("gateway",), ("bridge",), ("agent", "gateway", "bridge")],
    ids=lambda s: "+".join(s),
)
def test_each_hop_into_a_service_checking_jwts_sends_its_projected_token(
    tools: Tools,
    services: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configs, objects = _configs_and_objects(
        tools,
        *_on(*services),
        "--set",
        "auth.jwt.configMap=jwks",
        "--set",
        "bridge.receivers.zipkin.enabled=true",
    )
    for hop, exporter in EXPORTER.items():
        pod = _pod(objects, hop)
        (container,) = pod["containers"]
        if INTO[hop] in services:
            assert configs[hop]["exporters"][exporter]["auth"] == {"bearer_token_file": TOKEN_FILE}, hop
            token = {"audience": "orasi", "expirationSeconds": 3600, "path": "token"}
            sources = [{"serviceAccountToken": token}]
            assert _token_volumes(pod) == [
                {"name": "orasi-token", "projected": {"defaultMode": 0o440, "sources": sources}}
            ]
            assert TOKEN_MOUNT in container["volumeMounts"]
        else:
            assert "auth" not in configs[hop]["exporters"][exporter], hop
            assert _token_volumes(pod) == [] and TOKEN_MOUNT not in container["volumeMounts"], hop
    granted = {"gateway": {AGENT: FORWARD}, "bridge": {GATEWAY: FORWARD}}
    for service in WORKLOAD:
        config = configs[service]
        auth = config.get("extensions", {}).get("auth")
        if service not in services:
            assert auth is None and _gated(config) == [], service
            continue
        assert auth["jwt"]["default_scopes"] == ["ingest", "query"], service
        assert auth["jwt"].get("subjects") == granted.get(service), service
        if service == "bridge":  # every ingest listener, and the query APIs
            assert _gated(config) == ["otap", "zipkin"]
            assert config["extensions"]["query_api"]["auth"] == {"authenticator": "auth"}
        else:
            assert _gated(config) == ["otlp"], service
    for service in WORKLOAD:
        _validates(service, configs[service], _pod(objects, service), tmp_path, monkeypatch, capsys)


def test_subjects_follow_the_namespaces_and_merge_with_the_users(tools: Tools) -> None:
    configs, objects = _configs_and_objects(
        tools,
        *_on("gateway", "bridge"),
        *("--set", "auth.jwt.secret=jwks", "--set", "auth.jwt.tokenExpirationSeconds=7200"),
        *("--set", "namespaces.agents=edge", "--set", "namespaces.gateway=relay"),
        "--set-json",
        'auth.jwt.subjects={"system:serviceaccount:obs:collector": {"scopes": ["forward"]}}',
    )
    collector = {"system:serviceaccount:obs:collector": FORWARD}
    assert (
        configs["gateway"]["extensions"]["auth"]["jwt"]["subjects"]
        == {"system:serviceaccount:edge:orasi-agent": FORWARD} | collector
    )
    assert (
        configs["bridge"]["extensions"]["auth"]["jwt"]["subjects"]
        == {"system:serviceaccount:relay:orasi-gateway": FORWARD} | collector
    )
    (volume,) = _token_volumes(_pod(objects, "agent"))
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 7200


def test_the_rendering_with_hop_tokens_validates_strictly(tools: Tools, tmp_path: Path) -> None:
    path = tmp_path / "jwt.yaml"
    text = render_helm(tools, *_on("agent", "gateway", "bridge"), "--set", "auth.jwt.configMap=jwks")
    path.write_text(text)
    objects = [o for o in yaml.safe_load_all(text) if o]
    out = tools.run(tools.scripts / "kubernetes-validate", "--strict", "-k", "1.30.0", path)
    assert out.count(" passed for resource ") == len(objects), out
    for workload in ("daemonset/orasi-agent", "deployment/orasi-gateway"):
        assert f" passed for resource {workload} " in out, out


TRUSTED = [  # eu-west-1's cluster: a ConfigMap, the defaults; another: a Secret, every field its own
    {
        "issuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/W",
        "configMap": "jwks-eu-west-1",
        "subjects": {GATEWAY: FORWARD},
    },
    {
        "issuer": "https://issuer.example",
        "secret": "jwks-example",
        "key": "keys.json",
        "audience": "orasi-example",
        "tenantClaim": "team",
        "defaultScopes": ["ingest"],
    },
]
TRUSTED_MOUNT = {"name": "jwks-trusted", "mountPath": "/etc/orasi-jwks-trusted", "readOnly": True}


def test_trusted_issuers_are_sections_of_their_own_with_their_jwks_mounted(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    configs, objects = _configs_and_objects(
        tools,
        *_on("gateway", "bridge"),
        *("--set", "auth.jwt.configMap=jwks", "--set-json", f"auth.jwt.trustedIssuers={json.dumps(TRUSTED)}"),
    )
    west = {
        "jwks_file": "/etc/orasi-jwks-trusted/0/jwks.json",
        "issuer": TRUSTED[0]["issuer"],
        "audience": "orasi",
        "tenant_claim": "kubernetes.io/namespace",
        "default_scopes": ["ingest", "query"],
        "subjects": {GATEWAY: FORWARD},
    }
    example = {
        "jwks_file": "/etc/orasi-jwks-trusted/1/keys.json",
        "issuer": "https://issuer.example",
        "audience": "orasi-example",
        "tenant_claim": "team",
        "default_scopes": ["ingest"],
    }
    own, *trusted = configs["bridge"]["extensions"]["auth"]["jwt"]
    assert own["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert own["jwks_file"] == "/etc/orasi-jwks/jwks.json" and own["subjects"] == {GATEWAY: FORWARD}
    assert trusted == [west, example]  # this cluster's hop subject is not added to theirs
    pod = _pod(objects, "bridge")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "jwks-trusted"]
    west_items = [{"key": "jwks.json", "path": "0/jwks.json"}]
    example_items = [{"key": "keys.json", "path": "1/keys.json"}]
    assert volume == {
        "name": "jwks-trusted",
        "projected": {
            "sources": [
                {"configMap": {"name": "jwks-eu-west-1", "items": west_items}},
                {"secret": {"name": "jwks-example", "items": example_items}},
            ]
        },
    }
    assert TRUSTED_MOUNT in pod["containers"][0]["volumeMounts"]
    _validates("bridge", configs["bridge"], pod, tmp_path, monkeypatch, capsys)
    gateway = configs["gateway"]["extensions"]["auth"]["jwt"]
    assert gateway["issuer"] == own["issuer"] and gateway["subjects"] == {AGENT: FORWARD}  # one mapping
    for service in ("agent", "gateway"):
        assert all(v["name"] != "jwks-trusted" for v in _pod(objects, service)["volumes"]), service
    alone, _ = _configs_and_objects(tools, *_on("bridge"), "--set", "auth.jwt.configMap=jwks")
    assert isinstance(alone["bridge"]["extensions"]["auth"]["jwt"], dict)  # none trusted: a mapping


def _bridge_host(region: str) -> str:
    return f"bridge.{region}.orasi.internal"


def test_each_regions_bridges_trust_the_gateways_that_export_there(tools: Tools) -> None:
    """values-<region>.yaml with auth.jwt turned on: every region's gateways send their token to
    the bridges they export to (their own, gateway.bridgeHostname, and the failover), and those
    bridges trust the sending cluster's issuer (its values' auth.jwt.issuer and audience) and grant
    its gateways' subject forward; no bridge trusts an issuer whose gateways never send there."""
    values = {r: yaml.safe_load((CHART / f"values-{r}.yaml").read_text()) for r in REGIONS}
    on = ("--set", "auth.jwt.enabled=true")
    rendered = {r: _configs_and_objects(tools, "-f", f"{CHART}/values-{r}.yaml", *on)[0] for r in REGIONS}
    senders: dict[str, set[str]] = {r: set() for r in REGIONS}
    for region, v in values.items():
        gateway = v["gateway"]
        for host in (gateway.get("bridgeHostname"), gateway.get("failoverBridgeHostname")):
            (target,) = [r for r in REGIONS if host == _bridge_host(r) or (host is None and r == region)]
            senders[target].add(region)
        exporter = rendered[region]["gateway"]["exporters"]["loadbalancing"]
        assert exporter["auth"] == {"bearer_token_file": TOKEN_FILE}, region
        for service in ("agent", "gateway"):  # their own cluster's tokens only: one section
            section = rendered[region][service]["extensions"]["auth"]["jwt"]
            assert section["issuer"] == v["auth"]["jwt"]["issuer"], (region, service)
    assert senders == {
        "us-east-1": {"us-east-1", "us-west-2", "eu-west-1"},
        "us-west-2": {"us-west-2", "us-east-1", "eu-west-1"},
        "eu-west-1": set(),
    }
    for region in REGIONS:
        if not values[region].get("bridge", {}).get("enabled", True):
            assert "bridge" not in rendered[region], region
            continue
        sections = {s["issuer"]: s for s in rendered[region]["bridge"]["extensions"]["auth"]["jwt"]}
        assert set(sections) == {values[r]["auth"]["jwt"]["issuer"] for r in senders[region]}, region
        for sender in senders[region]:
            section = sections[values[sender]["auth"]["jwt"]["issuer"]]
            assert section["audience"] == "orasi", (region, sender)  # the sender's tokens' audience
            assert section["subjects"] == {GATEWAY: FORWARD}, (region, sender)  # its gateways alone


def test_the_rendering_with_trusted_issuers_validates_strictly(tools: Tools, tmp_path: Path) -> None:
    path = tmp_path / "trusted.yaml"
    values = CHART / "values-us-east-1.yaml"
    on = ("--set", "auth.jwt.enabled=true")
    path.write_text(render_helm(tools, "-f", str(values), *on))
    objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
    out = tools.run(tools.scripts / "kubernetes-validate", "--strict", "-k", "1.30.0", path)
    assert out.count(" passed for resource ") == len(objects), out
    assert " passed for resource statefulset/orasi-bridge " in out, out
    lint = tools.run(tools.helm, "lint", "--strict", CHART, "-f", str(values), *on)
    assert "0 chart(s) failed" in lint, lint


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"issuer": "https://x"}, "trustedIssuers.0: Must validate one and only one"),  # no JWKS
        ({"issuer": "https://x", "configMap": "a", "secret": "b"}, "trustedIssuers.0: Must validate one"),
        ({"issuer": "https://x", "configMap": "a", "defaultScopes": ["forward"]}, "defaultScopes.0"),
        (
            {"issuer": "https://x", "configMap": "a", "subjects": {"s": {"scopes": ["write"]}}},
            "subjects.s.scopes.0",
        ),
        ({"issuer": "https://x", "configMap": "a", "url": "https://x/keys"}, "Additional property url"),
        (
            {"issuer": "https://kubernetes.default.svc.cluster.local", "configMap": "a"},
            "the issuer https://kubernetes.default.svc.cluster.local is already trusted",
        ),
    ],
)
def test_bad_trusted_issuers_are_refused(tools: Tools, entry: dict[str, Any], complaint: str) -> None:
    done = subprocess.run(
        [
            *(tools.helm, "template", "orasi", CHART, *_on("bridge"), "--set", "auth.jwt.configMap=jwks"),
            *("--set-json", f"auth.jwt.trustedIssuers={json.dumps([entry])}"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and complaint in done.stderr, done.stderr
