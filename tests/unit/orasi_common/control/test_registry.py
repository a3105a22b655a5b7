"""The in-process registry (the etcd one is held to the same contract in tests/integration/control)."""

from __future__ import annotations

import asyncio

import pytest

from orasi_common.control.registry import Change, InProcessRegistry, parse_endpoint, prefix_end


async def test_watch_yields_the_snapshot_then_every_change_under_its_prefix() -> None:
    registry = InProcessRegistry()
    await registry.start()
    await registry.register("/orasi/r/services/bridge/a", b"1")
    await registry.register("/orasi/r/services/gateway/g", b"g")
    watch = registry.watch("/orasi/r/services/bridge/")
    assert await anext(watch) == Change("/orasi/r/services/bridge/a", b"1")
    await registry.register("/orasi/r/services/bridge/b", b"2")
    await registry.register("/orasi/r/services/gateway/h", b"h")  # another prefix: not seen
    await registry.deregister("/orasi/r/services/bridge/a")
    assert await anext(watch) == Change("/orasi/r/services/bridge/b", b"2")
    assert await anext(watch) == Change("/orasi/r/services/bridge/a", None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watch), 0.05)
    await watch.aclose()
    assert await registry.snapshot("/orasi/r/services/") == {
        "/orasi/r/services/bridge/b": b"2",
        "/orasi/r/services/gateway/g": b"g",
        "/orasi/r/services/gateway/h": b"h",
    }


async def test_shutdown_removes_what_it_registered_and_is_safe_twice() -> None:
    registry = InProcessRegistry()
    await registry.shutdown()
    await registry.register("/orasi/r/services/agent/x", b"x")
    watch = registry.watch("/orasi/r/services/")
    assert await anext(watch) == Change("/orasi/r/services/agent/x", b"x")
    await registry.shutdown()
    await registry.shutdown()
    assert await anext(watch) == Change("/orasi/r/services/agent/x", None)
    assert await registry.snapshot("/orasi/") == {}
    await watch.aclose()


def test_prefix_end_and_endpoints() -> None:
    assert prefix_end(b"/orasi/r/") == b"/orasi/r0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"
    assert parse_endpoint("http://127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_endpoint("etcd.orasi-system:32379") == ("etcd.orasi-system", 32379)
    assert parse_endpoint("http://etcd") == ("etcd", 2379)
    with pytest.raises(ValueError, match="http://host:port"):
        parse_endpoint("http://")
