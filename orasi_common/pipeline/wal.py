"""A write-ahead log of opaque records: segment files, checksums, group-commit fsync.

On disk, a directory of segment files ``<first-lsn>.wal``, each a sequence of frames::

    u32 body length | u32 crc32(body) | body = u8 kind | u64 lsn | payload

``kind`` is DATA (a record) or ACK (the DATA record with that lsn was delivered). Appends go
to the newest segment; ``append`` returns once the frame is durable: fsync'd by the group
commit, which waits up to ``fsync_interval`` (or ``fsync_bytes``) for more appends to share
one fsync; with 0 a sync starts as soon as the previous one ends and the appends that arrived
meanwhile share it. With ``durable`` off, ``append`` returns without waiting for the sync.
Segments are deleted, oldest first, once every record in them is acknowledged.

Recovery reads every segment in order; a frame whose length or checksum is wrong (a torn or
corrupt tail) ends that segment's replay, is counted, and is skipped; the records before it
that were not acknowledged are handed back for replay. Writing failures (disk full, directory
not writable) fail the appends concerned with ``Unavailable`` and leave the log usable: the
next append starts a new segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from orasi_common.config.model import ComponentConfig
from orasi_common.errors import Throttled, Unavailable

_HEADER = struct.Struct("<II")  # body length, crc32
_BODY_HEAD = struct.Struct("<BQ")  # kind, lsn
DATA, ACK = 1, 2
_MAX_BODY = 1 << 30
_SUFFIX = ".wal"

log = logging.getLogger("orasi.wal")
MIB = 1024 * 1024


class WalConfig(ComponentConfig):
    directory: str = Field(description="Directory of the log (components use a sub-directory each).")
    max_size_mib: float = Field(default=1024, gt=0, description="Disk the log may use, MiB.")
    durable: bool = Field(
        default=True, description="Acknowledge only after fsync (false: right after the write)."
    )
    fsync_interval: float = Field(
        default=0.0,
        ge=0,
        description="Group commit: seconds appends wait to share one fsync (0: sync at once; "
        "appends arriving during a sync share the next one).",
    )
    fsync_mib: float = Field(default=4, gt=0, description="Group commit: MiB that force an fsync.")


@dataclass(frozen=True)
class Location:
    """Where a DATA record's payload lies."""

    segment: Path
    offset: int
    length: int


@dataclass
class _Segment:
    path: Path
    size: int = 0
    live: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Recovered:
    """What recovery found: unacknowledged records in log order, and damage seen."""

    pending: list[tuple[int, Location]]
    corrupt_frames: int


def _frame(kind: int, lsn: int, payload: bytes = b"") -> bytes:
    body = _BODY_HEAD.pack(kind, lsn) + payload
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _sync_files(retired: list[BinaryIO], current: BinaryIO | None, directory: Path | None) -> None:
    """Flush and fsync rotated-out files (then close them), the current file, and the directory."""
    for file in retired:
        file.flush()
        os.fsync(file.fileno())
        file.close()
    if current is not None:
        current.flush()
        os.fsync(current.fileno())
    if directory is not None:
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def read_payload(location: Location) -> bytes:
    """The payload of a DATA record (blocking)."""
    with location.segment.open("rb") as file:
        file.seek(location.offset)
        data = file.read(location.length)
    if len(data) != location.length:
        raise OSError(f"WAL segment {location.segment.name} is shorter than expected")
    return data


def _scan(path: Path) -> tuple[list[tuple[int, int, Location | None]], int, bool]:
    """Frames of one segment as (kind, lsn, location); the valid length; whether damage was seen."""
    frames: list[tuple[int, int, Location | None]] = []
    with path.open("rb") as file:
        data = file.read()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if length < _BODY_HEAD.size or length > _MAX_BODY or end > len(data):
            return frames, offset, True
        body = data[start:end]
        if zlib.crc32(body) != crc:
            return frames, offset, True
        kind, lsn = _BODY_HEAD.unpack_from(body)
        if kind == DATA:
            payload_offset = start + _BODY_HEAD.size
            frames.append((kind, lsn, Location(path, payload_offset, end - payload_offset)))
        elif kind == ACK:
            frames.append((kind, lsn, None))
        else:
            return frames, offset, True
        offset = end
    return frames, offset, offset != len(data)


