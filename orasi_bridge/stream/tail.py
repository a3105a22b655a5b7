"""The ``tail_sample`` processor: keeps whole traces that have an error, a span over a duration,
a span matching an expression (or, by the rule of ``sample``, a share of the others), decided
``decision_wait`` after a trace's last span arrived.

Where the spans wait, and the durability contract
-------------------------------------------------
The sampler holds whole *groups*: the rows one conversion made (after the processors before it),
with the batches they came from (``Entry``: the batch and its write-ahead log position) and each
batch's row count. A group is handed back to the lake writer's buffer (``release``) once every
trace it has spans of is decided, with the rows of dropped traces left out and each batch's row
count counted again, exactly as ``filter`` does: its batches are then committed with their ids and
their log records dropped after the commit, like any others. So, for what the writer acknowledged:

- nothing held is lost by a crash: a held batch's log record stays until the commit holding its
  kept rows succeeds; after a crash it is replayed, converted and held again;
- nothing is written twice: a batch's rows are in one commit, under its id (the lake's
  exactly-once rule); while held, its id counts as known (``held``), so a sender's retry of it is
  acknowledged and not buffered a second time;
- a trace is decided alike before and after a crash: every decision is recorded (``decision_cache``
  of them are remembered, and with ``directory`` written to disk and fsynced before the rows it
  decides are released), and spans of a trace decided before, late ones or replayed ones whose
  trace's other spans were committed before the crash, get that decision (decisions forgotten past
  ``decision_cache`` are decided again on the spans at hand: a dropped part stays dropped since
  every policy keeps a trace when *one* of its spans matches, a kept one may lose a part).

Held spans are neither in the buffer's rows nor visible to queries until their decision, and they
are bounded by ``max_traces`` and ``max_spans`` instead of the buffer's size: past them the oldest
groups' traces are decided early, on the spans they have (``orasi_stream_tail_early_decisions``).
Without a write-ahead log a shutdown decides every held trace early and commits them; with one, a
shutdown leaves them in the log, held again at the next start.

Several bridges: a trace is decided where its spans arrive, so all of a trace's spans must reach one
bridge: the gateway's load-balancing exporter routes by trace id (consistent hashing over the
healthy bridges). When the set of bridges changes, a trace in flight may be split between two of
them and decided by each on its part.

Vectorised: the policies are Arrow kernels (``status_code``, ``duration_ns``) and one DuckDB query
(``keep_where``) per group; the traces' state is an Arrow table grouped by trace key
(``tenant/trace_id``) at each ``release``; decisions are looked up with hash kernels
(``index_in``); the only Python loops are per group and per sweep.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import TailSampleConfig
from orasi_bridge.stream.expressions import evaluate
from orasi_bridge.stream.sample import RANDOM_BITS, threshold

TABLE = "spans"
POLICIES = ("error", "duration", "expression", "probability")
"""The policies in the order their metric label is given (a trace kept by several counts once)."""

_FILE = "decisions-"
MAX_FILES = 64
_STATE = pa.schema(
    [("key", pa.string()), *[(policy, pa.bool_()) for policy in POLICIES], ("last", pa.float64())]
)
_DECIDED = pa.schema([("key", pa.string()), ("keep", pa.bool_())])

Entry = tuple[Any, int | None]
"""A batch (``orasi_common.pdata.Batch``, or ``HeldBatch``: only its ``batch_id`` is read) and its
log position."""


@dataclass(frozen=True, slots=True)
class HeldBatch:
    """What a held group keeps of a batch: its id (not its payload, which the log holds)."""

    batch_id: str


@dataclass
class Group:
    """Rows of one conversion (one tenant), held with their batches until their traces are decided."""

    tenant: str
    rows: pa.RecordBatch
    entries: list[Entry]
    counts: list[int]
    arrived: float
    keys: pa.Array | None = None  # each row's trace key (null: no trace id), set at intake
    traces: pa.Array | None = None  # the group's distinct trace keys


@dataclass
class Released:
    """A group handed back: the rows kept, its batches and the rows kept of each."""

    table: str
    tenant: str
    rows: pa.RecordBatch
    entries: list[Entry]
    counts: list[int]


@dataclass
class Counters:
    """Where the sampler counts (the chain binds them to the service's metrics)."""

    decided: Callable[[str, str, int], None]  # policy, kept|dropped, traces
    early: Callable[[str, int], None]  # reason, traces
    dropped: Callable[[int], None]  # spans
    held: Callable[[int, int], None]  # traces, spans
    failed: Callable[[Exception], None]  # keep_where failed on a group (its on_error is pass)


def _keep_counts(counts: Sequence[int], keep: np.ndarray) -> list[int]:
    owner = np.repeat(np.arange(len(counts)), counts)
    return [int(n) for n in np.bincount(owner[keep], minlength=len(counts))]


@dataclass
class _Decisions:
    """The last ``size`` decisions (key → keep), in memory and, with a directory, on disk: one
    Arrow IPC file per sweep, written and fsynced before its rows are released; rewritten as one
    file when they hold twice ``size`` or number more than ``MAX_FILES``."""

    size: int
    directory: Path | None
    table: pa.Table = field(default_factory=_DECIDED.empty_table)
    files: list[Path] = field(default_factory=list)
    on_disk: int = 0

    def load(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files = sorted(self.directory.glob(f"{_FILE}*.arrow"))
        tables = [self.table]
        for path in self.files:
            try:
                with pa.memory_map(str(path)) as source:
                    tables.append(pa.ipc.open_file(source).read_all())
            except (pa.ArrowInvalid, OSError):
                continue  # torn by a crash while written: its rows were never released
        self.on_disk = sum(t.num_rows for t in tables)
        self._keep(pa.concat_tables(tables))

    def _keep(self, table: pa.Table) -> None:
        self.table = table.slice(max(0, table.num_rows - self.size)).combine_chunks()

    def lookup(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Per key: whether a decision is remembered, and whether it keeps."""
        keys_column = self.table.column("key")
        # the newest decision of a key wins: index_in finds the first, so search the reversed table
        reversed_index = pc.index_in(keys, value_set=keys_column.combine_chunks()[::-1])
        found = reversed_index.is_valid().to_numpy(zero_copy_only=False)
        keep = np.zeros(len(keys), bool)
        if found.any():
            flags = self.table.column("keep").combine_chunks().to_numpy(zero_copy_only=False)[::-1]
            keep[found] = flags[reversed_index.drop_null().to_numpy()]
        return found, keep

    def add(self, keys: pa.Array, keep: np.ndarray) -> None:
        if not len(keys):
            return
        new = pa.table([keys, pa.array(keep)], schema=_DECIDED)
        if self.directory is not None:
            self._write(new)
        self._keep(pa.concat_tables([self.table, new]))
        if self.directory is not None and (self.on_disk > 2 * self.size or len(self.files) > MAX_FILES):
            self._write(self.table, compacted=True)

    def _write(self, table: pa.Table, compacted: bool = False) -> None:
        assert self.directory is not None
        number = int(self.files[-1].name[len(_FILE) : -len(".arrow")]) + 1 if self.files else 0
        path = self.directory / f"{_FILE}{number:016d}.arrow"
        temporary = path.with_suffix(".tmp")
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if compacted:
            for old in self.files:
                old.unlink(missing_ok=True)
            self.files, self.on_disk = [path], table.num_rows
        else:
            self.files.append(path)
            self.on_disk += table.num_rows


class TailSampler:
    """Holds spans' groups and decides their traces (see the module docstring).

    ``hold``, ``held``, ``due`` and ``released`` are called on the event loop and are cheap;
    ``release`` does the work (blocking: call it in a thread, one at a time)."""

    def __init__(self, config: TailSampleConfig, counters: Counters, directory: Path | None = None) -> None:
        self.config = config
        self.retiring = False  # the stream no longer has it: decide what it holds, hold nothing new
        self._counters = counters
        self._lock = threading.Lock()
        self._incoming: list[Group] = []
        self._groups: list[Group] = []
        self._ids: set[str] = set()
        self._spans = 0
        self._next: float | None = None
        self._urgent = False
        self._state = _STATE.empty_table()
        self._decisions = _Decisions(config.decision_cache, directory)
        self._decisions.load()

    def configure(self, config: TailSampleConfig, counters: Counters) -> None:
        """New policies and bounds (a reload); what is held stays held, due again at once (under a
        new decision_wait, say)."""
        self.config = config
        self._counters = counters
        self._decisions.size = config.decision_cache
        self.retiring = False
        with self._lock:
            self._next = time.monotonic() if self._groups or self._incoming else None

    def retire(self) -> None:
        """The stream no longer samples by tail: decide everything held at the next ``release``."""
        self.retiring = True
        with self._lock:
            self._next = time.monotonic() if self._groups or self._incoming else None

    # -- on the event loop --------------------------------------------------------------------

    def hold(self, tenant: str, rows: pa.RecordBatch, entries: list[Entry], counts: list[int]) -> bool:
        """Hold converted rows and their batches; True when over ``max_spans`` (release soon)."""
        now = time.monotonic()
        with self._lock:
            held = [(HeldBatch(batch.batch_id), lsn) for batch, lsn in entries]
            self._incoming.append(Group(tenant, rows, held, list(counts), now))
            self._ids.update(batch.batch_id for batch, _ in entries)
            self._spans += rows.num_rows
            due = now + self.config.decision_wait
            self._next = due if self._next is None else min(self._next, due)
            if self._spans > self.config.max_spans:
                self._urgent = True
                self._next = now
            return self._urgent

    def held(self, batch_id: str) -> bool:
        """Whether the rows of this batch are held (a retry of it is known: never buffered twice)."""
        return batch_id in self._ids

    def due(self) -> float | None:
        """When ``release`` has something to decide (monotonic time; None: nothing held)."""
        return self._next

    def released(self, groups: Sequence[Released]) -> None:
        """The groups ``release`` returned are in the writer's buffer: their ids are its now."""
        with self._lock:
            for group in groups:
                self._ids.difference_update(batch.batch_id for batch, _ in group.entries)

    # -- in a thread ------------------------------------------------------------------------

    def release(self, now: float, everything: str | None = None) -> list[Released]:
        """Decide the traces due (and, past the bounds, the oldest early; with ``everything``,
        every one, counted early for that reason), and return the groups all of whose traces are
        decided, their dropped traces' rows left out."""
        config = self.config
        with self._lock:
            incoming, self._incoming = self._incoming, []
            self._urgent = False
        if incoming:
            try:
                self._intake(incoming, config)
            except BaseException:
                with self._lock:  # held still, taken in at the next release
                    self._incoming[:0] = incoming
                raise
            self._groups.extend(incoming)
        if self.retiring and everything is None:
            everything = "reload"
        state = self._state
        last = state.column("last").to_numpy()
        due = last + config.decision_wait <= now
        keys = state.column("key").combine_chunks()
        known, known_keep = self._decisions.lookup(keys)
        waiting = ~due & ~known
        if everything is not None:
            early, reason = waiting, everything
        else:
            early, reason = self._early(keys, waiting, config)
        decide = due | known | early
        keep = self._policies(state, config)
        fresh = decide & ~known
        keep = np.where(known, known_keep, keep)
        self._count(state, fresh, keep, early, reason)
        self._decisions.add(keys.filter(pa.array(fresh)), keep[fresh])
        self._state = state.filter(pa.array(~decide))
        released = self._release_groups()
        self._settle()
        return released

    def _intake(self, groups: list[Group], config: TailSampleConfig) -> None:
        """Each group's rows' trace keys and policy flags, merged into the traces' state."""
        parts = [self._state]
        for group in groups:
            rows = group.rows
            trace_id = rows.column("trace_id")
            group.keys = pc.binary_join_element_wise(pa.scalar(group.tenant), trace_id, "/")
            flags = self._flags(rows, trace_id, config, self._counters.failed)
            by_trace = (
                pa.table({"key": group.keys, **flags})
                .filter(pc.is_valid(group.keys))
                .group_by("key")
                .aggregate([(policy, "any") for policy in POLICIES])
            )
            group.traces = by_trace.column("key").combine_chunks()
            columns = {policy: by_trace.column(f"{policy}_any") for policy in POLICIES}
            last = pa.array(np.full(by_trace.num_rows, group.arrived))
            parts.append(pa.table({"key": group.traces, **columns, "last": last}, schema=_STATE))
        merged = pa.concat_tables(parts)
        aggregates = [*((policy, "any") for policy in POLICIES), ("last", "max")]
        grouped = merged.group_by("key").aggregate(aggregates)
        self._state = pa.table(
            [grouped.column("key")]
            + [grouped.column(f"{policy}_any") for policy in POLICIES]
            + [grouped.column("last_max")],
            schema=_STATE,
        )

    @staticmethod
    def _flags(
        rows: pa.RecordBatch,
        trace_id: pa.Array,
        config: TailSampleConfig,
        failed: Callable[[Exception], None],
    ) -> dict[str, pa.Array]:
        """Per row, which policy it satisfies."""
        n = rows.num_rows
        false = pa.array(np.zeros(n, bool))
        flags = dict.fromkeys(POLICIES, false)
        if config.errors:
            flags["error"] = pc.fill_null(pc.equal(rows.column("status_code"), "ERROR"), False)
        if config.min_duration_ms is not None:
            limit = int(config.min_duration_ms * 1_000_000)
            flags["duration"] = pc.fill_null(pc.greater_equal(rows.column("duration_ns"), limit), False)
        if config.keep_where is not None and n:
            try:
                (value,) = evaluate(rows, [f"coalesce(({config.keep_where}), false)"])
            except Exception as error:  # a type error on some value, say: no span matches
                failed(error)
            else:
                flags["expression"] = value
        at = threshold(config.probability) if config.probability else None
        if at is not None:
            low = pc.utf8_slice_codeunits(trace_id, -RANDOM_BITS // 4)
            flags["probability"] = pc.fill_null(pc.greater_equal(low, at), False)
        return flags

    @staticmethod
    def _policies(state: pa.Table, config: TailSampleConfig) -> np.ndarray:
        keep = np.zeros(state.num_rows, bool)
        for policy in POLICIES:
            keep |= state.column(policy).to_numpy()
        return keep

    def _early(self, keys: pa.Array, waiting: np.ndarray, config: TailSampleConfig) -> tuple[np.ndarray, str]:
        """The waiting traces decided now to come back within the bounds: those of the oldest
        groups, until the spans of the groups left and the traces left are within them."""
        traces = int(waiting.sum())
        spans = sum(group.rows.num_rows for group in self._groups)
        if traces <= config.max_traces and spans <= config.max_spans:
            return np.zeros(len(waiting), bool), ""
        chosen: list[pa.Array] = []
        for group in self._groups:  # oldest first
            if traces <= config.max_traces and spans <= config.max_spans:
                break
            assert group.traces is not None
            chosen.append(group.traces)
            spans -= group.rows.num_rows
            traces -= len(group.traces)  # about: a trace of several groups counts in each
        reason = "max_traces" if int(waiting.sum()) > config.max_traces else "max_spans"
        if not chosen:
            return np.zeros(len(waiting), bool), reason
        forced: np.ndarray = pc.is_in(keys, value_set=pa.concat_arrays(chosen)).to_numpy(zero_copy_only=False)
        return forced & waiting, reason

    def _count(
        self, state: pa.Table, fresh: np.ndarray, keep: np.ndarray, early: np.ndarray, reason: str
    ) -> None:
        counted = np.zeros(len(fresh), bool)
        for policy in POLICIES:
            hit = fresh & state.column(policy).to_numpy() & ~counted
            if hit.any():
                self._counters.decided(policy, "kept", int(hit.sum()))
            counted |= hit
        dropped = int((fresh & ~keep).sum())
        if dropped:
            self._counters.decided("none", "dropped", dropped)
        if early.any():
            self._counters.early(reason, int(early.sum()))

    def _release_groups(self) -> list[Released]:
        """The held groups none of whose traces wait any more, with their rows decided."""
        if not self._groups:
            return []
        waiting = self._state.column("key").combine_chunks()
        sizes = [len(group.traces) for group in self._groups if group.traces is not None]
        all_traces = pa.concat_arrays([group.traces for group in self._groups if group.traces is not None])
        pending = pc.is_in(all_traces, value_set=waiting).to_numpy(zero_copy_only=False)
        owner = np.repeat(np.arange(len(sizes)), sizes)
        blocked = np.bincount(owner[pending], minlength=len(sizes))
        ready = [group for group, n in zip(self._groups, blocked, strict=True) if n == 0]
        if not ready:
            return []
        self._groups = [group for group, n in zip(self._groups, blocked, strict=True) if n]
        row_keys = pa.concat_arrays([group.keys for group in ready if group.keys is not None])
        found, keep = self._decisions.lookup(row_keys)
        # a key without a trace id is kept; one whose decision was forgotten too (never lose rows)
        keep = keep | ~found
        released = []
        start = 0
        dropped = 0
        for group in ready:
            n = group.rows.num_rows
            mask = keep[start : start + n]
            start += n
            kept = int(mask.sum())
            rows, counts = group.rows, group.counts
            if kept != n:
                dropped += n - kept
                rows = rows.filter(pa.array(mask))
                counts = _keep_counts(counts, mask)
            released.append(Released(TABLE, group.tenant, rows, group.entries, counts))
        if dropped:
            self._counters.dropped(dropped)
        return released

    def _settle(self) -> None:
        """Spans held, the gauges, and when the next release is due."""
        spans = sum(group.rows.num_rows for group in self._groups)
        with self._lock:
            incoming = self._incoming
            self._spans = spans + sum(group.rows.num_rows for group in incoming)
            candidates = [group.arrived + self.config.decision_wait for group in incoming]
            if self._state.num_rows:
                candidates.append(
                    float(pc.min(self._state.column("last")).as_py()) + self.config.decision_wait
                )
            elif self._groups:  # groups of rows without trace ids only
                candidates.append(time.monotonic())
            if self.retiring and (self._groups or incoming):
                candidates.append(time.monotonic())
            self._next = min(candidates) if candidates else None
        self._counters.held(self._state.num_rows, self._spans)


__all__ = ["Counters", "Group", "HeldBatch", "Released", "TailSampler"]
