"""The lake's memory of committed batch ids is bounded by its window."""

from __future__ import annotations

from orasi_bridge.lake.committed import CommittedIds


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_ids_are_remembered_for_the_window_then_forgotten() -> None:
    clock = Clock()
    committed = CommittedIds(60, clock)
    committed.add(["a", "b"])
    clock.now += 30
    committed.add(["c"])
    assert all(i in committed for i in "abc") and len(committed) == 3
    clock.now += 31  # a and b are 61 s old, c 31 s
    committed.add(["d"])
    assert "a" not in committed and "b" not in committed
    assert "c" in committed and "d" in committed and len(committed) == 2


def test_ids_read_back_from_old_commits_are_kept_only_within_the_window() -> None:
    clock = Clock()
    committed = CommittedIds(60, clock)
    committed.add(["too-old"], committed_at=clock.now - 61)
    committed.add(["recent"], committed_at=clock.now - 59)
    assert "too-old" not in committed and "recent" in committed


def test_an_id_committed_again_is_kept_from_its_latest_commit() -> None:
    clock = Clock()
    committed = CommittedIds(60, clock)
    committed.add(["x", "y"])
    clock.now += 50
    committed.add(["x"])
    clock.now += 20  # y is 70 s old, x 20 s
    committed.add(["z"])
    assert "x" in committed and "y" not in committed
