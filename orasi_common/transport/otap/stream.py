"""OTAP stream mode: one Arrow IPC stream per payload type inside one gRPC stream.

Producer side (``StreamProducer``), per gRPC stream:

- a payload type's IPC stream keeps one *stable* schema: the union of the columns its batches
  have carried. A column seen once stays, holding nulls in batches that do not use it (an
  absent optional column and an all-null one mean the same to OTAP readers), so after a short
  warm-up batches of one type share their schema and dictionaries. The schema is reset (a new
  IPC stream under a new ``schema_id``, the producer's count of IPC streams in hexadecimal, with
  fresh dictionaries) only when a column appears, changes type, field metadata or nullability,
  or a dictionary is about to overflow its index type; ``on_reset`` is told of each reset (the
  exporter counts them in ``orasi_otap_schema_resets_total``);
- string columns (top level and inside struct columns) are dictionary-encoded against a
  dictionary that grows across the stream's batches, so each batch sends only a *delta* of new
  values; indices are u8 while a dictionary holds at most 255 values, else u16 (one reset when a
  column outgrows u8). A column whose first batch is mostly distinct values (log bodies,
  request ids) is sent plain instead: a dictionary would only add an index per row; a plain
  column whose later batch mostly repeats its values moves to a dictionary (one reset, once per
  column and gRPC stream); a column with more distinct values in one batch than a dictionary
  holds is sent plain on its IPC stream;
- IPC buffers are zstd-compressed, at the level (1 or 3, or the one ``zstd_level`` sets) that
  writes the IPC stream's first batch smallest; or, with ``compression="auto"``, compressed or
  not, whichever leaves that batch smallest once the gRPC call has compressed its message
  (``message_compression``: gzip, grpcio's codec). Across a whole message gzip also matches
  what repeats between buffers and payloads (a parent id and the span id it names, the IPC
  metadata), so some tables travel smaller uncompressed and others in zstd; the IPC stream's
  first batch decides.

Consumer side (``StreamConsumer``) keeps one IPC reader per (payload type, schema_id), fed
payload by payload; a new ``schema_id`` for a type replaces that type's reader.
"""

from __future__ import annotations

import io
import secrets
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan
from orasi_common.pdata.otap.payload_types import ArrowPayloadType
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2

INDEX_TYPE = pa.uint16()
MAX_DICTIONARY = 65535
# the narrowest index type: a dictionary whose first batch has at most NARROW_FIRST values
# starts with u8 indices (half the bytes of u16 before compression); one that outgrows 255
# values resets the schema and is u16 from then on, on this gRPC stream
NARROW_INDEX_TYPE = pa.uint8()
NARROW_MAX = 255
NARROW_FIRST = 64
# zstd levels an IPC stream chooses from, by trial on its first batch. Arrow's default, 1,
# leaves repetitive buffers (histogram bounds, list offsets, constant columns) several times
# larger than 3 does (metrics shrink by a fifth), while 1 does slightly better on random ids,
# timestamps and text (spans, logs).
ZSTD_LEVELS = (1, 3)
ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL = 1, 22
# a text column whose first batch has at least this many values, more than half of them
# distinct, is sent plain on its IPC stream rather than dictionary-encoded
PLAIN_MIN_ROWS = 64
# a column sent plain whose batch holds at most one distinct value in REPEATED_SHARE rows resets
# its IPC stream to a dictionary, once per gRPC stream (log systems differ: one repeats its
# messages, another never does)
REPEATED_SHARE = 4
_SEED = secrets.randbits(64)  # keys the dictionaries' native hash (their strings come from senders)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _mostly_distinct(column: pa.Array) -> bool:
    """Whether most values of a text column are distinct (log bodies, request ids), judged on
    enough rows: a dictionary would grow by nearly every value and add an index per row."""
    present: int = len(column) - column.null_count
    return present >= PLAIN_MIN_ROWS and int(pc.count_distinct(column).as_py()) * 2 > present


def _mostly_repeated(column: pa.Array) -> bool:
    """Whether a text column sent plain now repeats most of its values (at most one in
    ``REPEATED_SHARE`` distinct, on enough rows): a dictionary would pay for its reset."""
    present: int = len(column) - column.null_count
    return present >= PLAIN_MIN_ROWS and int(pc.count_distinct(column).as_py()) * REPEATED_SHARE <= present


