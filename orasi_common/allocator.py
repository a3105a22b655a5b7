"""Process-wide tuning of the memory allocators for services that convert telemetry to Arrow in
bulk (the gateway, the bridge and `orasi up`), applied once at start, and giving memory back.
The agent forwards bytes and keeps the defaults: its memory has a budget (100 MiB) that heap
slack would eat into.

Converting telemetry to Arrow and sorting it makes many short-lived buffers of a few MiB to a few
hundred MiB. With the defaults, freed memory goes back to the kernel at once and the next buffer
faults in fresh pages that the kernel must zero: measured in the bridge, a fifth of its CPU went
to zeroing pages, the span converter ran 1.7x slower and a flush's sort 3x slower. So:

- every Arrow allocation comes from jemalloc (``ARROW_DEFAULT_MEMORY_POOL=jemalloc``, set before
  pyarrow is first imported: Arrow reads it once, and its C++ code — Parquet writer, sort and
  take kernels, IPC — allocates from that default whatever pyarrow's pool is; set later, only the
  allocations made through pyarrow's own pool move, and the rest stays in Arrow's mimalloc, a
  second allocator holding its own freed memory: 72 MiB still resident after a 1-minute `orasi
  up` soak had ended). jemalloc keeps freed pages for ``JEMALLOC_DECAY_MS`` before returning
  them (Arrow sets 0: at once), so that one flush's buffers are reused by the next. An explicit
  ``ARROW_DEFAULT_MEMORY_POOL`` is left alone.
- glibc keeps ``TOP_PAD`` bytes of slack at the top of each heap (``M_TOP_PAD``; the default is
  128 KiB) for numpy's and protobuf's smaller buffers, and uses at most ``ARENA_MAX`` heaps
  (``M_ARENA_MAX``). The pad is kept per heap, and glibc makes up to eight heaps per core, one
  for each thread that allocates while the others' heaps are busy (gRPC's threads, the event
  loop's workers, Arrow's and DuckDB's pools): with a 64 MiB pad and no cap, `orasi up` at 20k
  spans/s held 16 heaps and 1.0-1.2 GB of RSS of which glibc had 50-100 MiB in use, and
  ``malloc_trim`` cannot return a heap's pad (it trims only the first heap's top). Python holds
  the GIL for most of its allocations, so threads seldom wait for a heap. Measured on 60k spans
  (CPU per span, converter / sort and Parquet write): 3.4 / 3.6 µs with the old 64 MiB pad and
  no cap, 3.2 / 3.6 µs with 32 MiB and 2 heaps, but 4.5 / 4.1 µs with 8 MiB (a chunk's numpy
  temporaries no longer fit: the heap shrinks and grows back at every chunk).

The cost is idle memory held between bursts: at most ``TOP_PAD`` per glibc heap, and jemalloc's
recently freed pages. :func:`release_free_memory` returns both (the ``memory_limiter`` calls it
when data stops coming and before it refuses data).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time

TOP_PAD = 32 * 1024 * 1024
"""Bytes of slack glibc keeps when a heap grows or is trimmed."""

ARENA_MAX = 2
"""Heaps (arenas) glibc may create: with ``TOP_PAD``, the glibc slack is at most their product."""

JEMALLOC_DECAY_MS = 10_000
"""How long freed Arrow pages stay mapped before jemalloc returns them (Arrow's default: 0)."""

RELEASE_INTERVAL = 5.0
"""Seconds between two releases at most (several memory limiters share one process)."""

_M_TOP_PAD = -2  # from glibc's <malloc.h>
_M_ARENA_MAX = -8

_release_lock = threading.Lock()
_last_release = float("-inf")


def tune_allocators(top_pad: int = TOP_PAD, arena_max: int = ARENA_MAX) -> list[str]:
    """Apply the tuning above; the names of the changes made (none off glibc or without jemalloc).

    Call it before pyarrow is imported, so that Arrow's C++ code allocates from jemalloc too
    ("arrow default jemalloc"); afterwards, only pyarrow's own pool moves.
    """
    applied = []
    libc = _glibc()
    if libc is not None:
        if libc.mallopt(_M_ARENA_MAX, arena_max):
            applied.append("glibc M_ARENA_MAX")
        if libc.mallopt(_M_TOP_PAD, top_pad):
            applied.append("glibc M_TOP_PAD")
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return applied
    arrow_default = "pyarrow" not in sys.modules
    if arrow_default:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"  # read once, as pyarrow loads
    import pyarrow as pa

    try:
        pa.jemalloc_set_decay_ms(JEMALLOC_DECAY_MS)
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc (Arrow fell back to its default)
        if arrow_default:
            del os.environ["ARROW_DEFAULT_MEMORY_POOL"]  # not for child processes either
        return applied
    applied.append("pyarrow jemalloc")
    if arrow_default:
        applied.append("arrow default jemalloc")
    return applied


def release_free_memory(force: bool = False) -> bool:
    """Return the allocators' free memory to the kernel: glibc's free pages (``malloc_trim``) and
    the freed pages jemalloc keeps, if Arrow is loaded. At most once per ``RELEASE_INTERVAL``
    unless ``force``; True when it ran. It takes a few milliseconds, holding the heaps' locks."""
    global _last_release
    with _release_lock:
        now = time.monotonic()
        if not force and now - _last_release < RELEASE_INTERVAL:
            return False
        _last_release = now
    libc = _release_libc()
    if libc is not None:
        libc.malloc_trim(0)
    pa = sys.modules.get("pyarrow")  # never load Arrow for this (the agent does not use it)
    if pa is not None:
        pa.default_memory_pool().release_unused()
    return True


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")  # runs ldconfig: look it up once per use, not per call
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: leave them alone
        return None
    return libc


_libc: list[ctypes.CDLL | None] = []  # looked up once, at the first release


def _release_libc() -> ctypes.CDLL | None:
    if not _libc:
        _libc.append(_glibc())
    return _libc[0]
