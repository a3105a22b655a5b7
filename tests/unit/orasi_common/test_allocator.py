"""``tune_allocators`` caps glibc's heaps and pads them, and moves Arrow to jemalloc unless a pool is
chosen; ``release_free_memory`` gives the allocators' free memory back.

Every test restores pyarrow's default pool (and glibc's default ``M_TOP_PAD`` and arena cap), so
the rest of the suite runs with the allocators it had. What only a fresh process shows (Arrow's
C++ default pool, read once as pyarrow loads) is checked in a child interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator

import pyarrow as pa
import pytest

from orasi_common import allocator
from orasi_common.allocator import ARENA_MAX, TOP_PAD, release_free_memory, tune_allocators

GLIBC_DEFAULT_TOP_PAD = 128 * 1024
GLIBC_DEFAULT_ARENA_MAX = 8 * (os.cpu_count() or 1)  # glibc's own limit when none is set
GLIBC = ["glibc M_ARENA_MAX", "glibc M_TOP_PAD"]


@pytest.fixture(autouse=True)
def system_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test from the system pool (so a switch to jemalloc shows), then restore."""
    original = pa.default_memory_pool()
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    pa.set_memory_pool(pa.system_memory_pool())
    monkeypatch.setattr(allocator, "_last_release", float("-inf"))
    try:
        yield
    finally:
        monkeypatch.undo()  # the real C library again, before restoring through it
        pa.set_memory_pool(original)
        libc = allocator._glibc()
        if libc is not None:
            libc.mallopt(allocator._M_TOP_PAD, GLIBC_DEFAULT_TOP_PAD)
            libc.mallopt(allocator._M_ARENA_MAX, GLIBC_DEFAULT_ARENA_MAX)


def test_on_glibc_caps_and_pads_the_heaps_and_switches_pyarrow_to_jemalloc() -> None:
    assert pa.default_memory_pool().backend_name == "system"
    applied = tune_allocators()
    # pyarrow is loaded already here: Arrow's C++ default pool stays what it was.
    assert applied == [*GLIBC, "pyarrow jemalloc"]
    assert "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
    assert pa.default_memory_pool().backend_name == "jemalloc"
    # Arrow allocates from the new pool.
    before = pa.jemalloc_memory_pool().bytes_allocated()
    buffer = pa.allocate_buffer(1 << 20)
    assert pa.jemalloc_memory_pool().bytes_allocated() >= before + (1 << 20)
    del buffer


_FRESH_PROCESS = """
import json, sys
{before}
from orasi_common.allocator import tune_allocators
applied = tune_allocators()
import os, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
table = pa.table({{"s": [str(i) for i in range(200_000)]}})
pq.write_table(table.take(pc.sort_indices(table, [("s", "descending")])), pa.BufferOutputStream())
print(json.dumps({{
    "applied": applied,
    "variable": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
    "mimalloc_used": pa.mimalloc_memory_pool().max_memory(),
    "jemalloc_used": pa.jemalloc_memory_pool().max_memory(),
}}))
"""


def _fresh_process(before: str = "") -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS.format(before=before)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_before_pyarrow_loads_arrows_own_code_allocates_from_jemalloc_too() -> None:
    result = _fresh_process()
    assert result["applied"] == [*GLIBC, "pyarrow jemalloc", "arrow default jemalloc"]
    assert result["variable"] == "jemalloc"  # child processes (receiver workers) inherit it
    # The Parquet writer and the sort kernels use Arrow's C++ default pool, not pyarrow's.
    assert result["mimalloc_used"] == 0
    assert isinstance(result["jemalloc_used"], int) and result["jemalloc_used"] > 0


def test_after_pyarrow_loaded_only_pyarrows_pool_moves() -> None:
    result = _fresh_process(before="import pyarrow")
    assert result["applied"] == [*GLIBC, "pyarrow jemalloc"]
    assert result["variable"] is None
    assert isinstance(result["mimalloc_used"], int) and result["mimalloc_used"] > 0


def test_jemalloc_keeps_freed_pages_before_returning_them(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object]] = []
    real_decay, real_set = pa.jemalloc_set_decay_ms, pa.set_memory_pool
    monkeypatch.setattr(pa, "jemalloc_set_decay_ms", lambda ms: (calls.append(("decay", ms)), real_decay(ms)))
    monkeypatch.setattr(
        pa, "set_memory_pool", lambda pool: (calls.append(("pool", pool.backend_name)), real_set(pool))
    )
    tune_allocators()
    # Set before the pool is first used: the decay applies to the arenas created after it.
    assert calls == [("decay", allocator.JEMALLOC_DECAY_MS), ("pool", "jemalloc")]
    assert allocator.JEMALLOC_DECAY_MS > 0


