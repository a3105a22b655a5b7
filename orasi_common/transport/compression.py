"""Body compression for OTLP/HTTP: gzip (required by the spec), zstd and identity.

Decompression is bounded: output past ``limit`` bytes is refused with PayloadTooLarge before it
is held in memory, so a small compressed body cannot expand into a huge one (zip bombs).
"""

from __future__ import annotations

import gzip
import zlib

import zstandard

from orasi_common.errors import MalformedData, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = ("gzip", "zstd", "identity")

# zstd input is fed in slices this big: one slice can expand to at most a few MiB (a run-length
# block of 128 KiB costs 4 bytes), which bounds memory past the limit before it is checked.
_SLICE = 256


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the decompressed body is larger than the limit of {limit} bytes")


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limit - len(out) + 1)
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit - len(out) + 1)
        except zlib.error as exc:
            raise MalformedData(f"the gzip body is corrupt: {exc}") from None
        if len(out) > limit:
            raise _too_large(limit)
        if not inflater.eof:
            raise MalformedData("the gzip body is truncated: the stream ends before its trailer")
        data = inflater.unused_data  # a further gzip member, if any
    return bytes(out)


_zstd = zstandard.ZstdDecompressor()


def _unzstd(data: bytes, limit: int) -> bytes:
    out = bytearray()
    while data:
        inflater = _zstd.decompressobj()
        fed = 0
        try:
            while fed < len(data) and not inflater.eof:
                out += inflater.decompress(data[fed : fed + _SLICE])
                fed += _SLICE
                if len(out) > limit:
                    raise _too_large(limit)
        except zstandard.ZstdError as exc:
            raise MalformedData(f"the zstd body is corrupt: {exc}") from None
        if not inflater.eof:
            raise MalformedData("the zstd body is truncated: the frame is incomplete")
        data = inflater.unused_data + data[fed:]  # a further zstd frame, if any
    return bytes(out)


def decompress(encoding: str, data: bytes, limit: int) -> bytes:
    """Decode ``data`` sent with Content-Encoding ``encoding`` into at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(data) > limit:
            raise _too_large(limit)
        return data
    if encoding == "gzip":
        return _gunzip(data, limit)
    if encoding == "zstd":
        return _unzstd(data, limit)
    raise UnsupportedMediaType(
        f"Content-Encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}"
    )


_zstd_compressor = zstandard.ZstdCompressor(level=3)


def compress(encoding: str, data: bytes) -> bytes:
    """Encode ``data`` with ``encoding`` (gzip, zstd or identity/none)."""
    if encoding in ("", "none", "identity"):
        return data
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if encoding == "zstd":
        return _zstd_compressor.compress(data)
    raise ValueError(f"unknown compression {encoding!r}")
