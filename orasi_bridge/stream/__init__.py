"""The lake exporter's stream processors (its ``stream`` section): ``filter``, ``transform``,
``redact``, ``sample`` and ``tail_sample`` (``tail``: whole traces, decided after a wait), run by
a ``Chain`` on the lake's Arrow rows before they are buffered.

One module per processor kind; ``config`` holds what users write (expressions checked when the
configuration loads), ``expressions`` the DuckDB evaluation, ``chain`` the order, which
processors' expressions share a query, the row accounting per batch and ``on_error``.
"""

from orasi_bridge.stream.chain import Chain
from orasi_bridge.stream.config import (
    FilterConfig,
    PatternConfig,
    RedactConfig,
    SampleConfig,
    StreamProcessor,
    TailSampleConfig,
    TransformConfig,
)
from orasi_bridge.stream.tail import Released, TailSampler

__all__ = [
    "Chain",
    "FilterConfig",
    "PatternConfig",
    "RedactConfig",
    "Released",
    "SampleConfig",
    "StreamProcessor",
    "TailSampleConfig",
    "TailSampler",
    "TransformConfig",
]
