"""Helpers of the OTAP codec held to the numpy functions they stand in for."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orasi_common.pdata.otap.common import lexsort

# ranges from a few values to the whole int64 range, so that packing fits, only just, or not
BOUNDS = st.sampled_from([1, 3, 2**15, 2**31, 2**62, 2**63 - 1])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.lists(st.tuples(BOUNDS, st.integers(0, 2**32 - 1)), min_size=1, max_size=5))
def test_lexsort_orders_rows_as_numpy_lexsort(n: int, keys: list[tuple[int, int]]) -> None:
    arrays = tuple(
        np.random.default_rng(seed).integers(-bound, bound, n, dtype=np.int64, endpoint=True)
        for bound, seed in keys
    )
    assert lexsort(arrays).tolist() == np.lexsort(arrays).tolist()
