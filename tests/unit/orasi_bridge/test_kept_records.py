"""The lake writer's log records of batches accepted in part (``kept.py``): the batch record comes
back unchanged, with exactly the rows marked kept."""

from __future__ import annotations

import numpy as np
import pytest

from orasi_bridge.lake import kept
from orasi_common.pdata import Batch, Signal

from ..builders import batch_with


@pytest.mark.parametrize("rows", [1, 7, 8, 9, 1000])
def test_a_record_keeps_its_batch_and_which_rows_were_kept(rows: int) -> None:
    batch = batch_with(Signal.TRACES, 3, tenant="t")
    marks = np.random.default_rng(rows).random(rows) < 0.5
    payload, back = kept.parse(kept.record(batch.to_record(), marks))
    assert back is not None and back.tolist() == marks.tolist()
    again = Batch.from_record(payload)
    assert (again.batch_id, again.tenant, again.items, again.raw) == (batch.batch_id, "t", 3, batch.raw)


def test_a_batch_kept_whole_is_its_plain_record() -> None:
    record = batch_with(Signal.LOGS, 2).to_record()
    assert kept.record(record, None) == record
    assert kept.parse(record) == (record, None)
