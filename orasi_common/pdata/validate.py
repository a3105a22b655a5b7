"""The invariants every receiver checks before it acknowledges a request.

A request that protobuf parsed can still hold values that a later hop cannot carry: an id of the
wrong length does not fit OTAP's fixed-size id columns, and a time at or past 2^63 ns does not fit
the signed nanosecond columns of OTAP and the lake. Refusing such a request when it arrives
(INVALID_ARGUMENT / 400, naming the first problem) is the only point where the sender still
learns of it; once acknowledged, a batch must be deliverable. Everything else the OTLP
specification allows is kept, including enum values it does not name (stored as numbers).

``RULES`` is the one table of those invariants, per signal, as paths of field names from the
export request; field numbers come from the generated descriptors. They are checked in the walk
that also decides whether the bytes are protobuf at all: ``check_request`` walks the serialized
request natively (``_wirescan.validate``) against a schema compiled once from the descriptors
(every message type reachable from the request, its fields' wire types, kinds and rules), so a
received request is never parsed. The walk accepts exactly what protobuf's parser (upb) accepts
for the request type, each rule checked against it (tests/unit/.../test_wire_validate.py): a
known field with another wire type is an unknown field, skipped; repeated scalars may be packed
(fixed-width lengths a multiple of the width, varints well-formed) or not; strings must be
valid UTF-8; groups are skipped, field number 0 is refused outside one; messages and groups
nest at most 100 deep; enums are open. It also counts the items as the parsed message would
hold them (spans, log records, or every metric type's data points; of a oneof only the last
case's), and costs about half the parse it replaces.

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

from google.protobuf.descriptor import FieldDescriptor

from orasi_common.errors import MalformedData
from orasi_common.pdata import _wirescan
from orasi_common.pdata.signal import SPECS, Signal, SignalSpec

MAX_TIME = 2**63 - 1
"""The latest time in ns since the epoch that a signed 64-bit column holds."""

_LATEST = "2262-04-11T23:47:16.854775807Z"


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


# The schema kinds and flags, as _wirescan.c numbers them.
_VARINT, _FIXED64, _FIXED32, _STRING, _BYTES, _MESSAGE = 1, 2, 3, 4, 5, 6
_REPEATED, _ITEM = 16, 32
_WIRE_TYPES = {_VARINT: 0, _FIXED64: 1, _FIXED32: 5, _STRING: 2, _BYTES: 2, _MESSAGE: 2}
_LEN = 2
_MAX_FIELD, _MAX_ONEOFS = 64, 8
_KINDS = {
    **dict.fromkeys(
        (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_BOOL,
            FieldDescriptor.TYPE_ENUM,
        ),
        _VARINT,
    ),
    **dict.fromkeys(
        (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_DOUBLE), _FIXED64
    ),
    **dict.fromkeys(
        (FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_FLOAT), _FIXED32
    ),
    FieldDescriptor.TYPE_STRING: _STRING,
    FieldDescriptor.TYPE_BYTES: _BYTES,
    FieldDescriptor.TYPE_MESSAGE: _MESSAGE,
}


class _Schema:
    """One request type compiled for ``_wirescan.validate`` (layout in its source): every
    message type reachable from it (AnyValue's recursion makes a graph: types are indexed),
    with its signal's ``RULES`` attached to the fields they name and its items marked."""

    def __init__(self, spec: SignalSpec, rules: Rules) -> None:
        self.name = spec.request_type.DESCRIPTOR.name
        self.types: list[Any] = []  # message descriptors (upb's or python's)
        self._index: dict[str, int] = {}
        self._type(spec.request_type.DESCRIPTOR)
        self.rules: dict[tuple[int, int], Id | str] = {}
        self._attach(spec.request_type.DESCRIPTOR, rules)
        self.items = self._item_fields(spec)
        offsets: list[int] = []
        body: list[int] = []
        start = 1 + len(self.types)
        for index, descriptor in enumerate(self.types):
            offsets.append(start + len(body))
            body += self._entries(index, descriptor)
        self.code = array.array("i", [len(self.types), *offsets, *body]).tobytes()

    def _type(self, descriptor: Any) -> int:
        if descriptor.full_name not in self._index:
            self._index[descriptor.full_name] = len(self.types)
            self.types.append(descriptor)
            for field in descriptor.fields:
                if field.message_type is not None:
                    self._type(field.message_type)
        return self._index[descriptor.full_name]

    def _attach(self, descriptor: Any, rules: Rules) -> None:
        """Rules hold for their field's message type wherever it occurs (each ruled type is
        reached only by paths of ``RULES``, and the same rules on every path: asserted)."""
        for name, rule in rules.items():
            field = descriptor.fields_by_name[name]
            if isinstance(rule, Mapping):
                assert field.message_type is not None, name
                self._attach(field.message_type, rule)
                continue
            if isinstance(rule, Id):
                assert field.type == field.TYPE_BYTES and not field.is_repeated, name
            else:
                assert rule == TIME and field.type == field.TYPE_FIXED64 and not field.is_repeated, name
            key = (self._index[descriptor.full_name], field.number)
            assert self.rules.get(key, rule) == rule, name
            self.rules[key] = rule

    def _item_fields(self, spec: SignalSpec) -> set[tuple[int, int]]:
        """The fields ``otlp.count_items`` counts: spans, log records, or every metric type's
        data points."""
        request: Any = spec.request_type.DESCRIPTOR
        resource = request.fields_by_name[spec.resource_field].message_type
        scope = resource.fields_by_name[spec.scope_field].message_type
        if spec.signal is not Signal.METRICS:
            return {(self._index[scope.full_name], scope.fields_by_name[spec.item_field].number)}
        metric = scope.fields_by_name[spec.item_field].message_type
        points = (field.message_type for field in metric.oneofs_by_name["data"].fields)
        return {(self._index[kind.full_name], kind.fields_by_name["data_points"].number) for kind in points}

    def _counts(self, index: int, field: Any) -> bool:
        """Whether the field can hold items (then a oneof's case matters: a field of another
        case replaces the parsed value; only oneofs that hold items are tracked)."""
        if (index, field.number) in self.items:
            return True
        if field.message_type is None:
            return False
        holding, pending = set(), [field.message_type]
        while pending:
            descriptor = pending.pop()
            if descriptor.full_name in holding:
                continue
            holding.add(descriptor.full_name)
            for child in descriptor.fields:
                if (self._index[descriptor.full_name], child.number) in self.items:
                    return True
                if child.message_type is not None:
                    pending.append(child.message_type)
        return False

    def _entries(self, index: int, descriptor: Any) -> list[int]:
        largest = max((field.number for field in descriptor.fields), default=0)
        assert largest < _MAX_FIELD, descriptor.full_name
        oneofs = [oneof for oneof in descriptor.oneofs if any(self._counts(index, f) for f in oneof.fields)]
        assert len(oneofs) <= _MAX_ONEOFS, descriptor.full_name
        entries = [0, 0, -1, -1] * (largest + 1)
        for field in descriptor.fields:
            assert field.type in _KINDS, field.full_name  # no groups in OTLP
            kind = _KINDS[field.type]
            flags = _REPEATED if field.is_repeated else 0
            if (index, field.number) in self.items:
                flags |= _ITEM
            rule = self.rules.get((index, field.number))
            if kind == _MESSAGE:
                argument = self._index[field.message_type.full_name]
            else:
                argument = rule.width if isinstance(rule, Id) else 0
            accepts = 1 << _WIRE_TYPES[kind]
            if field.is_repeated and kind in (_VARINT, _FIXED64, _FIXED32):
                accepts |= 1 << _LEN  # packed
            oneof = field.containing_oneof
            at = field.number * 4
            entries[at : at + 4] = [
                kind | flags | accepts << 8,
                argument,
                -1 if rule is None else 0,
                oneofs.index(oneof) if oneof is not None and oneof in oneofs else -1,
            ]
        return [largest, len(oneofs), *entries]

    def problem(self, found: tuple[tuple[tuple[int, int, int], ...], tuple[int, int], int]) -> str:
        """The sentence naming a violation that ``_wirescan.validate`` found."""
        path, (type_index, number), value = found
        steps = [
            self._field_name(step_type, step_number) + (f"[{occurrence}]" if occurrence >= 0 else "")
            for step_type, step_number, occurrence in path
        ]
        where = ".".join([*steps, self._field_name(type_index, number)])
        rule = self.rules[type_index, number]
        if isinstance(rule, Id):
            unit = "byte" if value == 1 else "bytes"
            return f"{where}: must be {rule.width} bytes or empty, got {value} {unit}"
        return f"{where}: {value} is past the latest time that can be stored ({_LATEST})"

    def _field_name(self, type_index: int, number: int) -> str:
        return str(self.types[type_index].fields_by_number[number].name)


_SCHEMAS = {signal: _Schema(SPECS[signal], RULES[signal]) for signal in Signal}


def check_request(signal: Signal, data: bytes) -> int:
    """The items (spans, data points or log records) of ``data``, a serialized export request of
    ``signal``, in one native walk that accepts exactly what protobuf's parser (upb) accepts;
    raise MalformedData saying what is not valid protobuf, or else naming the first value that
    breaks ``RULES``. The request is not parsed."""
    schema = _SCHEMAS[signal]
    try:
        items, found = _wirescan.validate(data, schema.code)
    except ValueError as exc:
        raise MalformedData(f"the body is not a valid protobuf {schema.name}: {exc}") from None
    if found is not None:
        raise MalformedData(schema.problem(found))
    return int(items)


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
