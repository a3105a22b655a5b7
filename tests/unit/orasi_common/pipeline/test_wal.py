"""The write-ahead log: append/ack/recover, damage on disk, segment lifecycle, limits, failures.

Frames on disk are ``u32 length | u32 crc32 | u8 kind | u64 lsn | payload`` (see wal.py); the tests
damage real files the way a crash or a bad disk would, and make the directory unusable the way
that stops root too (a regular file where the directory should be; a full filesystem).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import subprocess
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orasi_common.errors import Throttled, Unavailable
from orasi_common.pipeline import wal as wal_module
from orasi_common.pipeline.wal import MIB, WalConfig, WriteAheadLog, read_payload

HEADER = 8  # u32 length, u32 crc
BODY_HEAD = 9  # u8 kind, u64 lsn


def frame_size(payload: bytes) -> int:
    return HEADER + BODY_HEAD + len(payload)


def payloads(n: int, size: int = 100) -> list[bytes]:
    return [f"record-{i:04d}-".encode().ljust(size, b"x") for i in range(n)]


class Logs:
    """Opens logs in one directory and closes every one of them at the end of the test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt: list[int] = []
        self._opened: list[WriteAheadLog] = []

    async def open(self, **kwargs: object) -> tuple[WriteAheadLog, list[tuple[int, bytes]]]:
        """A log over the directory and what it recovered, as (lsn, payload) pairs."""
        options: dict[str, object] = {"max_bytes": 64 * MIB, "fsync_interval": 0.001}
        options.update(kwargs)
        log = WriteAheadLog(self.directory, on_corrupt=self.corrupt.append, **options)  # type: ignore[arg-type]
        self._opened.append(log)
        recovered = await log.open()
        pending = [(lsn, read_payload(location)) for lsn, location in recovered.pending]
        return log, pending

    async def reopen(
        self, log: WriteAheadLog, **kwargs: object
    ) -> tuple[WriteAheadLog, list[tuple[int, bytes]]]:
        await log.close()
        return await self.open(**kwargs)

    async def close(self) -> None:
        for log in self._opened:
            # A log whose sync task died re-raises its error here (the test has reported it) and
            # leaves its file open: close that too, or its ResourceWarning ends the session.
            try:
                await log.close()
            except Exception:
                log._close_file()

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.wal"), key=lambda p: int(p.stem, 16))


@pytest.fixture
async def logs(tmp_path: Path) -> AsyncIterator[Logs]:
    made = Logs(tmp_path / "wal")
    yield made  # pytest runs what follows the yield whether the test passed or failed
    await made.close()


# --- append, ack, recover ---------------------------------------------------------------------


async def test_append_returns_increasing_lsns_and_readable_locations(logs: Logs) -> None:
    log, pending = await logs.open()
    assert pending == []
    records = payloads(3)
    appended = [await log.append(p) for p in records]
    assert [lsn for lsn, _ in appended] == [1, 2, 3]
    assert [read_payload(location) for _, location in appended] == records
    assert log.size_bytes == sum(frame_size(p) for p in records)


async def test_recovery_replays_unacknowledged_records_in_order(logs: Logs) -> None:
    log, _ = await logs.open()
    records = payloads(5)
    for p in records:
        await log.append(p)
    log.ack(2)
    log.ack(4)
    log, pending = await logs.reopen(log)
    assert pending == [(1, records[0]), (3, records[2]), (5, records[4])]
    assert logs.corrupt == []


async def test_recovery_after_a_crash_without_close(logs: Logs) -> None:
    """append returned: the record is on disk even if close() never runs (durable by default)."""
    log, _ = await logs.open()
    records = payloads(3)
    for p in records:
        await log.append(p)
    # A second log over the same directory reads what the first made durable, as after a SIGKILL.
    _, pending = await logs.open()
    assert [p for _, p in pending] == records


async def test_lsns_continue_after_a_restart(logs: Logs) -> None:
    log, _ = await logs.open()
    for p in payloads(3):
        await log.append(p)
    log.ack(3)
    log, pending = await logs.reopen(log)
    assert [lsn for lsn, _ in pending] == [1, 2]
    lsn, _ = await log.append(b"after restart")
    assert lsn == 4
    log, pending = await logs.reopen(log)
    assert [lsn for lsn, _ in pending] == [1, 2, 4]
    assert pending[-1][1] == b"after restart"


