"""The telemetry corpus of these machines (``shared/corpus/``, see its README).

The reading, re-batching and replaying code is the package's (``orasi_common.bench.corpus``,
which ``orasi bench --source FILE`` uses too); this module names where the corpus lives
(``$ORASI_CORPUS``) and reads the Hipster Shop traces by default.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf.message import Message

from orasi_common.bench import corpus
from orasi_common.bench.corpus import TraceCopies, rebatch
from orasi_common.testing.shared import shared_dir

CORPUS = Path(os.environ.get("ORASI_CORPUS") or shared_dir() / "corpus")
TRACES = CORPUS / "hipstershop-oteltraces.zst"


def read_requests(path: Path = TRACES, signal: str = "traces") -> list[Message]:
    """Every request in the corpus file ``path`` (default: the Hipster Shop traces), parsed."""
    return corpus.read_requests(path, signal)


__all__ = ["CORPUS", "TRACES", "TraceCopies", "read_requests", "rebatch"]
