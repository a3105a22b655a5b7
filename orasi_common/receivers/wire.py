"""Writing OTLP protobuf directly, for receivers that build requests in bulk.

A few helpers for the fields those receivers write (length-delimited fields, varints, string
attributes). A receiver either has the result checked once, as any received request is, by
``Batch.from_serialized`` (``pdata.validate.check_request``: remote write), or guarantees what
that check would accept and takes it with ``Batch.from_own_encoding`` (filelog).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def key_values(pairs: Iterable[tuple[str, str]], number: int) -> bytes:
    """String attributes as repeated KeyValue field ``number``."""
    return b"".join(
        field(number, KeyValue(key=k, value=AnyValue(string_value=v)).SerializeToString()) for k, v in pairs
    )