@pytest.mark.parametrize("pool", ["system", "mimalloc", "jemalloc"])
def test_an_explicit_arrow_pool_is_left_alone(pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", pool)
    applied = tune_allocators()
    assert applied == GLIBC
    assert pa.default_memory_pool().backend_name == "system"  # untouched, whatever the variable says
    assert os.environ["ARROW_DEFAULT_MEMORY_POOL"] == pool


def test_a_pyarrow_without_jemalloc_keeps_its_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> pa.MemoryPool:
        raise NotImplementedError("built without jemalloc")

    monkeypatch.setattr(pa, "jemalloc_memory_pool", unavailable)
    assert tune_allocators() == GLIBC
    assert pa.default_memory_pool().backend_name == "system"
    assert "ARROW_DEFAULT_MEMORY_POOL" not in os.environ


def test_applying_twice_is_harmless() -> None:
    assert tune_allocators() == [*GLIBC, "pyarrow jemalloc"]
    assert tune_allocators() == [*GLIBC, "pyarrow jemalloc"]
    assert pa.default_memory_pool().backend_name == "jemalloc"


class _FakeLibc:
    """A C library that records ``mallopt`` and ``malloc_trim`` calls; ``glibc`` says whether it
    looks like glibc."""

    def __init__(self, glibc: bool, accepts: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.trims: list[int] = []
        self.accepts = accepts
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1 if self.accepts else 0

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


@pytest.mark.parametrize(("top_pad", "arena_max"), [(TOP_PAD, ARENA_MAX), (1 << 20, 4)])
def test_caps_the_heaps_then_pads_them_through_mallopt(
    top_pad: int, arena_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    libc = _FakeLibc(glibc=True)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert tune_allocators(top_pad, arena_max)[:2] == GLIBC
    assert libc.calls == [(-8, arena_max), (-2, top_pad)]  # M_ARENA_MAX -8, M_TOP_PAD -2 in <malloc.h>


def test_the_glibc_slack_stays_bounded() -> None:
    # What the heaps may hold free at their tops, whatever the threads: two pads of 32 MiB, where
    # the 64 MiB pad of each of 16 heaps held 1 GB in `orasi up` (the module docstring).
    assert TOP_PAD * ARENA_MAX <= 64 * 1024 * 1024


def test_a_rejected_mallopt_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True, accepts=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == [(-8, ARENA_MAX), (-2, TOP_PAD)]


def test_a_libc_other_than_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == []


def test_off_linux_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(allocator, "sys", types.SimpleNamespace(platform="darwin", modules=sys.modules))
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == []
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_without_a_c_library_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert tune_allocators() == ["pyarrow jemalloc"]


class _FakePool:
    def __init__(self) -> None:
        self.releases = 0

    def release_unused(self) -> None:
        self.releases += 1


def test_release_trims_glibc_and_purges_arrows_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    libc, pool = _FakeLibc(glibc=True), _FakePool()
    monkeypatch.setattr(allocator, "_libc", [libc])
    monkeypatch.setattr(pa, "default_memory_pool", lambda: pool)
    assert release_free_memory()
    assert libc.trims == [0] and pool.releases == 1


def test_release_runs_once_per_interval_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    libc, pool = _FakeLibc(glibc=True), _FakePool()
    monkeypatch.setattr(allocator, "_libc", [libc])
    monkeypatch.setattr(pa, "default_memory_pool", lambda: pool)
    clock = [1000.0]
    monkeypatch.setattr(allocator, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    assert release_free_memory()
    clock[0] += allocator.RELEASE_INTERVAL - 0.1  # another limiter of the same process, just after
    assert not release_free_memory()
    assert release_free_memory(force=True)
    clock[0] += allocator.RELEASE_INTERVAL
    assert release_free_memory()
    assert len(libc.trims) == pool.releases == 3


def test_release_never_loads_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True)
    monkeypatch.setattr(allocator, "_libc", [libc])
    monkeypatch.delitem(sys.modules, "pyarrow")  # as in the agent, which never imports it
    assert release_free_memory()
    assert libc.trims == [0]
    assert "pyarrow" not in sys.modules


def test_release_off_glibc_only_purges_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _FakePool()
    monkeypatch.setattr(allocator, "_libc", [None])
    monkeypatch.setattr(pa, "default_memory_pool", lambda: pool)
    assert release_free_memory()
    assert pool.releases == 1


def test_release_on_the_real_allocators() -> None:
    buffers = [pa.allocate_buffer(1 << 20, memory_pool=pa.jemalloc_memory_pool()) for _ in range(8)]
    del buffers
    assert release_free_memory(force=True)
