"""The discovery tests use the shared test etcd, each under a region of its own; the ones that stop,
restart or compact etcd start their own (test_etcd_resolver.py)."""

from __future__ import annotations

import pytest

from orasi_common.testing.servers import ETCD, etcd_missing


@pytest.fixture
def shared_etcd() -> str:
    """The shared test etcd (scripts/test-servers.sh); each test works under a region of its own."""
    problem = etcd_missing("the etcd resolver's tests")
    if problem:
        pytest.fail(problem)
    return ETCD
