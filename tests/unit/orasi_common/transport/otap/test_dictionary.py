"""The stream producer's growing dictionaries (``stream._Dictionary`` over the native
``_wirescan.Dictionary``) held against two references: a pure-Python one written from the
contract (values numbered in order of first appearance, kept from batch to batch; a batch that
would pass the limit refused and forgotten), and the pyarrow one the producer used before
(``index_in`` against the grown dictionary), whose IPC bytes the producer's must equal; and the
native type's refusals of buffers that do not cover the rows."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orasi_common.pdata import _wirescan
from orasi_common.transport.otap.stream import _Dictionary

TEXT = st.one_of(
    st.none(), st.sampled_from(["", "a", "ab", "abcdefgh", "abcdefgh1", "é"]), st.text(max_size=12)
)
BATCHES = st.lists(st.lists(TEXT, max_size=60), min_size=1, max_size=6)


class Reference:
    """The contract in plain Python."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: list[str] = []
        self.numbers: dict[str, int] = {}

    def encode(self, rows: list[str | None]) -> list[int | None] | None:
        new = list(dict.fromkeys(v for v in rows if v is not None and v not in self.numbers))
        if len(self.values) + len(new) > self.limit:
            return None
        for value in new:
            self.numbers[value] = len(self.values)
            self.values.append(value)
        return [None if v is None else self.numbers[v] for v in rows]


class IndexIn:
    """The producer's dictionary as pyarrow computed it before (a hash table of the whole
    dictionary built again by every ``index_in``)."""

    def __init__(self, index_type: pa.DataType, limit: int) -> None:
        self.index_type, self.limit = index_type, limit
        self.values = pa.array([], pa.string())

    def encode(self, column: pa.Array) -> pa.DictionaryArray | None:
        indices = pc.index_in(column, value_set=self.values)
        if indices.null_count > column.null_count:
            new = pc.unique(column.filter(pc.is_null(indices))).drop_null()
            if len(self.values) + len(new) > self.limit:
                return None
            self.values = pa.concat_arrays([self.values, new])
            indices = pc.index_in(column, value_set=self.values)
        return pa.DictionaryArray.from_arrays(indices.cast(self.index_type), self.values)


def _column(rows: list[str | None], sliced: bool, large: bool) -> pa.Array:
    kind = pa.large_string() if large else pa.string()
    if sliced:  # an array offset, and a null and a value outside the rows on both sides
        return pa.array(["before", None, *rows, None, "after"], kind).slice(2, len(rows))
    return pa.array(rows, kind)


@settings(max_examples=300, deadline=None)
@given(BATCHES, st.sampled_from([(pa.uint8(), 255), (pa.uint8(), 7), (pa.uint16(), 65535), (pa.uint16(), 3)]))
def test_batches_encode_as_the_contract_says(
    batches: list[list[str | None]], index: tuple[pa.DataType, int]
) -> None:
    index_type, limit = index
    mine, reference = _Dictionary(index_type, limit), Reference(limit)
    for number, rows in enumerate(batches):
        encoded = mine.encode(_column(rows, sliced=number % 2 == 1, large=number == 2))
        expected = reference.encode(rows)
        if expected is None:
            assert encoded is None
        else:
            assert encoded is not None
            assert encoded.type == pa.dictionary(index_type, pa.string())
            assert encoded.indices.to_pylist() == expected
            assert encoded.to_pylist() == rows
        assert mine.values.to_pylist() == reference.values


def _ipc(arrays: list[pa.DictionaryArray]) -> bytes:
    """The arrays as one IPC stream with dictionary deltas, as the producer writes them."""
    sink = io.BytesIO()
    schema = pa.schema([pa.field("c", arrays[0].type)])
    options = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        for array in arrays:
            writer.write_batch(pa.record_batch([array], schema=schema))
    return sink.getvalue()


@settings(max_examples=300, deadline=None)
@given(BATCHES, st.sampled_from([(pa.uint8(), 255), (pa.uint8(), 7), (pa.uint16(), 65535)]))
def test_the_ipc_bytes_equal_those_of_index_in(
    batches: list[list[str | None]], index: tuple[pa.DataType, int]
) -> None:
    mine, before = _Dictionary(*index), IndexIn(*index)
    sent, sent_before = [], []
    for number, rows in enumerate(batches):
        column = _column(rows, sliced=number % 2 == 1, large=False)
        encoded, expected = mine.encode(column), before.encode(column)
        assert (encoded is None) == (expected is None)
        if encoded is not None and expected is not None:
            sent.append(encoded)
            sent_before.append(expected)
    if sent:
        assert _ipc(sent) == _ipc(sent_before)


