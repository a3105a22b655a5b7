"""The tail sampler on small span batches: its policies, decision_wait, its bounds, the decisions it
remembers (in memory and on disk), and what a reload does to what it holds. Times are passed to
``release`` (monotonic seconds), so nothing sleeps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orasi_bridge.lake.config import Config
from orasi_bridge.stream import Chain
from orasi_bridge.stream import tail as tail_module
from orasi_bridge.stream.tail import Released
from orasi_common.telemetry.metrics import Metrics

from .rows import STREAM, column, sample_value, settings, spans

WAIT = 5.0


@dataclass
class FakeBatch:
    batch_id: str


def tail(metrics: Metrics | None = None, directory: Path | None = None, **options: Any) -> Chain:
    config = {"type": "tail_sample", "decision_wait": WAIT, "name": "tail", **options}
    return Chain.build(STREAM.validate_python([config]), settings(metrics), directory=directory)


def span(trace: str, name: str, **row: Any) -> dict[str, Any]:
    return {"trace_id": trace * 32, "span_id": name, "name": name, "status_code": "UNSET", **row}


def hold(chain: Chain, *batches: tuple[str, list[dict[str, Any]]], tenant: str = "acme") -> bool:
    """One group made of several batches (id, rows), as one conversion hands them over."""
    rows = spans(*[row for _, rows in batches for row in rows])
    entries = [(FakeBatch(batch_id), None) for batch_id, _ in batches]
    return chain.hold(tenant, rows, entries, [len(rows) for _, rows in batches])


def later(seconds: float = WAIT + 0.01) -> float:
    return time.monotonic() + seconds


def names(groups: list[Released]) -> list[str]:
    return sorted(name for group in groups for name in column(group.rows, "name"))


def decided(metrics: Metrics, policy: str, decision: str) -> float:
    labels = {"exporter": "lake", "processor": "tail", "policy": policy, "decision": decision}
    return sample_value(metrics, "orasi_stream_tail_decisions_total", labels)


def test_whole_traces_with_an_error_a_slow_span_or_a_match_are_kept_the_others_dropped() -> None:
    metrics = Metrics("bridge")
    chain = tail(metrics, min_duration_ms=100, keep_where="attributes['vip'] = 'yes'")
    hold(
        chain,
        ("b1", [span("a", "a1"), span("a", "a2", status_code="ERROR"), span("b", "b1")]),
        ("b2", [span("b", "b2"), span("c", "c1", duration_ns=150_000_000), span("d", "d1")]),
        ("b3", [span("e", "e1", attributes=[("vip", "yes")]), span("e", "e2"), span("f", "f1")]),
    )
    assert chain.release(time.monotonic()) == []  # nothing decided before decision_wait
    (group,) = chain.release(later())
    assert names([group]) == ["a1", "a2", "c1", "e1", "e2"]
    assert [batch.batch_id for batch, _ in group.entries] == ["b1", "b2", "b3"]
    assert group.counts == [2, 1, 2]  # each batch's rows kept, in order
    assert [decided(metrics, p, "kept") for p in ("error", "duration", "expression")] == [1, 1, 1]
    assert decided(metrics, "none", "dropped") == 3
    labels = {"exporter": "lake", "processor": "tail", "table": "spans"}
    assert sample_value(metrics, "orasi_stream_dropped_rows_total", labels) == 4
    assert chain.due() is None


def test_a_trace_is_decided_decision_wait_after_its_last_span_and_its_groups_wait_for_it() -> None:
    chain = tail()
    hold(chain, ("b1", [span("a", "a1"), span("b", "b1", status_code="ERROR")]))
    first_due = chain.due()
    assert first_due is not None
    chain.release(time.monotonic())  # takes the group in
    hold(chain, ("b2", [span("a", "a2", status_code="ERROR")]))
    # b's wait is over, a's is not (its last span came later, if by less than a millisecond on a
    # fast machine): b1 holds a span of a, so it waits
    assert chain.release(first_due) == []
    assert chain.held("b1") and chain.held("b2")
    groups = chain.release(later())
    assert names(groups) == ["a1", "a2", "b1"]
    chain.released(groups)
    assert not chain.held("b1") and not chain.held("b2")


def test_probability_keeps_the_traces_sample_would() -> None:
    chain = tail(errors=False, probability=0.5)
    low, high = "0" * 18 + "0" * 14, "0" * 18 + "f" * 14
    rows = [
        {"trace_id": low, "name": "low", "status_code": "UNSET"},
        {"trace_id": high, "name": "high", "status_code": "UNSET"},
    ]
    chain.hold("acme", spans(*rows), [(FakeBatch("b"), None)], [2])
    assert names(chain.release(later())) == ["high"]


def test_rows_without_a_trace_id_are_kept() -> None:
    chain = tail()
    chain.hold("acme", spans({"name": "orphan"}, span("a", "a1")), [(FakeBatch("b"), None)], [2])
    assert names(chain.release(later())) == ["orphan"]


def test_tenants_traces_are_apart() -> None:
    chain = tail()
    hold(chain, ("b1", [span("a", "x", status_code="ERROR")]), tenant="acme")
    hold(chain, ("b2", [span("a", "y")]), tenant="other")
    groups = chain.release(later())
    assert {group.tenant: names([group]) for group in groups} == {"acme": ["x"], "other": []}


def test_over_max_spans_the_oldest_groups_are_decided_early() -> None:
    metrics = Metrics("bridge")
    chain = tail(metrics, max_spans=3)
    assert not hold(chain, ("b1", [span("a", "a1", status_code="ERROR"), span("b", "b1")]))
    assert hold(chain, ("b2", [span("c", "c1"), span("d", "d1")]))  # 4 > 3: release now
    assert chain.due() is not None and chain.due() <= time.monotonic()  # type: ignore[operator]
    (group,) = chain.release(time.monotonic())  # the oldest group, decided on what it has
    assert [batch.batch_id for batch, _ in group.entries] == ["b1"]
    assert names([group]) == ["a1"]
    labels = {"exporter": "lake", "processor": "tail", "reason": "max_spans"}
    assert sample_value(metrics, "orasi_stream_tail_early_decisions_total", labels) == 2
    held = {"exporter": "lake", "processor": "tail", "unit": "spans"}
    assert sample_value(metrics, "orasi_stream_tail_held", held) == 2
    assert chain.held("b2")


def test_over_max_traces_the_oldest_are_decided_early() -> None:
    metrics = Metrics("bridge")
    chain = tail(metrics, max_traces=2)
    hold(chain, ("b1", [span("a", "a1"), span("b", "b1")]))
    hold(chain, ("b2", [span("c", "c1"), span("d", "d1")]))
    (group,) = chain.release(time.monotonic())
    assert [batch.batch_id for batch, _ in group.entries] == ["b1"]
    labels = {"exporter": "lake", "processor": "tail", "reason": "max_traces"}
    assert sample_value(metrics, "orasi_stream_tail_early_decisions_total", labels) == 2
    traces = {"exporter": "lake", "processor": "tail", "unit": "traces"}
    assert sample_value(metrics, "orasi_stream_tail_held", traces) == 2


def test_later_spans_of_a_decided_trace_get_its_decision() -> None:
    chain = tail()
    hold(chain, ("b1", [span("a", "a1", status_code="ERROR"), span("b", "b1")]))
    assert names(chain.release(later())) == ["a1"]
    # a late span of the kept trace without an error, and a late error of the dropped one
    hold(chain, ("b2", [span("a", "a2"), span("b", "b2", status_code="ERROR")]))
    assert names(chain.release(later())) == ["a2"]


def test_decisions_kept_on_disk_decide_replayed_spans_alike(tmp_path: Path) -> None:
    chain = tail(directory=tmp_path, decision_cache=4)
    hold(chain, ("b1", [span("a", "a1", status_code="ERROR"), span("b", "b1")]))
    assert names(chain.release(later())) == ["a1"]
    # after a crash: the trace's error span was committed, its other span is replayed alone
    again = tail(directory=tmp_path, decision_cache=4)
    hold(again, ("b2", [span("a", "a2"), span("b", "b2", status_code="ERROR")]))
    assert names(again.release(later())) == ["a2"]
    # the files are rewritten as one when they hold twice the decisions remembered
    for trace in "cdefghij":
        hold(again, ("b", [span(trace, trace)]))
        again.release(later())
    files = list(tmp_path.glob("decisions-*.arrow"))
    assert 1 <= len(files) <= 5
    remembered = tail(directory=tmp_path, decision_cache=4)
    hold(remembered, ("b3", [span("j", "j2", status_code="ERROR"), span("a", "a3")]))
    # j's decision (dropped) is remembered; a's is forgotten: decided anew on a3 alone
    assert names(remembered.release(later())) == []
    assert remembered.tail is not None and remembered.tail._decisions.table.num_rows <= 4


def test_everything_is_decided_at_once_when_asked() -> None:
    metrics = Metrics("bridge")
    chain = tail(metrics)
    hold(chain, ("b1", [span("a", "a1", status_code="ERROR"), span("b", "b1")]))
    assert names(chain.release(time.monotonic(), everything="shutdown")) == ["a1"]
    labels = {"exporter": "lake", "processor": "tail", "reason": "shutdown"}
    assert sample_value(metrics, "orasi_stream_tail_early_decisions_total", labels) == 2


def test_a_reload_keeps_what_is_held_under_the_new_rules_or_decides_it_without_them() -> None:
    metrics = Metrics("bridge")
    chain = tail(metrics)
    hold(chain, ("b1", [span("a", "a1", duration_ns=10**9), span("b", "b1")]))
    new = [{"type": "tail_sample", "name": "tail", "errors": False, "min_duration_ms": 500}]
    reloaded = Chain.build(STREAM.validate_python(new), settings(metrics), previous=chain)
    assert reloaded.tail is chain.tail and reloaded.held("b1") and reloaded.holds("spans")
    assert names(reloaded.release(later(10.01))) == ["a1"]  # decision_wait 10 now

    hold(reloaded, ("b2", [span("c", "c1", duration_ns=10**9), span("d", "d1")]))
    without = Chain.build(STREAM.validate_python([]), settings(metrics), previous=reloaded)
    assert not without.holds("spans")
    assert without.due() is not None and without.due() <= time.monotonic()  # type: ignore[operator]
    assert names(without.release(time.monotonic())) == ["c1"]
    labels = {"exporter": "lake", "processor": "tail", "reason": "reload"}
    assert sample_value(metrics, "orasi_stream_tail_early_decisions_total", labels) == 2


def test_other_processors_run_before_and_hold_nothing() -> None:
    processors = [
        {"type": "filter", "signals": ["traces"], "drop_where": "name = 'x'"},
        {"type": "tail_sample"},
    ]
    chain = Chain.build(STREAM.validate_python(processors), settings())
    rows = spans(span("a", "x"), span("a", "y"))
    kept, counts = chain.process("spans", "acme", rows, [2])
    assert (column(kept, "name"), counts) == (["y"], [1])
    assert chain.holds("spans") and not chain.holds("logs")


@pytest.mark.parametrize(
    ("stream", "where", "message"),
    [
        ([{"type": "tail_sample", "keep_where": "atributes['x'] = 'y'"}], "keep_where", "atributes"),
        ([{"type": "tail_sample", "keep_where": "name"}], "keep_where", "boolean"),
        ([{"type": "tail_sample", "signals": ["logs"]}], "signals", "traces"),
        ([{"type": "tail_sample", "errors": False}], "stream.0", "keeps something"),
        (
            [{"type": "tail_sample"}, {"type": "filter", "drop_where": "true"}],
            "stream.0",
            "last in the stream",
        ),
    ],
)
def test_config_errors_name_their_path(stream: list[dict[str, Any]], where: str, message: str) -> None:
    base = {"warehouse": "file:///tmp/w", "catalog_uri": "sqlite:///:memory:"}
    with pytest.raises(ValidationError) as raised:
        Config.model_validate({**base, "stream": stream})
    text = str(raised.value)
    assert where in text and message in text, text


def test_the_decision_files_are_rewritten_as_one_past_max_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_module, "MAX_FILES", 3)
    chain = tail(directory=tmp_path)
    for trace in "abcdef":  # one decision per release, each a file until they are rewritten
        hold(chain, ("b", [span(trace, trace, status_code="ERROR" if trace in "ace" else "UNSET")]))
        chain.release(later())
        assert len(list(tmp_path.glob("decisions-*.arrow"))) <= 4
    again = tail(directory=tmp_path)
    late = [span(trace, f"{trace}2", status_code="ERROR") for trace in "abcdef"]
    again.hold("acme", spans(*late), [(FakeBatch("late"), None)], [6])
    assert names(again.release(later())) == ["a2", "c2", "e2"]  # every decision remembered
