"""Validation at ingest: lake rows against their subjects' latest schemas, a column at a time.

::

    rows + original types (``otlp_rows(..., types)``)  ──check──▶  violations
        (row, ``key: reason``, and for an attribute its place in the map's items)
    violations ──apply(mode)──▶  flag:           rows with ``schema_violations`` (list of messages)
                                 drop_attribute: offending attributes removed (what is no
                                                 attribute, a missing key or a column, is flagged)
                                 reject:         the violating rows left out

Every check is an Arrow or numpy operation over all the rows of a subject at once: the Python
loops run over the schema's keys, never over items. Rows belong to the subject of their
``service_name`` (``spans.<service>``); a batch holds one tenant's rows.

What is checked, per the registry's subset (``schema``): each attribute key's original OTLP type
(bytes count as string, an int as number too; an empty value is of no type), ``enum``,
``pattern`` (a search, as JSON Schema means it; RE2 syntax), ``required`` keys,
``additionalProperties: false``; and the columns' ``required``, null where "null" is not among
their types, ``enum`` and ``pattern``.

Observed types (``observed``) come from the same flattened maps: the distinct (service, section,
key, type) of a chunk of rows, deduplicated with one ``np.unique``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.lake.schema import VIOLATIONS
from orasi_bridge.registry.config import VALIDATION_MODES
from orasi_bridge.registry.schema import ATTRIBUTE_SECTIONS, Field, ObjectShape, Schema
from orasi_common.pdata.canonical import ARRAY, BOOL, BYTES, DOUBLE, EMPTY, INT, MAP, STRING

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

MODES = VALIDATION_MODES

TYPE_CODES: dict[str, tuple[int, ...]] = {
    "string": (STRING, BYTES),
    "integer": (INT,),
    "number": (INT, DOUBLE),
    "boolean": (BOOL,),
    "array": (ARRAY,),
    "object": (MAP,),
}
"""A schema's attribute type → the OTAP type codes of the values it admits."""
TYPE_NAMES = {EMPTY: "empty", STRING: "string", INT: "integer", DOUBLE: "number", BOOL: "boolean",
              MAP: "object", ARRAY: "array", BYTES: "bytes"}  # fmt: skip
"""An OTAP type code → the name observed schemas and messages use (bytes: a string of base64)."""


@dataclass(frozen=True)
class Policy:
    """What applies to one subject at ingest."""

    mode: str
    schema: Schema


@dataclass
class Outcome:
    """What validating a chunk of rows found and did."""

    rows: pa.RecordBatch
    kept: Bools | None = None  # reject: which of the input rows were kept (None: all)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, action) → count
    first: list[tuple[str, str]] = field(default_factory=list)  # reject: the first (service, message)s


@dataclass
class _Found:
    """Violations, each a row, a message code, and (attributes only) a section and item index."""

    rows: list[I64] = field(default_factory=list)
    codes: list[I64] = field(default_factory=list)
    items: dict[str, list[I64]] = field(default_factory=lambda: {name: [] for name in ATTRIBUTE_SECTIONS})
    item_rows: dict[str, list[I64]] = field(default_factory=lambda: {name: [] for name in ATTRIBUTE_SECTIONS})
    messages: dict[str, int] = field(default_factory=dict)
    droppable: list[bool] = field(default_factory=list)  # per message code

    def add(self, rows: I64, message: str, droppable: bool = False) -> None:
        if not len(rows):
            return
        code = self.messages.setdefault(message, len(self.messages))
        if code == len(self.droppable):
            self.droppable.append(droppable)
        self.rows.append(rows)
        self.codes.append(np.full(len(rows), code, dtype=np.int64))

    def add_items(self, section: str, items: I64, rows: I64, message: str) -> None:
        if len(items):
            self.add(rows, message, droppable=True)
            self.items[section].append(items)
            self.item_rows[section].append(rows)


def flatten(rows: pa.RecordBatch, types: Mapping[str, pa.Array]) -> dict[str, Flat]:
    """Both attribute sections of ``rows`` flattened once, for ``validate`` and ``observed``."""
    return {name: Flat(rows.column(name), types.get(name)) for name in ATTRIBUTE_SECTIONS}