def test_a_refused_batch_leaves_the_dictionary_as_it_was() -> None:
    dictionary = _Dictionary(pa.uint8(), 4)
    first = dictionary.encode(pa.array(["a", "b"]))
    assert first is not None and first.indices.to_pylist() == [0, 1]
    assert dictionary.encode(pa.array(["c", "a", "d", "e"])) is None  # three new values: one too many
    assert dictionary.values.to_pylist() == ["a", "b"]
    again = dictionary.encode(pa.array(["d", "b", "c", "d"]))
    assert again is not None and again.indices.to_pylist() == [2, 1, 3, 2]
    assert dictionary.values.to_pylist() == ["a", "b", "d", "c"]


def test_strings_of_one_length_differing_in_any_byte_get_their_own_numbers() -> None:
    """Short strings are hashed with overlapping reads of their tail: each byte still counts."""
    values = ["".join(letters) for size in range(10) for letters in itertools.product("ab", repeat=size)]
    for size in range(10, 18):  # longer: "aaa...", and each with one "b"
        values += ["a" * size] + ["a" * at + "b" + "a" * (size - at - 1) for at in range(size)]
    dictionary = _Dictionary(pa.uint16(), 65535)
    encoded = dictionary.encode(pa.array(values + values[::-1]))
    assert encoded is not None
    assert encoded.indices.to_pylist() == list(range(len(values))) + list(range(len(values)))[::-1]


def test_the_returned_bitmap_starts_at_the_first_row_with_later_bits_clear() -> None:
    offsets = np.array([0, 1, 2, 3, 4], dtype=np.int32).tobytes()
    found = _wirescan.Dictionary(1).encode(b"\xfb", offsets, b"abcd", 1, 3, 255, 1)  # row 2 null
    assert found is not None
    indices, bitmap, new_offsets, new_data = found
    assert (indices, bitmap) == (b"\x00\x00\x01", b"\x05")  # rows 1, 2, 3: b, null, d
    assert (np.frombuffer(new_offsets, dtype=np.int32).tolist(), new_data) == ([0, 1, 2], b"bd")


def test_the_offsets_of_null_rows_are_not_read() -> None:
    offsets = np.array([0, 1, -5, 99], dtype=np.int32).tobytes()
    found = _wirescan.Dictionary(1).encode(b"\x01", offsets, b"ab", 0, 3, 255, 1)
    assert found is not None and found[0] == b"\x00\x00\x00" and found[3] == b"a"


@pytest.mark.parametrize(
    ("validity", "offsets", "data", "offset", "length", "limit", "width", "message"),
    [
        (None, [0, 3], b"ab", 0, 1, 255, 1, "outside the data"),
        (None, [-1, 1], b"ab", 0, 1, 255, 1, "outside the data"),
        (None, [1, 0], b"ab", 0, 1, 255, 1, "outside the data"),
        (None, [0, 1], b"ab", 0, 2, 255, 1, "outside the offsets"),
        (None, [0, 1], b"ab", 1, 1, 255, 1, "outside the offsets"),
        (None, [0, 1], b"ab", -1, 1, 255, 1, "outside the offsets"),
        (None, [0, 1], b"ab", 0, -1, 255, 1, "outside the offsets"),
        (b"", [0, 1], b"ab", 0, 1, 255, 1, "bitmap"),
        (b"\xff", [0] * 10, b"ab", 0, 9, 255, 1, "bitmap"),
        (None, [0, 1], b"ab", 0, 1, 257, 1, "limit"),
        (None, [0, 1], b"ab", 0, 1, 65537, 2, "limit"),
        (None, [0, 1], b"ab", 0, 1, -1, 2, "limit"),
        (None, [0, 1], b"ab", 0, 1, 255, 4, "width"),
    ],
)
def test_buffers_that_do_not_cover_the_rows_are_refused(
    validity: bytes | None,
    offsets: list[int],
    data: bytes,
    offset: int,
    length: int,
    limit: int,
    width: int,
    message: str,
) -> None:
    dictionary = _wirescan.Dictionary(1)
    with pytest.raises(ValueError, match=message):
        dictionary.encode(
            validity, np.array(offsets, dtype=np.int32).tobytes(), data, offset, length, limit, width
        )
    assert len(dictionary) == 0


def test_a_limit_below_the_values_held_is_refused() -> None:
    dictionary = _wirescan.Dictionary(1)
    assert (
        dictionary.encode(None, np.array([0, 1, 2], dtype=np.int32).tobytes(), b"ab", 0, 2, 255, 1)
        is not None
    )
    with pytest.raises(ValueError, match="limit"):
        dictionary.encode(None, np.array([0, 1], dtype=np.int32).tobytes(), b"a", 0, 1, 1, 1)
    assert len(dictionary) == 2