class _Dictionary:
    """The values one column has sent on this IPC stream, in index order, and their hash table
    (``_wirescan.Dictionary``, kept from batch to batch: a batch hashes its own rows only)."""

    def __init__(self, index_type: pa.DataType, limit: int) -> None:
        self.index_type = index_type
        self.limit = limit
        self.values: pa.Array = pa.array([], pa.string())
        self._table = _wirescan.Dictionary(_SEED)

    def encode(self, column: pa.Array) -> pa.DictionaryArray | None:
        """``column`` as indices into the grown dictionary, which takes its new values in order
        of first appearance; None, the dictionary unchanged, if it would pass ``limit``."""
        if pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        validity, offsets, data = column.buffers()
        nulls = column.null_count
        found = self._table.encode(
            validity if nulls else None,
            b"" if offsets is None else offsets,
            b"" if data is None else data,
            column.offset,
            len(column),
            self.limit,
            self.index_type.bit_width // 8,
        )
        if found is None:
            return None
        indices, bitmap, new_offsets, new_data = found
        if len(new_offsets) > 4:
            new = pa.Array.from_buffers(
                pa.string(),
                len(new_offsets) // 4 - 1,
                [None, pa.py_buffer(new_offsets), pa.py_buffer(new_data)],
            )
            self.values = pa.concat_arrays([self.values, new])
        valid = None if bitmap is None else pa.py_buffer(bitmap)
        numbers = pa.Array.from_buffers(self.index_type, len(column), [valid, pa.py_buffer(indices)], nulls)
        return pa.DictionaryArray.from_arrays(numbers, self.values)


def _merged_field(old: pa.Field, new: pa.Field) -> tuple[pa.Field, bool]:
    """The stream's field for a column it had as ``old`` and a batch brings as ``new``, and
    whether the IPC schema must change for it."""
    if pa.types.is_struct(old.type) and pa.types.is_struct(new.type):
        children, changed = _merged_fields(list(old.type), list(new.type))
        merged = old.with_type(pa.struct(children))
    elif old.type == new.type:
        merged, changed = old, False
    else:
        return new.with_nullable(new.nullable or old.nullable), True
    if new.nullable and not old.nullable:
        merged, changed = merged.with_nullable(True), True
    if (new.metadata or None) != (old.metadata or None):
        merged, changed = merged.with_metadata(new.metadata or {}), True
    return merged, changed


def _merged_fields(old: Sequence[pa.Field], new: Sequence[pa.Field]) -> tuple[list[pa.Field], bool]:
    """The union of the stream's columns and a batch's, in the stream's order then the batch's:
    a column the batch lacks stays (nullable, to hold its nulls); a new one is appended."""
    incoming = {f.name: f for f in new}
    fields, changed = [], False
    for mine in old:
        other = incoming.pop(mine.name, None)
        if other is None:
            if not mine.nullable:
                mine, changed = mine.with_nullable(True), True
            fields.append(mine)
            continue
        mine, field_changed = _merged_field(mine, other)
        fields.append(mine)
        changed |= field_changed
    fields += [f.with_nullable(True) for f in incoming.values()]
    return fields, changed or bool(incoming)


def _merged_schema(old: pa.Schema, new: pa.Schema) -> tuple[pa.Schema, bool]:
    """The stream's schema after a batch of schema ``new``, and whether it changed."""
    if new.equals(old, check_metadata=True):
        return old, False
    fields, changed = _merged_fields(list(old), list(new))
    changed |= (new.metadata or None) != (old.metadata or None)
    return pa.schema(fields, new.metadata), changed


