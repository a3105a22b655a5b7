"""The lake writer's write-ahead log records: a batch (``Batch.to_record``), or a batch accepted in
part and the rows of it that were kept::

    record  = batch record                                  (every row kept)
            | b"\\xffKEPT" | u32 rows | packed row bits | batch record

A batch whose subject rejects items (validation ``reject``) is acknowledged with a partial
success once its record is durable: the bits say which of the rows its conversion gives, in
order, are kept, so a replay after a crash writes exactly the rows acknowledged, whatever the
registry says by then. A batch record starts with its version (1 or 2), never 0xff.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]

_MAGIC = b"\xffKEPT"
_ROWS = struct.Struct("<I")


def record(batch_record: bytes, kept: Bools | None) -> bytes:
    """The log record of a batch of which the rows ``kept`` are kept (None: all)."""
    if kept is None:
        return batch_record
    return b"".join((_MAGIC, _ROWS.pack(len(kept)), np.packbits(kept).tobytes(), batch_record))


def parse(payload: bytes) -> tuple[bytes, Bools | None]:
    """The batch record and the kept rows (None: all) of a log record ``record`` wrote."""
    if not payload.startswith(_MAGIC):
        return payload, None
    offset = len(_MAGIC)
    (rows,) = _ROWS.unpack_from(payload, offset)
    offset += _ROWS.size
    size = (rows + 7) // 8
    bits = np.frombuffer(payload, dtype=np.uint8, count=size, offset=offset)
    kept: Bools = np.unpackbits(bits, count=rows).astype(np.bool_)
    return payload[offset + size :], kept


__all__ = ["parse", "record"]
