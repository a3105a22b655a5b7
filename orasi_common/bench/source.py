"""What ``orasi bench`` sends: the requests of a corpus file re-batched, or generated requests."""

from __future__ import annotations

from pathlib import Path

from orasi_common.bench import GENERATED, corpus, generate
from orasi_common.bench.engine import Payload
from orasi_common.pdata import Signal
from orasi_common.pdata.otlp import count_items

GENERATED_DISTINCT = 16
"""Distinct generated requests, cycled (different ids and values, one vocabulary)."""


def payloads(source: str, signal: Signal, batch: int) -> list[Payload]:
    """``source`` ("generated" or a corpus file's path) as requests of ``batch`` items."""
    if source == GENERATED:
        requests = [generate.request(signal, batch, seed) for seed in range(1, GENERATED_DISTINCT + 1)]
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"--source {source}: no such corpus file (or say 'generated')")
        requests = corpus.rebatch(corpus.read_requests(path, signal), batch, signal)
    out = [Payload(r.SerializeToString(), count_items(signal, r)) for r in requests]
    out = [p for p in out if p.items]
    if not out:
        raise ValueError(f"--source {source} holds no {signal.value}")
    return out


__all__ = ["GENERATED", "payloads"]