def validate(
    rows: pa.RecordBatch,
    types: Mapping[str, pa.Array],
    policies: Mapping[str, Policy],
    sections: Mapping[str, Flat] | None = None,
) -> Outcome:
    """Check ``rows`` against the policies of their services (``policies``: service → policy of
    a mode other than off) and apply each one's mode (``sections``: ``flatten``'s, if made)."""
    services = rows.column("service_name")
    encoded = pc.dictionary_encode(services)
    names = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.fill_null(-1), dtype=np.int64)
    outcome = Outcome(rows)
    active = [(index, name, policies[name]) for index, name in enumerate(names) if name in policies]
    if not active:
        return outcome
    n = rows.num_rows
    flagged: list[tuple[I64, I64]] = []
    messages_all: list[str] = []
    drops: dict[str, list[I64]] = {name: [] for name in ATTRIBUTE_SECTIONS}
    rejected = np.zeros(n, dtype=np.bool_)
    sections = sections or flatten(rows, types)
    for index, service, policy in active:
        in_subject = codes == index
        found = _Found()
        _check_columns(rows, policy.schema.columns, in_subject, found)
        for name in ATTRIBUTE_SECTIONS:
            shape: ObjectShape = getattr(policy.schema, name)
            sections[name].check(name, shape, in_subject, found)
        if not found.rows:
            continue
        violation_rows = np.concatenate(found.rows)
        violation_codes = np.concatenate(found.codes)
        texts = list(found.messages)
        droppable = np.asarray(found.droppable, dtype=np.bool_)
        if policy.mode == "reject":
            rejected[violation_rows] = True
            outcome.counts[(service, "reject")] = len(np.unique(violation_rows))
        elif policy.mode == "drop_attribute":
            for name in ATTRIBUTE_SECTIONS:
                if found.items[name]:
                    drops[name].append(np.concatenate(found.items[name]))
            dropped = droppable[violation_codes]
            outcome.counts[(service, "drop_attribute")] = int(np.count_nonzero(dropped))
            keep = ~dropped
            violation_rows, violation_codes = violation_rows[keep], violation_codes[keep]
            if len(violation_rows):
                outcome.counts[(service, "flag")] = len(violation_rows)
        else:
            outcome.counts[(service, "flag")] = len(violation_rows)
        if policy.mode == "reject" and len(outcome.first) < 5:
            order = np.argsort(violation_rows, kind="stable")[: 5 - len(outcome.first)]
            outcome.first += [(service, texts[int(c)]) for c in violation_codes[order]]
        if policy.mode != "reject" and len(violation_rows):
            flagged.append((violation_rows, violation_codes + len(messages_all)))
            messages_all += texts
    columns = {name: rows.column(name) for name in rows.schema.names}
    for name in ATTRIBUTE_SECTIONS:
        if drops[name]:
            columns[name] = sections[name].without(np.unique(np.concatenate(drops[name])))
    if flagged:
        columns[VIOLATIONS] = _violation_lists(flagged, messages_all, n)
    result = pa.RecordBatch.from_arrays([columns[f.name] for f in rows.schema], schema=rows.schema)
    if rejected.any():
        outcome.kept = ~rejected
        result = result.filter(pa.array(outcome.kept))
    outcome.rows = result
    return outcome


def _violation_lists(flagged: list[tuple[I64, I64]], messages: list[str], n: int) -> pa.Array:
    """The ``schema_violations`` column: each row's messages in check order, null when none."""
    rows = np.concatenate([r for r, _ in flagged])
    codes = np.concatenate([c for _, c in flagged])
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.array(messages, pa.string()).take(pa.array(codes[order]))
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(counts == 0))


