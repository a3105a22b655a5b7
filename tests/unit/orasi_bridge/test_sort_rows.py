"""``sort_rows`` orders a flush's rows by tenant, day(time), service_name, time (stable, nulls last).

Its result is checked against an independent reference: Arrow's own sort on the same keys plus
the input row number (so ties keep their input order), with day(time) computed from Python
datetimes. Maps of strings are gathered by copying each row's keys and values as one run
(``_take_runs``), which is also checked alone against Arrow's ``take``.
"""

from __future__ import annotations

import datetime
import itertools
import math
import random
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from orasi_bridge.lake import files
from orasi_bridge.lake.files import MICROS_PER_DAY, Partition, sort_rows
from orasi_bridge.lake.schema import SPANS

EPOCH = datetime.date(1970, 1, 1)
TENANTS = ["acme", "beta", "Zulu", "ümlaut", "b"]  # upper case and non-ASCII sort by code point
SERVICES = ["api", "db", "web", "Auth", "ßvc", None]
DAYS = [-1, 0, 19_000, 19_001, 19_723]  # includes a day before 1970 (floor, not truncation)
OFFSETS = [0, 1, 3_600_000_000, MICROS_PER_DAY - 1]  # few distinct times: many ties
KEYS = ["http.method", "http.route", "db.system", "peer.service", "k"]
VALUES = ["GET", "POST", "/v1/x", "/v1/y", "postgres", "", "ü"]


# -- data ------------------------------------------------------------------------------------------


def _attributes(rng: random.Random, row: int, cardinality: str) -> list[tuple[str, str | None]] | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.12:
        return []
    entries: list[tuple[str, str | None]] = []
    for j in range(rng.randint(1, 5)):
        key = f"key-{row}-{j}" if cardinality == "unique_keys" else rng.choice(KEYS)
        if rng.random() < 0.05:
            value = None
        elif cardinality == "low":
            value = rng.choice(VALUES)
        else:
            value = f"value-{row}-{j}-{rng.random()}"
        entries.append((key, value))
    return entries


def _row(rng: random.Random, row: int, cardinality: str) -> dict[str, Any]:
    time = None if rng.random() < 0.06 else rng.choice(DAYS) * MICROS_PER_DAY + rng.choice(OFFSETS)
    events = None
    if rng.random() < 0.5:
        events = [
            {
                "time_unix_nano": rng.randrange(10**18),
                "name": rng.choice(["exception", "retry"]),
                "attributes": [("exception.type", rng.choice(["E1", "E2"]))] if rng.random() < 0.7 else None,
                "dropped_attributes_count": 0,
            }
            for _ in range(rng.randint(0, 2))
        ]
    return {
        "tenant": rng.choice(TENANTS),
        "region": rng.choice(["eu", "us", None]),
        "service_name": rng.choice(SERVICES),
        "name": f"op-{rng.randint(0, 9)}",
        "kind": "SERVER",
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{row:016x}",  # identifies the input row
        "parent_span_id": None,
        "trace_state": None,
        "flags": rng.randint(0, 1),
        "start_time_unix_nano": rng.randrange(10**18),
        "end_time_unix_nano": rng.randrange(10**18),
        "duration_ns": rng.randint(0, 10**9),
        "status_code": rng.choice(["OK", "ERROR", None]),
        "status_message": None,
        "attributes": _attributes(rng, row, cardinality),
        "resource_attributes": None if rng.random() < 0.1 else [("host.name", rng.choice(["h1", "h2"]))],
        "scope_name": "scope",
        "scope_version": None,
        "events": events,
        "links": None if rng.random() < 0.5 else [],
        "dropped_attributes_count": 0,
        "time": time,
    }


def _batches(seed: int, sizes: list[int], cardinality: str = "low") -> list[pa.RecordBatch]:
    rng = random.Random(seed)
    rows = iter(range(sum(sizes)))
    return [
        pa.RecordBatch.from_pylist([_row(rng, next(rows), cardinality) for _ in range(size)], schema=SPANS)
        for size in sizes
    ]


# -- reference -------------------------------------------------------------------------------------


def _day(value: datetime.datetime | None) -> int | None:
    return None if value is None else (value.date() - EPOCH).days


def _reference(batches: list[pa.RecordBatch]) -> tuple[pa.Table, list[tuple[str, int | None, int, int]]]:
    """The rows sorted by Arrow (row number as the last key: stable), and their (tenant, day) runs."""
    table = pa.Table.from_batches(batches, schema=SPANS)
    days = [_day(t) for t in table.column("time").to_pylist()]
    keyed = table.append_column("_day", pa.array(days, pa.int64())).append_column(
        "_row", pa.array(range(table.num_rows), pa.int64())
    )
    order = pc.sort_indices(
        keyed,
        sort_keys=[
            ("tenant", "ascending", "at_end"),
            ("_day", "ascending", "at_end"),
            ("service_name", "ascending", "at_end"),
            ("time", "ascending", "at_end"),
            ("_row", "ascending", "at_end"),
        ],
    )
    expected = table.take(order)
    sorted_days = [days[i] for i in order.to_pylist()]
    sorted_tenants = expected.column("tenant").to_pylist()
    runs: list[tuple[str, int | None, int, int]] = []
    for i, key in enumerate(zip(sorted_tenants, sorted_days, strict=True)):
        if runs and (runs[-1][0], runs[-1][1]) == key:
            runs[-1] = (key[0], key[1], runs[-1][2], i + 1)
        else:
            runs.append((key[0], key[1], i, i + 1))
    return expected, runs


