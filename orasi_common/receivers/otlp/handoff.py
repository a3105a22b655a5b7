"""The local hand-off between OTLP/gRPC worker processes and the process that owns the pipelines.

A worker validates and counts each request (``Batch.from_serialized``), sends it to the owner as
a batch record (``Batch.to_record``) and answers its client with the owner's verdict: accepted,
or the classified error the pipelines raised. Frames on the Unix socket, little-endian::

    u32 body length, u32 id, body

    worker → owner   id 0: hello, JSON {"pid", "token", "port"} or {"pid", "token", "error"} (first;
                     the token is the one the owner started the worker with)
    worker → owner   id n: a batch record
    owner → worker   id n: its verdict: empty (accepted) or a JSON error (``encode_error``; a
                     partial success is one too, with its ``rejected`` count)
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from orasi_common import errors

HELLO = 0
_HEAD = struct.Struct("<II")


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame's id and body; raises IncompleteReadError at the end of the stream."""
    length, ident = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    return ident, await reader.readexactly(length) if length else b""


def write_frame(writer: asyncio.StreamWriter, ident: int, body: bytes) -> None:
    writer.writelines((_HEAD.pack(len(body), ident), body))


def encode_hello(info: dict[str, Any]) -> bytes:
    return json.dumps(info).encode()


def decode_hello(body: bytes) -> dict[str, Any]:
    info = json.loads(body)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        raise ValueError(f"not a worker's hello: {body[:200]!r}")
    return info


def encode_error(error: errors.OrasiError) -> bytes:
    return json.dumps(
        {
            "type": type(error).__name__,
            "message": error.message,
            "retry_after": getattr(error, "retry_after", None),
            "rejected": getattr(error, "rejected", None),
        }
    ).encode()


def decode_error(body: bytes) -> errors.OrasiError:
    """The error ``encode_error`` wrote, as the same class (an unknown name becomes OrasiError)."""
    fields = json.loads(body)
    kind = getattr(errors, str(fields.get("type")), None)
    message = str(fields.get("message"))
    if not (isinstance(kind, type) and issubclass(kind, errors.OrasiError)):
        return errors.OrasiError(message)
    if issubclass(kind, errors.RetryableError):
        return kind(message, retry_after=fields.get("retry_after"))
    if issubclass(kind, errors.PartialSuccess):
        return kind(message, int(fields.get("rejected") or 0))
    return kind(message)
