"""Fixtures shared by the unit tests (builders live in builders.py, doubles in doubles.py)."""

from __future__ import annotations

import pytest

from orasi_common.telemetry.metrics import Metrics

from .doubles import RecordingConsumer


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("agent")


@pytest.fixture
def recorder() -> RecordingConsumer:
    return RecordingConsumer()
