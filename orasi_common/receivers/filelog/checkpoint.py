"""Committed offsets of the files a `filelog` receiver reads, kept in one JSON file.

An entry per file, keyed by the file's identity (device:inode), holds the path it was read at,
the fingerprint of its first bytes (a reused inode or a file rewritten in place is not taken for
the old one), the committed ``offset`` — every line before it is in a batch the next consumer
accepted — and ``pending``, the end of the block being handed on: written before the batch is
offered, so that after a crash the same bytes are read again as the same batch (the same batch
id, which the lake keeps once) before reading on. The file is replaced atomically (write, then
rename), so a crash leaves the previous or the new version, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class Entry:
    path: str
    fingerprint: str
    fingerprint_bytes: int
    offset: int
    pending: int | None = None


class Checkpoints:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.entries: dict[str, Entry] = {}

    def load(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            document = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except ValueError as error:
            raise ValueError(
                f"the filelog checkpoint {self._path} is not JSON ({error}); remove it"
            ) from None
        self.entries = {key: Entry(**value) for key, value in document.get("files", {}).items()}

    def save(self) -> None:
        """Write every entry (blocking: call from a thread)."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        files = {
            key: {
                "path": e.path,
                "fingerprint": e.fingerprint,
                "fingerprint_bytes": e.fingerprint_bytes,
                "offset": e.offset,
                "pending": e.pending,
            }
            for key, e in self.entries.items()
        }  # (what dataclasses.asdict gives, without its deep copies: once per block read)
        tmp.write_text(json.dumps({"files": files}))
        os.replace(tmp, self._path)

    def forget(self, key: str) -> None:
        with contextlib.suppress(KeyError):
            del self.entries[key]
