"""Resource attributes added to a serialized export request, at the protobuf wire level.

The request is not parsed and not serialised again: only the few ``resource`` messages are
rewritten, and every other byte (scopes, spans, log records, data points) is copied as it is::

    Export*ServiceRequest  field 1, repeated: ResourceSpans | ResourceLogs | ResourceMetrics
      Resource*            field 1: Resource (several occurrences merge, as parsers merge them)
                           other fields (the scopes and their items): copied
        Resource           field 1, repeated: KeyValue — the attributes
                           other fields (dropped_attributes_count, …): copied
          KeyValue         field 1: key (the last occurrence counts), field 2: value

The result parses to what the message-based edit made (``ResourceProcessor._enrich_message``):
a key the sender set is kept, or with ``override`` its last entry (the one a parser's index of
keys ends on) is replaced where it stands; keys not present are appended in order. A group with
no resource gets one. Length prefixes of the rewritten groups are re-encoded.

Anything this module does not expect (a group wire type, a truncated field) raises
:class:`WireEditError`; the caller then edits the parsed message instead.
"""

from __future__ import annotations

from collections.abc import Sequence

_LEN = 2
_TAG_1_LEN = b"\x0a"  # field 1, wire type 2: resource groups, resource, attributes, key


class WireEditError(ValueError):
    """The bytes hold something the wire-level edit does not handle."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireEditError("a varint runs past its message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, field start, payload start, field end) of every field of ``data[start:end]``."""
    out = []
    pos = start
    while pos < end:
        tag, payload = read_varint(data, pos, end)
        wire_type = tag & 7
        if wire_type == 0:
            _, stop = read_varint(data, payload, end)
        elif wire_type == 1:
            stop = payload + 8
        elif wire_type == 5:
            stop = payload + 4
        elif wire_type == _LEN:
            length, payload = read_varint(data, payload, end)
            stop = payload + length
        else:
            raise WireEditError(f"wire type {wire_type} (groups) is not handled")
        if stop > end or tag >> 3 == 0:
            raise WireEditError("a field runs past its message")
        out.append((tag, pos, payload, stop))
        pos = stop
    return out


def _field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | _LEN) + encode_varint(len(payload)) + payload


class ResourceEditor:
    """Adds ``attributes`` (key → one serialized ``KeyValue`` each) to every resource.

    Rewritten resources are cached by their bytes (a sender repeats its resource in every
    request), up to ``cache_size`` of them.
    """

    def __init__(
        self, attributes: Sequence[tuple[str, bytes]], *, override: bool, cache_size: int = 1024
    ) -> None:
        self._keys = [key.encode() for key, _ in attributes]
        self._entries = [_field(1, kv) for _, kv in attributes]
        self._appended_to_empty = b"".join(self._entries)
        self._override = override
        self._cache: dict[bytes, bytes] = {}
        self._cache_size = cache_size

    def edit(self, data: bytes) -> bytes:
        """``data`` (a serialized export request) with the attributes added to each resource."""
        out: list[bytes] = []
        copied = 0
        for tag, start, payload, end in _fields(data, 0, len(data)):
            if tag != 1 << 3 | _LEN:
                continue
            group = self._group(data, payload, end)
            if group is None:
                continue
            out += (data[copied:start], _field(1, group))
            copied = end
        if not out:
            return data
        out.append(data[copied:])
        return b"".join(out)

    def _group(self, data: bytes, start: int, end: int) -> bytes | None:
        """The new payload of one ResourceSpans/Logs/Metrics, or None if it is unchanged."""
        resources = []
        rest = []
        for tag, field_start, payload, stop in _fields(data, start, end):
            if tag == 1 << 3 | _LEN:
                resources.append(data[payload:stop])
            else:
                rest.append(data[field_start:stop])
        resource = b"".join(resources)  # several occurrences of a message field merge
        edited = self._resource(resource)
        if len(resources) == 1 and edited == resource:
            return None
        return b"".join((_field(1, edited), *rest))

    def _resource(self, resource: bytes) -> bytes:
        if not resource:
            return self._appended_to_empty
        edited = self._cache.get(resource)
        if edited is None:
            edited = self._rewrite(resource)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[resource] = edited
        return edited

    def _rewrite(self, resource: bytes) -> bytes:
        if not any(key in resource for key in self._keys):
            return resource + self._appended_to_empty  # no key of ours appears at all
        fields = _fields(resource, 0, len(resource))
        last_of_key: dict[bytes, int] = {}  # key → index in ``fields`` of its last attribute
        for index, (tag, _, payload, stop) in enumerate(fields):
            if tag == 1 << 3 | _LEN:
                last_of_key[self._key(resource, payload, stop)] = index
        replaced: dict[int, bytes] = {}
        appended: list[bytes] = []
        for key, entry in zip(self._keys, self._entries, strict=True):
            found = last_of_key.get(key)
            if found is None:
                appended.append(entry)
            elif self._override:
                replaced[found] = entry
        if not replaced and not appended:
            return resource
        parts = [
            replaced.get(index, resource[field_start:stop])
            for index, (_, field_start, _, stop) in enumerate(fields)
        ]
        return b"".join((*parts, *appended))

    @staticmethod
    def _key(data: bytes, start: int, end: int) -> bytes:
        key = b""
        for tag, _, payload, stop in _fields(data, start, end):
            if tag == 1 << 3 | _LEN:
                key = data[payload:stop]
        return key
