"""The stream: the lake exporter's processors, run in order on each record batch of lake rows
after conversion and before buffering (``lake.buffer``: OTLP chunks and OTAP batches alike).

A processor returns the rows changed (same length, same schema) and/or which rows to keep; the
rows left out are removed at once, and the row counts of the batches the rows came from
(``Owners``: in row order) are counted again, so the buffer still knows each batch's rows. A
batch whose rows were all left out keeps its place with 0 rows: its id is committed and its
write-ahead log record dropped with the others' (acknowledged means *handled*: stored, or left
out by a rule).

A processor that fails on a record batch follows its ``on_error``: ``pass`` (the rows go on as they
were before it) or ``drop`` (all of them are left out); either is counted in
``orasi_stream_errors_total`` and logged once per processor; ingest never stops for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import FilterConfig, RedactConfig, SampleConfig, StreamProcessor, label
from orasi_bridge.stream.filter import Filter
from orasi_bridge.stream.redact import Redact, read_salt
from orasi_bridge.stream.sample import Sample
from orasi_bridge.stream.transform import Transform
from orasi_common.pipeline.component import Settings


class Processor(Protocol):
    def apply(self, table: str, tenant: str, rows: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array | None]:
        """The rows changed (same length and schema), and which to keep (None: all); blocking."""
        ...


@dataclass
class Step:
    label: str
    tables: frozenset[str]
    on_error: str
    processor: Processor
    failed: bool = field(default=False)  # logged already


def keep_counts(counts: Sequence[int], keep: np.ndarray) -> list[int]:
    """How many rows of each run of ``counts`` rows (in order) ``keep`` keeps."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return [int(n) for n in np.bincount(owner[keep], minlength=len(counts))]


class Chain:
    """The processors of one ``stream`` section (build it with ``Chain.build``)."""

    def __init__(self, steps: list[Step], settings: Settings) -> None:
        self.steps = steps
        self._settings = settings
        metrics = settings.metrics
        self._dropped = metrics.stream_dropped
        self._errors = metrics.stream_errors

    @classmethod
    def build(cls, configs: Sequence[StreamProcessor], settings: Settings) -> Chain:
        """The chain of ``configs`` (reads the salts of redact processors that hash: call it at
        start or on reload, not per batch)."""
        steps = []
        for index, config in enumerate(configs):
            name = label(config, index)
            processor: Processor
            if isinstance(config, FilterConfig):
                processor = Filter(config)
            elif isinstance(config, SampleConfig):
                processor = Sample(config)
            elif isinstance(config, RedactConfig):
                processor = Redact(config, read_salt(config), cls._redactions(settings, name))
            else:
                processor = Transform(config)
            steps.append(Step(name, frozenset(config.tables()), config.on_error, processor))
        return cls(steps, settings)

    @staticmethod
    def _redactions(settings: Settings, name: str) -> Callable[[str, int], None]:
        counter = settings.metrics.stream_redactions
        return lambda rule, n: counter.labels(settings.id, name, rule).inc(n)

    def process(
        self, table: str, tenant: str, rows: pa.RecordBatch, counts: list[int]
    ) -> tuple[pa.RecordBatch, list[int]]:
        """``rows`` through every processor of ``table``, and the rows kept of each batch."""
        for step in self.steps:
            if step.tables.isdisjoint((table,)) or rows.num_rows == 0:
                continue
            try:
                changed, keep = step.processor.apply(table, tenant, rows)
                if changed.num_rows != rows.num_rows or not changed.schema.equals(rows.schema):
                    raise ValueError("a processor changed the rows' number or schema")
                if keep is not None and len(keep) != rows.num_rows:
                    raise ValueError("a processor kept rows by a mask of another length")
            except Exception as error:
                self._failed(step, table, error)
                if step.on_error == "pass":
                    continue
                changed, keep = rows, pa.nulls(rows.num_rows, pa.bool_())
            rows = changed
            if keep is not None:
                mask = pc.fill_null(keep, False).to_numpy(zero_copy_only=False)
                kept = int(mask.sum())
                if kept != rows.num_rows:
                    self._dropped.labels(self._settings.id, step.label, table).inc(rows.num_rows - kept)
                    counts = keep_counts(counts, mask)
                    rows = rows.filter(pa.array(mask))
        return rows, counts

    def _failed(self, step: Step, table: str, error: Exception) -> None:
        self._errors.labels(self._settings.id, step.label, step.on_error).inc()
        if not step.failed:
            step.failed = True
            self._settings.logger.error(
                "A stream processor failed on a record batch; its on_error applies (logged once "
                "per processor, counted in orasi_stream_errors_total; the error's type only, as "
                "its message may quote a value).",
                extra={
                    "processor": step.label,
                    "table": table,
                    "on_error": step.on_error,
                    "error_type": type(error).__name__,
                },
            )
