"""Shared fixtures: a recording OTLP sink and real `orasi agent` subprocesses pointed at it.

Every process a fixture starts is stopped by its own PID when the fixture ends. When a test
fails, the log of every `orasi` process still running (``service_process.LIVE_LOGS``) and of
every helper process a test registered is attached to its report, so the processes' own logs
explain the failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orasi_common.testing.agent_process import AgentProcess
from orasi_common.testing.service_process import LIVE_LOGS
from orasi_common.testing.sink import OtlpSink

_TAIL = 16_000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for label, path in list(LIVE_LOGS.items()):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            report.sections.append((f"{label} log (last {_TAIL} chars)", text[-_TAIL:]))
    return report


class AgentLauncher:
    """Starts agents for one fixture scope and stops every one of them at its end."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._agents: list[AgentProcess] = []

    def __call__(self, sink: OtlpSink, **kwargs: Any) -> AgentProcess:
        """Start an agent exporting to ``sink``; kwargs as AgentProcess.launch takes them."""
        agent = AgentProcess.launch(self._workdir, sink.endpoint, **kwargs)
        self._agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self._agents:
            agent.stop()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as started:
        yield started


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    launcher = AgentLauncher(tmp_path / "agents")
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def module_sink() -> Iterator[OtlpSink]:
    with OtlpSink() as started:
        yield started


@pytest.fixture(scope="module")
def module_start_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., AgentProcess]]:
    launcher = AgentLauncher(tmp_path_factory.mktemp("agents"))
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def show_log_on_failure() -> Iterator[Callable[[str, Path], None]]:
    """Register a helper process's log file to be shown if the test fails."""
    labels: list[str] = []

    def register(label: str, path: Path) -> None:
        labels.append(label)
        LIVE_LOGS[label] = path

    yield register
    for label in labels:
        LIVE_LOGS.pop(label, None)
