"""Committed data files as Arrow dataset fragments, with their footers and trace indexes cached.

Data files and their trace indexes are immutable, so what their footers say is cached (bounded,
least recently used first out): a query then opens no file just to plan, and reads only the row
groups and columns it needs. ``trace_row_groups`` asks the indexes of many files at once; a file
whose index is missing (or unreadable) answers None, meaning "read it all".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from orasi_bridge.lake import traceindex
from orasi_bridge.lake.localcache import LocalCache

_FORMAT = ds.ParquetFileFormat()
_LOOKUPS = 8  # index files read at once (S3 round trips overlap)
V = TypeVar("V")


class Lru(Generic[V]):
    """A bounded map that forgets the least recently used entry first (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


class DataFiles:
    """Fragments of committed files (paths without the URL scheme), from the bridge's local copies
    (``LocalCache``) when it keeps one, else from the warehouse's filesystem."""

    def __init__(self, fs: pafs.FileSystem, cache: LocalCache | None = None, capacity: int = 1024) -> None:
        self.fs = fs
        self.local = pafs.LocalFileSystem()
        self._cache = cache
        self._fragments: Lru[ds.ParquetFileFragment] = Lru(capacity)
        self._indexes: Lru[ds.ParquetFileFragment | bool] = Lru(capacity)
        self._pool = ThreadPoolExecutor(_LOOKUPS, thread_name_prefix="lake-index")

    def fragments(
        self, read_format: ds.ParquetFileFormat, files: list[tuple[str, int]]
    ) -> list[tuple[ds.ParquetFileFragment, pafs.FileSystem]]:
        """Whole-file fragments read with ``read_format`` (one format per instance: fragments are
        cached by path) and the filesystem of each, footers loaded (concurrently when not cached)."""
        return list(self._pool.map(lambda file: self._fragment(read_format, *file), files))

    def _fragment(
        self, read_format: ds.ParquetFileFormat, path: str, size: int
    ) -> tuple[ds.ParquetFileFragment, pafs.FileSystem]:
        local = self._cache.get(path) if self._cache is not None else None
        key, fs, source = (f"local:{local}", self.local, local) if local else (path, self.fs, path)
        fragment = self._fragments.get(key)
        if fragment is None:
            fragment = read_format.make_fragment(source, fs, file_size=size)
            fragment.ensure_complete_metadata()
            self._fragments.put(key, fragment)
        return fragment, fs

    def trace_row_groups(self, paths: Iterable[str], keys: set[int]) -> dict[str, list[int] | None]:
        """Per data file: its row groups that may hold a trace with one of ``keys`` (None: unknown)."""
        listed = list(paths)
        return dict(zip(listed, self._pool.map(lambda path: self._lookup(path, keys), listed), strict=True))

    def _lookup(self, path: str, keys: set[int]) -> list[int] | None:
        index = traceindex.index_path(path)
        if index is None:
            return None
        cached = self._indexes.get(index)
        if cached is False:
            return None
        try:
            if not isinstance(cached, ds.ParquetFileFragment):
                cached = _FORMAT.make_fragment(index, self.fs)
                cached.ensure_complete_metadata()
                self._indexes.put(index, cached)
            return traceindex.row_groups(cached, keys)
        except FileNotFoundError:
            self._indexes.put(index, False)
            return None
        except (OSError, ValueError):
            return None  # unreadable now: read the whole file rather than fail or miss rows

    def close(self) -> None:
        self._pool.shutdown(wait=False)
