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
    value is not null appended to its row (vectorised: the index of every entry of the new map in
    the old entries followed by the values set is computed with numpy, then one ``take`` of the
    keys and one of the values gather them, leaving out what is removed on the way)."""
    rows = len(column)
    offsets = column.offsets.to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    offsets = offsets - first
    keys = column.values.field(0).slice(first, last - first)
    items = column.values.field(1).slice(first, last - first)
    keep = ~key_in(keys, [*sets, *deleted])
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all():  # entries of a null row (Arrow allows them) are not the row's: left out with it
        keep &= np.repeat(valid, np.diff(offsets))
    if keep.all():  # nothing left out: every entry, in order
        gather, kept_through = np.arange(len(keys)), offsets[1:]
    else:
        gather = np.flatnonzero(keep)
        kept_through = np.concatenate([[0], np.cumsum(keep)])[offsets[1:]]
    # the values set go after the old entries, each inserted after its row's kept entries
    owners, inserted, all_keys, all_items = [], [], [keys], [items]
    per_row = np.diff(kept_through, prepend=0)
    source = len(keys)
    for key, values in sets.items():
        valid_value = values.is_valid().to_numpy(zero_copy_only=False)
        at = np.flatnonzero(valid_value)
        owners.append(at)
        inserted.append(np.arange(source, source + len(at)))
        source += len(at)
        per_row += valid_value
        all_keys.append(pa.repeat(pa.scalar(key, pa.string()), len(at)))
        all_items.append(values if len(at) == rows else values.filter(pa.array(valid_value)))
    if owners:  # by row, then in the order of ``sets`` (rows of no kept entry share a position)
        owner, value = np.concatenate(owners), np.concatenate(inserted)
        if len(owners) > 1:
            order = np.argsort(owner, kind="stable")
            owner, value = owner[order], value[order]
        gather = np.insert(gather, kept_through[owner], value)
    starts = np.zeros(rows + 1, np.int32)
    np.cumsum(per_row, out=starts[1:])
    take = pa.array(gather)
    null = ~valid & (per_row == 0)
    return pa.MapArray.from_arrays(
        pa.array(starts),
        pa.concat_arrays(all_keys).take(take),
        pa.concat_arrays(all_items).take(take),
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
