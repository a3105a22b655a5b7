"""The `orasi` command finds the services through their ``orasi.services`` entry points.

Loading them imports no pyarrow (the command tunes the allocators first, for the services that ask
for it); a missing or broken entry point is an error that names the group and what to reinstall.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from orasi_common import plugins
from orasi_common.cli import build_parser, main
from orasi_common.pipeline.component import Factories
from orasi_common.ports import SERVICES


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_declared_and_loads_its_factories(name: str) -> None:
    assert name in plugins.names()
    plugin = plugins.load(name)
    assert plugin.name == name
    assert isinstance(plugin.load_factories(), Factories)


def test_only_the_services_that_convert_to_arrow_tune_the_allocators() -> None:
    assert {name: plugins.load(name).tune_allocators for name in SERVICES} == {
        "agent": False,
        "gateway": True,
        "bridge": True,
    }


def test_loading_every_service_and_the_command_line_imports_no_pyarrow() -> None:
    code = (
        "import json, sys\n"
        "from orasi_common import plugins\n"
        "from orasi_common.cli import build_parser\n"
        "build_parser()\n"
        "[plugins.load(name) for name in plugins.names()]\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('pyarrow', 'orasi_agent', 'orasi_gateway', 'orasi_bridge'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout.splitlines()[-1])
    # Only the modules that declare the services (and their packages' __init__) and the bridge's
    # own commands: no factories.
    declared = [f"orasi_{name}{module}" for name in SERVICES for module in ("", ".service")]
    assert loaded == sorted([*declared, "orasi_bridge.commands"])


def test_the_bridge_declares_its_own_commands_and_the_command_line_runs_them() -> None:
    own = {name: plugins.load(name).load_commands() for name in SERVICES}
    assert own["agent"] is None and own["gateway"] is None
    bridge = own["bridge"]
    assert bridge is not None and bridge.names == ("lake", "catalog")
    args = build_parser().parse_args(["lake", "verify", "--data-dir", "/nonexistent"])
    assert args.run_own is bridge.run


def _declared(monkeypatch: pytest.MonkeyPatch, *entries: metadata.EntryPoint) -> None:
    def entry_points(group: str, name: str | None = None) -> metadata.EntryPoints:
        assert group == plugins.GROUP
        return metadata.EntryPoints(e for e in entries if name is None or e.name == name)

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)


def test_a_missing_entry_point_names_the_group_and_the_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _declared(monkeypatch, metadata.EntryPoint("agent", "orasi_agent.service:SERVICE", plugins.GROUP))
    with pytest.raises(plugins.ServiceNotFound) as caught:
        plugins.load("bridge")
    message = str(caught.value)
    assert "'bridge'" in message and "'orasi.services'" in message and "declared: agent" in message
    assert "reinstall the distribution 'orasi'" in message


@pytest.mark.parametrize("value", ["orasi_bridge.no_such_module:SERVICE", "orasi_bridge.service:NOTHING"])
def test_a_broken_entry_point_names_the_group_and_the_distribution(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _declared(monkeypatch, metadata.EntryPoint("bridge", value, plugins.GROUP))
    with pytest.raises(plugins.ServiceNotFound) as caught:
        plugins.load("bridge")
    message = str(caught.value)
    assert value in message and "'orasi.services'" in message and "reinstall the distribution" in message


def test_an_entry_point_under_another_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _declared(monkeypatch, metadata.EntryPoint("gateway", "orasi_bridge.service:SERVICE", plugins.GROUP))
    with pytest.raises(plugins.ServiceNotFound, match="not a ServicePlugin named 'gateway'"):
        plugins.load("gateway")


def test_the_command_reports_a_missing_service_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _declared(monkeypatch)
    config = tmp_path / "agent.yaml"
    config.write_text("{}")
    assert main(["agent", "--config", str(config)]) == 2
    assert main(["validate-config", str(config), "--service", "gateway"]) == 2
    err = capsys.readouterr().err
    assert "orasi agent: no service 'agent' in the entry-point group 'orasi.services'" in err
    assert "orasi validate-config: no service 'gateway'" in err
