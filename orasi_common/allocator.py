"""Process-wide tuning of the memory allocators for services that convert telemetry to Arrow in
bulk (the gateway, the bridge and `orasi up`), applied once at start. The agent forwards bytes
and keeps the defaults: its memory has a budget (100 MiB) that heap slack would eat into.

Converting telemetry to Arrow and sorting it makes many short-lived buffers of a few MiB to a few
hundred MiB. With the defaults, freed memory goes back to the kernel at once and the next buffer
faults in fresh pages that the kernel must zero: measured in the bridge, a fifth of its CPU went
to zeroing pages, the span converter ran 1.7x slower and a flush's sort 3x slower. So:

- glibc keeps ``TOP_PAD`` bytes of slack at the top of each heap (``M_TOP_PAD``; the default is
  128 KiB), for numpy's and protobuf's buffers;
- pyarrow allocates from jemalloc (its mimalloc default re-faults freed memory in huge pages),
  unless ``ARROW_DEFAULT_MEMORY_POOL`` names a pool explicitly, and jemalloc keeps freed pages
  for ``JEMALLOC_DECAY_MS`` before returning them (Arrow sets 0: at once), so that one flush's
  buffers are reused by the next.

The cost is idle memory held between bursts: at most ``TOP_PAD`` per glibc arena, and jemalloc's
recently freed pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

TOP_PAD = 64 * 1024 * 1024
"""Bytes of slack glibc keeps when a heap grows or is trimmed."""

JEMALLOC_DECAY_MS = 10_000
"""How long freed Arrow pages stay mapped before jemalloc returns them (Arrow's default: 0)."""

_M_TOP_PAD = -2  # from glibc's <malloc.h>


def tune_allocators(top_pad: int = TOP_PAD) -> list[str]:
    """Apply the tuning above; the names of the changes made (none off glibc or without jemalloc)."""
    applied = []
    if _set_glibc_top_pad(top_pad):
        applied.append("glibc M_TOP_PAD")
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        try:
            pa.jemalloc_set_decay_ms(JEMALLOC_DECAY_MS)
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            applied.append("pyarrow jemalloc")
        except NotImplementedError:  # a pyarrow built without jemalloc
            pass
    return applied


def _set_glibc_top_pad(top_pad: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: leave them alone
        return False
    return bool(libc.mallopt(_M_TOP_PAD, top_pad))
