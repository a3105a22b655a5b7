"""An exporter's bearer token file: read at the first call, read again once changed (a rewrite,
or a kubelet's atomic symlink swap), the last token kept when the file breaks, never shown; the
config refuses two Authorization sources."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from orasi_common.errors import Unauthenticated, Unavailable
from orasi_common.exporters.bearer import BearerAuthConfig, BearerToken
from orasi_common.exporters.otlp.config import Config as OtlpConfig
from orasi_common.exporters.otlphttp.config import Config as OtlpHttpConfig


def token_of(path: Path, interval: float = 0.0) -> BearerToken:
    return BearerToken(BearerAuthConfig(bearer_token_file=str(path), reload_interval=interval))


async def test_the_token_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    token = token_of(path)
    assert await token.authorization() == "Bearer first-token"
    path.write_text("second-token")
    assert await token.authorization() == "Bearer second-token"
    assert token.reloads == 1
    assert "second-token" not in repr(token) and str(path) in repr(token)


async def test_a_kubelet_symlink_swap_is_followed(tmp_path: Path) -> None:
    # A projected volume: token -> ..data/token, ..data -> a timestamped directory, swapped atomically.
    for name, text in (("..2026_1", "old"), ("..2026_2", "new")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "token").write_text(text)
    (tmp_path / "..data").symlink_to("..2026_1")
    (tmp_path / "token").symlink_to("..data/token")
    token = token_of(tmp_path / "token")
    assert await token.authorization() == "Bearer old"
    (tmp_path / "..data_tmp").symlink_to("..2026_2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert await token.authorization() == "Bearer new"


async def test_checks_wait_for_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    token = token_of(path, interval=3600)
    assert await token.authorization() == "Bearer first"
    path.write_text("second")
    assert await token.authorization() == "Bearer first"  # not checked again yet
    refused = token.refused(Unauthenticated("the peer answered UNAUTHENTICATED: expired"))
    assert isinstance(refused, Unavailable) and refused.retry_after == 3600
    assert "expired" in refused.message and str(path) in refused.message
    assert await token.authorization() == "Bearer second"  # a refusal makes the next call check


async def test_a_broken_file_keeps_the_last_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    token = token_of(path)
    with pytest.raises(Unavailable, match=r"no bearer token: the bearer token file .* cannot be used"):
        await token.authorization()  # missing at first: retryable, the batch stays queued
    path.write_text("secret-value")
    assert await token.authorization() == "Bearer secret-value"
    for broken in ("", "two words", "x" * 70_000):
        path.write_text(broken)
        assert await token.authorization() == "Bearer secret-value"
    path.unlink()
    with caplog.at_level(logging.DEBUG):
        assert await token.authorization() == "Bearer secret-value"
    assert "secret-value" not in caplog.text


def test_one_authorization_source() -> None:
    auth = {"bearer_token_file": "/var/run/secrets/tokens/orasi"}
    for model in (OtlpConfig, OtlpHttpConfig):
        assert model.model_validate({"endpoint": "h:1", "auth": auth}).auth is not None
        with pytest.raises(ValidationError, match=r"auth\.bearer_token_file or an authorization header"):
            model.model_validate({"endpoint": "h:1", "auth": auth, "headers": {"Authorization": "x"}})
