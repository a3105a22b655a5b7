"""The invariants every receiver checks before it acknowledges a request.

A request that protobuf parsed can still hold values that a later hop cannot carry: an id of the
wrong length does not fit OTAP's fixed-size id columns, and a time at or past 2^63 ns does not fit
the signed nanosecond columns of OTAP and the lake. Refusing such a request when it arrives
(INVALID_ARGUMENT / 400, naming the first problem) is the only point where the sender still
learns of it; once acknowledged, a batch must be deliverable. Everything else the OTLP
specification allows is kept, including enum values it does not name (stored as numbers).

``RULES`` is the one table of those invariants, per signal, as paths of field names from the
export request; field numbers come from the generated descriptors. The walk over the serialized
bytes is native (``_wirescan.check``): it descends only into the messages on a rule's path and
skips everything else, so it costs a small fraction of the protobuf parse.

==========  ================================================  =========================
signal      fields                                            must be
==========  ================================================  =========================
traces      spans: trace_id, links: trace_id                  16 bytes or empty
traces      spans: span_id, parent_span_id, links: span_id    8 bytes or empty
traces      spans: start/end_time_unix_nano, events: time     below 2^63 ns
logs        log_records: trace_id / span_id                   16 / 8 bytes or empty
logs        log_records: time_unix_nano, observed_time        below 2^63 ns
metrics     every data point: start_time / time_unix_nano     below 2^63 ns
metrics     exemplars: trace_id / span_id / time_unix_nano    16 / 8 bytes or empty / below 2^63
==========  ================================================  =========================

Every occurrence of a field is checked, so a repeated singular field (which protobuf merges,
keeping the last) must be valid each time.

Batches received as OTAP are checked by ``check_tables``: ids are fixed-size columns already, and
times are signed, so the same rule is that no time is negative (as OTLP it would be 2^63 or more).
"""

from __future__ import annotations

import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan
from orasi_common.pdata.signal import SPECS, Signal

MAX_TIME = 2**63 - 1
"""The latest time in ns since the epoch that a signed 64-bit column holds."""

_LATEST = "2262-04-11T23:47:16.854775807Z"

_ID, _TIME, _MESSAGE, _REPEATED = 1, 2, 3, 16  # rule kinds, as _wirescan.c numbers them


@dataclass(frozen=True)
class Id:
    """A bytes field that must be ``width`` bytes long, or empty."""

    width: int


TIME = "time"
"""A fixed64 nanosecond timestamp that must be below 2^63."""

Rules = Mapping[str, Any]  # field name → Id, TIME, or the rules of the message it holds

_EXEMPLARS: Rules = {"exemplars": {"trace_id": Id(16), "span_id": Id(8), "time_unix_nano": TIME}}
_POINTS: Rules = {"data_points": {"start_time_unix_nano": TIME, "time_unix_nano": TIME, **_EXEMPLARS}}
_SUMMARY_POINTS: Rules = {"data_points": {"start_time_unix_nano": TIME, "time_unix_nano": TIME}}

RULES: dict[Signal, Rules] = {
    Signal.TRACES: {
        "resource_spans": {
            "scope_spans": {
                "spans": {
                    "trace_id": Id(16),
                    "span_id": Id(8),
                    "parent_span_id": Id(8),
                    "start_time_unix_nano": TIME,
                    "end_time_unix_nano": TIME,
                    "events": {"time_unix_nano": TIME},
                    "links": {"trace_id": Id(16), "span_id": Id(8)},
                }
            }
        }
    },
    Signal.LOGS: {
        "resource_logs": {
            "scope_logs": {
                "log_records": {
                    "trace_id": Id(16),
                    "span_id": Id(8),
                    "time_unix_nano": TIME,
                    "observed_time_unix_nano": TIME,
                }
            }
        }
    },
    Signal.METRICS: {
        "resource_metrics": {
            "scope_metrics": {
                "metrics": {
                    "gauge": _POINTS,
                    "sum": _POINTS,
                    "histogram": _POINTS,
                    "exponential_histogram": _POINTS,
                    "summary": _SUMMARY_POINTS,
                }
            }
        }
    },
}


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: int
    width: int = 0


