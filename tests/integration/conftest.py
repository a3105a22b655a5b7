"""Fixtures shared by the integration tests (the ones for every test are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orasi_common.testing.gated_sink import GatedSink


@pytest.fixture
def gated_sink() -> Iterator[GatedSink]:
    with GatedSink() as started:
        yield started
