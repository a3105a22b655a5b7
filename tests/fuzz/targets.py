"""The fuzz targets: one function per decoder of hostile input, and the contract they are held to.

A target takes bytes and drives them through a decoder as a receiver would. The contract
(:func:`check`): the target returns, or raises one of its decoder's documented errors
(``MalformedData`` for data, ``ConfigError`` for configuration); never another exception,
never more than ``MAX_SECONDS`` for one input, never more than ``MAX_GROWTH_MB`` of new peak
memory (a length prefix claiming gigabytes must not be allocated). What a receiver accepts must
also be deliverable: an accepted OTLP request converts to OTAP tables and parses, and accepted
OTAP tables decode to OTLP, without any error.

==============  ===========================================================================
target          what it drives
==============  ===========================================================================
otlp_protobuf   ``Batch.from_serialized`` (the native walk, ``check_request``) for each
                signal; when accepted, the parse and the OTAP conversion (``protoscan``)
otlp_json       ``Batch.from_json`` for each signal (the OTLP/HTTP JSON path); when accepted,
                the OTAP conversion
otap            a serialized ``BatchArrowRecords`` through ``StreamConsumer.decode`` and
                ``codec.decode`` (the OTAP receiver); when accepted, ``decode_tables``
wirescan        every entry point of the native scanner (``_wirescan.c``) that reads received
                bytes: ``scan`` (of the message and every LEN field below it), ``validate``
                against each signal's schema, ``key_values`` (over every message's LEN
                payloads, and rows cut at offsets from the data), ``codes``, ``gather`` and
                ``group`` (over the LEN payloads), the OTAP stream's ``Dictionary`` (the LEN
                payloads as a string column), and the filelog receiver's ``text_lines`` and
                ``cri_heads`` (the data as a log block)
config          ``parse_config`` of the bytes as UTF-8 text (YAML, substitution, the model)
==============  ===========================================================================
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orasi_common.config import ConfigError, parse_config
from orasi_common.errors import MalformedData
from orasi_common.pdata import Batch, Signal, _wirescan
from orasi_common.pdata.otap import codec
from orasi_common.pdata.protoscan import LEN, Buffer, scan
from orasi_common.pdata.validate import _SCHEMAS
from orasi_common.transport.otap.proto import arrow_service_pb2 as otap_pb2
from orasi_common.transport.otap.stream import StreamConsumer

MAX_SECONDS = 5.0
"""The longest one input may take (inputs are at most a few kB; a decode takes milliseconds)."""

MAX_GROWTH_MB = 512
"""How far the process's peak resident memory may grow during a campaign."""

MAX_MESSAGES = 500
"""The most messages the wirescan target scans in one input (each LEN field is one)."""


class ContractBroken(AssertionError):
    """A target broke the contract: another exception, too slow, or too much memory."""


def otlp_protobuf(data: bytes) -> None:
    for signal in Signal:
        try:
            batch = Batch.from_serialized(signal, data)
        except MalformedData:
            continue
        batch.message  # noqa: B018 (upb must parse what the walk accepted)
        codec.encode(batch)


def otlp_json(data: bytes) -> None:
    for signal in Signal:
        try:
            batch = Batch.from_json(signal, data)
        except MalformedData:
            continue
        codec.encode(batch)