class WriteAheadLog:
    @classmethod
    def from_config(
        cls, config: WalConfig, name: str, on_corrupt: Callable[[int], None] | None = None
    ) -> WriteAheadLog:
        """The log in ``<directory>/<name>`` as ``config`` says."""
        return cls(
            Path(config.directory) / name.replace("/", "_"),
            max_bytes=int(config.max_size_mib * MIB),
            fsync_interval=config.fsync_interval,
            fsync_bytes=int(config.fsync_mib * MIB),
            durable=config.durable,
            on_corrupt=on_corrupt,
        )

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 64 * 1024 * 1024,
        fsync_interval: float = 0.0,
        fsync_bytes: int = 4 * 1024 * 1024,
        durable: bool = True,
        on_corrupt: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Several segments fit in the log, so that acknowledged space is given back in pieces.
        self._segment_bytes = min(segment_bytes, max(max_bytes // 8, 64 * 1024))
        self._fsync_interval = fsync_interval
        self._fsync_bytes = fsync_bytes
        self._durable = durable
        self._on_corrupt = on_corrupt
        self._segments: list[_Segment] = []
        self._file: BinaryIO | None = None
        self._retired: list[BinaryIO] = []  # rotated-out files not yet fsync'd
        self._new_file = False
        self._next_lsn = 1
        self._unsynced: list[asyncio.Future[None]] = []
        self._unsynced_bytes = 0
        self._sync_wanted = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None
        self._lsn_segment: dict[int, _Segment] = {}
        self._closed = False

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    async def open(self) -> Recovered:
        """Recover what the directory holds, then accept appends."""
        recovered = await asyncio.to_thread(self._recover)
        if recovered.corrupt_frames and self._on_corrupt is not None:
            self._on_corrupt(recovered.corrupt_frames)
        self._syncer = asyncio.create_task(self._sync_loop(), name=f"wal-sync-{self.directory.name}")
        return recovered

    def _recover(self) -> Recovered:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda p: int(p.stem, 16))
        data: dict[int, tuple[Location, _Segment]] = {}
        acked: set[int] = set()
        corrupt = 0
        for path in paths:
            frames, valid, damaged = _scan(path)
            segment = _Segment(path, path.stat().st_size)
            if damaged:
                corrupt += 1
                log.warning(
                    "A WAL segment ends in a torn or corrupt frame; the rest of it is skipped.",
                    extra={"segment": path.name, "valid_bytes": valid, "size_bytes": segment.size},
                )
            for kind, lsn, location in frames:
                self._next_lsn = max(self._next_lsn, lsn + 1)
                if kind == DATA and location is not None:
                    data[lsn] = (location, segment)
                else:
                    acked.add(lsn)
            self._segments.append(segment)
        pending: list[tuple[int, Location]] = []
        for lsn in sorted(data):
            if lsn in acked:
                continue
            location, segment = data[lsn]
            segment.live.add(lsn)
            self._lsn_segment[lsn] = segment
            pending.append((lsn, location))
        self._collect()
        return Recovered(pending, corrupt)

    def _delete(self, segment: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._segments.remove(segment)

    def _active(self) -> _Segment:
        """The segment appends go to, opening a new one when needed."""
        if self._file is not None and self._segments and self._segments[-1].size < self._segment_bytes:
            return self._segments[-1]
        self._retire_file()
        self._collect()
        path = self.directory / f"{self._next_lsn:016x}{_SUFFIX}"
        self._file = path.open("ab", buffering=1024 * 1024)
        self._new_file = True  # the directory entry must be synced too
        segment = _Segment(path)
        self._segments.append(segment)
        return segment

    def _close_file(self) -> None:
        """Close the current and rotated-out files without syncing (their data is abandoned)."""
        for file in [*self._retired, *([self._file] if self._file is not None else [])]:
            with contextlib.suppress(OSError):
                file.close()
        self._retired.clear()
        self._file = None

    def _write(self, frame: bytes) -> tuple[_Segment, int]:
        """Write a frame to the active segment; return it and the frame's offset."""
        try:
            segment = self._active()
            assert self._file is not None
            self._file.write(frame)
        except OSError as exc:
            self._broken(exc)
        offset = segment.size
        segment.size += len(frame)
        return segment, offset

    def _broken(self, exc: OSError) -> None:
        """Abandon the current file after a write failure; the next append opens a new one.

        Appends still waiting for their sync fail too: their frames may not reach the disk.
        """
        self._close_file()
        error = Unavailable(
            f"the write-ahead log in {self.directory} cannot be written ({exc.strerror or exc}); "
            "data is refused until it can"
        )
        log.error(
            "The write-ahead log cannot be written; data is refused until it can.",
            extra={"directory": str(self.directory), "error": str(exc)},
        )
        waiters, self._unsynced, self._unsynced_bytes = self._unsynced, [], 0
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        raise error from None

    async def append(self, payload: bytes) -> tuple[int, Location]:
        """Log ``payload``; return its lsn and location once it is durable (see ``durable``)."""
        if self._closed:
            raise Unavailable("the write-ahead log is closed")
        frame_size = _HEADER.size + _BODY_HEAD.size + len(payload)
        if self.size_bytes + frame_size > self.max_bytes and self.size_bytes > 0:
            raise Throttled(
                f"the write-ahead log is full ({self.max_bytes} bytes); retry when it drains",
                retry_after=1.0,
            )
        lsn = self._next_lsn
        self._next_lsn += 1
        segment, offset = self._write(_frame(DATA, lsn, payload))
        segment.live.add(lsn)
        self._lsn_segment[lsn] = segment
        location = Location(segment.path, offset + _HEADER.size + _BODY_HEAD.size, len(payload))
        if not self._durable:
            return lsn, location
        waiter = asyncio.get_running_loop().create_future()
        self._unsynced.append(waiter)
        self._unsynced_bytes += frame_size
        self._sync_wanted.set()
        try:
            await waiter
        except Unavailable:
            segment.live.discard(lsn)
            self._lsn_segment.pop(lsn, None)
            raise
        return lsn, location

    def ack(self, lsn: int) -> None:
        """Mark a record delivered; segments go once they and every older one are done."""
        segment = self._lsn_segment.pop(lsn, None)
        if segment is None:
            return
        segment.live.discard(lsn)
        self._collect()
        if segment in self._segments:  # still on disk: its replay must know the record is done
            with contextlib.suppress(Unavailable):
                self._write(_frame(ACK, lsn))

    def _collect(self) -> None:
        """Delete finished segments from the oldest on.

        Only the oldest segments may go: a segment can hold ACK frames for records of older
        segments, so deleting it while those remain would bring the records back at replay.
        """
        while self._segments and not self._segments[0].live:
            if len(self._segments) == 1 and self._file is not None:
                self._retire_file()  # the segment being written is finished too: start afresh
            self._delete(self._segments[0])

    def _retire_file(self) -> None:
        """Stop writing the current file; the next sync fsyncs and closes it."""
        if self._file is not None:
            self._retired.append(self._file)
            self._file = None

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wanted.wait()
            if self._fsync_interval and self._unsynced_bytes < self._fsync_bytes:
                await asyncio.sleep(self._fsync_interval)  # let a group of appends gather
            self._sync_wanted.clear()
            waiters, self._unsynced, self._unsynced_bytes = self._unsynced, [], 0
            error: Unavailable | None = None
            try:
                await asyncio.to_thread(_sync_files, *self._sync_job())
            except (OSError, ValueError) as exc:  # ValueError: the file was abandoned meanwhile
                self._close_file()
                error = Unavailable(
                    f"the write-ahead log in {self.directory} cannot be synced "
                    f"({getattr(exc, 'strerror', None) or exc}); data is refused until it can"
                )
            for waiter in waiters:
                if waiter.done():
                    continue
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    def _sync_job(self) -> tuple[list[BinaryIO], BinaryIO | None, Path | None]:
        """What the next sync covers, taken on the event loop (the thread sees no later change)."""
        retired, self._retired = self._retired, []
        directory = self.directory if self._new_file else None
        self._new_file = False
        return retired, self._file, directory

    async def close(self) -> None:
        """Sync what was written and stop; pending appends complete first."""
        if self._closed:
            return
        self._closed = True
        if self._unsynced:
            await asyncio.gather(*self._unsynced, return_exceptions=True)
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        with contextlib.suppress(OSError, ValueError):
            await asyncio.to_thread(_sync_files, *self._sync_job())
        self._close_file()