def _conformed(column: pa.Array | None, field: pa.Field, n: int) -> pa.Array:
    """The column as the stream's ``field`` has it: nulls when absent, struct children filled."""
    if column is None:
        return pa.nulls(n, field.type)
    if pa.types.is_struct(field.type) and column.type != field.type:
        names = [column.type.field(i).name for i in range(column.type.num_fields)]
        present = dict(zip(names, column.flatten(), strict=True))
        children = [_conformed(present.get(child.name), child, n) for child in field.type]
        mask = column.is_null() if column.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(field.type), mask=mask)
    return column


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with the columns (and order) of the stream's ``schema``."""
    if batch.schema.equals(schema, check_metadata=True):
        return batch
    present = dict(zip(batch.schema.names, batch.columns, strict=True))
    arrays = [_conformed(present.get(field.name), field, batch.num_rows) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def gzip_message(data: bytes) -> bytes:
    """``data`` gzip-compressed as grpcio compresses a message (zlib's default level)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def gzip_size(data: bytes) -> int:
    """The size of ``data`` once grpcio's gzip compressed it (``gzip_message``)."""
    return len(gzip_message(data))


def _options(compression: pa.Codec | str | None) -> pa.ipc.IpcWriteOptions:
    # use_threads=False: buffers of one batch are small (a few KB); handing each one to Arrow's
    # thread pool to compress costs a third more CPU than compressing them in the caller's
    # thread, and the services already run one codec call per core
    return pa.ipc.IpcWriteOptions(compression=compression, emit_dictionary_deltas=True, use_threads=False)


class _PayloadWriter:
    """One IPC stream of one payload type, with the dictionaries its text columns grow."""

    def __init__(
        self,
        schema: pa.Schema,
        schema_id: str,
        compression: str | None,
        zstd_levels: tuple[int, ...],
        sent_size: Callable[[bytes], int],
        max_dictionary: int,
        wide: set[str],
        repeated: set[str],
    ) -> None:
        self.schema = schema  # the schema of the batches it takes, before dictionary encoding
        self.schema_id = schema_id
        self._max_dictionary = max_dictionary
        self._wide = wide  # columns that outgrew u8 indices on this gRPC stream (shared, grows)
        self._repeated = repeated  # columns once sent plain, then found repeating: dictionaries
        self._dictionaries: dict[str, _Dictionary] = {}
        self._plain: set[str] = set()  # text columns too varied for a dictionary: sent as they are
        self._sink = io.BytesIO()
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._compression = compression
        self._zstd_levels = zstd_levels
        self._sent_size = sent_size  # bytes of an IPC message once the gRPC call compressed it

    def encode(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """The batch with its text columns dictionary-encoded; None when a dictionary overflows."""
        arrays = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            encoded = self._encode_column(name, column)
            if encoded is None:
                return None
            arrays.append(encoded)
        # Field metadata (e.g. the `encoding` of id columns) and nullability travel unchanged.
        schema = pa.schema(
            [f.with_type(a.type) for f, a in zip(batch.schema, arrays, strict=True)], batch.schema.metadata
        )
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _encode_column(self, path: str, column: pa.Array) -> pa.Array | None:
        if _is_text(column.type):
            if self._writer is None and path not in self._repeated and _mostly_distinct(column):
                self._plain.add(path)  # an index per row on top of every value would only add bytes
            if path in self._plain:
                if self._writer is not None and path not in self._repeated and _mostly_repeated(column):
                    self._repeated.add(path)
                    return None  # a new IPC stream, with a dictionary for this column
                return column.cast(pa.string())
            dictionary = self._dictionaries.get(path)
            if dictionary is None:
                dictionary = self._dictionaries[path] = self._new_dictionary(path, column)
            encoded = dictionary.encode(column)
            if encoded is None and dictionary.limit < self._max_dictionary:
                self._wide.add(path)  # outgrew u8 indices: u16 from now on
                if self._writer is None:
                    self._dictionaries[path] = _Dictionary(INDEX_TYPE, self._max_dictionary)
                    return self._encode_column(path, column)
            if encoded is None and self._writer is None:
                # Before the schema is sent, a column that overflows alone is sent plain instead.
                self._plain.add(path)
                del self._dictionaries[path]
                return column.cast(pa.string())
            return encoded
        if pa.types.is_struct(column.type):
            fields = [column.type.field(i) for i in range(column.type.num_fields)]
            children = []
            for child_field, child_column in zip(fields, column.flatten(), strict=True):
                child = self._encode_column(f"{path}.{child_field.name}", child_column)
                if child is None:
                    return None
                children.append(child)
            mask = column.is_null() if column.null_count else None
            return pa.StructArray.from_arrays(
                children,
                fields=[f.with_type(c.type) for f, c in zip(fields, children, strict=True)],
                mask=mask,
            )
        return column

    def _new_dictionary(self, path: str, first: pa.Array) -> _Dictionary:
        """u8 indices for a column with few values in its first batch, else u16."""
        if path not in self._wide and int(pc.count_distinct(first).as_py()) <= NARROW_FIRST:
            return _Dictionary(NARROW_INDEX_TYPE, min(NARROW_MAX, self._max_dictionary))
        return _Dictionary(INDEX_TYPE, self._max_dictionary)

    def _options_for(self, first: pa.RecordBatch) -> pa.ipc.IpcWriteOptions:
        """The stream's write options: the candidate that writes the first batch smallest as it
        travels (``_sent_size``), the cheaper one on a tie. For zstd its levels (by default
        ``ZSTD_LEVELS``: random ids and numbers do better at 1, repeated lists and offsets at 3);
        for auto no compression too."""
        if self._compression is None:
            return _options(None)
        candidates: list[pa.Codec | None] = [
            pa.Codec("zstd", compression_level=level) for level in self._zstd_levels
        ]
        if self._compression == "auto":
            candidates.insert(0, None)
        sizes = []
        for rank, codec in enumerate(candidates):
            options = _options(codec)
            trial = io.BytesIO()
            with pa.ipc.new_stream(trial, first.schema, options=options) as writer:
                writer.write_batch(first)
            sizes.append((self._sent_size(trial.getvalue()), rank, options))
        return min(sizes, key=lambda size: size[:2])[2]

    def write(self, batch: pa.RecordBatch) -> bytes:
        """The IPC messages of ``batch``: the schema first time, dictionary deltas, the batch."""
        if self._writer is None:
            self._writer = pa.ipc.new_stream(self._sink, batch.schema, options=self._options_for(batch))
        self._writer.write_batch(batch)
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data


class StreamProducer:
    """Encodes OTAP tables into ``ArrowPayload``s for one gRPC stream.

    ``compression``: of the IPC buffers, ``"zstd"``, ``"auto"`` (zstd or none per IPC stream, see
    above) or None; ``message_compression``: what the gRPC call does to each message (``"gzip"``
    or None), which ``auto`` judges its candidates by; ``zstd_level``: the one zstd level to use
    (1-22: higher levels send fewer bytes for more CPU), by default the better of
    ``ZSTD_LEVELS`` per IPC stream. ``on_reset`` is called with the payload type whenever that
    type's schema is reset.
    """

    def __init__(
        self,
        compression: str | None = "zstd",
        max_dictionary: int = MAX_DICTIONARY,
        on_reset: Callable[[ArrowPayloadType], None] | None = None,
        message_compression: str | None = None,
        zstd_level: int | None = None,
    ) -> None:
        if compression not in ("zstd", "auto", None) or message_compression not in ("gzip", None):
            raise ValueError(f"unknown compression {compression!r} / {message_compression!r}")
        if zstd_level is not None and not ZSTD_MIN_LEVEL <= zstd_level <= ZSTD_MAX_LEVEL:
            raise ValueError(f"zstd level {zstd_level} is not in {ZSTD_MIN_LEVEL}-{ZSTD_MAX_LEVEL}")
        self._compression = compression
        self._zstd_levels = ZSTD_LEVELS if zstd_level is None else (zstd_level,)
        self._sent_size = gzip_size if message_compression == "gzip" else len
        self._max_dictionary = max_dictionary
        self._on_reset = on_reset
        self._writers: dict[int, _PayloadWriter] = {}
        self._wide: dict[int, set[str]] = {}  # per payload type, see _PayloadWriter
        self._repeated: dict[int, set[str]] = {}  # likewise
        self._generation = 0
        self.resets: Counter[ArrowPayloadType] = Counter()

    @property
    def schema_resets(self) -> int:
        """Schema resets so far, all payload types together."""
        return sum(self.resets.values())

    def encode(self, tables: Mapping[ArrowPayloadType, pa.RecordBatch]) -> list[otap_pb2.ArrowPayload]:
        payloads = []
        for payload_type, batch in tables.items():
            writer = self._writers.get(payload_type)
            encoded = None
            if writer is None:
                schema = batch.schema
            else:
                schema, changed = _merged_schema(writer.schema, batch.schema)
                if not changed:
                    encoded = writer.encode(_conform(batch, schema))
            if encoded is None:  # first batch of this type, a new column or type, a dictionary overflow
                if writer is not None:
                    self.resets[ArrowPayloadType(payload_type)] += 1
                    if self._on_reset is not None:
                        self._on_reset(ArrowPayloadType(payload_type))
                self._generation += 1
                writer = _PayloadWriter(
                    schema,
                    # in every payload, so short: a digest of the schema would cost a dozen bytes
                    # per payload type and batch (1-2 % of a 100-item batch)
                    f"{self._generation:x}",
                    self._compression,
                    self._zstd_levels,
                    self._sent_size,
                    self._max_dictionary,
                    self._wide.setdefault(payload_type, set()),
                    self._repeated.setdefault(payload_type, set()),
                )
                encoded = writer.encode(_conform(batch, schema))
                assert encoded is not None  # a fresh writer sends overflowing columns plain
                self._writers[payload_type] = writer
            assert writer is not None
            record = writer.write(encoded)
            payloads.append(
                otap_pb2.ArrowPayload(
                    schema_id=writer.schema_id,
                    type=payload_type,  # type: ignore[arg-type]
                    record=record,
                )
            )
        return payloads


# decompressing a batch's few-KB buffers in the caller's thread costs less CPU than the pool
_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)


class _FeedBuffer(io.RawIOBase):
    """A readable stream that payloads are appended to; IPC readers consume it message by message."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` of the bytes fed so far (never allocating what a header claims)."""
        size = len(self._data) if size is None or size < 0 else min(size, len(self._data))
        data = bytes(self._data[:size])
        del self._data[:size]
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), len(self._data))
        buffer[:size] = self._data[:size]
        del self._data[:size]
        return size

    @property
    def pending(self) -> int:
        return len(self._data)