def otap(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        records = otap_pb2.BatchArrowRecords.FromString(data)
    except DecodeError:
        return  # gRPC refuses it before the receiver sees it
    tables = StreamConsumer().decode(records.arrow_payloads)
    decoded = 0
    for signal in Signal:
        if not set(tables) <= codec.PAYLOAD_TYPES[signal]:
            continue
        batch = codec.decode(signal, tables, tenant="fuzz", batch_id="fuzz")
        batch.raw  # noqa: B018 (decoded to OTLP when first read so)
        decoded += 1
    if not decoded:
        raise MalformedData("the payload types belong to no one signal")


def wirescan(data: bytes) -> None:
    buf = Buffer(data)
    pending, done = [(0, len(data))], 0
    while pending and done < MAX_MESSAGES:
        start, end = pending.pop()
        try:
            fields = scan(buf, np.array([start], dtype=np.int64), np.array([end], dtype=np.int64))
        except MalformedData:
            continue
        done += 1
        lengthy = fields.wire_type == LEN
        pending += zip(fields.start[lengthy].tolist(), fields.end[lengthy].tolist(), strict=True)
        _wirescan.gather(data, fields.start[lengthy], fields.end[lengthy])
        # the same payloads grouped per parent (each its own, in reverse order) and hashed
        parents = np.arange(np.count_nonzero(lengthy), dtype=np.int64)[::-1].copy()
        _wirescan.group(data, fields.start[lengthy], fields.end[lengthy], parents, len(parents))
        # key_values over the message's LEN payloads (attributes are KeyValues: typed values)
        rows = np.column_stack([fields.start[lengthy], fields.end[lengthy]]).ravel().astype(np.int32)
        if len(rows) >= 2:
            _wirescan.key_values(data, rows)
            _wirescan.codes(data, rows, np.ones(len(rows) - 1, dtype=np.bool_), len(data))
            _dictionary(data, rows)
    for schema in _SCHEMAS.values():
        with contextlib.suppress(ValueError):
            _wirescan.validate(data, schema.code)
    # key_values over rows cut at offsets drawn from the data itself (every cut inside it)
    cuts = np.minimum(np.sort(np.frombuffer(data[:64], dtype=np.uint8)).astype(np.int64), len(data))
    _wirescan.key_values(data, np.concatenate([[0], cuts, [len(data)]]).astype(np.int32))
    # the data as a block of a log file: its lines (cut at a limit drawn from the data) and their
    # CRI heads, as the filelog receiver's cri.py reads them (not imported here: the receiver's
    # imports would bring libraries whose import-time allocations LeakSanitizer reports)
    _, lines = _wirescan.text_lines(data, len(data), 2 * data[-1] if data else 0)
    starts, ends, _ = np.frombuffer(lines, dtype=np.int64).reshape(3, -1)
    heads = _wirescan.cri_heads(data, starts, ends)
    message = np.frombuffer(heads, dtype=np.int64, count=len(starts))
    if not ((starts <= message) & (message <= ends)).all():
        raise ContractBroken("a CRI message starts outside its line")


def _dictionary(data: bytes, rows: np.ndarray) -> None:
    """A stream dictionary (``_wirescan.Dictionary``) over the strings data[rows[i]:rows[i + 1]]
    from a first row on, with nulls, a limit and an index width drawn from the data: its numbers
    must be those of a dictionary in Python (None past the limit), and the same rows once more
    must add nothing."""
    n = len(rows) - 1
    # a request starts with the tag 0x0a (bits 1 and 3): inverted, the first row is valid
    bitmap = bytes(~byte & 0xFF for byte in data[: (n + 7) // 8]).ljust((n + 7) // 8, b"\xff")
    first, width = data[-1] % n, 1 + data[-1] % 2
    limit = (1 + data[len(data) // 2]) * (1 if width == 1 else 256)
    numbers: dict[bytes, int] = {}
    expected = bytearray()
    for i in range(first, n):
        number = 0
        if bitmap[i >> 3] >> (i & 7) & 1:
            number = numbers.setdefault(data[rows[i] : rows[i + 1]], len(numbers))
        expected += number.to_bytes(width, "little")
    dictionary = _wirescan.Dictionary(len(data))
    for _ in range(2):
        found = dictionary.encode(bitmap, rows, data, first, n - first, limit, width)
        if (found is None) != (len(numbers) > limit) or len(dictionary) != (
            0 if found is None else len(numbers)
        ):
            raise ContractBroken(
                f"Dictionary held {len(dictionary)} values, limit {limit}, {len(numbers)} distinct"
            )
        if found is not None and found[0] != expected:
            raise ContractBroken(f"Dictionary numbered the rows {found[0]!r}, not {bytes(expected)!r}")
    if found is not None and found[2:] != (b"\0" * 4, b""):
        raise ContractBroken("Dictionary added values it already held")


def config(data: bytes) -> None:
    parse_config(data.decode("utf-8", errors="replace"), "fuzz", environ={"SET": "value"})


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    errors: tuple[type[Exception], ...]


TARGETS = {
    target.name: target
    for target in (
        Target("otlp_protobuf", otlp_protobuf, (MalformedData,)),
        Target("otlp_json", otlp_json, (MalformedData,)),
        Target("otap", otap, (MalformedData,)),
        Target("wirescan", wirescan, ()),
        Target("config", config, (ConfigError,)),
    )
}


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(target: Target, data: bytes, baseline_mb: float) -> bool:
    """Run one input under the contract; True when the decoder accepted it, False when it
    raised one of its documented errors; ContractBroken (with the input) otherwise."""
    started = time.monotonic()
    try:
        target.run(data)
        accepted = True
    except target.errors:
        accepted = False
    except Exception as exc:
        raise ContractBroken(f"{target.name} raised {exc!r} on {data!r}") from exc
    elapsed = time.monotonic() - started
    if elapsed > MAX_SECONDS:
        raise ContractBroken(f"{target.name} took {elapsed:.1f} s on {data[:200]!r} ({len(data)} bytes)")
    grown = peak_rss_mb() - baseline_mb
    if grown > MAX_GROWTH_MB:
        raise ContractBroken(f"{target.name}: peak memory grew by {grown:.0f} MB on {data[:200]!r}")
    return accepted
