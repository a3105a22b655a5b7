"""Body compression: round trips, truncated and corrupt bodies, bounded decompression."""

from __future__ import annotations

import gzip
import os
import tracemalloc
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from orasi_common.errors import MalformedData, PayloadTooLarge, UnsupportedMediaType
from orasi_common.transport.compression import compress, decompress

MIB = 1024 * 1024
PAYLOADS = [b"", b"x", b"hello " * 1000, os.urandom(300_000)]


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "identity"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=["empty", "one", "text", "random"])
def test_round_trip(encoding: str, payload: bytes) -> None:
    assert decompress(encoding, compress(encoding, payload), MIB) == payload


def test_encoding_names_are_case_and_space_insensitive() -> None:
    body = gzip.compress(b"abc")
    assert decompress(" GZip ", body, 10) == b"abc"
    assert decompress("", b"abc", 10) == b"abc"


def test_compress_none_and_unknown() -> None:
    assert compress("none", b"abc") == b"abc"
    with pytest.raises(ValueError):
        compress("br", b"abc")


def test_gzip_output_is_deterministic() -> None:
    assert compress("gzip", b"same") == compress("gzip", b"same")


@pytest.mark.parametrize("encoding", ["br", "deflate", "x-snappy"])
def test_unknown_encoding_is_unsupported(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decompress(encoding, b"whatever", MIB)
    assert repr(encoding) in caught.value.message
    assert "gzip" in caught.value.message


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_truncated_body_is_malformed(encoding: str) -> None:
    body = compress(encoding, os.urandom(20_000))
    for cut in (1, 5, len(body) // 2, len(body) - 4, len(body) - 1):
        with pytest.raises(MalformedData):
            decompress(encoding, body[:cut], MIB)


def test_corrupt_gzip_is_malformed() -> None:
    body = bytearray(compress("gzip", os.urandom(5000)))
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(MalformedData):
        decompress("gzip", bytes(body), MIB)
    with pytest.raises(MalformedData):
        decompress("gzip", b"\x1f\x8bnot really gzip", MIB)


def test_gzip_with_a_wrong_checksum_is_malformed() -> None:
    body = bytearray(compress("gzip", b"payload" * 100))
    body[-8] ^= 0x01  # CRC32 in the trailer
    with pytest.raises(MalformedData):
        decompress("gzip", bytes(body), MIB)


def test_corrupt_zstd_is_malformed() -> None:
    body = bytearray(compress("zstd", os.urandom(5000)))
    body[0] ^= 0xFF  # the magic number
    with pytest.raises(MalformedData):
        decompress("zstd", bytes(body), MIB)
    with pytest.raises(MalformedData):
        decompress("zstd", b"definitely not zstd", MIB)


def test_zstd_with_checksum_mismatch_is_malformed() -> None:
    body = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(b"payload" * 100))
    body[-1] ^= 0x01
    with pytest.raises(MalformedData):
        decompress("zstd", bytes(body), MIB)


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "identity"])
def test_limit_is_inclusive(encoding: str) -> None:
    payload = os.urandom(10_000)
    body = compress(encoding, payload)
    assert decompress(encoding, body, len(payload)) == payload
    with pytest.raises(PayloadTooLarge) as caught:
        decompress(encoding, body, len(payload) - 1)
    assert str(len(payload) - 1) in caught.value.message


def test_multi_member_gzip() -> None:
    a, b = b"first member " * 50, os.urandom(10_000)
    assert decompress("gzip", gzip.compress(a) + gzip.compress(b), MIB) == a + b


def test_multi_member_gzip_counts_the_limit_over_all_members() -> None:
    member = gzip.compress(b"\0" * 1000)
    assert decompress("gzip", member * 3, 3000) == b"\0" * 3000
    with pytest.raises(PayloadTooLarge):
        decompress("gzip", member * 3, 2999)


def test_small_zstd_frames_concatenate() -> None:
    a, b = os.urandom(100), os.urandom(100)
    assert decompress("zstd", compress("zstd", a) + compress("zstd", b), MIB) == a + b


def test_large_zstd_frames_concatenate() -> None:
    """Two frames whose compressed size passes the decompressor's 4 KiB input slices.

    The rest of the input after the slice in which the first frame ends must not be lost.
    """
    a, b = os.urandom(6000), os.urandom(6000)
    assert decompress("zstd", compress("zstd", a) + compress("zstd", b), MIB) == a + b


def _zeros_gzip(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * MIB
    return b"".join(packer.compress(chunk) for _ in range(size // MIB)) + packer.flush()


def _peak_while(call: object) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            call()  # type: ignore[operator]
        except PayloadTooLarge:
            pass
        else:
            raise AssertionError("expected PayloadTooLarge")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_bomb_is_refused_without_expanding_it() -> None:
    bomb = _zeros_gzip(100 * MIB)
    assert len(bomb) < MIB
    peak = _peak_while(lambda: decompress("gzip", bomb, 4 * MIB))
    assert peak < 16 * MIB, f"decompressing the bomb held {peak / MIB:.0f} MiB"


def test_zstd_bomb_is_refused_without_expanding_it() -> None:
    packer = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = b"\0" * MIB
    bomb = b"".join(packer.compress(chunk) for _ in range(100)) + packer.flush()
    assert len(bomb) < 64 * 1024
    peak = _peak_while(lambda: decompress("zstd", bomb, 4 * MIB))
    assert peak < 16 * MIB, f"decompressing the bomb held {peak / MIB:.0f} MiB"


# --- fuzz: arbitrary bytes only ever give the two classified errors ---------------------------


def _prefixed(prefix: bytes) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=300).map(lambda tail: prefix + tail)


_bodies = st.one_of(
    st.binary(max_size=300),
    _prefixed(b"\x1f\x8b\x08"),  # gzip magic + deflate
    _prefixed(b"\x28\xb5\x2f\xfd"),  # zstd magic
    st.binary(min_size=1, max_size=200).map(lambda p: gzip.compress(p)[: len(p) // 2 + 10]),
)


@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from(["gzip", "zstd"]), body=_bodies, limit=st.integers(0, 2000))
def test_decompress_fuzz(encoding: str, body: bytes, limit: int) -> None:
    try:
        out = decompress(encoding, body, limit)
    except (MalformedData, PayloadTooLarge):
        return
    assert len(out) <= limit
