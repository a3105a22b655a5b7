"""Committed offsets of the files a `filelog` receiver reads, kept in one file of two slots.

An entry per file, keyed by the file's identity (device:inode), holds the path it was read at,
the fingerprint of its first bytes (a reused inode or a file rewritten in place is not taken for
the old one), the committed ``offset`` — every line before it is in a batch the next consumer
accepted — and ``pending``, the end of the block being handed on: written before the batch is
offered, so that after a crash the same bytes are read again as the same batch (the same batch
id, which the lake keeps once) before reading on.

The file (``<receiver>.checkpoint``) holds two slots of ``slot_size`` bytes (a multiple of the
4 KiB page), at 0 and at ``slot_size``; each save writes every entry into the slot not written
last, in place (``pwrite``)::

    slot = magic "\\xffFC1" | u32 slot_size | u64 sequence | u32 length | u32 crc32 | payload
    payload = JSON {"files": {key: {path, fingerprint, fingerprint_bytes, offset, pending}}}

(little-endian; the CRC covers the head before it and the payload). The reader takes the valid
slot with the highest sequence: a write torn by a power loss spoils only the slot it was
writing, and the other still holds the save before it. A save that holds a new pending end is
made durable (``fdatasync``) before its batch is offered: after a power loss the WAL holds no
batch whose block the checkpoint does not name, so the block is read again with the same bounds
(the same batch id). A save that only moves offsets to pending ends is not synced: losing it
reads those pending blocks again as the same batches. Creating the file, growing its slots
(entries that outgrow a slot) and every start write a new file and rename it over the old one
(fsynced, with its directory): once per start, not per block.

A checkpoint in the former form (``<receiver>.json``, the same JSON replaced by a rename) is
read once when no slot file exists, written in the new form, and removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = 4096
MAGIC = b"\xffFC1"  # (not ASCII: never inside a JSON payload, which is)
_HEAD = struct.Struct("<4sIQII")  # magic, slot size, sequence, payload length, crc32
_CRC = slice(4, _HEAD.size - 4)  # the head's bytes the checksum covers with the payload


@dataclass(slots=True)
class Entry:
    path: str
    fingerprint: str
    fingerprint_bytes: int
    offset: int
    pending: int | None = None


class CheckpointError(ValueError):
    """The checkpoint file cannot be read (no valid slot, or a former JSON file that is not JSON)."""


def read(path: Path) -> tuple[dict[str, Entry], int]:
    """The entries of the slot file ``path`` and their sequence: the valid slot with the highest
    sequence. Raises FileNotFoundError, or CheckpointError when no slot is valid."""
    data = path.read_bytes()
    best: tuple[int, bytes] | None = None
    for at in range(0, len(data), PAGE):  # slots start at page boundaries
        found = _slot(data, at)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    if best is None:
        raise CheckpointError(
            f"the filelog checkpoint {path} holds no valid slot ({len(data)} bytes); remove it to "
            "read the files again as start_at says"
        )
    return _entries(json.loads(best[1]), path), best[0]


def _slot(data: bytes, at: int) -> tuple[int, bytes] | None:
    """(sequence, payload) of a valid slot at ``at``, or None."""
    if data[at : at + len(MAGIC)] != MAGIC or at + _HEAD.size > len(data):
        return None
    _, slot_size, sequence, length, crc = _HEAD.unpack_from(data, at)
    if slot_size % PAGE or at not in (0, slot_size) or _HEAD.size + length > slot_size:
        return None
    payload = data[at + _HEAD.size : at + _HEAD.size + length]
    head = data[at : at + _HEAD.size]
    if len(payload) != length or zlib.crc32(payload, zlib.crc32(head[_CRC])) != crc:
        return None
    return sequence, payload


def _entries(document: Any, path: Path) -> dict[str, Entry]:
    try:
        return {key: Entry(**value) for key, value in document.get("files", {}).items()}
    except (AttributeError, TypeError) as error:
        raise CheckpointError(
            f"the filelog checkpoint {path} has unknown entries ({error}); remove it"
        ) from None


class Checkpoints:
    """The entries (``entries``, changed by the receiver) and the file they are saved to (none:
    kept in memory only). ``save`` may be called from threads (one at a time is enforced); it
    writes nothing before ``load`` (a shutdown without a start keeps the file as it is) nor after
    ``close``."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._slot_size = 0
        self._sequence = 0
        self._next = 0  # the slot the next save writes
        self._closed = True  # until load

    @property
    def former_path(self) -> Path | None:
        """Where the former JSON checkpoint of this receiver was kept."""
        return None if self._path is None else self._path.with_suffix(".json")

    def load(self) -> None:
        """Read the entries (blocking), upgrading a former JSON checkpoint, and write them back
        as a new file: the slots start from a known layout whatever the file was."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        former = self.former_path
        assert former is not None
        with self._lock:
            self._closed = False
            try:
                self.entries, self._sequence = read(self._path)
            except FileNotFoundError:
                try:
                    document = json.loads(former.read_text())
                except FileNotFoundError:
                    document = {}  # the first start
                except ValueError as error:
                    raise CheckpointError(
                        f"the filelog checkpoint {former} is not JSON ({error}); remove it"
                    ) from None
                self.entries = _entries(document, former)
            self._rewrite(self._payload())
            for stale in (former, former.with_suffix(".tmp")):  # the former form, now replaced
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def save(self, sync: bool = False) -> None:
        """Write every entry into the next slot (blocking: call from a thread); ``sync``: durable
        before it returns (a save holding a new pending end, before its batch is offered)."""
        if self._path is None:
            return
        with self._lock:
            if self._closed:  # (after close: a read cut short by shutdown, never offered)
                return
            payload = self._payload()
            if self._fd is None or _HEAD.size + len(payload) > self._slot_size:
                self._rewrite(payload)
                return
            self._sequence += 1
            os.pwrite(self._fd, self._slot(payload), self._next * self._slot_size)
            if sync:
                os.fdatasync(self._fd)
            self._next ^= 1

    def close(self) -> None:
        """Close the file (after the last save); saves after it are ignored until ``load``."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def forget(self, key: str) -> None:
        with contextlib.suppress(KeyError):
            del self.entries[key]

    def _payload(self) -> bytes:
        entries = list(self.entries.items())  # (a snapshot: the loop may change entries meanwhile)
        files = {
            key: {
                "path": e.path,
                "fingerprint": e.fingerprint,
                "fingerprint_bytes": e.fingerprint_bytes,
                "offset": e.offset,
                "pending": e.pending,
            }
            for key, e in entries
        }  # (what dataclasses.asdict gives, without its deep copies: once per block read)
        return json.dumps({"files": files}, separators=(",", ":")).encode()

    def _slot(self, payload: bytes) -> bytes:
        head = _HEAD.pack(MAGIC, self._slot_size, self._sequence, len(payload), 0)
        crc = zlib.crc32(payload, zlib.crc32(head[_CRC]))
        return head[:-4] + crc.to_bytes(4, "little") + payload

    def _rewrite(self, payload: bytes) -> None:
        """A new file with the entries in slot 0 (room for twice them), renamed over the old one,
        durable with its directory entry; the next save writes slot 1."""
        assert self._path is not None
        self._slot_size = max(PAGE, -(-2 * (_HEAD.size + len(payload)) // PAGE) * PAGE)
        self._sequence += 1
        tmp = self._path.with_suffix(".checkpoint-tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.pwrite(fd, self._slot(payload).ljust(2 * self._slot_size, b"\x00"), 0)
            os.fsync(fd)
            os.replace(tmp, self._path)
        except BaseException:
            os.close(fd)
            raise
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._next = fd, 1
