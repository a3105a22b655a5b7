"""The audit trail's lines (orasi_common.telemetry.audit) and the audited commands: each prints
one JSON line on stderr, or appends it to $ORASI_AUDIT_LOG, never with a secret (`orasi config`'s:
integration/control/test_audit_settings.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from orasi_common.cli import main
from orasi_common.telemetry.audit import ENV, audit, sql_fields


def audit_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "orasi.audit"]


def test_a_line_on_stderr_with_its_fields(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    audit("query", actor="token:abc", tenant="acme", **sql_fields("SELECT 1"), row_count=1)
    [line] = audit_lines(capsys.readouterr().err)
    assert line["event"] == "query" and line["actor"] == "token:abc" and line["tenant"] == "acme"
    assert line["sql"] == "SELECT 1"
    assert line["sql_hash"] == hashlib.sha256(b"SELECT 1").hexdigest()
    assert line["level"] == "info" and line["msg"] == "Audit event."


def test_audit_log_file_instead_of_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(ENV, str(path))
    audit("settings.delete", key="/orasi/r/config/agent/batch")
    audit("settings.delete", key="/orasi/r/config/agent/other")
    assert audit_lines(capsys.readouterr().err) == []
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert keys == ["/orasi/r/config/agent/batch", "/orasi/r/config/agent/other"]
    monkeypatch.delenv(ENV)
    audit("settings.delete", key="back on stderr")
    assert [line["key"] for line in audit_lines(capsys.readouterr().err)] == ["back on stderr"]


def test_a_field_named_as_a_log_record_attribute_is_refused() -> None:
    with pytest.raises(ValueError, match="msg"):
        audit("query", msg="x")


def test_tokens_create_and_revoke_are_audited_without_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    assert main(["tokens", "create", "--tenant", "acme", "--scope", "query", "--store", store]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    [created] = audit_lines(out.err)
    assert created["event"] == "token.create" and created["tenant"] == "acme"
    assert created["scopes"] == ["query"]
    assert isinstance(created["token_id"], str) and created["token_id"] in token
    assert str(created["actor"]).startswith(("user:", "uid:"))
    secret = token.rsplit("_", 1)[1]
    assert secret not in out.err
    assert main(["tokens", "revoke", token, "--store", store]) == 0  # revoked by the whole token
    err = capsys.readouterr().err
    [revoked] = audit_lines(err)
    assert revoked["event"] == "token.revoke" and revoked["token_id"] == created["token_id"]
    assert secret not in err
