"""Waiting batches are converted in runs of about CONVERT_ITEMS items, in arrival order."""

from __future__ import annotations

from orasi_bridge.lake.convert import CONVERT_ITEMS, chunks
from orasi_common.pdata import Batch, Signal


def _batch(items: int, tenant: str) -> Batch:
    return Batch(Signal.TRACES, items, tenant, _raw=b"")


def test_runs_close_once_they_reach_convert_items_and_keep_order() -> None:
    size = CONVERT_ITEMS // 3 + 1  # three of them pass the bound
    a = [(_batch(size, "a"), lsn) for lsn in range(7)]
    b = [(_batch(5, "b"), None)]
    runs = chunks({("spans", "a"): list(a), ("spans", "b"): list(b)})
    assert [(table, tenant, [lsn for _, lsn in run]) for table, tenant, run in runs] == [
        ("spans", "a", [0, 1, 2]),
        ("spans", "a", [3, 4, 5]),
        ("spans", "a", [6]),
        ("spans", "b", [None]),
    ]
    assert all(sum(batch.items for batch, _ in run) < CONVERT_ITEMS + size for _, _, run in runs)