def _assert_same(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.schema == SPANS
    assert actual.num_rows == expected.num_rows
    for name in SPANS.names:  # column by column, so a failure names the column
        assert actual.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert actual.equals(expected)


# -- sort_rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_low_cardinality_maps_sort_like_the_reference(seed: int) -> None:
    batches = _batches(seed, [1500, 7, 2200, 1, 1300])
    rows, partitions = sort_rows(batches, SPANS)
    expected, runs = _reference(batches)
    _assert_same(rows, expected)
    assert [(p.tenant, p.day, p.start, p.stop) for p in partitions] == runs


@pytest.mark.parametrize("cardinality", ["high", "unique_keys"])
def test_high_cardinality_maps_sort_like_the_reference(cardinality: str) -> None:
    batches = _batches(7, [2000, 3000, 900], cardinality)
    rows, partitions = sort_rows(batches, SPANS)
    expected, runs = _reference(batches)
    _assert_same(rows, expected)
    assert [(p.tenant, p.day, p.start, p.stop) for p in partitions] == runs


def test_ties_keep_input_order_and_nulls_go_last() -> None:
    t0 = 19_000 * MICROS_PER_DAY
    rows = [
        # tenant, service, time, span_id (input order)
        ("b", "api", t0 + 5, "r0"),
        ("a", None, t0 + 1, "r1"),
        ("a", "api", None, "r2"),
        ("a", "api", t0 + 5, "r3"),
        ("a", "api", t0 + 5, "r4"),  # ties r3
        ("a", "api", t0 - 1, "r5"),  # the day before
        ("a", "web", t0, "r6"),
        ("a", "api", t0 + 5, "r7"),  # ties r3, r4
        ("a", None, None, "r8"),
        ("a", "api", t0, "r9"),
    ]

    def batch(part: list[tuple[str, str | None, int | None, str]]) -> pa.RecordBatch:
        names = ["tenant", "service_name", "time", "span_id"]
        data = [dict(zip(names, row, strict=True)) for row in part]
        return pa.RecordBatch.from_pylist(data, schema=SPANS)

    sorted_rows, partitions = sort_rows([batch(rows[:4]), batch(rows[4:])], SPANS)
    assert sorted_rows.column("span_id").to_pylist() == [
        "r5",  # a, day before
        "r9",  # a, day, api, t0
        "r3",  # a, day, api, t0 + 5: in input order
        "r4",
        "r7",
        "r6",  # a, day, web
        "r1",  # a, day, null service
        "r2",  # a, null day (null time), api
        "r8",  # a, null day, null service
        "r0",  # b
    ]
    assert partitions == [
        Partition("a", 18_999, 0, 1),
        Partition("a", 19_000, 1, 7),
        Partition("a", None, 7, 9),
        Partition("b", 19_000, 9, 10),
    ]


@pytest.mark.parametrize("only_the_slice", [False, True])
def test_sliced_batches_and_null_maps_with_hidden_entries(only_the_slice: bool) -> None:
    """Batches sliced out of larger ones, and null maps whose offsets still span entries: the
    gathered maps hold the same values."""
    source = _batches(11, [6000])[0]
    sliced = source.slice(1000, 4500)
    n = 200
    offsets = pa.array([3 * i for i in range(n + 1)], pa.int32())
    keys = pa.array([KEYS[i % 2] for i in range(3 * n)])
    items = pa.array([f"v{i % 3}" for i in range(3 * n)])
    mask = pa.array([i % 4 == 0 for i in range(n)])
    attributes = pa.MapArray.from_arrays(offsets, keys, items, type=SPANS.field("attributes").type, mask=mask)
    small = _batches(12, [n])[0]
    small = small.set_column(SPANS.get_field_index("attributes"), SPANS.field("attributes"), attributes)
    assert small.column("attributes").null_count == n // 4
    batches = [sliced] if only_the_slice else [sliced, small, source.slice(5990)]
    rows, partitions = sort_rows(batches, SPANS)
    expected, runs = _reference(batches)
    _assert_same(rows, expected)
    assert [(p.tenant, p.day, p.start, p.stop) for p in partitions] == runs


def test_large_runs_split_into_files_of_at_most_file_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "FILE_ROWS", 7)
    batches = _batches(5, [300, 200])
    rows, partitions = sort_rows(batches, SPANS)
    expected, runs = _reference(batches)
    _assert_same(rows, expected)
    assert partitions[0].start == 0
    assert partitions[-1].stop == rows.num_rows
    for before, after in itertools.pairwise(partitions):
        assert before.stop == after.start  # contiguous
    for tenant, day, start, stop in runs:
        pieces = [p for p in partitions if p.tenant == tenant and p.day == day]
        assert (pieces[0].start, pieces[-1].stop) == (start, stop)
        assert all(0 < p.stop - p.start <= 7 for p in pieces)
        assert len(pieces) == math.ceil((stop - start) / 7)
    assert any(stop - start > 7 for _, _, start, stop in runs)  # some run was split