class Flat:
    """One attribute section of all rows, flattened: each item's row, key code, value, type."""

    def __init__(self, maps: pa.Array, types: pa.Array | None) -> None:
        if isinstance(maps, pa.ChunkedArray):
            maps = maps.combine_chunks()
        self.maps = maps
        offsets = np.asarray(maps.offsets, dtype=np.int64)
        self.base = int(offsets[0])
        length = int(offsets[-1]) - self.base
        self.keys = maps.keys.slice(self.base, length)
        self.values = maps.items.slice(self.base, length)
        self.parent = np.repeat(np.arange(len(maps), dtype=np.int64), np.diff(offsets))
        if types is not None and isinstance(types, pa.ChunkedArray):
            types = types.combine_chunks()
        self.types: npt.NDArray[np.uint8] | None = None
        if types is not None:
            type_offsets = np.asarray(types.offsets, dtype=np.int64)
            self.types = np.asarray(types.items, dtype=np.uint8)[type_offsets[0] : type_offsets[-1]]
        encoded = pc.dictionary_encode(self.keys)
        self.key_names: dict[str, int] = {k: i for i, k in enumerate(encoded.dictionary.to_pylist())}
        self.key_codes = np.asarray(encoded.indices, dtype=np.int64)

    def check(self, section: str, shape: ObjectShape, in_subject: Bools, found: _Found) -> None:
        item_in = in_subject[self.parent] if len(self.parent) else np.zeros(0, dtype=np.bool_)
        groups = self.items_of(list(dict.fromkeys([*shape.properties, *shape.required])), item_in)
        for key, spec in shape.properties.items():
            at = groups.get(key)
            if at is not None and len(at):
                self._check_field(section, key, spec, at, found)
        for key in shape.required:
            has = np.zeros(len(in_subject), dtype=np.bool_)
            at = groups.get(key)
            if at is not None:
                has[self.parent[at]] = True
            found.add(np.flatnonzero(in_subject & ~has), f"{section}.{key}: required key missing")
        if not shape.additional:
            allowed = [self.key_names[k] for k in shape.properties if k in self.key_names]
            extra = np.flatnonzero(item_in & ~np.isin(self.key_codes, allowed))
            if len(extra):
                names = list(self.key_names)
                key_codes = self.key_codes[extra]
                for code in np.unique(key_codes):
                    at = extra[key_codes == code]
                    found.add_items(
                        section, at, self.parent[at], f"{section}.{names[int(code)]}: key not allowed"
                    )

    def items_of(self, keys: list[str], item_in: Bools) -> dict[str, I64]:
        """The items of each of ``keys`` that ``item_in`` selects, in order: the selected items
        of those keys only (a schema's keys among all services' items are few), found by one
        lookup of every item's key code and sorted once by key (a radix sort of 16-bit codes)."""
        present = [(index, self.key_names[key]) for index, key in enumerate(keys) if key in self.key_names]
        if not present:
            return {}
        lookup = np.full(len(self.key_names), -1, dtype=np.int16)
        for index, code in present:
            lookup[code] = index
        wanted = lookup[self.key_codes]
        selected = np.flatnonzero((wanted >= 0) & item_in)
        codes = wanted[selected]
        order = selected[np.argsort(codes, kind="stable")]
        ends = np.cumsum(np.bincount(codes, minlength=len(keys)))
        return {keys[index]: order[ends[index - 1] if index else 0 : ends[index]] for index, _ in present}

    def _check_field(self, section: str, key: str, spec: Field, at: I64, found: _Found) -> None:
        where = f"{section}.{key}"
        if spec.types is not None and self.types is not None:
            admitted = np.zeros(len(TYPE_NAMES), dtype=np.bool_)  # by type code: a lookup, no isin
            admitted[[code for name in spec.types for code in TYPE_CODES.get(name, ())]] = True
            kinds = self.types[at]
            wrong = ~admitted[kinds]
            if wrong.any():
                expected = " or ".join(sorted(spec.types))
                for kind in np.unique(kinds[wrong]):
                    bad = at[wrong & (kinds == kind)]
                    found.add_items(
                        section, bad, self.parent[bad], f"{where}: {TYPE_NAMES[int(kind)]}, not {expected}"
                    )
                at = at[~wrong]
        if spec.enum is None and spec.pattern is None:
            return
        values = self.values.take(pa.array(at))
        if spec.enum is not None and len(at):
            ok = _in_enum(values, spec.enum, None if self.types is None else self.types[at])
            bad = at[~ok]
            found.add_items(section, bad, self.parent[bad], f"{where}: not one of the enum's values")
        if spec.pattern is not None and len(at):
            if self.types is not None:
                strings = np.isin(self.types[at], TYPE_CODES["string"])
                at, values = at[strings], values.filter(pa.array(strings))
            matches = np.asarray(pc.match_substring_regex(values, spec.pattern).fill_null(False))
            bad = at[~matches]
            found.add_items(section, bad, self.parent[bad], f"{where}: does not match {spec.pattern!r}")

    def without(self, items: I64) -> pa.Array:
        """The maps without the items at ``items`` (indices into the flattened items)."""
        keep = np.ones(len(self.parent), dtype=np.bool_)
        keep[items] = False
        offsets = np.zeros(len(self.maps) + 1, dtype=np.int32)
        np.cumsum(np.bincount(self.parent[keep], minlength=len(self.maps)), out=offsets[1:])
        mask = pa.array(keep)
        return pa.MapArray.from_arrays(
            pa.array(offsets), self.keys.filter(mask), self.values.filter(mask), type=self.maps.type
        )


