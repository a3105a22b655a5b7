"""The chart's `auth.jwt` values and the hops between the services: a service that checks JWTs takes
its upstream hop's traffic only with that hop's projected service-account token (audience
`auth.jwt.audience`, rotated by the kubelet), whose subject it grants `forward` (ingest as the
tenant each batch names); every other subject keeps `defaultScopes`, pinned to its own tenant."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, Tools, render_helm
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


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("auth.jwt.defaultScopes={ingest,forward}", "defaultScopes"),
        ("auth.jwt.tokenExpirationSeconds=300", "tokenExpirationSeconds"),
        ("auth.jwt.subjects.app.scopes={write}", "subjects.app.scopes"),
        ("auth.jwt.subjects.app.tenant=a", "tenant"),
    ],
)
def test_schema_rejects_bad_jwt_values(tools: Tools, value: str, complaint: str) -> None:
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", value], capture_output=True, text=True
    )
    assert done.returncode != 0 and complaint in done.stderr, done.stderr