@dataclass
class _PayloadReader:
    schema_id: str
    source: _FeedBuffer
    reader: pa.ipc.RecordBatchStreamReader | None = None


def _utf8_names(schema: pa.Schema) -> None:
    """UnicodeDecodeError unless every field name (nested ones too) is UTF-8: pyarrow decodes a
    name only when it is read, which later code does everywhere."""
    fields = list(schema)
    while fields:
        field = fields.pop()
        field.name  # noqa: B018 (decoded when read)
        fields += [field.type.field(i) for i in range(field.type.num_fields)]


class StreamConsumer:
    """Decodes ``ArrowPayload``s of one gRPC stream back into record batches."""

    def __init__(self) -> None:
        self._readers: dict[int, _PayloadReader] = {}

    def decode(self, payloads: Iterable[otap_pb2.ArrowPayload]) -> dict[ArrowPayloadType, pa.RecordBatch]:
        tables: dict[ArrowPayloadType, pa.RecordBatch] = {}
        for payload in payloads:
            try:
                kind = ArrowPayloadType(payload.type)
            except ValueError:
                raise MalformedData(f"unknown OTAP payload type {payload.type}") from None
            current = self._readers.get(payload.type)
            if current is None or current.schema_id != payload.schema_id:
                current = self._readers[payload.type] = _PayloadReader(payload.schema_id, _FeedBuffer())
            current.source.feed(payload.record)
            try:
                if current.reader is None:
                    current.reader = pa.ipc.open_stream(
                        pa.PythonFile(current.source, mode="r"), options=_READ_OPTIONS
                    )
                batch = current.reader.read_next_batch()
                batch.validate(full=True)  # offsets and indices inside their buffers, before use
                _utf8_names(batch.schema)
            except (
                pa.ArrowInvalid,
                pa.ArrowException,
                StopIteration,
                OSError,
                MemoryError,
                UnicodeDecodeError,
            ) as exc:
                del self._readers[payload.type]
                raise MalformedData(
                    f"payload type {payload.type} (schema {payload.schema_id!r}) is not a valid "
                    f"Arrow IPC stream continuation: {exc}"
                ) from None
            if current.source.pending:
                del self._readers[payload.type]
                raise MalformedData(
                    f"payload type {payload.type} holds {current.source.pending} bytes past its record batch"
                )
            if kind in tables:
                raise MalformedData(f"payload type {payload.type} appears twice in one batch")
            tables[kind] = batch
        return tables