def _in_enum(values: pa.Array, enum: frozenset[str], kinds: npt.NDArray[np.uint8] | None) -> Bools:
    """Whether each canonical value is one of ``enum`` (canonical JSON texts): a string value is
    compared with the enum's strings, any other with the JSON of its non-strings."""
    decoded = [json.loads(text) for text in enum]
    texts = pa.array([v for v in decoded if isinstance(v, str)], pa.string())
    others = pa.array(
        [text for text, v in zip(enum, decoded, strict=True) if not isinstance(v, str)], pa.string()
    )
    as_string: Bools = np.asarray(pc.is_in(values, value_set=texts).fill_null(False), dtype=np.bool_)
    as_other: Bools = np.asarray(pc.is_in(values, value_set=others).fill_null(False), dtype=np.bool_)
    if kinds is None:
        return as_string | as_other
    is_string = np.isin(kinds, TYPE_CODES["string"])
    chosen: Bools = np.where(is_string, as_string, as_other)
    return chosen


def _check_columns(rows: pa.RecordBatch, shape: ObjectShape, in_subject: Bools, found: _Found) -> None:
    for name in shape.required:
        if name in rows.schema.names:
            nulls = np.asarray(rows.column(name).is_null())
            found.add(np.flatnonzero(in_subject & nulls), f"{name}: required column is null")
    for name, spec in shape.properties.items():
        if name not in rows.schema.names:
            continue
        column = rows.column(name)
        nulls = np.asarray(column.is_null())
        if spec.types is not None and "null" not in spec.types and name not in shape.required:
            found.add(np.flatnonzero(in_subject & nulls), f"{name}: null")
        at = np.flatnonzero(in_subject & ~nulls)
        if not len(at) or (spec.enum is None and spec.pattern is None):
            continue
        values = column.take(pa.array(at))
        if pa.types.is_timestamp(values.type) or not pa.types.is_string(values.type):
            values = values.cast(pa.string())
        if spec.enum is not None:
            ok = _in_enum(values, spec.enum, None)
            found.add(at[~ok], f"{name}: not one of the enum's values")
        if spec.pattern is not None:
            matches = np.asarray(pc.match_substring_regex(values, spec.pattern).fill_null(False))
            found.add(at[~matches], f"{name}: does not match {spec.pattern!r}")


Observed = set[tuple[str, str, str, str]]
"""(service, section, key, type name) seen."""


def observed(
    rows: pa.RecordBatch, types: Mapping[str, pa.Array], sections: Mapping[str, Flat] | None = None
) -> Observed:
    """The distinct (service, section, key, type) of ``rows``: one ``np.bincount`` per section
    over (service, key, type) codes, which are few (no sort of the items)."""
    services = pc.dictionary_encode(rows.column("service_name"))
    service_names = services.dictionary.to_pylist()
    service_codes = np.asarray(services.indices.fill_null(0), dtype=np.int64)
    sections = sections or flatten(rows, types)
    seen: Observed = set()
    for section, flat in sections.items():
        if not len(flat.parent) or flat.types is None:
            continue
        keys = list(flat.key_names)
        combined = (service_codes[flat.parent] * len(keys) + flat.key_codes) * 8 + flat.types
        for value in np.flatnonzero(np.bincount(combined)).tolist():
            rest, kind = divmod(value, 8)
            service, key = divmod(rest, len(keys))
            seen.add((service_names[service], section, keys[key], TYPE_NAMES[kind]))
    return seen


__all__ = [
    "MODES",
    "TYPE_CODES",
    "TYPE_NAMES",
    "Flat",
    "Observed",
    "Outcome",
    "Policy",
    "flatten",
    "observed",
    "validate",
]
