"""The ``transform`` processor: sets columns and attribute keys from expressions, deletes
attribute keys.

One DuckDB query per record batch (the chain's) computes every expression (a column's new value, an attribute
key's new value as VARCHAR); the attribute maps are then rebuilt in Arrow: entries of set or
deleted keys removed, the set keys appended after a row's remaining entries (in the order of
``set``), a null value setting nothing (so ``NULL`` deletes a key).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import MAPS, TransformConfig, target
from orasi_bridge.stream.runs import RESOURCE, Runs

EQUALS = 4
"""Up to this many keys, an entry's key is compared with each (a comparison of bytes, ~6 times
faster than hashing every key for a set lookup); past it, one lookup in the set of them."""


def key_in(keys: pa.Array, names: list[str]) -> np.ndarray:
    """Which of ``keys`` (strings) is one of ``names``."""
    if len(names) > EQUALS:
        return np.asarray(pc.is_in(keys, value_set=pa.array(names, pa.string())), dtype=bool)
    result = np.zeros(len(keys), bool)
    for name in names:
        result |= pc.equal(keys, name).to_numpy(zero_copy_only=False)
    return result


def edit_map(column: pa.MapArray, sets: dict[str, pa.Array], deleted: list[str]) -> pa.MapArray:
    """``column`` without the keys of ``sets`` and ``deleted``, then each key of ``sets`` whose
    value is not null appended to its row (vectorised: every entry's place in the new map is
    computed with numpy, then one ``take`` gathers them)."""
    rows = len(column)
    offsets = column.offsets.to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    offsets = offsets - first
    lengths = np.diff(offsets)
    keys = column.values.field(0).slice(first, last - first)
    items = column.values.field(1).slice(first, last - first)
    keep = ~key_in(keys, [*sets, *deleted])
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all():  # entries of a null row (Arrow allows them) are not the row's: left out with it
        keep &= np.repeat(valid, lengths)
    if keep.all():  # nothing left out: the entries as they are (no copy before the take)
        kept_per_row, all_keys, all_items = lengths, [keys], [items]
    else:
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        kept_per_row = kept_before[offsets[1:]] - kept_before[offsets[:-1]]
        mask = pa.array(keep)
        all_keys, all_items = [keys.filter(mask)], [items.filter(mask)]
    added = [values.is_valid().to_numpy(zero_copy_only=False) for values in sets.values()]
    per_row = kept_per_row + sum((a.astype(np.int64) for a in added), np.zeros(rows, np.int64))
    starts = np.zeros(rows + 1, np.int64)
    np.cumsum(per_row, out=starts[1:])
    kept = int(kept_per_row.sum())
    # a kept entry moves by the entries added to the rows before its own
    places = [
        np.arange(kept) + np.repeat(starts[:-1] - (np.cumsum(kept_per_row) - kept_per_row), kept_per_row)
    ]
    filled = kept_per_row.copy()
    for (key, values), valid_value in zip(sets.items(), added, strict=True):
        at = np.flatnonzero(valid_value)
        places.append(starts[at] + filled[at])
        filled[at] += 1
        all_keys.append(pa.repeat(pa.scalar(key, pa.string()), len(at)))
        all_items.append(values.filter(pa.array(valid_value)))
    order = np.empty(int(starts[-1]), np.int64)
    order[np.concatenate(places)] = np.arange(len(order))
    gather = pa.array(order)
    null = ~valid & (per_row == 0)
    return pa.MapArray.from_arrays(
        pa.array(starts.astype(np.int32)),
        pa.concat_arrays(all_keys).take(gather),
        pa.concat_arrays(all_items).take(gather),
        type=column.type,
        mask=pa.array(null) if null.any() else None,
    )


class Transform:
    def __init__(self, config: TransformConfig) -> None:
        self._columns: list[str] = []  # columns set from expressions, then attribute keys set
        self._keys: list[tuple[str, str]] = []
        expressions: list[str] = []
        key_expressions: list[str] = []
        for key, expression in config.set.items():
            named = target(key)
            if named.key is None:
                self._columns.append(named.column)
                expressions.append(expression)
            else:
                self._keys.append((named.column, named.key))
                key_expressions.append(f"CAST(({expression}) AS VARCHAR)")
        self.expressions = expressions + key_expressions
        self._deleted: dict[str, list[str]] = defaultdict(list)
        for key in config.delete:
            named = target(key)
            if named.column in MAPS and named.key is not None:
                self._deleted[named.column].append(named.key)
            else:
                self._deleted["attributes"].append(key)
        self._maps = [m for m in MAPS if m in self._deleted or any(column == m for column, _ in self._keys)]
        self.writes = frozenset([*self._columns, *self._maps])
        # a resource key set from a row's columns sets the maps of one resource's rows apart
        self.keeps_runs = RESOURCE not in self._maps

    def apply(
        self, table: str, tenant: str, rows: pa.RecordBatch, values: list[pa.Array], runs: Runs | None = None
    ) -> tuple[pa.RecordBatch, pa.Array | None]:
        new: dict[str, pa.Array] = dict(zip(self._columns, values, strict=False))
        sets: dict[str, dict[str, pa.Array]] = defaultdict(dict)
        for (column, key), value in zip(self._keys, values[len(self._columns) :], strict=True):
            sets[column][key] = value
        for column in self._maps:
            new[column] = edit_map(rows.column(column), sets[column], self._deleted.get(column, []))
        for column, value in new.items():
            index = rows.schema.get_field_index(column)
            field = rows.schema.field(index)
            rows = rows.set_column(index, field, value.cast(field.type))
        return rows, None
