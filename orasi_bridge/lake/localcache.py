"""Copies, on the bridge's own disk, of the data files it wrote most recently (``local_cache``).

A flush encodes each Parquet file once, into this directory, then uploads that file; queries
read the local copy while it is kept, instead of fetching the object again. Files are named by
a hash of their warehouse path and are immutable, so a copy is either complete (renamed into
place after the upload succeeded) or absent. The directory is bounded: after each write the
oldest copies are deleted until it holds at most ``max_mib``. Readers therefore treat a copy as
a hint (``get`` checks it still exists) and fall back to the warehouse.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from pydantic import Field

from orasi_common.config.model import ComponentConfig

MIB = 1024 * 1024


class LocalCacheConfig(ComponentConfig):
    directory: str = Field(description="Directory for the copies (created when missing).")
    max_mib: float = Field(default=4096, gt=0, description="Size past which the oldest copies are deleted.")


class LocalCache:
    """Local copies of data files, keyed by their warehouse path; thread-safe."""

    def __init__(self, config: LocalCacheConfig) -> None:
        self.directory = Path(config.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_bytes = int(config.max_mib * MIB)
        self._lock = threading.Lock()

    def _name(self, path: str) -> Path:
        return self.directory / f"{hashlib.sha256(path.encode()).hexdigest()[:40]}.parquet"

    def staging(self, path: str) -> Path:
        """Where to write the file for ``path`` before it is uploaded (a temporary name)."""
        return self.directory / f"{self._name(path).name}.{threading.get_ident()}.tmp"

    def keep(self, staged: Path, path: str) -> None:
        """The upload of ``staged`` as ``path`` succeeded: keep it as the copy, then trim."""
        os.replace(staged, self._name(path))
        self._trim()

    def get(self, path: str) -> str | None:
        """The local copy of ``path``, if one is kept now."""
        local = self._name(path)
        return str(local) if local.exists() else None

    def _trim(self) -> None:
        with self._lock:
            copies = []
            for entry in os.scandir(self.directory):
                if entry.name.endswith(".parquet"):
                    status = entry.stat()
                    copies.append((status.st_mtime_ns, status.st_size, entry.path))
            total = sum(size for _, size, _ in copies)
            for _, size, name in sorted(copies):
                if total <= self._max_bytes:
                    break
                Path(name).unlink(missing_ok=True)
                total -= size
