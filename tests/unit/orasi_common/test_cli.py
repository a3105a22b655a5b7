"""`orasi validate-config`, driven through the command line's main()."""

from __future__ import annotations

from pathlib import Path

import pytest

from orasi_common.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

VALID = """
receivers:
  otlp: {protocols: {http: {endpoint: 127.0.0.1:4318}}}
exporters:
  otlphttp: {endpoint: "http://127.0.0.1:4418"}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [otlphttp]}
    metrics/own: {receivers: [otlp], exporters: [otlphttp]}
"""


def test_valid_file_returns_0_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    assert main(["validate-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out
    assert "valid agent configuration" in out
    assert "logs, metrics/own" in out


def test_invalid_file_returns_1_and_names_path_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("endpoint: 127.0.0.1:4318", "endpiont: 127.0.0.1:4318"))
    assert main(["validate-config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "receivers.otlp.protocols.http.endpiont: unknown key" in captured.err


def test_unreadable_file_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.yaml"
    assert main(["validate-config", str(path)]) == 1
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("service", ["agent", "gateway", "bridge"])
def test_shipped_examples_are_valid(
    service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORASI_MEMORY_LIMIT_MIB", raising=False)
    monkeypatch.delenv("ORASI_GATEWAY_ENDPOINT", raising=False)
    example = EXAMPLES / f"{service}.yaml"
    assert main(["validate-config", str(example), "--service", service]) == 0
    assert f"{example}: valid {service} configuration" in capsys.readouterr().out


def test_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    assert "usage: orasi" in capsys.readouterr().err
