"""The filelog checkpoint's two slots on real files: saves alternate between them in place, a
torn or corrupt slot leaves the other one read, a truncated file keeps what its first slot holds,
a file with no valid slot is refused with its name, slots grow by a new file, a former JSON
checkpoint is read once and replaced, and nothing is written before ``load`` or after ``close``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orasi_common.receivers.filelog.checkpoint import PAGE, CheckpointError, Checkpoints, Entry, read


def entry(offset: int, pending: int | None = None) -> Entry:
    return Entry("/logs/a.log", "0123456789abcdef", 64, offset, pending)


def loaded(path: Path) -> Checkpoints:
    checkpoints = Checkpoints(path)
    checkpoints.load()
    return checkpoints


def saved_twice(path: Path) -> Checkpoints:
    """A checkpoint whose slot 0 holds offset 100 (sequence 2) and slot 1 offset 200 (3)."""
    checkpoints = loaded(path)  # (load writes the empty entries into slot 0, sequence 1)
    checkpoints.entries["1:2"] = entry(100, 150)
    checkpoints.save(sync=True)  # slot 1, sequence 2
    checkpoints.entries["1:2"] = entry(200)
    checkpoints.save()  # slot 0, sequence 3
    checkpoints.close()
    return checkpoints


def test_saves_alternate_between_two_slots_in_place(tmp_path: Path) -> None:
    path = tmp_path / "filelog.checkpoint"
    checkpoints = loaded(path)
    inode = path.stat().st_ino
    for offset in range(1, 6):
        checkpoints.entries["1:2"] = entry(offset * 10, offset * 10 + 5)
        checkpoints.save(sync=offset % 2 == 0)
        assert read(path) == ({"1:2": entry(offset * 10, offset * 10 + 5)}, offset + 1)
    checkpoints.close()
    assert (path.stat().st_ino, path.stat().st_size) == (inode, 2 * PAGE)  # written in place
    assert [p.name for p in tmp_path.iterdir()] == ["filelog.checkpoint"]
    assert loaded(path).entries == {"1:2": entry(50, 55)}


def test_a_corrupt_or_torn_slot_leaves_the_other_one(tmp_path: Path) -> None:
    path = tmp_path / "filelog.checkpoint"
    saved_twice(path)
    good = path.read_bytes()
    assert read(path)[0] == {"1:2": entry(200)}

    garbage = good[:100] + b"\x5a" * 50 + good[150:]  # the newest slot's payload spoilt
    path.write_bytes(garbage)
    assert read(path) == ({"1:2": entry(100, 150)}, 2)

    torn = bytearray(good)  # slot 1 half written over by a save that did not finish
    torn[PAGE + 30 : 2 * PAGE] = bytes(PAGE - 30)
    path.write_bytes(bytes(torn))
    assert read(path) == ({"1:2": entry(200)}, 3)

    head = bytearray(good)  # a sequence that is not the one written: the checksum tells
    head[8] ^= 0x40
    path.write_bytes(bytes(head))
    assert read(path) == ({"1:2": entry(100, 150)}, 2)

    # and the receiver's load goes on from the slot read, in a new file
    path.write_bytes(garbage)
    again = loaded(path)
    assert again.entries == {"1:2": entry(100, 150)}
    again.entries["1:2"] = entry(150)
    again.save()
    again.close()
    assert read(path) == ({"1:2": entry(150)}, 4)


def test_a_truncated_file_keeps_its_first_slot_and_no_valid_slot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "filelog.checkpoint"
    saved_twice(path)
    good = path.read_bytes()
    path.write_bytes(good[:PAGE])  # slot 1 cut off
    assert read(path)[0] == {"1:2": entry(200)}
    path.write_bytes(good[: PAGE + 40])  # slot 1 cut in its payload
    assert read(path)[0] == {"1:2": entry(200)}
    for cut in (60, 0):  # slot 0 cut too, or nothing left
        path.write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match=r"filelog\.checkpoint holds no valid slot"):
            loaded(path)
    path.write_bytes(b"\xff" * 3 * PAGE)  # garbage throughout
    with pytest.raises(CheckpointError, match="remove it"):
        read(path)


def test_slots_grow_with_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "filelog.checkpoint"
    checkpoints = loaded(path)
    many = {
        f"1:{n}": Entry(f"/var/log/pods/ns_pod-{n}_uid/c/0.log", "f" * 16, 64, n, None) for n in range(500)
    }
    checkpoints.entries.update(many)
    checkpoints.save(sync=True)  # past a slot of 4 KiB: a new file of larger slots
    checkpoints.entries["1:0"] = Entry("/a", "f" * 16, 64, 1, 2)
    checkpoints.save()  # in place again
    checkpoints.close()
    assert path.stat().st_size > 2 * PAGE and path.stat().st_size % PAGE == 0
    entries, _ = read(path)
    assert entries == {**many, "1:0": Entry("/a", "f" * 16, 64, 1, 2)}


def test_a_former_json_checkpoint_is_read_once_and_replaced(tmp_path: Path) -> None:
    former = tmp_path / "filelog.json"
    document = {
        "files": {
            "1:2": {
                "path": "/logs/a.log",
                "fingerprint": "0123456789abcdef",
                "fingerprint_bytes": 64,
                "offset": 300,
                "pending": 400,
            },
        }
    }
    former.write_text(json.dumps(document))
    (tmp_path / "filelog.tmp").write_text("{")  # a replacement the former form left half made
    checkpoints = loaded(tmp_path / "filelog.checkpoint")
    assert checkpoints.entries == {"1:2": entry(300, 400)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filelog.checkpoint"]
    assert read(tmp_path / "filelog.checkpoint")[0] == {"1:2": entry(300, 400)}
    checkpoints.close()

    former.write_text("{not json")  # a former file beside a slot file is stale: the slots win
    assert loaded(tmp_path / "filelog.checkpoint").entries == {"1:2": entry(300, 400)}
    assert not former.exists()

    (tmp_path / "filelog.checkpoint").unlink()
    former.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"filelog\.json is not JSON"):
        loaded(tmp_path / "filelog.checkpoint")


def test_nothing_is_written_before_load_or_after_close(tmp_path: Path) -> None:
    path = tmp_path / "filelog.checkpoint"
    saved_twice(path)
    before = path.read_bytes()
    unloaded = Checkpoints(path)  # a shutdown without a start: its entries are empty
    unloaded.save()
    closed = loaded(path)
    written = path.read_bytes()
    closed.close()
    closed.entries.clear()
    closed.save(sync=True)
    assert path.read_bytes() == written != before
    assert read(path)[0] == {"1:2": entry(200)}
    Checkpoints(None).save()  # in memory only: no file anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filelog.checkpoint"]
