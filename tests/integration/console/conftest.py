"""Fixtures of the console tests: the Jaeger tests' bridge process over a real lake, and Debian's
chromium driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from integration.jaeger.conftest import bridge, lake_servers, lake_space

# the Jaeger tests' bridge (API keys key-default → default, key-other → other), used here too
__all__ = ["bridge", "lake_servers", "lake_space"]


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    with sync_playwright() as playwright:
        # root (CI) cannot use chromium's sandbox
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
