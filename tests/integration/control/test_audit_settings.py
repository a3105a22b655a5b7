"""`orasi config set|delete` against the real etcd print an audit line: the key and the names of
the keys changed, never their values (a value may be a credential)."""

from __future__ import annotations

import json
import uuid

import pytest

from orasi_common.cli import main
from orasi_common.telemetry.audit import ENV

ETCD = "http://127.0.0.1:2379"


def audited(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if '"logger": "orasi.audit"' in line]


def test_config_set_and_delete_are_audited_without_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    region = f"audit-{uuid.uuid4().hex[:8]}"
    where = ["--etcd", ETCD, "--region", region]
    assert main(["config", "set", "agent/batch", "send_batch_size=321", *where]) == 0
    [line] = audited(capsys.readouterr().err)
    assert line["event"] == "settings.set"
    assert line["key"] == f"/orasi/{region}/config/agent/batch"
    assert line["changed"] == ["send_batch_size"] and "321" not in json.dumps(line)
    assert main(["config", "delete", "agent/batch", *where]) == 0
    [line] = audited(capsys.readouterr().err)
    assert line["event"] == "settings.delete" and line["key"] == f"/orasi/{region}/config/agent/batch"
