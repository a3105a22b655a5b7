"""Runs of rows of one resource: what lets the stream work on ``resource_attributes`` once per
resource instead of once per row.

The converter knows each row's resource (``lake.rows``: the envelope's ``resource_of_item``; a
row's ``resource_attributes`` is its resource's map, copied) and hands the index over with the
rows (``lake.convert`` → ``Chain.process``). The rows of one resource are contiguous in both
forms, so the stream keeps runs: the first row of each run of equal indices, and each row's run.
Rows of one run hold equal ``resource_attributes`` (rows of two runs may too: a run is a hint,
never a merge of maps that differ), as long as no processor changes that map row by row (a
``transform``'s, which the chain then lets the runs go for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RESOURCE = "resource_attributes"
"""The column the runs are of."""
Indices = npt.NDArray[np.int64]
LONG = 4


@dataclass(frozen=True)
class Runs:
    starts: Indices
    """The first row of each run."""
    run_of_row: Indices
    """Each row's run."""

    @classmethod
    def of(cls, resource_of_row: npt.NDArray[np.integer]) -> Runs:
        """The runs of equal values of ``resource_of_row`` (one per row)."""
        change = np.empty(len(resource_of_row), dtype=bool)
        change[:1] = True
        np.not_equal(resource_of_row[1:], resource_of_row[:-1], out=change[1:])
        return cls(np.flatnonzero(change), np.cumsum(change, dtype=np.int64) - 1)

    @property
    def lengths(self) -> Indices:
        """The rows of each run."""
        return np.diff(np.append(self.starts, len(self.run_of_row)))

    def long(self) -> bool:
        """Whether the runs are long enough to work per run rather than per row (``LONG`` rows
        each on average: working per run costs one more copy of the rows' maps)."""
        return len(self.starts) * LONG <= len(self.run_of_row)

    def filter(self, keep: npt.NDArray[np.bool_]) -> Runs:
        """The runs of the rows ``keep`` says."""
        return Runs.of(self.run_of_row[keep])


__all__ = ["RESOURCE", "Runs"]
