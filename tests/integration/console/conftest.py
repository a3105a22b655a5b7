"""Fixtures of the console tests: a real bridge process over a real lake, spans and logs sent to
it over OTLP, and Debian's chromium driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from integration.bridge.conftest import lake_servers, lake_space
from integration.bridge.servers import LakeSpace
from orasi_common.testing.service_process import ServiceProcess, free_ports, start_on_free_ports
from orasi_common.topology import service

__all__ = ["lake_servers", "lake_space"]  # the bridge tests' fixtures, used here too


@pytest.fixture
def bridge(lake_space: LakeSpace, tmp_path: Path) -> Iterator[ServiceProcess]:
    def make() -> ServiceProcess:
        config = service(free_ports(), "otlp", {}, "lake", lake_space.lake_config(), query_api=True)
        return ServiceProcess.from_config("bridge", config, tmp_path, label="bridge-console")

    process = start_on_free_ports(make)
    try:
        yield process
    finally:
        process.stop()


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
