"""``tune_allocators`` pads glibc's heap top and moves pyarrow to jemalloc unless a pool is chosen.

Every test restores pyarrow's default pool (and glibc's default ``M_TOP_PAD``), so the rest of the
suite runs with the allocators it had.
"""

from __future__ import annotations

import types
from collections.abc import Iterator

import pyarrow as pa
import pytest

from orasi_common import allocator
from orasi_common.allocator import TOP_PAD, tune_allocators

GLIBC_DEFAULT_TOP_PAD = 128 * 1024


@pytest.fixture(autouse=True)
def system_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test from the system pool (so a switch to jemalloc shows), then restore."""
    original = pa.default_memory_pool()
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        monkeypatch.undo()  # the real C library again, before restoring through it
        pa.set_memory_pool(original)
        allocator._set_glibc_top_pad(GLIBC_DEFAULT_TOP_PAD)


def test_on_glibc_pads_the_heap_and_switches_pyarrow_to_jemalloc() -> None:
    assert pa.default_memory_pool().backend_name == "system"
    applied = tune_allocators()
    assert applied == ["glibc M_TOP_PAD", "pyarrow jemalloc"]
    assert pa.default_memory_pool().backend_name == "jemalloc"
    # Arrow allocates from the new pool.
    before = pa.jemalloc_memory_pool().bytes_allocated()
    buffer = pa.allocate_buffer(1 << 20)
    assert pa.jemalloc_memory_pool().bytes_allocated() >= before + (1 << 20)
    del buffer


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
    assert applied == ["glibc M_TOP_PAD"]
    assert pa.default_memory_pool().backend_name == "system"  # untouched, whatever the variable says


def test_a_pyarrow_without_jemalloc_keeps_its_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> pa.MemoryPool:
        raise NotImplementedError("built without jemalloc")

    monkeypatch.setattr(pa, "jemalloc_memory_pool", unavailable)
    assert tune_allocators() == ["glibc M_TOP_PAD"]
    assert pa.default_memory_pool().backend_name == "system"


def test_applying_twice_is_harmless() -> None:
    assert tune_allocators() == ["glibc M_TOP_PAD", "pyarrow jemalloc"]
    assert tune_allocators() == ["glibc M_TOP_PAD", "pyarrow jemalloc"]
    assert pa.default_memory_pool().backend_name == "jemalloc"


class _FakeLibc:
    """A C library that records ``mallopt`` calls; ``glibc`` says whether it looks like glibc."""

    def __init__(self, glibc: bool, accepts: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.accepts = accepts
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1 if self.accepts else 0


@pytest.mark.parametrize("top_pad", [TOP_PAD, 1 << 20])
def test_sets_m_top_pad_through_mallopt(top_pad: int, monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert "glibc M_TOP_PAD" in tune_allocators(top_pad)
    assert libc.calls == [(-2, top_pad)]  # M_TOP_PAD is -2 in <malloc.h>


def test_a_rejected_mallopt_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True, accepts=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == [(-2, TOP_PAD)]


def test_a_libc_other_than_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == []


def test_off_linux_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(glibc=True)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(allocator, "sys", types.SimpleNamespace(platform="darwin"))
    assert tune_allocators() == ["pyarrow jemalloc"]
    assert libc.calls == []
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_without_a_c_library_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert tune_allocators() == ["pyarrow jemalloc"]
