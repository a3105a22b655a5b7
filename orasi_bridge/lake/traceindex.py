"""The trace index of a spans data file: which of its row groups hold a given trace id.

Written beside each spans file the bridge commits (``index_path``: the file's path with its
``/data/`` directory replaced by ``/trace-index/`` and ``.parquet`` by ``.trace-index``; not a
data file of the table), before the commit that makes the file visible, and never changed
afterwards (data files are immutable). It is a small Parquet file of
distinct ``(key, row_group)`` pairs sorted by key, in row groups of ``INDEX_ROW_GROUP_ROWS``
whose min/max statistics narrow a lookup to one row group per key.

``key`` is the trace id's first 15 hex digits as an integer (60 bits) when the id is the canonical
32 lowercase hex digits, else ``OTHER``. Different ids may share a key: the index answers "may
be in these row groups", never "is not in the file" wrongly; the query's own filter then decides.
A file without an index (written before indexes, or rewritten by maintenance) must be read whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orasi_bridge.lake.catalog import prepare_output

INDEX_ROW_GROUP_ROWS = 8_192
OTHER = -1
"""The key of every trace id that is not 32 lowercase hex digits (null ids are not indexed)."""

SCHEMA = pa.schema(
    [pa.field("key", pa.int64(), nullable=False), pa.field("row_group", pa.int32(), nullable=False)]
)
_HEX = re.compile(r"[0-9a-f]{32}")
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_NIBBLE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_KEY_DIGITS = 15


def index_path(data_path: str) -> str | None:
    """Where the index of the data file at ``data_path`` is (None: such a file has none)."""
    head, sep, tail = data_path.rpartition("/data/")
    return f"{head}/trace-index/{tail.removesuffix('.parquet')}.trace-index" if sep else None


def key_of(trace_id: str) -> int:
    """The index key of one trace id (as ``keys`` computes it for a column)."""
    return int(trace_id[:_KEY_DIGITS], 16) if _HEX.fullmatch(trace_id) else OTHER


def keys(trace_ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Index keys of the non-null ids of a string column, and the row numbers they belong to."""
    array = trace_ids.combine_chunks() if isinstance(trace_ids, pa.ChunkedArray) else trace_ids
    array = array.cast(pa.string())
    rows = np.flatnonzero(np.asarray(array.is_valid())) if array.null_count else np.arange(len(array))
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    starts = offsets[rows]
    canonical = (offsets[rows + 1] - starts) == 32
    if canonical.all() and offsets[-1] - offsets[0] == 32 * len(rows):
        # The usual case: every id is 32 characters, so their bytes are one (rows, 32) block.
        digits = _NIBBLE[data[offsets[0] : offsets[-1]]].reshape(len(rows), 32)
    else:
        digits = np.full((len(rows), 32), 255, dtype=np.uint8)
        digits[canonical] = _NIBBLE[data[starts[canonical, None] + np.arange(32)]]
    canonical &= (digits != 255).all(axis=1)
    key = np.zeros(len(rows), dtype=np.int64)
    for position in range(_KEY_DIGITS):
        key = (key << 4) | digits[:, position].astype(np.int64)
    return np.where(canonical, key, OTHER), rows


def build(trace_ids: pa.Array | pa.ChunkedArray, row_group_rows: int) -> pa.Table:
    """The index of a file whose row groups are ``row_group_rows`` rows of these ids in order."""
    key, rows = keys(trace_ids)
    row_group = (rows // row_group_rows).astype(np.int32)
    order = np.lexsort((row_group, key))
    key, row_group = key[order], row_group[order]
    if len(key):
        distinct = np.empty(len(key), dtype=bool)
        distinct[0] = True
        distinct[1:] = (key[1:] != key[:-1]) | (row_group[1:] != row_group[:-1])
        key, row_group = key[distinct], row_group[distinct]
    return pa.Table.from_arrays([pa.array(key), pa.array(row_group)], schema=SCHEMA)


def write(fs: pafs.FileSystem, path: str, rows: pa.Table, row_group_rows: int) -> None:
    """Write, at ``path``, the index of a data file holding ``rows`` in row groups of ``row_group_rows``."""
    index = build(rows.column("trace_id"), row_group_rows)
    with fs.open_output_stream(prepare_output(fs, path)) as sink:
        pq.write_table(
            index,
            sink,
            row_group_size=INDEX_ROW_GROUP_ROWS,
            compression="zstd",
            use_dictionary=["row_group"],
            column_encoding={"key": "DELTA_BINARY_PACKED"},
            write_page_index=False,
        )


def row_groups(index: ds.ParquetFileFragment, wanted: Iterable[int]) -> list[int]:
    """The data file's row groups that may hold one of the ``wanted`` keys, from its index."""
    wanted_keys = sorted(set(wanted))
    candidates = []
    for group in index.row_groups:
        statistics = (group.statistics or {}).get("key") or {}
        low, high = statistics.get("min"), statistics.get("max")
        if low is None or high is None or any(low <= key <= high for key in wanted_keys):
            candidates.append(group.id)
    if not candidates:
        return []
    found = index.subset(row_group_ids=candidates).to_table(
        filter=pc.field("key").isin(pa.array(wanted_keys, pa.int64()))
    )
    return sorted(set(found.column("row_group").to_pylist()))
