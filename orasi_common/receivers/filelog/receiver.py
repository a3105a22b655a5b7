"""The `filelog` receiver: tails files matched by globs into OTLP log records.

Every ``poll_interval`` the receiver scans its globs, opens the files it does not hold yet (at
most ``max_open_files``), and reads each open file from its committed offset, a block of up to
``max_batch_bytes`` at a time (``os.pread`` in a thread), which ``parse.py`` turns into records
and one batch. A file is known by its device and inode, plus a fingerprint of its first bytes:

- rotation by rename: the path names a new inode; the old file stays open and is read to its
  end, then closed; the new one is read from its beginning;
- rotation by copy-truncate: the file is shorter than its offset (or its first bytes changed):
  it is read again from its beginning;
- a file that disappears is read to its end (its descriptor still holds it) and closed once
  idle for ``force_flush_period``; a file that appears is read from its beginning.

At least once, and once in the lake: before a block's batch is offered, its end is written to
the checkpoint as pending (durably: ``checkpoint.py``); once the next consumer (the sending
queue's WAL) accepts it, the offset moves to that end, written with the next block's pending end
(one checkpoint write per block) or when the file's turn ends. The batch id is derived from the
file, its fingerprint and the block's range, so a block offered again — after a refusal, or
after a crash between the acceptance and the checkpoint — is the same batch, which the lake
keeps once; a restart reads a pending block again exactly before reading on.

The batch is made from the encoder's bytes without validating them again
(``Batch.from_own_encoding``): ``parse.py`` writes every request itself, from values it checked
— messages valid UTF-8 (replaced where a block is not), strings without lone surrogates, times
below 2^63 ns (0 otherwise) — and its tests hold every output against ``check_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orasi_common.errors import OrasiError, RetryableError
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.batch import derived_id
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.receivers.filelog.checkpoint import Checkpoints, Entry
from orasi_common.receivers.filelog.config import Config
from orasi_common.receivers.filelog.parse import Encoder, Rules, detect, parse_block, valid_text
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.wire import field, key_values, varint
from orasi_common.version import __version__

SCOPE_NAME = "orasi/receiver/filelog"
TRANSPORT = "file"
FINGERPRINT_BYTES = 64
_BLOCKS_PER_SCAN = 16  # blocks of one file per scan before the next file's turn
_POD_PATH = re.compile(
    r"/var/log/pods/(?P<namespace>[^_/]+)_(?P<pod>[^_/]+)_(?P<uid>[^_/]+)/(?P<container>[^/]+)/(?P<restart>\d+)\.log$"
)
_SCOPE = field(1, field(1, SCOPE_NAME.encode()) + field(2, __version__.encode()))


def kubernetes_attributes(path: str) -> list[tuple[str, str]]:
    match = _POD_PATH.search(path)
    if match is None:
        return []
    return [
        ("k8s.namespace.name", match["namespace"]),
        ("k8s.pod.name", match["pod"]),
        ("k8s.pod.uid", match["uid"]),
        ("k8s.container.name", match["container"]),
        ("k8s.container.restart_count", match["restart"]),
    ]


def _frame(resource: bytes, records: int) -> bytes:
    """What an ExportLogsServiceRequest holds before its records: one ResourceLogs (``resource``:
    its resource field) with one ScopeLogs (this receiver's scope) of ``records`` bytes of records."""
    scope_logs = len(_SCOPE) + records
    resource_logs = len(resource) + 1 + len(varint(scope_logs)) + scope_logs
    return b"\x0a" + varint(resource_logs) + resource + b"\x12" + varint(scope_logs) + _SCOPE


def _fingerprint(fd: int, size: int) -> tuple[str, int]:
    head = os.pread(fd, min(size, FINGERPRINT_BYTES), 0)
    return hashlib.blake2b(head, digest_size=8).hexdigest(), len(head)


@dataclass(slots=True)
class _File:
    key: str
    path: str
    fd: int
    offset: int
    pending: int | None
    fingerprint: str
    fingerprint_bytes: int
    format: str | None
    resource: bytes  # the ResourceLogs.resource field
    attributes: bytes  # the records' own attributes (log.file.*)
    size: int = 0
    idle_since: float = 0.0
    gone: bool = False


class FileLogReceiver:
    def __init__(self, settings: Settings, config: Config, consumers: Mapping[Signal, Consumer]) -> None:
        self.logger = settings.logger
        self._config = config
        self._ingest = Ingest(settings, consumers)
        self._ingest.check_signal(Signal.LOGS)
        self._too_long = settings.metrics.receiver_malformed.labels(settings.id, TRANSPORT, "too_long")
        self._rules = Rules(
            format=config.format,
            line_start=re.compile(config.multiline.line_start_pattern) if config.multiline else None,
            severity_regex=re.compile(config.severity.regex)
            if config.severity and config.severity.regex
            else None,
            severity_field=config.severity.json_field if config.severity else None,
            max_line_bytes=config.max_line_bytes,
        )
        directory = config.checkpoint_directory
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.id)
        self._checkpoints = Checkpoints(Path(directory) / f"{name}.checkpoint" if directory else None)
        self._files: dict[str, _File] = {}
        self._opened_at: dict[str, float] = {}  # when each file was last opened (monotonic)
        self._scope = TaskScope()
        self._stopping = asyncio.Event()
        self._first_scan = True
        self._waiting_logged = False

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        await asyncio.to_thread(self._checkpoints.load)
        await self._scope.open()
        self._scope.spawn(self._run(), name="filelog")
        self.logger.info("File log receiver started.", extra={"include": self._config.include})

    async def shutdown(self) -> None:
        self._stopping.set()
        await self._scope.close(cancel=True)  # a block cut short is pending: read again at start
        for file in self._files.values():
            with contextlib.suppress(OSError):
                os.close(file.fd)
        self._files.clear()
        await asyncio.to_thread(self._checkpoints.save)
        await asyncio.to_thread(self._checkpoints.close)  # (waits for a save still under way)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                found = await asyncio.to_thread(self._scan)
                self._open(found)
                for file in list(self._files.values()):
                    if self._stopping.is_set():
                        return
                    await self._read(file)
            except RetryableError as error:
                await asyncio.sleep(error.retry_after or self._config.poll_interval)
            except Exception:  # a bug must not end the receiver: log it and scan again
                self.logger.exception("File log scan failed; scanning again.")
            self._first_scan = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._config.poll_interval)

    def _scan(self) -> dict[str, tuple[str, int]]:
        """key → (path, size) of every file the globs match now (blocking: run in a thread)."""
        excluded = {path for pattern in self._config.exclude for path in glob.glob(pattern)}
        found: dict[str, tuple[str, int]] = {}
        for pattern in self._config.include:
            for path in sorted(glob.glob(pattern)):
                if path in excluded:
                    continue
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                if os.path.isfile(path):
                    found.setdefault(f"{stat.st_dev}:{stat.st_ino}", (path, stat.st_size))
        return found

    def _open(self, found: dict[str, tuple[str, int]]) -> None:
        """Hold the files ``found``: at most ``max_open_files``; when more wait, files read to
        their end make room (their offsets stay in the checkpoint), those waiting longest first."""
        for key, file in self._files.items():
            file.gone = key not in found
            if not file.gone:
                file.path = found[key][0]
        for key in [key for key in self._checkpoints.entries if key not in found and key not in self._files]:
            self._checkpoints.forget(key)  # deleted while not held
        waiting = sorted(
            (key for key in found if key not in self._files), key=lambda k: self._opened_at.get(k, 0.0)
        )
        room = self._config.max_open_files - len(self._files)
        if len(waiting) > room:
            read = [
                f for f in self._files.values() if not f.gone and f.pending is None and f.offset >= f.size
            ]
            for file in sorted(read, key=lambda f: f.idle_since)[: len(waiting) - room]:
                self._release(file)
            room = self._config.max_open_files - len(self._files)
            if len(waiting) > room and not self._waiting_logged:
                self._waiting_logged = True
                self.logger.warning(
                    "File log receiver holds max_open_files; other files wait for a later scan.",
                    extra={"max_open_files": self._config.max_open_files, "waiting": len(waiting) - room},
                )
        for key in waiting[: max(room, 0)]:
            path, size = found[key]
            try:
                self._files[key] = self._opened(key, path, size)
            except OSError as error:
                self.logger.warning("File log cannot open a file.", extra={"path": path, "error": str(error)})
            self._opened_at[key] = time.monotonic()

    def _opened(self, key: str, path: str, size: int) -> _File:
        fd = os.open(path, os.O_RDONLY)
        fingerprint, fingerprint_bytes = _fingerprint(fd, size)
        entry = self._checkpoints.entries.get(key)
        offset, pending = (size if self._first_scan and self._config.start_at == "end" else 0), None
        if entry is not None and _fingerprint(fd, entry.fingerprint_bytes)[0] == entry.fingerprint:
            # the file it was: its offsets, and its fingerprint as batch ids were derived from it
            offset, pending = entry.offset, entry.pending
            fingerprint, fingerprint_bytes = entry.fingerprint, entry.fingerprint_bytes
        shown = valid_text(path)  # (a name that is not UTF-8 holds surrogates)
        resource = key_values(kubernetes_attributes(shown) if self._config.kubernetes_metadata else [], 1)
        attributes = key_values([("log.file.name", os.path.basename(shown)), ("log.file.path", shown)], 6)
        file = _File(
            key,
            path,
            fd,
            offset,
            pending,
            fingerprint,
            fingerprint_bytes,
            None if self._config.format == "auto" else self._config.format,
            field(1, resource),
            attributes,
            size=size,
            idle_since=time.monotonic(),
        )
        self._remember(file)
        return file

    def _remember(self, file: _File) -> None:
        self._checkpoints.entries[file.key] = Entry(
            file.path, file.fingerprint, file.fingerprint_bytes, file.offset, file.pending
        )

    # --- one file ---------------------------------------------------------------------------

    async def _read(self, file: _File) -> None:
        committed = False  # an offset moved that the checkpoint file does not hold yet
        for _ in range(_BLOCKS_PER_SCAN):
            try:
                batch = await asyncio.to_thread(self._next_block, file)
            except OSError as error:
                self.logger.warning(
                    "File log cannot read a file.", extra={"path": file.path, "error": str(error)}
                )
                self._close(file)
                return
            if batch is None:
                break
            try:
                await self._ingest.consume(batch, TRANSPORT)
            except RetryableError:
                raise  # offered again, the same block, at the next scan
            except OrasiError as error:
                self.logger.warning(
                    "File log records dropped: the pipeline refused them.",
                    extra={"path": file.path, "records": batch.items, "error": error.message},
                )
            assert file.pending is not None
            file.offset, file.pending = file.pending, None
            self._remember(file)
            committed = True
        if committed:  # (each block's pending end was saved with the commits before it)
            await asyncio.to_thread(self._checkpoints.save)
        if file.gone and file.pending is None and file.offset >= file.size and self._idle(file):
            self._close(file)

    def _idle(self, file: _File) -> bool:
        return time.monotonic() - file.idle_since >= self._config.force_flush_period

    def _close(self, file: _File) -> None:
        """Done with ``file`` (gone and read): its checkpoint entry goes too."""
        self._release(file)
        self._checkpoints.forget(file.key)
        self._opened_at.pop(file.key, None)

    def _release(self, file: _File) -> None:
        """Close ``file``, keeping its checkpoint entry: it is read on from there when opened again."""
        with contextlib.suppress(OSError):
            os.close(file.fd)
        self._files.pop(file.key, None)

    def _next_block(self, file: _File) -> Batch | None:
        """The next block of ``file`` as a batch, its end made pending and the checkpoint saved,
        or None (blocking)."""
        size = os.fstat(file.fd).st_size
        if size != file.size:
            file.size, file.idle_since = size, time.monotonic()
        fingerprint = _fingerprint(file.fd, min(size, file.fingerprint_bytes))[0] if size else ""
        if size < file.offset or (
            file.fingerprint_bytes and size >= file.fingerprint_bytes and fingerprint != file.fingerprint
        ):
            self.logger.info(
                "File log reads a truncated file again from its start.",
                extra={"path": file.path, "size": size, "offset": file.offset},
            )
            file.offset, file.pending = 0, None
            file.fingerprint, file.fingerprint_bytes = _fingerprint(file.fd, size)
        grows = file.fingerprint_bytes < FINGERPRINT_BYTES and size > file.fingerprint_bytes
        if grows and file.offset == 0 and file.pending is None:
            file.fingerprint, file.fingerprint_bytes = _fingerprint(file.fd, size)
        if file.pending is not None:  # offered before and not acknowledged: the same bytes again
            block = os.pread(file.fd, file.pending - file.offset, file.offset)
            final = tail = True
        else:
            if file.offset >= size:
                return None
            block = os.pread(file.fd, self._config.max_batch_bytes, file.offset)
            one_line = len(block) == self._config.max_batch_bytes and b"\n" not in block
            tail = one_line or (file.gone and self._idle(file))
            final = tail or file.gone or self._idle(file)
        if file.format is None:
            first = os.pread(file.fd, 4096, 0).split(b"\n", 1)[0]
            file.format = detect(first)
        encoder = Encoder(
            self._rules, file.attributes, time.time_ns(), functools.partial(_frame, file.resource)
        )
        parsed = parse_block(block, file.format, self._rules, encoder, final, tail)
        if parsed.too_long:
            self._too_long.inc(parsed.too_long)
        if not parsed.count:
            if parsed.end:  # nothing but skipped bytes
                file.offset += parsed.end
            return None
        start, end = file.offset, file.offset + parsed.end
        file.pending = end
        self._remember(file)
        self._checkpoints.save(sync=True)  # durable before the batch can be in the WAL
        return Batch.from_own_encoding(
            Signal.LOGS,
            parsed.data,
            parsed.count,
            tenant=self._config.tenant,
            batch_id=derived_id("filelog", file.key, file.fingerprint, str(start), str(end)),
        )
