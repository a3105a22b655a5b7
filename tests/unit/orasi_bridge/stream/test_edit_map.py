"""``transform.edit_map`` held against a reference written entry by entry from its contract: the
keys set or deleted removed, then each key set whose value is not null appended to its row, in
the order of ``set``; a null row stays null unless a key is set on it. Maps with null and empty
rows, sliced columns, repeated keys, and several keys set on rows of no kept entry."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from orasi_bridge.stream.transform import edit_map

MAP = pa.map_(pa.string(), pa.string())
KEYS = ["a", "b", "c", "env", "x"]

Row = list[tuple[str, str | None]] | None


def reference(rows: list[Row], sets: dict[str, list[str | None]], deleted: list[str]) -> list[Row]:
    removed = {*sets, *deleted}
    out: list[Row] = []
    for i, row in enumerate(rows):
        entries = [(k, v) for k, v in (row or []) if k not in removed]
        entries += [(key, values[i]) for key, values in sets.items() if values[i] is not None]
        out.append(None if row is None and not entries else entries)
    return out


def random_rows(rng: random.Random, n: int) -> list[Row]:
    rows: list[Row] = []
    for _ in range(n):
        if rng.random() < 0.15:
            rows.append(None)
            continue
        rows.append([(rng.choice(KEYS), rng.choice(["1", "2", None])) for _ in range(rng.randrange(0, 5))])
    return rows


@pytest.mark.parametrize("seed", range(30))
def test_edit_map_is_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    rows = random_rows(rng, rng.randrange(1, 40))
    column = pa.array(rows, MAP)
    offset = rng.randrange(0, 3) if len(rows) > 3 else 0
    column, rows = column.slice(offset), rows[offset:]
    keys = rng.sample(KEYS, rng.randrange(0, 3))
    sets = {key: [rng.choice(["v", "w", None]) for _ in rows] for key in keys}
    deleted = rng.sample(KEYS, rng.randrange(0, 2))
    out = edit_map(column, {key: pa.array(values, pa.string()) for key, values in sets.items()}, deleted)
    assert out.type == MAP
    assert out.to_pylist() == reference(rows, sets, deleted)


def test_keys_set_on_rows_without_entries_stay_in_row_order() -> None:
    column = pa.array([[("a", "1")], None, [], [("env", "old")]], MAP)
    out = edit_map(column, {"env": pa.array(["p", "q", None, "s"]), "b": pa.array(["1", "2", "3", None])}, [])
    assert out.to_pylist() == [
        [("a", "1"), ("env", "p"), ("b", "1")],
        [("env", "q"), ("b", "2")],
        [("b", "3")],
        [("env", "s")],
    ]