@pytest.mark.parametrize(("threads", "files_of_300"), [(1, 1), (2, 2), (4, 4), (8, 6)])
def test_large_runs_split_into_a_file_per_core(
    monkeypatch: pytest.MonkeyPatch, threads: int, files_of_300: int
) -> None:
    """While each file keeps PARALLEL_FILE_ROWS rows, a run is split into one file per core."""
    monkeypatch.setattr(files, "PARALLEL_FILE_ROWS", 50)
    monkeypatch.setattr(files, "_THREADS", threads)
    batches = [
        pa.RecordBatch.from_pylist(
            [
                {"tenant": t, "time": 5 * MICROS_PER_DAY + i}
                for t, n in (("big", 300), ("edge", 100), ("small", 99))
                for i in range(n)
            ],
            schema=SPANS,
        )
    ]
    rows, partitions = sort_rows(batches, SPANS)
    sizes = {t: [p.stop - p.start for p in partitions if p.tenant == t] for t in ("big", "edge", "small")}
    assert len(sizes["big"]) == files_of_300 and sum(sizes["big"]) == 300
    assert max(sizes["big"]) - min(sizes["big"]) <= 1  # even pieces
    assert sizes["edge"] == ([100] if threads == 1 else [50, 50])
    assert sizes["small"] == [99]  # two files would hold fewer than 50 rows each
    _assert_same(rows, _reference(batches)[0])


def test_one_run_is_one_partition() -> None:
    batches = [
        pa.RecordBatch.from_pylist(
            [{"tenant": "t", "service_name": s, "time": 5 * MICROS_PER_DAY + i} for i, s in enumerate("cab")],
            schema=SPANS,
        )
    ]
    rows, partitions = sort_rows(batches, SPANS)
    assert rows.column("service_name").to_pylist() == ["a", "b", "c"]
    assert partitions == [Partition("t", 5, 0, 3)]


@pytest.mark.parametrize("empty_batches", [0, 2])
def test_no_rows_no_partitions(empty_batches: int) -> None:
    batches = [pa.RecordBatch.from_pylist([], schema=SPANS)] * empty_batches
    rows, partitions = sort_rows(batches, SPANS)
    assert rows.num_rows == 0
    assert rows.schema == SPANS
    assert partitions == []


# -- _take_runs ----------------------------------------------------------------------------------


def _strings(rng: random.Random, length: int, distinct: int, nulls: float = 0.0) -> list[str | None]:
    pool = ["", *(f"s{i}-{'x' * (i % 13)}-ü" for i in range(distinct))]
    return [None if rng.random() < nulls else rng.choice(pool) for _ in range(length)]


def _values(name: str) -> pa.Array:
    rng = random.Random(name)
    if name == "strings":
        return pa.array(_strings(rng, 5000, 40))
    if name == "strings-with-nulls":
        return pa.array(_strings(rng, 5000, 40, nulls=0.2))
    if name == "binary":
        return pa.array(
            [s.encode() if s is not None else None for s in _strings(rng, 3000, 10, 0.1)], pa.binary()
        )
    if name == "sliced":
        return pa.array(_strings(rng, 9000, 30, nulls=0.05)).slice(1500, 6000)
    if name == "all-empty":
        return pa.array([""] * 100)
    if name == "none":
        return pa.array([], pa.string())
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["strings", "strings-with-nulls", "binary", "sliced", "all-empty", "none"])
def test_take_runs_equals_take(name: str) -> None:
    """Runs that tile the values (as a map's rows tile its entries, empty rows included), taken in
    shuffled, repeated and reversed order, give what ``take`` of their entries gives."""
    values = _values(name)
    rng = random.Random(f"{name}-runs")
    cuts = sorted(rng.randrange(len(values) + 1) for _ in range(len(values) // 4 + 2))
    starts = [0, *cuts]
    stops = [*cuts, len(values)]
    runs = list(range(len(starts)))
    for order in (rng.sample(runs, len(runs)), runs[::-1], [rng.choice(runs) for _ in range(2 * len(runs))]):
        run_starts = np.array([starts[i] for i in order], dtype=np.int32)
        run_stops = np.array([stops[i] for i in order], dtype=np.int32)
        entries = np.array([e for i in order for e in range(starts[i], stops[i])], dtype=np.int32)
        result = files._take_runs(values, run_starts, run_stops, entries)
        expected = values.take(pa.array(entries, pa.int32()))
        result.validate(full=True)
        assert result.type == values.type
        assert result.to_pylist() == expected.to_pylist()
        assert result.equals(expected)