class _Program:
    """``RULES`` of one signal compiled for ``_wirescan.check`` (layout in its source)."""

    def __init__(self, descriptor: Any, rules: Rules) -> None:
        self.rules: list[_Rule] = []
        self._schemas: list[list[int]] = []
        self._compile(descriptor, rules)
        offsets: list[int] = []
        body: list[int] = []
        start = 1 + len(self._schemas)
        for schema in self._schemas:
            offsets.append(start + len(body))
            body.extend(schema)
        self.code = array.array("q", [len(self._schemas), *offsets, *body]).tobytes()

    def _compile(self, descriptor: Any, rules: Rules) -> int:
        index = len(self._schemas)
        schema: list[int] = [len(rules)]
        self._schemas.append(schema)
        for name, rule in rules.items():
            field = descriptor.fields_by_name[name]
            rule_id = len(self.rules)
            if isinstance(rule, Id):
                assert field.type == field.TYPE_BYTES, name
                self.rules.append(_Rule(name, _ID, rule.width))
                schema += [field.number, _ID, rule.width, rule_id]
            elif rule == TIME:
                assert field.type == field.TYPE_FIXED64, name
                self.rules.append(_Rule(name, _TIME))
                schema += [field.number, _TIME, 0, rule_id]
            else:
                assert isinstance(rule, Mapping) and field.message_type is not None, name
                kind = _MESSAGE | (_REPEATED if field.is_repeated else 0)
                self.rules.append(_Rule(name, kind))
                schema += [field.number, kind, 0, rule_id]
                schema[-2] = self._compile(field.message_type, rule)
        return index

    def problem(self, found: tuple[tuple[tuple[int, int], ...], int, int]) -> str:
        """The sentence naming a violation that ``_wirescan.check`` found."""
        path, rule_id, value = found
        steps = [
            self.rules[step].name + (f"[{occurrence}]" if occurrence >= 0 else "")
            for step, occurrence in path
        ]
        rule = self.rules[rule_id]
        where = ".".join([*steps, rule.name])
        if rule.kind == _ID:
            unit = "byte" if value == 1 else "bytes"
            return f"{where}: must be {rule.width} bytes or empty, got {value} {unit}"
        return f"{where}: {value} is past the latest time that can be stored ({_LATEST})"


_PROGRAMS = {signal: _Program(SPECS[signal].request_type.DESCRIPTOR, RULES[signal]) for signal in Signal}


def check_request(signal: Signal, data: bytes) -> None:
    """Raise MalformedData naming the first value in ``data`` (a serialized export request of
    ``signal`` that protobuf parsed) that breaks ``RULES``."""
    program = _PROGRAMS[signal]
    try:
        found = _wirescan.check(data, program.code)
    except ValueError as exc:
        raise MalformedData(f"the data is not valid protobuf: {exc}") from None
    if found is not None:
        raise MalformedData(program.problem(found))


def check_tables(tables: Mapping[Any, Any]) -> None:
    """Raise MalformedData naming the first negative time in OTAP ``tables`` (payload type →
    Arrow record batch): a timestamp column, or a span's end (start + duration)."""
    import pyarrow.compute as pc  # here: an agent that only forwards OTLP never loads pyarrow
    import pyarrow.types as pa_types

    for payload, table in tables.items():
        name = getattr(payload, "name", str(payload))
        columns = {field.name: table.column(i) for i, field in enumerate(table.schema)}
        times = {n: c.cast("int64") for n, c in columns.items() if pa_types.is_timestamp(c.type)}
        if "start_time_unix_nano" in times and "duration_time_unix_nano" in columns:
            duration = columns["duration_time_unix_nano"].cast("int64")
            times["end (start_time_unix_nano + duration_time_unix_nano)"] = pc.add_checked(
                times["start_time_unix_nano"], pc.fill_null(duration, 0)
            )
        for column, values in times.items():
            lowest = pc.min(values).as_py()
            if lowest is not None and lowest < 0:
                raise MalformedData(
                    f"{name}.{column}: {lowest} is before 1970, which OTLP's unsigned times cannot carry"
                )


__all__ = ["MAX_TIME", "RULES", "TIME", "Id", "check_request", "check_tables"]
