"""Telemetry corpus files: read them, re-batch them, replay traces with fresh ids.

A corpus file is a zstd stream of ``[4-byte big-endian length][serialized OTLP
Export{Trace,Metrics,Logs}ServiceRequest]``, repeated (the format of ``shared/corpus/``).

* :func:`read_requests` — every request of a corpus file, parsed.
* :func:`rebatch` — the same items in file order, in requests of ``size`` items, each run of
  items under its own copy of its resource and scope (a metric's points are split only when
  they do not fit, as ``pdata.otlp.split_request`` does).
* :class:`TraceCopies` — copies of a serialized trace request with other ids and shifted times,
  written with numpy at the byte offsets found once (no parse per copy): a replayed corpus whose
  cycles do not repeat one another's trace and span ids, with timestamps in the present.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zstandard
from google.protobuf.message import Message

from orasi_common.pdata import SPECS, Signal, protoscan
from orasi_common.pdata.otlp import split_request


def read_requests(path: Path, signal: Signal | str = Signal.TRACES) -> list[Message]:
    """Every request in the corpus file ``path``, parsed as ``signal``'s export request."""
    request_type = SPECS[Signal(signal)].request_type
    with path.open("rb") as file:
        data = zstandard.ZstdDecompressor().stream_reader(file).read()
    requests, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        requests.append(request_type.FromString(data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return requests


def rebatch(requests: Iterable[Message], size: int, signal: Signal | str = Signal.TRACES) -> list[Message]:
    """The items of ``requests`` in order, ``size`` per request (the last may hold fewer)."""
    signal = Signal(signal)
    merged = SPECS[signal].request_type()
    for request in requests:
        merged.MergeFrom(request)  # repeated fields append: the file's order is kept
    return split_request(signal, merged, size)


def _ranges(fields: protoscan.Fields, number: int, wire_type: int, length: int) -> protoscan.I64:
    rows = fields.rows(number, wire_type)
    rows = rows[fields.end[rows] - fields.start[rows] == length]  # empty ids stay empty
    starts: protoscan.I64 = fields.start[rows]
    return starts


class TraceCopies:
    """Copies of one serialized ``ExportTraceServiceRequest`` with other ids and times.

    ``copy(key, shift_ns)`` XORs the first 8 bytes of every trace id and all 8 of every span id,
    parent span id and link id with 8 bytes derived from ``key`` (the same key maps one id to the
    same new id in every request, so traces stay whole), and adds ``shift_ns`` to every span's
    start and end and every event's time.
    """

    def __init__(self, data: bytes) -> None:
        buf = protoscan.Buffer(data)
        self._data = buf.u8
        top = protoscan.scan(buf, np.zeros(1, np.int64), np.array([len(data)], np.int64))
        resources = protoscan.items(buf, top, 1)
        scopes = protoscan.items(buf, resources.fields, 2)
        spans = protoscan.items(buf, scopes.fields, 2).fields
        events = protoscan.items(buf, spans, 11).fields
        links = protoscan.items(buf, spans, 13).fields
        LEN, I64 = protoscan.LEN, protoscan.I64_WIRE
        ids = [
            _ranges(spans, 1, LEN, 16),  # trace_id: its first 8 bytes
            _ranges(spans, 2, LEN, 8),  # span_id
            _ranges(spans, 4, LEN, 8),  # parent_span_id
            _ranges(links, 1, LEN, 16),
            _ranges(links, 2, LEN, 8),
        ]
        times = [_ranges(spans, 7, I64, 8), _ranges(spans, 8, I64, 8), _ranges(events, 1, I64, 8)]
        self._ids = np.concatenate(ids)[:, None] + np.arange(8)
        self._times = np.concatenate(times)[:, None] + np.arange(8)
        self.spans = len(spans.rows(1, LEN))  # every span has a trace id
        stamps = self._data[self._times].copy().view("<u8").ravel()
        self.first_ns, self.last_ns = (int(stamps.min()), int(stamps.max())) if len(stamps) else (0, 0)

    def copy(self, key: int, shift_ns: int) -> bytes:
        out = self._data.copy()
        mask = np.frombuffer(int(key).to_bytes(8, "little"), np.uint8)
        out[self._ids] ^= mask
        stamps = out[self._times].copy().view("<u8")
        stamps += np.uint64(shift_ns % 2**64)  # wraps: a negative shift subtracts
        out[self._times] = stamps.view(np.uint8).reshape(-1, 8)
        return out.tobytes()


__all__ = ["TraceCopies", "read_requests", "rebatch"]
