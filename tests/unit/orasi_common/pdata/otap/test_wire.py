"""wire.join and its native writer (``_wirescan.join``): messages written from columns parse
back with upb as the messages they were written from; parts whose buffers do not cover their
rows are refused before anything is written."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from orasi_common.pdata import _wirescan
from orasi_common.pdata.otap import wire

U64 = st.integers(min_value=0, max_value=2**64 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)
EVENTS = st.lists(
    st.tuples(U64, st.one_of(st.none(), st.text(max_size=300)), U32, st.binary(max_size=40)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.booleans())
def test_joined_rows_parse_as_the_events_they_were_written_from(
    rows: list[tuple[int, str | None, int, bytes]], offset: bool
) -> None:
    n = len(rows)
    times = np.array([r[0] for r in rows], dtype=np.uint64)
    names = pa.array([r[1] for r in rows], pa.string())
    dropped = np.array([r[2] for r in rows], dtype=np.int64)
    # raw bytes appended to each row: an unknown field 15 (bytes) upb keeps
    extra = [wire.f_bytes(15, pa.array([r[3] for r in rows], pa.binary()))]
    if rows and offset:
        sliced = pa.array([b"x"] + [r[3] for r in rows], pa.binary()).slice(1)  # an array offset
        extra = [wire.f_bytes(15, sliced)]
    joined = wire.join(wire.f_fixed64(1, times), wire.f_bytes(2, names), wire.f_varint(4, dropped), *extra)
    assert len(joined) == n
    for (time, name, count, blob), raw in zip(rows, joined.to_pylist(), strict=True):
        event = Span.Event.FromString(raw)
        assert (event.time_unix_nano, event.name, event.dropped_attributes_count) == (time, name or "", count)
        expected = Span.Event(time_unix_nano=time, name=name or "", dropped_attributes_count=count)
        assert raw == expected.SerializeToString() + (
            wire.join(wire.f_bytes(15, pa.array([blob])))[0].as_py()
        )


def test_raw_parts_and_nulls_are_written_as_they_are() -> None:
    raw = pa.array([b"\x08\x01", None, b""], pa.binary())
    joined = wire.join(wire.f_varint(4, np.array([0, 7, 0])), raw)
    assert joined.to_pylist() == [b"\x08\x01", b"\x20\x07", b""]
    assert wire.join(wire.f_varint(4, np.zeros(2, dtype=np.int64))).to_pylist() == [b"", b""]


@pytest.mark.parametrize(
    "part",
    [
        (wire._VARINT, b"\x08", np.ones(3, dtype=np.bool_), np.zeros(2, dtype=np.uint64), b"", 0),
        (wire._FIXED, b"\x09", np.ones(3, dtype=np.bool_), np.zeros(2, dtype=np.uint64), b"", 8),
        (wire._FIXED, b"\x09", np.ones(3, dtype=np.bool_), np.zeros(3, dtype=np.uint64), b"", 9),
        (wire._BYTES, b"\x12", np.ones(3, dtype=np.bool_), np.array([0, 1, 2], dtype=np.int32), b"ab", 0),
        (wire._BYTES, b"\x12", np.ones(3, dtype=np.bool_), np.array([0, 1, 2, 9], dtype=np.int32), b"ab", 0),
        (wire._RAW, b"", np.ones(3, dtype=np.bool_), np.array([0, 2, 1, 2], dtype=np.int32), b"ab", 0),
        (wire._RAW, b"", np.ones(3, dtype=np.bool_), np.array([-1, 0, 1, 2], dtype=np.int32), b"ab", 0),
        (wire._RAW, b"", np.ones(2, dtype=np.bool_), np.array([0, 0, 1, 2], dtype=np.int32), b"ab", 0),
        (7, b"", np.ones(3, dtype=np.bool_), np.zeros(3, dtype=np.uint64), b"", 0),
    ],
)
def test_parts_whose_buffers_do_not_cover_their_rows_are_refused(part: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="join part 0"):
        _wirescan.join(3, [part])  # type: ignore[list-item]


def test_rows_not_emitted_are_not_checked() -> None:
    emit = np.array([True, False], dtype=np.bool_)
    offsets = np.array([0, 1, 99], dtype=np.int32)  # row 1's end lies outside, but row 1 is skipped
    assert _wirescan.join(2, [(wire._RAW, b"", emit, offsets, b"a", 0)])[1] == b"a"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=20)), st.integers(0, 5)), max_size=40))
def test_group_concat_gathers_each_parents_children_in_order(rows: list[tuple[bytes | None, int]]) -> None:
    children = pa.array([child for child, _ in rows], pa.binary())
    parents = np.array([parent for _, parent in rows], dtype=np.int64)
    grouped = wire.group_concat(children, parents, 6).to_pylist()
    expected = [b"".join(child or b"" for child, p in rows if p == parent) for parent in range(6)]
    assert grouped == expected


@pytest.mark.parametrize(
    ("starts", "ends", "parents", "n"),
    [
        ([0, 1], [1, 3], [0, 0], 1),  # a slice past the data's end
        ([1], [0], [0], 1),  # a slice that ends before it starts
        ([-1], [1], [0], 1),  # a slice before the data
        ([0], [1], [1], 1),  # a parent past the last group
        ([0], [1], [-1], 1),  # a negative parent
        ([0], [1], [0], -1),  # a negative group count
        ([0, 1], [1], [0, 0], 1),  # buffers of different lengths
    ],
)
def test_group_refuses_slices_and_parents_outside_its_buffers(
    starts: list[int], ends: list[int], parents: list[int], n: int
) -> None:
    def int64(values: list[int]) -> bytes:
        return np.array(values, dtype=np.int64).tobytes()

    with pytest.raises(ValueError, match="outside"):
        _wirescan.group(b"ab", int64(starts), int64(ends), int64(parents), n)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=20), st.sampled_from([b"a", b"ab", b"abcdefgh1"]))))
def test_first_codes_number_values_as_dictionary_encode_does(values: list[bytes | None]) -> None:
    arr = pa.array([b"x", *values], pa.binary()).slice(1)  # an array offset too
    codes, firsts = wire.first_codes(arr)
    encoded = pc.dictionary_encode(arr)
    assert codes.tolist() == [-1 if i is None else i for i in encoded.indices.to_pylist()]
    assert arr.take(pa.array(firsts)).to_pylist() == encoded.dictionary.to_pylist()


@pytest.mark.parametrize(
    ("offsets", "valid"),
    [([0, 3], [1]), ([-1, 1], [1]), ([1, 0], [1]), ([0, 1, 2], [1]), ([], [])],
)
def test_codes_refuses_offsets_outside_the_data(offsets: list[int], valid: list[int]) -> None:
    with pytest.raises(ValueError, match="offsets"):
        _wirescan.codes(b"ab", np.array(offsets, dtype=np.int32), np.array(valid, dtype=np.bool_), 1)


def test_codes_skips_the_offsets_of_rows_not_valid() -> None:
    raw, firsts = _wirescan.codes(b"ab", np.array([0, 99, 2], dtype=np.int32), np.array([0, 0], np.bool_), 1)
    assert np.frombuffer(raw, dtype=np.int64).tolist() == [-1, -1] and firsts == b""
