"""CRI lines a block at a time: where each line's fields are and what its time is, natively.

``parse.py`` reads a `cri` block through these columns (its per-line reading stays the
reference, and a test holds the two together). :func:`lines` finds the lines of a block and
cuts them as the per-line reading does (``max_line_bytes``, trailing whitespace);
:func:`fields` reads the head of every line, for the layout containerd and CRI-O write::

    YYYY-MM-DDTHH:MM:SS[.d{1,9}](Z|±HH:MM) (stdout|stderr) (P|F)[ message]

and gives its message's byte range, stream, tag and time. A line outside that layout — another
stream, a time out of range or in another form, a head that is not CRI — is marked irregular
and left to the per-line reading. Both are one pass of C over the block (``_wirescan.text_lines``
and ``_wirescan.cri_heads``: bounds-checked, run without the GIL, fuzzed with the rest of
``_wirescan.c``); this module gives their columns as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orasi_common.pdata import _wirescan

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

STDOUT, STDERR = 0, 1  # stream codes of regular lines (as _wirescan.cri_heads writes them)


@dataclass(frozen=True, slots=True)
class Lines:
    """The lines of a block: ``[starts, ends)`` cut to ``max_line_bytes`` with trailing
    whitespace dropped; ``offsets``: just past each line's newline; ``too_long``: lines cut."""

    starts: I64
    ends: I64
    offsets: I64
    too_long: int


def lines(block: bytes, cut: int, limit: int) -> Lines:
    """The lines of ``block[:cut]`` as ``bytes.split(b"\\n")`` gives them (without a last empty
    one), each cut to ``limit`` bytes (:func:`whole_characters`) and then right-stripped as
    ``bytes.rstrip`` does."""
    too_long, data = _wirescan.text_lines(block, cut, limit)
    starts, ends, offsets = np.frombuffer(data, dtype=np.int64).reshape(3, -1)
    return Lines(starts, ends, offsets, too_long)


def whole_characters(cut: bytes) -> bytes:
    """``cut`` (the start of a longer line) without the bytes of a UTF-8 character that the cut
    split, so that a valid line stays valid (at most 3 bytes dropped)."""
    for back in range(1, min(4, len(cut)) + 1):
        byte = cut[-back]
        if byte < 0x80:  # ASCII: nothing split
            return cut
        if byte >= 0xC0:  # the first byte of a character of 2, 3 or 4 bytes
            return cut if back >= (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) else cut[:-back]
    return cut


@dataclass(frozen=True, slots=True)
class Fields:
    """Per line: ``regular`` (the layout above; the other columns hold only there), the message
    ``[message, ends)``, the stream code, whether the tag is P, the time in ns since the epoch."""

    regular: Bools
    message: I64
    stream: I64
    partial: Bools
    time: I64


def fields(block: bytes, starts: I64, ends: I64) -> Fields:
    """The fields of the lines ``block[starts[i]:ends[i]]`` (cut and stripped by :func:`lines`);
    the columns are writable (``parse.py`` fills in the irregular lines' own reading)."""
    n = len(starts)
    data = _wirescan.cri_heads(block, starts, ends)
    message, time, stream = np.frombuffer(data, dtype=np.int64, count=3 * n).reshape(3, n)
    partial, regular = np.frombuffer(data, dtype=np.bool_, offset=24 * n).reshape(2, n)
    return Fields(regular=regular, message=message, stream=stream, partial=partial, time=time)
