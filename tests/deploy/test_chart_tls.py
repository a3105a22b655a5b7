"""The chart's `tls` values: listeners served from a mounted Secret, exporters that verify the next hop."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orasi_common import cli

from .conftest import CHART, Tools
from .test_chart import WORKLOAD, _configs_and_objects

FILES = {"cert_file": "/etc/orasi-tls/tls.crt", "key_file": "/etc/orasi-tls/tls.key"}
CA = "/etc/orasi-tls/ca.crt"
MOUNT = {"name": "tls", "mountPath": "/etc/orasi-tls", "readOnly": True}


def _listeners(service: str, config: dict[str, Any]) -> dict[str, Any]:
    """Where each listener of ``service`` keeps its `tls` section (None: plaintext)."""
    receiver = config["receivers"]["otap" if service == "bridge" else "otlp"]["protocols"]
    found = {protocol: receiver[protocol].get("tls") for protocol in ("grpc", "http")}
    if service == "bridge":
        found["query_api"] = config["extensions"]["query_api"].get("tls")
    return found


def _pod(objects: list[dict[str, Any]], service: str) -> dict[str, Any]:
    kind, name = WORKLOAD[service]
    (workload,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


def _validates(
    service: str,
    config: dict[str, Any],
    pod: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (container,) = pod["containers"]
    for variable in container["env"]:  # the pod's environment (a Secret's or the API's: a stand-in)
        monkeypatch.setenv(variable["name"], variable.get("value", "from-elsewhere"))
    path = tmp_path / f"{service}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["validate-config", str(path), "--service", service]) == 0, capsys.readouterr().err


def test_tls_is_off_by_default(tools: Tools) -> None:
    configs, objects = _configs_and_objects(tools)
    for service in WORKLOAD:
        assert all(t is None for t in _listeners(service, configs[service]).values()), service
        assert all(v["name"] != "tls" for v in _pod(objects, service)["volumes"]), service
    assert configs["agent"]["exporters"]["otlp"]["tls"] == {"insecure": True}
    assert configs["gateway"]["exporters"]["loadbalancing"]["tls"] == {"insecure": True}


def test_tls_values_serve_every_listener_and_verify_every_hop(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutual TLS on all three services: the Secret mounted read-only, every OTLP/OTAP listener and
    the query APIs serving its files, the agent's and gateway's exporters verifying with ca.crt and
    presenting tls.crt; configurations the services accept."""
    configs, objects = _configs_and_objects(
        tools,
        *("--set", "tls.enabled=true", "--set", "tls.mutual=true", "--set", "tls.secretName=edge-tls"),
        *("--set-string", "tls.minVersion=1.3", "--set", "tls.reloadInterval=10"),
    )
    server = FILES | {"client_ca_file": CA, "min_version": "1.3", "reload_interval": 10}
    for service in WORKLOAD:
        assert all(tls == server for tls in _listeners(service, configs[service]).values()), service
        pod = _pod(objects, service)
        (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert volume["secret"] == {"secretName": "edge-tls", "defaultMode": 0o440}
        assert MOUNT in pod["containers"][0]["volumeMounts"]
        _validates(service, configs[service], pod, tmp_path, monkeypatch, capsys)
    client = FILES | {"insecure": False, "ca_file": CA}
    assert configs["agent"]["exporters"]["otlp"]["tls"] == client
    bridges = "orasi-bridge-headless.orasi-system.svc.cluster.local"  # dialled by pod address
    assert configs["gateway"]["exporters"]["loadbalancing"]["tls"] == client | {
        "server_name_override": bridges
    }


def test_tls_for_the_bridges_only_leaves_the_edge_plaintext(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`services: [bridge]`: the agent untouched, the gateway's listeners plaintext but its exporter
    verifying the bridges (so the Secret is mounted there too), without a client certificate."""
    configs, objects = _configs_and_objects(
        tools, "--set", "tls.enabled=true", "--set", "tls.services={bridge}"
    )
    assert all(v["name"] != "tls" for v in _pod(objects, "agent")["volumes"])
    assert configs["agent"]["exporters"]["otlp"]["tls"] == {"insecure": True}
    assert all(t is None for t in _listeners("gateway", configs["gateway"]).values())
    tls = configs["gateway"]["exporters"]["loadbalancing"]["tls"]
    assert tls["insecure"] is False and tls["ca_file"] == CA and "cert_file" not in tls
    server = FILES | {"min_version": "1.2", "reload_interval": 30}
    assert all(t == server for t in _listeners("bridge", configs["bridge"]).values())
    for service in ("gateway", "bridge"):
        pod = _pod(objects, service)
        assert MOUNT in pod["containers"][0]["volumeMounts"], service
        _validates(service, configs[service], pod, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [("tls.minVersion=1.1", "minVersion"), ("tls.services={proxy}", "services"), ("tls.bogus=1", "bogus")],
)
def test_schema_rejects_bad_tls_values(tools: Tools, value: str, complaint: str) -> None:
    done = subprocess.run(
        [tools.helm, "template", "orasi", CHART, "--set", value], capture_output=True, text=True
    )
    assert done.returncode != 0 and complaint in done.stderr, done.stderr
