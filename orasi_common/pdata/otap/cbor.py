"""CBOR (RFC 8949) for exactly the shapes an OTLP ``AnyValue`` takes, as OTAP's ``ser`` columns hold.

Mapping, as the reference implementations use it: string → text string, int → integer,
double → float, bool → simple true/false, bytes → byte string, array → array, kvlist → map
with text keys (in their original order; repeated keys are kept), empty value → null.

The encoder writes definite lengths and doubles as 64-bit floats (so every bit pattern, NaN
payloads and -0.0 included, survives). The decoder also reads what other producers write:
indefinite lengths, 16- and 32-bit floats, ``undefined`` (read as an empty value) and tags
(the tag is ignored). Anything else raises :class:`~orasi_common.errors.MalformedData`.

A nested ``KeyValue`` whose ``value`` field is unset is written as null, like a set but empty
value, because null is what other OTAP implementations accept; it decodes as a set empty value.
"""

from __future__ import annotations

import struct
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from orasi_common.errors import MalformedData

_PACK_DOUBLE = struct.Struct(">d").pack
_MAX_DEPTH = 64


def _head(major: int, value: int) -> bytes:
    tag = major << 5
    if value < 24:
        return bytes((tag | value,))
    if value < 0x100:
        return bytes((tag | 24, value))
    if value < 0x10000:
        return bytes((tag | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((tag | 26,)) + value.to_bytes(4, "big")
    return bytes((tag | 27,)) + value.to_bytes(8, "big")


def _encode(value: AnyValue, out: list[bytes]) -> None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        raw = value.string_value.encode()
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif kind == "int_value":
        number = value.int_value
        out.append(_head(0, number) if number >= 0 else _head(1, -1 - number))
    elif kind == "double_value":
        out.append(b"\xfb" + _PACK_DOUBLE(value.double_value))
    elif kind == "bool_value":
        out.append(b"\xf5" if value.bool_value else b"\xf4")
    elif kind == "bytes_value":
        out.append(_head(2, len(value.bytes_value)))
        out.append(value.bytes_value)
    elif kind == "array_value":
        items = value.array_value.values
        out.append(_head(4, len(items)))
        for item in items:
            _encode(item, out)
    elif kind == "kvlist_value":
        pairs = value.kvlist_value.values
        out.append(_head(5, len(pairs)))
        for pair in pairs:
            raw = pair.key.encode()
            out.append(_head(3, len(raw)))
            out.append(raw)
            if pair.HasField("value"):
                _encode(pair.value, out)
            else:
                out.append(b"\xf6")
    elif kind is None:
        out.append(b"\xf6")
    else:  # string_value_strindex: a profiles-only reference, meaningless elsewhere
        raise MalformedData(
            f"AnyValue field {kind} cannot be carried by OTAP; resolve it to a string_value first"
        )


def encode_any_value(value: AnyValue) -> bytes:
    """CBOR bytes of an AnyValue (used for maps and arrays)."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def encode_array(values: ArrayValue) -> bytes:
    """CBOR array of an ArrayValue's items."""
    return encode_any_value(AnyValue(array_value=values))


def encode_kvlist(values: KeyValueList) -> bytes:
    """CBOR map of a KeyValueList."""
    return encode_any_value(AnyValue(kvlist_value=values))


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, why: str) -> MalformedData:
        return MalformedData(f"invalid CBOR in a 'ser' value at byte {self.pos}: {why}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail("truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self) -> tuple[int, int, int]:
        """(major type, additional info, argument); argument is -1 for indefinite length."""
        first = self.take(1)[0]
        major, info = first >> 5, first & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            size = 1 << (info - 24)
            return major, info, int.from_bytes(self.take(size), "big")
        if info == 31 and major in (2, 3, 4, 5, 7):
            return major, info, -1
        raise self.fail(f"reserved additional information {info}")

    def chunks(self, major: int, length: int) -> bytes:
        if length >= 0:
            return self.take(length)
        parts: list[bytes] = []
        while True:
            if self.pos < len(self.data) and self.data[self.pos] == 0xFF:
                self.pos += 1
                return b"".join(parts)
            chunk_major, _, chunk_len = self.head()
            if chunk_major != major or chunk_len < 0:
                raise self.fail("bad chunk in an indefinite-length string")
            parts.append(self.take(chunk_len))

    def at_break(self) -> bool:
        if self.pos >= len(self.data):
            raise self.fail("truncated")
        if self.data[self.pos] == 0xFF:
            self.pos += 1
            return True
        return False

    def value(self, out: AnyValue, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise self.fail(f"nested deeper than {_MAX_DEPTH} levels")
        major, info, arg = self.head()
        if major == 0:
            if arg > 0x7FFFFFFFFFFFFFFF:
                raise self.fail("integer out of the int64 range")
            out.int_value = arg
        elif major == 1:
            if arg > 0x7FFFFFFFFFFFFFFF:
                raise self.fail("integer out of the int64 range")
            out.int_value = -1 - arg
        elif major == 2:
            out.bytes_value = self.chunks(2, arg)
        elif major == 3:
            try:
                out.string_value = self.chunks(3, arg).decode()
            except UnicodeDecodeError:
                raise self.fail("text string is not UTF-8") from None
        elif major == 4:
            out.array_value.SetInParent()
            items = out.array_value.values
            index = 0
            while (arg < 0 and not self.at_break()) or (arg >= 0 and index < arg):
                self.value(items.add(), depth + 1)
                index += 1
        elif major == 5:
            out.kvlist_value.SetInParent()
            self.pairs(out.kvlist_value.values, arg, depth)
        elif major == 6:
            self.value(out, depth + 1)  # tags carry no meaning for AnyValue
        else:
            self.simple(out, info, arg)

    def pairs(self, pairs: Any, count: int, depth: int) -> None:
        index = 0
        while (count < 0 and not self.at_break()) or (count >= 0 and index < count):
            major, _, arg = self.head()
            if major != 3:
                raise self.fail("map keys must be text strings")
            try:
                key = self.chunks(3, arg).decode()
            except UnicodeDecodeError:
                raise self.fail("map key is not UTF-8") from None
            pair: KeyValue = pairs.add(key=key)
            pair.value.SetInParent()
            self.value(pair.value, depth + 1)
            index += 1

    def simple(self, out: AnyValue, info: int, arg: int) -> None:
        if info == 20:
            out.bool_value = False
        elif info == 21:
            out.bool_value = True
        elif info in (22, 23):
            out.Clear()
        elif info == 25:
            out.double_value = _half_to_float(arg)
        elif info == 26:
            out.double_value = struct.unpack(">f", arg.to_bytes(4, "big"))[0]
        elif info == 27:
            out.double_value = struct.unpack(">d", arg.to_bytes(8, "big"))[0]
        else:
            raise self.fail(f"unsupported simple value {info}")


def _half_to_float(bits: int) -> float:
    value: float = struct.unpack(">e", bits.to_bytes(2, "big"))[0]
    return value


def decode_any_value(data: bytes) -> AnyValue:
    """The AnyValue a CBOR item describes; raises MalformedData if it is not one."""
    reader = _Reader(data)
    out = AnyValue()
    reader.value(out, 0)
    if reader.pos != len(data):
        raise reader.fail("trailing bytes after the value")
    return out
