"""The one unit of data that travels through every pipeline.

A Batch keeps its payload in the form it arrived in and converts lazily, once::

    serialized OTLP bytes ──parse (cached, when first read)──▶ OTLP message
    OTLP message ──serialize (cached)──▶ serialized OTLP bytes
    OTAP tables ──decode (cached, ``codec.decode_tables``)──▶ serialized OTLP bytes
    parts (a merge of batches some of which hold OTAP tables) ──concatenate──▶ OTLP bytes

A batch that arrived as OTAP keeps its tables (``otap``) for consumers that read them directly
(the lake, the OTAP exporter); only reading ``raw`` or ``message`` decodes them (raising
MalformedData when they are not valid). Its ``size_bytes`` is that of the tables' buffers,
merging keeps its tables as a part, and ``to_record`` logs them as Arrow IPC: nothing that holds
or logs a batch converts it.

``raw`` is what exporters send; ``message`` is what processors that read data use; data is
changed either by ``mutable_message()``, which drops the cached bytes so they are re-serialized
once, or by ``replace_serialized()`` with bytes edited at the wire level (the same items), which
drops the parsed form. Merging batches whose bytes are known concatenates them without a parse.

``to_record`` writes one self-describing record (write-ahead logs, the receiver workers'
hand-over), version 2::

    u8 version | u8 signal | u32 items | u8 id length | batch id | u16 tenant length | tenant
    | u64 received_ns | payload
    payload = u8 form | body: OTLP (1) the serialized request; OTAP (2) ``codec.to_ipc``;
              PARTS (3) per part: u32 items | u64 length | payload

Version 1 records (the same head, then the serialized request, no receive time) still read.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from orasi_common.pdata.otlp import count_items, merge_serialized, parse_request, split_request
from orasi_common.pdata.otlp_json import parse_json
from orasi_common.pdata.signal import SPECS, Signal
from orasi_common.pdata.validate import check_request

DEFAULT_TENANT = "default"


_RECORD_HEAD = struct.Struct("<BBIB")  # version, signal, items, batch id length
_RECORD_VERSION = 2
_RECEIVED = struct.Struct("<Q")
_PART_HEAD = struct.Struct("<IQ")  # items, length
_OTLP, _OTAP, _PARTS = 1, 2, 3
_SIGNAL_CODES = {Signal.TRACES: 1, Signal.METRICS: 2, Signal.LOGS: 3}
_SIGNALS_BY_CODE = {code: signal for signal, code in _SIGNAL_CODES.items()}


def new_batch_id() -> str:
    return uuid.uuid4().hex


def derived_id(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


@dataclass(slots=True, eq=False)
class Batch:
    """A group of items of one signal for one tenant.

    ``batch_id`` is the idempotency key: unique, and stable across retries and restarts (merged
    and split batches derive theirs from their parts). ``items`` counts spans, data points or log
    records. ``metadata`` is transport metadata (e.g. headers) kept for exporters.
    ``received_ns`` is when the component that logs it first accepted it (Unix ns; 0: not
    stamped), kept in its record: the lake's observed time of log records that have none.
    """

    signal: Signal
    items: int
    tenant: str = DEFAULT_TENANT
    batch_id: str = field(default_factory=new_batch_id)
    metadata: Mapping[str, str] = field(default_factory=dict)
    received_ns: int = 0
    _raw: bytes | None = None
    _message: Message | None = None
    _otap: Mapping[Any, Any] | None = None
    _parts: tuple[Batch, ...] | None = None
    _decodes: bool = False  # its OTAP tables were found to decode (check_otap)

    @classmethod
    def from_serialized(
        cls, signal: Signal, data: bytes, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        """A received batch from OTLP protobuf bytes, validated and counted without a parse by
        ``validate.check_request`` (it accepts exactly what protobuf's parser accepts):
        MalformedData names the first problem. The message is parsed when first read."""
        return cls(signal, check_request(signal, data), tenant, _raw=data, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_own_encoding(
        cls, signal: Signal, data: bytes, items: int, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        """A batch from OTLP protobuf bytes that Orasi's own code encoded in this process, taken
        without ``from_serialized``'s validating walk.

        The contract is the caller's: ``data`` is a serialized export request of ``signal`` that
        ``check_request`` would accept (protobuf that upb parses, strings valid UTF-8, every value
        within ``validate.RULES``: ids of their length, times below 2^63 ns), holding exactly
        ``items`` items, built by an encoder that guarantees this by construction and whose tests
        hold its output against ``check_request``. Bytes from outside the process — a request, a
        WAL or queue record, another service's payload, anything copied through unchanged — take
        ``from_serialized``. A batch that broke the contract would be acknowledged and fail at a
        later hop, where its sender no longer learns of it."""
        return cls(signal, items, tenant, _raw=data, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_json(
        cls, signal: Signal, body: bytes, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        """A received batch from an OTLP/JSON body, validated as ``from_serialized`` does (the
        bytes are made now: forwarding needs them anyway)."""
        message = parse_json(SPECS[signal].request_type, body)
        data = message.SerializeToString()
        items = check_request(signal, data)
        return cls(signal, items, tenant, _raw=data, _message=message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_message(
        cls, signal: Signal, message: Message, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        return cls(signal, count_items(signal, message), tenant, _message=message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_otap(cls, signal: Signal, items: int, tables: Mapping[Any, Any], **kwargs: Any) -> Batch:
        """A batch of OTAP tables (checked: see ``codec.decode``), decoded to OTLP when first read so."""
        return cls(signal, items, _otap=tables, **kwargs)

    @property
    def otap(self) -> Mapping[Any, Any] | None:
        """The OTAP tables the batch arrived as, while its data has not been changed."""
        return self._otap

    @property
    def parts(self) -> tuple[Batch, ...]:
        """The batches of one form each that this one holds: itself, or the parts of a merge
        that kept OTAP tables (in order)."""
        return self._parts or (self,)

    @property
    def raw(self) -> bytes:
        """The payload as a serialized OTLP export request."""
        if self._raw is None:
            if self._parts is not None:
                self._raw = merge_serialized(part.raw for part in self._parts)
            elif self._message is not None:
                self._raw = self._message.SerializeToString()
            else:
                assert self._otap is not None
                # Here, not at the top: codec imports Batch, and a process that only handles
                # OTLP (the agent) never loads pyarrow.
                from orasi_common.pdata.otap import codec

                self._raw = codec.decode_tables(self.signal, self._otap)
        return self._raw

    def check_otap(self) -> None:
        """Raise MalformedData unless the batch's OTAP tables decode to a valid request (blocking:
        run it in a thread). Receiving OTAP checks only what is cheap (``codec.decode``); a
        component that holds a batch after accepting it (a queue, the batch processor) calls
        this first, so that the sender, not a later hop, learns of tables that do not decode.
        Nothing to do for other forms (their receivers validated them) or once checked."""
        if self._otap is not None and self._raw is None and not self._decodes:
            from orasi_common.pdata.otap import codec  # see ``raw``

            codec.decode_tables(self.signal, self._otap)  # the bytes are not kept: memory
            self._decodes = True

    @property
    def message(self) -> Message:
        """The payload as a parsed OTLP export request; do not modify it (see mutable_message)."""
        if self._message is None:
            self._message = parse_request(self.signal, self.raw)
        return self._message

    def mutable_message(self) -> Message:
        """The parsed payload, for changing it in place; the serialized form is re-made later."""
        message = self.message
        self._raw = self._otap = self._parts = None
        return message

    def replace_serialized(self, data: bytes) -> None:
        """Replace the payload by ``data``: a serialized request of the same items, edited at the
        wire level (e.g. resource attributes added). The parsed form and tables are dropped."""
        if data is not self._raw:
            self._raw = data
            self._message = self._otap = self._parts = None

    @property
    def size_bytes(self) -> int:
        """Size of the payload: of the serialized request, or of the OTAP tables' buffers (the
        same for the batch's whole life: queues add and subtract it)."""
        if self._parts is not None:
            return sum(part.size_bytes for part in self._parts)
        if self._otap is not None:
            return sum(table.get_total_buffer_size() for table in self._otap.values())
        if self._raw is None and self._message is not None:
            return self._message.ByteSize()
        return len(self.raw)

    def release_message(self) -> None:
        """Drop the parsed form when the bytes are known (to hold less memory while queued)."""
        if self._raw is not None:
            self._message = None

    def copy(self) -> Batch:
        """An independent batch with the same items (bytes and tables are shared: they are
        immutable; a message without bytes is copied)."""
        message = None
        if self._raw is None and self._message is not None:
            message = type(self._message)()
            message.CopyFrom(self._message)
        return Batch(
            self.signal,
            self.items,
            self.tenant,
            self.batch_id,
            self.metadata,
            self.received_ns,
            _raw=self._raw,
            _message=message,
            _otap=self._otap,
            _parts=self._parts,
        )

    @classmethod
    def merge(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding every item of ``batches`` (same signal and tenant), in order: their
        OTLP bytes concatenated, or, when some hold OTAP tables not yet decoded, their parts."""
        first = batches[0]
        if len(batches) == 1:
            return first
        merged = cls(
            first.signal,
            sum(b.items for b in batches),
            first.tenant,
            derived_id(*(b.batch_id for b in batches)),
            first.metadata,
            min((b.received_ns for b in batches if b.received_ns), default=0),
        )
        if any(b._raw is None and (b._otap is not None or b._parts is not None) for b in batches):
            merged._parts = tuple(part for b in batches for part in b.parts)
        else:
            merged._raw = merge_serialized(b.raw for b in batches)
        return merged

    def to_record(self) -> bytes:
        """The batch as one self-describing record (see the module docstring), its payload in the
        form it holds (OTAP tables as Arrow IPC: call it off the event loop then)."""
        batch_id = self.batch_id.encode("ascii")
        tenant = self.tenant.encode()
        return b"".join(
            (
                _RECORD_HEAD.pack(_RECORD_VERSION, _SIGNAL_CODES[self.signal], self.items, len(batch_id)),
                batch_id,
                struct.pack("<H", len(tenant)),
                tenant,
                _RECEIVED.pack(self.received_ns),
                *self._payload(),
            )
        )

    def _payload(self) -> list[bytes]:
        if self._parts is not None:
            out = [bytes([_PARTS])]
            for part in self._parts:
                payload = b"".join(part._payload())
                out += [_PART_HEAD.pack(part.items, len(payload)), payload]
            return out
        if self._otap is not None:
            from orasi_common.pdata.otap import codec  # see ``raw``

            return [bytes([_OTAP]), codec.to_ipc(self._otap)]
        return [bytes([_OTLP]), self.raw]

    @classmethod
    def from_record(cls, record: bytes) -> Batch:
        """The batch ``to_record`` wrote (or a version 1 record); the payload is not parsed or
        decoded until it is needed."""
        version, signal, items, id_length = _RECORD_HEAD.unpack_from(record)
        if version not in (1, _RECORD_VERSION) or signal not in _SIGNALS_BY_CODE:
            raise ValueError(f"not a batch record (version {version}, signal {signal})")
        offset = _RECORD_HEAD.size
        batch_id = record[offset : offset + id_length].decode("ascii")
        offset += id_length
        (tenant_length,) = struct.unpack_from("<H", record, offset)
        offset += 2
        tenant = record[offset : offset + tenant_length].decode()
        offset += tenant_length
        batch = cls(_SIGNALS_BY_CODE[signal], items, tenant, batch_id)
        if version == 1:
            batch._raw = record[offset:]
            return batch
        (batch.received_ns,) = _RECEIVED.unpack_from(record, offset)
        batch._read_payload(memoryview(record)[offset + _RECEIVED.size :])
        return batch

    def _read_payload(self, payload: memoryview) -> None:
        form, body = payload[0], payload[1:]
        if form == _OTLP:
            self._raw = bytes(body)
        elif form == _OTAP:
            from orasi_common.pdata.otap import codec  # see ``raw``

            self._otap = codec.from_ipc(body)
        elif form == _PARTS:
            parts, offset = [], 0
            while offset < len(body):
                items, length = _PART_HEAD.unpack_from(body, offset)
                offset += _PART_HEAD.size
                part = Batch(self.signal, items, self.tenant, self.batch_id, received_ns=self.received_ns)
                part._read_payload(body[offset : offset + length])
                parts.append(part)
                offset += length
            self._parts = tuple(parts)
        else:
            raise ValueError(f"not a batch record (payload form {form})")

    def split(self, max_items: int) -> list[Batch]:
        """Batches of at most ``max_items`` items each; self when it already fits."""
        if self.items <= max_items:
            return [self]
        parts = split_request(self.signal, self.message, max_items)
        return [
            Batch.from_message(
                self.signal,
                part,
                tenant=self.tenant,
                batch_id=derived_id(self.batch_id, str(index)),
                metadata=self.metadata,
                received_ns=self.received_ns,
            )
            for index, part in enumerate(parts)
        ]
