"""The filelog receiver on real files: a block offered again is the same batch (after a refusal,
and after a restart that finds it pending), files that disappear or are truncated, the bound on
open files, a former JSON checkpoint read on, a file name that is not UTF-8. Every batch it
hands on is one that ``check_request`` accepts, with the items it says."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from orasi_common.errors import Unavailable
from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.validate import check_request
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import filelog
from orasi_common.telemetry.metrics import Metrics

from ...doubles import RecordingConsumer, make_settings


def write_lines(path: Path, start: int, count: int) -> None:
    with path.open("ab") as handle:
        handle.write(b"".join(f"line {seq:05d}\n".encode() for seq in range(start, start + count)))


def bodies(batches: list[Batch]) -> list[str]:
    out = []
    for batch in batches:
        assert check_request(Signal.LOGS, batch.raw) == batch.items  # taken without validation
        request = ExportLogsServiceRequest.FromString(batch.raw)
        out.extend(
            r.body.string_value
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        )
    return out


def receiver(tmp: Path, consumer: Any, metrics: Metrics | None = None, **overrides: Any) -> Any:
    config = filelog.Config.model_validate(
        {
            "include": [f"{tmp}/logs/*.log"],
            "start_at": "beginning",
            "checkpoint_directory": str(tmp / "checkpoints"),
            "poll_interval": 0.01,
            "force_flush_period": 0.05,
            "max_batch_bytes": 4096,
            "max_line_bytes": 1024,
            **overrides,
        }
    )
    return filelog.FACTORY.create(
        make_settings("filelog", Kind.RECEIVER, metrics), config, {Signal.LOGS: consumer}
    )


class Stalling:
    """Takes the first batch, then never answers (the agent dies before the checkpoint moves)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.taken = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.taken.set()
        await asyncio.Event().wait()


async def test_a_pending_block_is_read_again_as_the_same_batch_after_a_restart(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "a.log", 0, 1000)
    stalling = Stalling()
    first = receiver(tmp_path, stalling)
    await first.start()
    async with asyncio.timeout(10):
        await stalling.taken.wait()
    await first.shutdown()  # the "crash": the block is pending in the checkpoint
    (offered,) = stalling.batches

    consumer = RecordingConsumer()
    second = receiver(tmp_path, consumer)
    await second.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 1000)
    finally:
        await second.shutdown()
    again = consumer.batches[0]
    # the same batch id, items and records (only the observed time differs)
    assert (again.batch_id, again.items) == (offered.batch_id, offered.items)
    assert bodies([again]) == bodies([offered])
    assert bodies(consumer.batches) == [f"line {seq:05d}" for seq in range(1000)]


async def test_a_refused_block_is_offered_again_as_the_same_batch(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "a.log", 0, 300)
    consumer = RecordingConsumer(refuse=[Unavailable("the queue is full", retry_after=0.01)])
    tailer = receiver(tmp_path, consumer)
    await tailer.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 300)
    finally:
        await tailer.shutdown()
    assert consumer.calls == len(consumer.batches) + 1
    assert bodies(consumer.batches) == [f"line {seq:05d}" for seq in range(300)]


async def test_truncated_deleted_and_new_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "a.log", 0, 100)
    write_lines(logs / "gone.log", 100, 50)
    consumer = RecordingConsumer()
    tailer = receiver(tmp_path, consumer)
    await tailer.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 150)
        os.truncate(logs / "a.log", 0)  # copytruncate, after the agent read it
        write_lines(logs / "a.log", 1000, 10)
        os.unlink(logs / "gone.log")
        write_lines(logs / "new.log", 2000, 5)
        await consumer.wait_until(lambda: consumer.items == 165)
    finally:
        await tailer.shutdown()
    assert sorted(bodies(consumer.batches)) == sorted(
        [f"line {seq:05d}" for seq in [*range(150), *range(1000, 1010), *range(2000, 2005)]]
    )


async def test_open_files_are_bounded(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for index in range(5):
        write_lines(logs / f"{index}.log", index * 100, 10)
    consumer = RecordingConsumer()
    tailer = receiver(tmp_path, consumer, max_open_files=2)
    await tailer.start()
    try:  # two at a time: files read to their end make room for the others
        await consumer.wait_until(lambda: consumer.items == 50)
        write_lines(logs / "0.log", 1000, 3)  # closed meanwhile: read on from its checkpoint
        await consumer.wait_until(lambda: consumer.items == 53)
    finally:
        await tailer.shutdown()
    assert sorted(bodies(consumer.batches)) == sorted(
        [f"line {seq:05d}" for seq in [*(i * 100 + n for i in range(5) for n in range(10)), 1000, 1001, 1002]]
    )


async def test_a_former_json_checkpoint_is_read_on_from_its_offset(tmp_path: Path) -> None:
    logs, checkpoints = tmp_path / "logs", tmp_path / "checkpoints"
    logs.mkdir()
    checkpoints.mkdir()
    path = logs / "a.log"
    write_lines(path, 0, 200)
    stat = path.stat()
    head = path.read_bytes()[:64]
    offset = len(b"".join(f"line {seq:05d}\n".encode() for seq in range(150)))
    entry = {
        "path": str(path),
        "fingerprint": hashlib.blake2b(head, digest_size=8).hexdigest(),
        "fingerprint_bytes": 64,
        "offset": offset,
        "pending": None,
    }  # as the receiver wrote it before the slot file
    (checkpoints / "filelog.json").write_text(json.dumps({"files": {f"{stat.st_dev}:{stat.st_ino}": entry}}))
    consumer = RecordingConsumer()
    tailer = receiver(tmp_path, consumer)
    await tailer.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 50)
    finally:
        await tailer.shutdown()
    assert bodies(consumer.batches) == [f"line {seq:05d}" for seq in range(150, 200)]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["filelog.checkpoint"]


async def test_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    name = os.fsdecode(b"caf\xe9.log")  # Latin-1: a surrogate in Python's str
    write_lines(tmp_path / "logs" / name, 0, 3)
    write_lines(tmp_path / "logs" / "b.log", 10, 2)
    consumer = RecordingConsumer()
    tailer = receiver(tmp_path, consumer)
    await tailer.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 5)
    finally:
        await tailer.shutdown()
    request = ExportLogsServiceRequest.FromString(next(b for b in consumer.batches if b.items == 3).raw)
    attributes = {
        kv.key: kv.value.string_value
        for kv in request.resource_logs[0].scope_logs[0].log_records[0].attributes
    }
    assert attributes["log.file.name"] == "caf\ufffd.log"
    assert sorted(bodies(consumer.batches)) == [f"line {seq:05d}" for seq in (0, 1, 2, 10, 11)]


async def test_each_pending_end_is_durable_before_its_batch_is_offered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "a.log", 0, 1000)  # several blocks of 4 KiB
    synced: list[int] = []
    fdatasync = os.fdatasync

    def recording(fd: int) -> None:
        fdatasync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    seen: list[int] = []  # syncs done when each batch was offered

    class Noting(RecordingConsumer):
        async def consume(self, batch: Batch) -> None:
            seen.append(len(synced))
            await super().consume(batch)

    consumer = Noting()
    tailer = receiver(tmp_path, consumer)
    await tailer.start()
    try:
        await consumer.wait_until(lambda: consumer.items == 1000)
    finally:
        await tailer.shutdown()
    assert len(seen) >= 3
    assert seen == list(range(1, len(seen) + 1))  # one sync per block, each before its batch
    assert len(synced) == len(seen)  # saves that only commit are not synced
