"""OTLP/JSON (the OTLP specification's JSON mapping) to and from protobuf messages.

OTLP/JSON is protobuf's JSON mapping with two differences that this module handles: trace and
span ids are hex strings (not base64), and enums are integers. Unknown fields are ignored, as the
specification requires of receivers.

Nesting is bounded: a document deeper than ``MAX_DEPTH`` JSON levels (objects and arrays) is
refused as malformed, naming the limit, before protobuf sees it. OTLP's own structure takes about
ten levels (request, resource, scope, item, attribute, value) and each nested ``kvlistValue`` or
``arrayValue`` four more, so the limit admits about 25 levels of nested AnyValue maps or arrays,
near protobuf's own bound of 100 nested messages (which the parse still enforces).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from orasi_common.errors import MalformedData

MAX_DEPTH = 128
"""The deepest nesting of JSON objects and arrays an OTLP/JSON body may have."""

# JSON field name → the id's length in bytes. Both the camelCase and the original names are
# accepted, as protobuf's JSON mapping accepts both.
_ID_FIELDS = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def _too_deep() -> MalformedData:
    return MalformedData(
        f"the body nests JSON objects and arrays deeper than {MAX_DEPTH} levels, "
        "the OTLP/JSON depth limit of this receiver"
    )


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite hex id fields in place into the base64 that protobuf's JSON parser expects; raise
    MalformedData past ``MAX_DEPTH`` levels (walked with a stack, not recursion) or for a key that
    is not UTF-8."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, dict):
            for key, value in node.items():
                if not key.isascii() and not _encodable(key):  # upb fails on it with SystemError
                    raise MalformedData(f"{path.lstrip('.') or 'the body'} has a key that is not UTF-8")
                size = _ID_FIELDS.get(key)
                if size is not None and isinstance(value, str):
                    node[key] = _hex_id_as_base64(value, size, f"{path}.{key}")
                elif isinstance(value, dict | list):
                    stack.append((value, f"{path}.{key}", depth + 1))
        else:
            for index, value in enumerate(node):
                if isinstance(value, dict | list):
                    stack.append((value, f"{path}[{index}]", depth + 1))


def _encodable(text: str) -> bool:
    """Whether the string is UTF-8 (JSON's escapes can spell a lone surrogate, which is not)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _hex_id_as_base64(value: str, size: int, path: str) -> str:
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise MalformedData(
            f"{path.lstrip('.')} is {value!r}: an id must be {size * 2} hex digits "
            "(OTLP/JSON encodes trace and span ids as hex, not base64)"
        )
    return base64.b64encode(raw).decode("ascii")


def parse_json(request_type: type[Message], body: bytes) -> Message:
    """Decode an OTLP/JSON body into ``request_type``; raise MalformedData with the reason."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedData(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # nested deeper than the interpreter's stack allows: far past MAX_DEPTH
        raise _too_deep() from None
    if not isinstance(document, dict):
        raise MalformedData(f"an OTLP/JSON body must be a JSON object, not {type(document).__name__}")
    _hex_ids_to_base64(document)
    message = request_type()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise MalformedData(f"the body is not a valid OTLP/JSON {request_type.__name__}: {exc}") from None
    return message


def _base64_ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, dict | list):
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for value in node:
            _base64_ids_to_hex(value)


def to_json(message: Message) -> bytes:
    """Encode a message as OTLP/JSON (hex ids, integer enums, camelCase names)."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    _base64_ids_to_hex(document)
    return json.dumps(document, separators=(",", ":")).encode()
