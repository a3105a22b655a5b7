"""The stream: the lake exporter's processors, run in order on each record batch of lake rows
after conversion and before buffering (``lake.convert``: OTLP chunks and OTAP batches alike).

A processor returns the rows changed (same length, same schema) and/or which rows to keep; the
rows left out are removed at once, and the row counts of the batches the rows came from
(``Owners``: in row order) are counted again, so the buffer still knows each batch's rows. A
batch whose rows were all left out keeps its place with 0 rows: its id is committed and its
write-ahead log record dropped with the others' (acknowledged means *handled*: stored, or left
out by a rule).

The chain computes the processors' SQL expressions (``filter``'s, ``transform``'s) in DuckDB and
hands their values to ``apply``: in one query for a processor and the next ones whose expressions
read no column that a processor between them may change (``writes``), e.g. a filter, a redact of
the attribute maps, and a transform of the name: each query costs about a millisecond whatever
its rows. The values computed ahead are cut with the rows left out on the way; when such a query
fails (one processor's expression, say), each processor computes its own, so that the error is
its own processor's.

With each row's resource from the converter (``resources``), the chain keeps runs of rows of one
resource (``runs.py``): ``redact`` works on ``resource_attributes`` once per run, and the rows a
filter keeps of that map are slices of it, whole runs at a time (``filter_runs``). A processor
that may set that map apart on rows of one run (``keeps_runs`` false: a ``transform`` of it) ends
the runs for the processors after it.

A ``tail_sample`` (last in the stream) is not a step: the chain keeps its ``TailSampler``, to which
the lake writer hands the spans the steps let through (``hold``), and from which it takes them back
once their traces are decided (``release``, ``released``); the sampler outlives a reload (``build``
with ``previous``): what it holds stays held under the new rules, or is decided at once when the
new stream has no ``tail_sample`` (``tail.py``).

A processor that fails on a record batch follows its ``on_error``: ``pass`` (the rows go on as they
were before it) or ``drop`` (all of them are left out); either is counted in
``orasi_stream_errors_total`` and logged once per processor; ingest never stops for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import (
    FilterConfig,
    RedactConfig,
    SampleConfig,
    StreamProcessor,
    TailSampleConfig,
    label,
)
from orasi_bridge.stream.expressions import evaluate, reads
from orasi_bridge.stream.filter import Filter
from orasi_bridge.stream.redact import Redact, read_salt
from orasi_bridge.stream.runs import RESOURCE, Runs
from orasi_bridge.stream.sample import Sample
from orasi_bridge.stream.tail import TABLE as TAIL_TABLE
from orasi_bridge.stream.tail import Counters, Entry, Released, TailSampler
from orasi_bridge.stream.transform import Transform
from orasi_common.pipeline.component import Settings


class Processor(Protocol):
    expressions: list[str]
    """The SQL expressions whose values per row ``apply`` takes (computed by the chain)."""
    writes: frozenset[str]
    """The columns ``apply`` may change."""
    keeps_runs: bool
    """Whether rows of one run (``runs.py``) still hold equal ``resource_attributes`` after
    ``apply`` (it leaves that map alone, or changes it value by value: ``redact``); when false,
    the chain lets the runs go."""

    def apply(
        self, table: str, tenant: str, rows: pa.RecordBatch, values: list[pa.Array], runs: Runs | None = None
    ) -> tuple[pa.RecordBatch, pa.Array | None]:
        """The rows changed (same length and schema), and which to keep (None: all); blocking.
        ``runs``: rows of equal ``resource_attributes`` (``runs.py``), when known."""
        ...


@dataclass
class Step:
    label: str
    tables: frozenset[str]
    on_error: str
    processor: Processor
    failed: bool = field(default=False)  # logged already


def filter_map(column: pa.MapArray, keep: np.ndarray) -> pa.MapArray:
    """The rows ``keep`` says of a map column, its entries filtered by a mask of entries (Arrow's
    filter of a list type gathers its entries by index: about 30 % slower on the attribute maps)."""
    offsets = column.offsets.to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    entries = pa.array(np.repeat(keep, lengths))
    kept_offsets = np.zeros(int(keep.sum()) + 1, np.int32)
    np.cumsum(lengths[keep], out=kept_offsets[1:])
    valid = column.is_valid().to_numpy(zero_copy_only=False)[keep]
    return pa.MapArray.from_arrays(
        pa.array(kept_offsets),
        column.values.field(0).slice(first, last - first).filter(entries),
        column.values.field(1).slice(first, last - first).filter(entries),
        type=column.type,
        mask=None if valid.all() else pa.array(~valid),
    )


SLICES = 128
"""The most slices ``filter_runs`` concatenates (each costs a few µs: past this, runs are short
and a filter of the entries is cheaper)."""


def filter_runs(column: pa.Array, runs: Runs, keep: np.ndarray) -> pa.Array | None:
    """The rows ``keep`` says of a column equal across each of ``runs`` (``resource_attributes``):
    as many rows of a run as it keeps are its first ones, so the rows kept are slices of the
    column, one ending after each run that lost rows, concatenated (copies of whole buffers; a
    filter copies the column entry by entry, about 5 times slower on the corpus's resources).
    None when that takes more than ``SLICES`` slices."""
    kept = np.bincount(runs.run_of_row[keep], minlength=len(runs.starts))
    short = np.flatnonzero(kept != runs.lengths)
    if len(short) >= SLICES:
        return None
    firsts = np.concatenate([[0], short + 1])  # the first run of each slice
    ends = np.append(runs.starts[short] + kept[short], len(column))  # where each slice stops
    if firsts[-1] == len(runs.starts):  # the last run lost rows: no slice after it
        firsts, ends = firsts[:-1], ends[:-1]
    starts = runs.starts[firsts]
    parts = [column.slice(int(start), int(end - start)) for start, end in zip(starts, ends, strict=True)]
    parts = [part for part in parts if len(part)]
    if len(parts) < 2:
        return parts[0] if parts else column.slice(0, 0)
    return pa.concat_arrays(parts)


def filter_rows(rows: pa.RecordBatch, keep: np.ndarray, runs: Runs | None = None) -> pa.RecordBatch:
    """The rows ``keep`` says (``filter_map`` for the map columns, Arrow's filter for the others;
    with ``runs``, ``filter_runs`` for ``resource_attributes``)."""
    mask = pa.array(keep)
    columns = []
    for name, column in zip(rows.schema.names, rows.columns, strict=True):
        sliced = None
        if name == RESOURCE and runs is not None and column.null_count == 0:
            sliced = filter_runs(column, runs, keep)
        if sliced is not None:
            columns.append(sliced)
        elif isinstance(column, pa.MapArray):
            columns.append(filter_map(column, keep))
        else:
            columns.append(column.filter(mask))
    return pa.RecordBatch.from_arrays(columns, schema=rows.schema)


def keep_counts(counts: Sequence[int], keep: np.ndarray) -> list[int]:
    """How many rows of each run of ``counts`` rows (in order) ``keep`` keeps."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return [int(n) for n in np.bincount(owner[keep], minlength=len(counts))]


class Chain:
    """The processors of one ``stream`` section (build it with ``Chain.build``)."""

    def __init__(self, steps: list[Step], settings: Settings, tail: TailSampler | None = None) -> None:
        self.steps = steps
        self.tail = tail
        self._settings = settings
        metrics = settings.metrics
        self._dropped = metrics.stream_dropped
        self._errors = metrics.stream_errors
        self._groups: dict[tuple[int, str], list[int]] = {}  # _together's answers

    @classmethod
    def build(
        cls,
        configs: Sequence[StreamProcessor],
        settings: Settings,
        previous: Chain | None = None,
        directory: Path | None = None,
    ) -> Chain:
        """The chain of ``configs`` (reads the salts of redact processors that hash, and a tail
        sampler's decisions kept in ``directory``: call it at start or on reload, not per batch);
        ``previous``: the chain it replaces, whose tail sampler it takes over."""
        steps = []
        tail = previous.tail if previous is not None else None
        for index, config in enumerate(configs):
            name = label(config, index)
            processor: Processor
            if isinstance(config, TailSampleConfig):
                counters = cls._tail_counters(settings, name)
                if tail is None:
                    tail = TailSampler(config, counters, directory)
                else:
                    tail.configure(config, counters)
                continue
            if isinstance(config, FilterConfig):
                processor = Filter(config)
            elif isinstance(config, SampleConfig):
                processor = Sample(config)
            elif isinstance(config, RedactConfig):
                processor = Redact(config, read_salt(config), cls._redactions(settings, name))
            else:
                processor = Transform(config)
            steps.append(Step(name, frozenset(config.tables()), config.on_error, processor))
        if tail is not None and not any(isinstance(config, TailSampleConfig) for config in configs):
            tail.retire()
        return cls(steps, settings, tail)

    @staticmethod
    def _tail_counters(settings: Settings, name: str) -> Counters:
        metrics, exporter = settings.metrics, settings.id
        decided, early = metrics.stream_tail_decisions, metrics.stream_tail_early
        dropped = metrics.stream_dropped.labels(exporter, name, TAIL_TABLE)
        held = metrics.stream_tail_held

        def hold(traces: int, spans: int) -> None:
            held.labels(exporter, name, "traces").set(traces)
            held.labels(exporter, name, "spans").set(spans)

        errors = metrics.stream_errors.labels(exporter, name, "pass")
        logged: list[bool] = []

        def failed(error: Exception) -> None:
            errors.inc()
            if not logged:
                logged.append(True)
                settings.logger.error(
                    "A tail_sample's keep_where failed on a record batch: none of its spans match it "
                    "(logged once, counted in orasi_stream_errors_total; the error's type only).",
                    extra={"processor": name, "error_type": type(error).__name__},
                )

        return Counters(
            decided=lambda policy, decision, n: decided.labels(exporter, name, policy, decision).inc(n),
            early=lambda reason, n: early.labels(exporter, name, reason).inc(n),
            dropped=dropped.inc,
            held=hold,
            failed=failed,
        )

    # The tail sampler, for the lake writer (tail.py says when each is called).

    def holds(self, table: str) -> bool:
        """Whether converted rows of ``table`` go to the tail sampler (``hold``), not the buffer."""
        return self.tail is not None and not self.tail.retiring and table == TAIL_TABLE

    def hold(self, tenant: str, rows: pa.RecordBatch, entries: list[Entry], counts: list[int]) -> bool:
        """Hand spans and their batches to the tail sampler; True: release soon (over a bound)."""
        assert self.tail is not None
        return self.tail.hold(tenant, rows, entries, counts)

    def held(self, batch_id: str) -> bool:
        return self.tail is not None and self.tail.held(batch_id)

    def due(self) -> float | None:
        """When the tail sampler has something to decide (monotonic; None: never)."""
        return self.tail.due() if self.tail is not None else None

    def release(self, now: float, everything: str | None = None) -> list[Released]:
        """The held groups whose traces are decided (blocking)."""
        return self.tail.release(now, everything) if self.tail is not None else []

    def released(self, groups: Sequence[Released]) -> None:
        if self.tail is not None:
            self.tail.released(groups)

    @staticmethod
    def _redactions(settings: Settings, name: str) -> Callable[[str, int], None]:
        counter = settings.metrics.stream_redactions
        return lambda rule, n: counter.labels(settings.id, name, rule).inc(n)

    def process(
        self,
        table: str,
        tenant: str,
        rows: pa.RecordBatch,
        counts: list[int],
        resources: np.ndarray | None = None,
    ) -> tuple[pa.RecordBatch, list[int]]:
        """``rows`` through every processor of ``table``, and the rows kept of each batch
        (``resources``: each row's resource, when the converter gives it, see ``runs.py``)."""
        ahead: dict[int, list[pa.Array]] = {}  # values computed ahead, by step, for the rows as they are
        runs = None
        if resources is not None and len(resources) == rows.num_rows and rows.num_rows:
            runs = Runs.of(resources)
        for index, step in enumerate(self.steps):
            if step.tables.isdisjoint((table,)) or rows.num_rows == 0:
                continue
            try:
                values = ahead.pop(index, None)
                if values is None:
                    values = self._evaluate(index, table, rows, ahead)
                changed, keep = step.processor.apply(table, tenant, rows, values, runs)
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
            if not step.processor.keeps_runs:
                runs = None
            if keep is not None:
                mask = pc.fill_null(keep, False).to_numpy(zero_copy_only=False)
                kept = int(mask.sum())
                if kept != rows.num_rows:
                    self._dropped.labels(self._settings.id, step.label, table).inc(rows.num_rows - kept)
                    counts = keep_counts(counts, mask)
                    kept_rows = pa.array(mask)
                    rows = filter_rows(rows, mask, runs)
                    runs = runs.filter(mask) if runs is not None and kept else None
                    for later, computed in ahead.items():
                        ahead[later] = [value.filter(kept_rows) for value in computed]
        return rows, counts

    def _evaluate(
        self, index: int, table: str, rows: pa.RecordBatch, ahead: dict[int, list[pa.Array]]
    ) -> list[pa.Array]:
        """The values of step ``index``'s expressions over ``rows``, in one query with those of the
        later steps ``_together`` names (put in ``ahead``); its own alone when that query fails."""
        together = self._together(index, table)
        own = self.steps[index].processor.expressions
        if len(together) > 1:
            expressions = [e for later in together for e in self.steps[later].processor.expressions]
            try:
                values = evaluate(rows, expressions)
            except Exception:
                pass  # each step computes its own (an error is its step's)
            else:
                start = len(own)
                for later in together[1:]:
                    end = start + len(self.steps[later].processor.expressions)
                    ahead[later], start = values[start:end], end
                return values[: len(own)]
        return evaluate(rows, own) if own else []

    def _together(self, index: int, table: str) -> list[int]:
        """Step ``index`` (when it has expressions) and the later steps of ``table`` whose
        expressions read no column that a step from ``index`` up to them may change."""
        key = (index, table)
        if key not in self._groups:
            group: list[int] = []
            written: set[str] = set()
            for later in range(index, len(self.steps)):
                step = self.steps[later]
                if step.tables.isdisjoint((table,)):
                    continue
                expressions = step.processor.expressions
                if expressions:
                    read = reads(expressions)
                    if later > index and (read is None or not written.isdisjoint(read)):
                        break
                    group.append(later)
                elif later == index:
                    break
                written |= step.processor.writes
            self._groups[key] = group
        return self._groups[key]

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
