"""The batch ids the lake committed recently: what makes replays exactly-once, in bounded memory.

Every commit records its batches' ids in its Iceberg snapshot summary, atomically with the data
(``writer``). The writer remembers the ids of the commits of the last ``window`` seconds, read
back from the snapshots at start, and acknowledges a batch with such an id without writing it
again. A replay can only come from an upstream that kept the batch after the lake committed it
(its acknowledgement lost, or the upstream crashed before recording it): it comes within seconds
or minutes, so a window of an hour covers it while the set stays bounded (a set of every id ever
committed grew by one entry per batch for the bridge's whole life). A replay later than the
window is written again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class CommittedIds:
    """Ids with the wall-clock time of their commit, oldest first; those older than ``window``
    seconds are forgotten as newer ones arrive."""

    def __init__(self, window: float, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self._clock = clock
        self._ids: dict[str, float] = {}

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Iterable[str], committed_at: float | None = None) -> None:
        """Remember ``ids`` as committed at ``committed_at`` (now by default); add in commit order."""
        at = self._clock() if committed_at is None else committed_at
        horizon = self._clock() - self.window
        if at < horizon:
            return
        for batch_id in ids:
            self._ids.pop(batch_id, None)  # keep the order of commits: re-added goes last
            self._ids[batch_id] = at
        for batch_id, when in list(self._ids.items()):  # drop the expired head
            if when >= horizon:
                break
            del self._ids[batch_id]
