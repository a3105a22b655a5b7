"""The one unit of data that travels through every pipeline.

A Batch keeps its payload in the form it arrived in and converts lazily, once::

    serialized OTLP bytes ──parse (cached)──▶ OTLP message
    OTLP message ──serialize (cached)──▶ serialized OTLP bytes
    OTAP tables ──decode (cached)──▶ serialized OTLP bytes

A batch that arrived as OTAP keeps its tables (``otap``) for consumers that read them directly
(the lake); reading ``raw``, ``message`` or ``size_bytes`` decodes them, raising MalformedData
when they are not valid, so a component that holds batches after accepting them (which reads
their size) validates them while the sender still waits for the answer.

``raw`` is what exporters send; ``message`` is what processors that read data use;
``mutable_message()`` is the only way to change data, and it drops the cached bytes so they are
re-serialized once. Merging batches whose bytes are known concatenates them without a parse.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from orasi_common.pdata.otlp import count_items, merge_serialized, parse_request, split_request
from orasi_common.pdata.otlp_json import parse_json
from orasi_common.pdata.signal import SPECS, Signal
from orasi_common.pdata.validate import check_request

DEFAULT_TENANT = "default"


_RECORD_HEAD = struct.Struct("<BBIB")  # version, signal, items, batch id length
_RECORD_VERSION = 1
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
    """

    signal: Signal
    items: int
    tenant: str = DEFAULT_TENANT
    batch_id: str = field(default_factory=new_batch_id)
    metadata: Mapping[str, str] = field(default_factory=dict)
    _raw: bytes | None = None
    _message: Message | None = None
    _otap: Mapping[Any, Any] | None = None
    _decode_otap: Callable[[], bytes] | None = None

    @classmethod
    def from_serialized(
        cls, signal: Signal, data: bytes, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        """A received batch from OTLP protobuf bytes, counted by one parse and validated by it
        and by ``validate.check_request``: MalformedData names the first problem."""
        return cls._received(signal, parse_request(signal, data), data, tenant, kwargs)

    @classmethod
    def from_json(
        cls, signal: Signal, body: bytes, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        """A received batch from an OTLP/JSON body, validated as ``from_serialized`` does (the
        bytes are made now: forwarding needs them anyway)."""
        message = parse_json(SPECS[signal].request_type, body)
        return cls._received(signal, message, message.SerializeToString(), tenant, kwargs)

    @classmethod
    def _received(
        cls, signal: Signal, message: Message, data: bytes, tenant: str, kwargs: Mapping[str, object]
    ) -> Batch:
        check_request(signal, data)
        return cls(signal, count_items(signal, message), tenant, _raw=data, _message=message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_message(
        cls, signal: Signal, message: Message, *, tenant: str = DEFAULT_TENANT, **kwargs: object
    ) -> Batch:
        return cls(signal, count_items(signal, message), tenant, _message=message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_otap(
        cls, signal: Signal, items: int, tables: Mapping[Any, Any], decode: Callable[[], bytes], **kwargs: Any
    ) -> Batch:
        """A batch of OTAP tables; ``decode`` makes its OTLP bytes when they are first needed."""
        return cls(signal, items, _otap=tables, _decode_otap=decode, **kwargs)

    @property
    def otap(self) -> Mapping[Any, Any] | None:
        """The OTAP tables the batch arrived as, while its data has not been changed."""
        return self._otap

    @property
    def raw(self) -> bytes:
        """The payload as a serialized OTLP export request."""
        if self._raw is None:
            if self._message is None:
                assert self._decode_otap is not None
                self._raw = self._decode_otap()
                self._decode_otap = None
            else:
                self._raw = self._message.SerializeToString()
        return self._raw

    @property
    def message(self) -> Message:
        """The payload as a parsed OTLP export request; do not modify it (see mutable_message)."""
        if self._message is None:
            self._message = parse_request(self.signal, self.raw)
        return self._message

    def mutable_message(self) -> Message:
        """The parsed payload, for changing it in place; the serialized form is re-made later."""
        message = self.message
        self._raw = self._otap = None
        return message

    @property
    def size_bytes(self) -> int:
        """Size of the serialized payload."""
        if self._raw is None and self._message is not None:
            return self._message.ByteSize()
        return len(self.raw)

    def release_message(self) -> None:
        """Drop the parsed form when the bytes are known (to hold less memory while queued)."""
        if self._raw is not None:
            self._message = None

    def copy(self) -> Batch:
        """An independent batch with the same items (the bytes are shared; they are immutable)."""
        if self._raw is not None or self._message is None:
            return Batch(
                self.signal,
                self.items,
                self.tenant,
                self.batch_id,
                self.metadata,
                _raw=self._raw,
                _otap=self._otap,
                _decode_otap=self._decode_otap,
            )
        clone = type(self.message)()
        clone.CopyFrom(self.message)
        return Batch(self.signal, self.items, self.tenant, self.batch_id, self.metadata, _message=clone)

    @classmethod
    def merge(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding every item of ``batches`` (same signal and tenant), in order."""
        first = batches[0]
        if len(batches) == 1:
            return first
        return cls(
            first.signal,
            sum(b.items for b in batches),
            first.tenant,
            derived_id(*(b.batch_id for b in batches)),
            first.metadata,
            _raw=merge_serialized(b.raw for b in batches),
        )

    def to_record(self) -> bytes:
        """The batch as one self-describing record (for write-ahead logs)."""
        batch_id = self.batch_id.encode("ascii")
        tenant = self.tenant.encode()
        return b"".join(
            (
                _RECORD_HEAD.pack(_RECORD_VERSION, _SIGNAL_CODES[self.signal], self.items, len(batch_id)),
                batch_id,
                struct.pack("<H", len(tenant)),
                tenant,
                self.raw,
            )
        )

    @classmethod
    def from_record(cls, record: bytes) -> Batch:
        """The batch ``to_record`` wrote; the payload is not parsed until it is needed."""
        version, signal, items, id_length = _RECORD_HEAD.unpack_from(record)
        if version != _RECORD_VERSION or signal not in _SIGNALS_BY_CODE:
            raise ValueError(f"not a batch record (version {version}, signal {signal})")
        offset = _RECORD_HEAD.size
        batch_id = record[offset : offset + id_length].decode("ascii")
        offset += id_length
        (tenant_length,) = struct.unpack_from("<H", record, offset)
        offset += 2
        tenant = record[offset : offset + tenant_length].decode()
        offset += tenant_length
        return cls(_SIGNALS_BY_CODE[signal], items, tenant, batch_id, _raw=record[offset:])

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
            )
            for index, part in enumerate(parts)
        ]