async def test_ack_frames_suppress_replay(logs: Logs) -> None:
    log, _ = await logs.open()
    for p in payloads(4):
        await log.append(p)
    for lsn in (1, 2, 3):
        log.ack(lsn)
    assert len(logs.segments()) == 1  # still holds record 4, and the ACK frames of 1-3
    log, pending = await logs.reopen(log)
    assert [lsn for lsn, _ in pending] == [4]
    log.ack(4)
    log, pending = await logs.reopen(log)
    assert pending == []
    assert logs.segments() == []  # fully acknowledged: nothing is left on disk


async def test_ack_of_an_unknown_or_repeated_lsn_is_ignored(logs: Logs) -> None:
    log, _ = await logs.open()
    await log.append(b"one")
    log.ack(1)
    log.ack(1)
    log.ack(99)
    log, pending = await logs.reopen(log)
    assert pending == []


async def test_acknowledged_records_stay_acknowledged_across_two_restarts(logs: Logs) -> None:
    """An ACK frame lives in a later segment than its DATA frame; deleting that later segment
    (because its own records are all acknowledged) must not bring the acknowledged record back.

    Segment A holds DATA 1, DATA 2; segment B holds ACK 1, DATA 3, ACK 3. The first recovery
    replays only 2 — and deletes B, which is fully acknowledged, taking ACK 1 with it.
    """
    a, b, c = payloads(3)
    log, _ = await logs.open(segment_bytes=2 * frame_size(a))
    await log.append(a)
    await log.append(b)
    log.ack(1)  # A is full: the ACK frame opens segment B
    await log.append(c)  # B
    log.ack(3)  # B
    assert len(logs.segments()) == 2
    log, pending = await logs.reopen(log, segment_bytes=2 * frame_size(a))
    assert [lsn for lsn, _ in pending] == [2]
    log, pending = await logs.reopen(log, segment_bytes=2 * frame_size(a))
    assert [lsn for lsn, _ in pending] == [2], "record 1 was acknowledged, yet it is replayed again"


async def test_acknowledgements_survive_deleting_the_segment_that_holds_them(logs: Logs) -> None:
    """The same at run time: when a finished segment is deleted, the ACK frames it holds for
    records of older, still live segments must not be lost with it."""
    record = payloads(1)[0]
    segment_bytes = frame_size(record) + HEADER + BODY_HEAD  # room for one DATA and one ACK frame
    log, _ = await logs.open(segment_bytes=segment_bytes)
    await log.append(record)  # lsn 1, segment A
    await log.append(record)  # lsn 2, segment A (now full)
    log.ack(1)  # ACK 1 → segment B
    await log.append(record)  # lsn 3 → B (now full)
    await log.append(record)  # lsn 4 → C
    assert len(logs.segments()) == 3
    log.ack(3)  # B has no live record left and is not the newest: it is deleted, ACK 1 with it
    log, pending = await logs.reopen(log, segment_bytes=segment_bytes)
    assert [lsn for lsn, _ in pending] == [2, 4], "record 1 was acknowledged, yet it is replayed"


async def test_from_config_uses_a_sub_directory_per_component(tmp_path: Path) -> None:
    config = WalConfig(directory=str(tmp_path), max_size_mib=2, durable=True, fsync_interval=0.001)
    log = WriteAheadLog.from_config(config, "otlp/primary")
    assert log.directory == tmp_path / "otlp_primary"
    assert log.max_bytes == 2 * MIB
    await log.open()
    try:
        await log.append(b"x")
    finally:
        await log.close()
    assert [p.parent.name for p in await asyncio.to_thread(lambda: list(tmp_path.rglob("*.wal")))] == [
        "otlp_primary"
    ]


# --- damage on disk ---------------------------------------------------------------------------


async def _three_records(logs: Logs) -> tuple[list[bytes], Path]:
    log, _ = await logs.open()
    records = payloads(3)
    for p in records:
        await log.append(p)
    await log.close()
    (segment,) = logs.segments()
    return records, segment


