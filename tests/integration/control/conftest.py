"""The control-plane tests run against the real etcd of scripts/test-servers.sh (or their own)."""

from __future__ import annotations

import uuid

import pytest

from orasi_common.testing.servers import ETCD, etcd_missing


@pytest.fixture(scope="session")
def etcd_url() -> str:
    problem = etcd_missing("the control-plane tests")
    if problem:
        pytest.fail(problem)
    return ETCD


@pytest.fixture
def region() -> str:
    """A region of the test's own, so that tests sharing one etcd never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"