async def test_torn_tail_is_skipped_and_counted(logs: Logs) -> None:
    records, segment = await _three_records(logs)
    size = segment.stat().st_size
    with segment.open("r+b") as file:
        file.truncate(size - frame_size(records[2]) // 2)  # the crash tore the last frame in half
    _, pending = await logs.open()
    assert [p for _, p in pending] == records[:2]
    assert logs.corrupt == [1]


async def test_torn_header_is_skipped_and_counted(logs: Logs) -> None:
    records, segment = await _three_records(logs)
    with segment.open("r+b") as file:
        file.truncate(2 * frame_size(records[0]) + 5)  # not even a whole header of frame 3
    _, pending = await logs.open()
    assert [p for _, p in pending] == records[:2]
    assert logs.corrupt == [1]


async def test_flipped_byte_in_a_middle_frame_ends_the_replay_there(logs: Logs) -> None:
    records, segment = await _three_records(logs)
    data = bytearray(segment.read_bytes())
    data[frame_size(records[0]) + HEADER + BODY_HEAD + 10] ^= 0xFF  # inside record 2's payload
    segment.write_bytes(bytes(data))
    _, pending = await logs.open()
    assert [p for _, p in pending] == records[:1]  # what precedes the damage is replayed
    assert logs.corrupt == [1]


async def test_corrupt_length_field_does_not_read_past_the_file(logs: Logs) -> None:
    records, segment = await _three_records(logs)
    data = bytearray(segment.read_bytes())
    data[frame_size(records[0]) : frame_size(records[0]) + 4] = (0x7FFFFFFF).to_bytes(4, "little")
    segment.write_bytes(bytes(data))
    _, pending = await logs.open()
    assert [p for _, p in pending] == records[:1]
    assert logs.corrupt == [1]


async def test_a_frame_with_a_valid_checksum_but_unknown_kind_counts_as_damage(logs: Logs) -> None:
    records, segment = await _three_records(logs)
    body = bytes([7]) + (99).to_bytes(8, "little") + b"junk"
    with segment.open("ab") as file:
        file.write(len(body).to_bytes(4, "little") + zlib.crc32(body).to_bytes(4, "little") + body)
    _, pending = await logs.open()
    assert [p for _, p in pending] == records
    assert logs.corrupt == [1]


async def test_damage_in_one_segment_does_not_hide_later_segments(logs: Logs) -> None:
    records = payloads(4)
    log, _ = await logs.open(segment_bytes=2 * frame_size(records[0]))
    for p in records:
        await log.append(p)
    await log.close()
    first, second = logs.segments()
    with first.open("r+b") as file:
        file.truncate(first.stat().st_size - 3)
    _, pending = await logs.open()
    assert [p for _, p in pending] == [records[0], records[2], records[3]]
    assert logs.corrupt == [1]
    assert second.exists()


async def test_a_clean_log_reports_no_damage(logs: Logs) -> None:
    records, _ = await _three_records(logs)
    _, pending = await logs.open()
    assert [p for _, p in pending] == records
    assert logs.corrupt == []


async def test_appends_after_recovering_a_torn_segment_are_replayed_too(logs: Logs) -> None:
    """New records go to a new segment, not after the torn tail where recovery would miss them."""
    records, segment = await _three_records(logs)
    with segment.open("r+b") as file:
        file.truncate(segment.stat().st_size - 7)
    log, pending = await logs.open()
    assert [p for _, p in pending] == records[:2]
    await log.append(b"after the tear")
    log, pending = await logs.reopen(log)
    assert [p for _, p in pending] == [*records[:2], b"after the tear"]


# --- segment lifecycle and limits -------------------------------------------------------------


async def test_segments_rotate_and_are_deleted_once_fully_acknowledged(logs: Logs) -> None:
    records = payloads(10)
    segment_bytes = 2 * frame_size(records[0])
    log, _ = await logs.open(segment_bytes=segment_bytes)
    appended = [await log.append(p) for p in records]
    written = logs.segments()
    assert len(written) == 5  # two records per segment
    full = log.size_bytes
    for lsn, _ in appended[:4]:  # every record of the first two segments
        log.ack(lsn)
    assert [p.exists() for p in written] == [False, False, True, True, True]
    assert log.size_bytes < full
    for lsn, _ in appended[4:]:
        log.ack(lsn)
    assert not any(p.exists() for p in written)
    assert len(logs.segments()) <= 1  # at most a segment of ACK frames, until it rotates
    log, pending = await logs.reopen(log, segment_bytes=segment_bytes)
    assert pending == []
    assert logs.segments() == []


async def test_recovery_deletes_leading_segments_that_are_fully_acknowledged(logs: Logs) -> None:
    records = payloads(6)
    log, _ = await logs.open(segment_bytes=2 * frame_size(records[0]))
    for p in records:
        await log.append(p)
    first = logs.segments()[0]
    log.ack(1)
    log.ack(2)
    log.ack(4)
    await log.close()
    _, pending = await logs.open(segment_bytes=2 * frame_size(records[0]))
    assert [lsn for lsn, _ in pending] == [3, 5, 6]
    assert not first.exists()


async def test_full_log_refuses_with_throttled_until_segments_are_freed(logs: Logs) -> None:
    records = payloads(4)
    size = frame_size(records[0])
    log, _ = await logs.open(max_bytes=3 * size, segment_bytes=size)
    for p in records[:3]:
        await log.append(p)
    with pytest.raises(Throttled) as caught:
        await log.append(records[3])
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert "full" in caught.value.message
    log.ack(1)  # frees its segment
    lsn, _ = await log.append(records[3])
    assert lsn == 4  # the refused append took no lsn
    log, pending = await logs.reopen(log, max_bytes=3 * size, segment_bytes=size)
    assert [p for _, p in pending] == records[1:]


async def test_a_record_larger_than_the_whole_log_is_let_in_when_the_log_is_empty(logs: Logs) -> None:
    log, _ = await logs.open(max_bytes=64)
    lsn, location = await log.append(b"y" * 1000)
    assert read_payload(location) == b"y" * 1000
    with pytest.raises(Throttled):
        await log.append(b"z")
    log.ack(lsn)


async def test_a_log_smaller_than_a_segment_frees_room_as_records_are_acknowledged(logs: Logs) -> None:
    """The capacity bounds what is *pending*: a log that delivered everything must take more.

    With the default 64 MiB segments and max_bytes below that, acknowledged bytes stay in the
    segment being written, so a log that once held max_bytes refuses forever although empty.
    """
    record = payloads(1, size=1000)[0]
    log, _ = await logs.open(max_bytes=20 * frame_size(record))
    rounds = 0
    for _ in range(100):
        lsn, _ = await log.append(record)  # (raised Throttled after 20 records before 5b3a806)
        log.ack(lsn)
        rounds += 1
    assert rounds == 100


# --- write failures ---------------------------------------------------------------------------


async def test_directory_replaced_by_a_file_fails_appends_with_unavailable_then_recovers(logs: Logs) -> None:
    """Root ignores permission bits, but not a regular file where a directory should be."""
    log, _ = await logs.open()
    moved = logs.directory.with_name("wal-moved")
    logs.directory.rename(moved)
    logs.directory.write_bytes(b"not a directory")
    with pytest.raises(Unavailable) as caught:
        await log.append(b"refused")
    assert str(logs.directory) in caught.value.message
    assert "write-ahead log" in caught.value.message
    with pytest.raises(Unavailable):
        await log.append(b"refused again")
    logs.directory.unlink()
    moved.rename(logs.directory)
    await log.append(b"accepted")
    log, pending = await logs.reopen(log)
    assert [p for _, p in pending] == [b"accepted"]


async def test_a_new_segment_in_a_vanished_directory_fails_then_resumes(logs: Logs) -> None:
    """Rotation needs the directory: with it gone the log refuses, and goes on once it is back."""
    records = payloads(4)
    segment_bytes = frame_size(records[0])
    log, _ = await logs.open(segment_bytes=segment_bytes)
    await log.append(records[0])
    moved = logs.directory.with_name("wal-moved")
    logs.directory.rename(moved)
    logs.directory.write_bytes(b"")
    with pytest.raises(Unavailable):
        await log.append(records[1])  # needs a new segment
    logs.directory.unlink()
    moved.rename(logs.directory)
    await log.append(records[2])
    await log.append(records[3])
    log, pending = await logs.reopen(log, segment_bytes=segment_bytes)
    assert [p for _, p in pending] == [records[0], records[2], records[3]]
    assert logs.corrupt == []


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills up, for root as for anyone."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs: {result.stderr.strip()}", pytrace=False)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb", buffering=0) as file:
        for size in (65536, 4096, 1):
            while True:
                try:
                    file.write(b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break


async def test_full_disk_fails_appends_with_unavailable_and_keeps_earlier_records(
    tiny_filesystem: Path,
) -> None:
    logs = Logs(tiny_filesystem / "wal")
    try:
        log, _ = await logs.open()
        kept = payloads(3)
        for p in kept:
            await log.append(p)
        filler = tiny_filesystem / "filler"
        _fill(filler)
        with pytest.raises(Unavailable) as caught:
            await log.append(b"z" * 8192)
        assert "No space left on device" in caught.value.message
        filler.unlink()
        await log.append(b"after the disk was freed")
        log, pending = await logs.reopen(log)
        replayed = [p for _, p in pending]
        assert replayed[:3] == kept
        assert replayed[-1] == b"after the disk was freed"
        assert set(replayed) <= {*kept, b"z" * 8192, b"after the disk was freed"}  # refused: may come back
    finally:
        await logs.close()


# --- durability and group commit --------------------------------------------------------------


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(wal_module.os, "fsync", counting)
    return calls


async def test_durable_append_waits_for_the_group_fsync(logs: Logs, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = _count_fsyncs(monkeypatch)
    log, _ = await logs.open(fsync_interval=1.0)
    append = asyncio.create_task(log.append(b"waits"))
    await asyncio.sleep(0.2)
    assert not append.done(), "a durable append returned before its group's fsync"
    assert fsyncs == []
    await asyncio.wait_for(append, timeout=10)
    assert len(fsyncs) >= 1  # the segment (and, for a new segment, its directory)


async def test_fsync_bytes_triggers_the_sync_without_waiting_for_the_interval(logs: Logs) -> None:
    log, _ = await logs.open(fsync_interval=30.0, fsync_bytes=1000)
    await asyncio.wait_for(log.append(b"b" * 2000), timeout=10)


async def test_not_durable_returns_before_fsync(logs: Logs, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = _count_fsyncs(monkeypatch)
    log, _ = await logs.open(fsync_interval=30.0, durable=False)
    records = payloads(5)
    for p in records:
        await asyncio.wait_for(log.append(p), timeout=1)
    assert fsyncs == []
    log, pending = await logs.reopen(log)  # close() flushes and syncs
    assert [p for _, p in pending] == records


async def test_concurrent_appends_share_fsyncs(logs: Logs, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = _count_fsyncs(monkeypatch)
    log, _ = await logs.open(fsync_interval=0.05)
    results = await asyncio.gather(*(log.append(p) for p in payloads(50)))
    assert sorted(lsn for lsn, _ in results) == list(range(1, 51))
    assert 1 <= len(fsyncs) < 10


async def test_close_is_idempotent_and_refuses_later_appends(logs: Logs) -> None:
    log, _ = await logs.open()
    await log.append(b"kept")
    await log.close()
    await log.close()
    with pytest.raises(Unavailable):
        await log.append(b"too late")
    _, pending = await logs.open()
    assert [p for _, p in pending] == [b"kept"]


async def test_every_segment_holding_an_acknowledged_record_is_fsynced(
    logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation between a write and its group's fsync must not leave the old segment unsynced:
    ``append`` returned, so its record must be on stable storage, not only in the page cache."""
    synced: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(wal_module.os, "fsync", recording)
    records = payloads(3)
    log, _ = await logs.open(segment_bytes=frame_size(records[0]), fsync_interval=0.01)
    await asyncio.gather(*(log.append(p) for p in records))  # one group commit, three segments
    segments = [p.name for p in logs.segments()]
    assert len(segments) == 3
    unsynced = [name for name in segments if name not in synced]
    assert not unsynced, f"acknowledged records sit in segments never fsynced: {unsynced}"


async def test_appends_keep_completing_while_segments_rotate_under_concurrent_load(logs: Logs) -> None:
    """The group commit syncs in a worker thread while the event loop goes on appending; a
    rotation that closes the segment being synced must not stop the log (every later durable
    append would wait forever)."""
    log, _ = await logs.open(segment_bytes=3 * frame_size(payloads(1)[0]), fsync_interval=0.0)
    rng = random.Random(7)
    completed = 0

    async def writer() -> None:
        nonlocal completed
        for _ in range(150):
            lsn, _ = await log.append(payloads(1)[0])
            completed += 1
            if rng.random() < 0.5:
                log.ack(lsn)
            await asyncio.sleep(rng.random() * 0.0005)

    try:
        async with asyncio.timeout(15):
            await asyncio.gather(*(writer() for _ in range(8)))
    except TimeoutError:
        pytest.fail(f"durable appends stopped completing after {completed} of 1200", pytrace=False)
    assert completed == 1200
