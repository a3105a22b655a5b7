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

The attribute checks start from what ``observed`` computes anyway: the distinct (service, key,
type) of each section's items (``Flat.present``). A key's types, ``required`` and
``additionalProperties`` are decided on those few combinations, and the items themselves are
looked for only where one is wrong, or where a key has an ``enum`` or a ``pattern`` (its
values), or a required key is in some of a subject's rows only. So a chunk that conforms costs
next to nothing beyond ``off``, however many rows repeat their resource's attributes.
``reject`` keeps the other rows with ``kept_rows``: slices of the kept runs for the attribute
maps, a filter for the rest.

What is checked, per the registry's subset (``schema``): each attribute key's original OTLP type
(bytes count as string, an int as number too; an empty value is of no type), ``enum``,
``pattern`` (a search, as JSON Schema means it; RE2 syntax), ``required`` keys,
``additionalProperties: false``; and the columns' ``required``, null where "null" is not among
their types, ``enum`` and ``pattern``.

Observed types (``observed``) come from the same flattened maps: the distinct (service, section,
key, type) of a chunk of rows, deduplicated with one ``np.bincount`` per section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

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


class Services:
    """The service of each row (its subject's): the distinct names and a code per row, an index
    into ``names`` (a row without a service: ``len(names)``, no subject's)."""

    def __init__(self, column: pa.Array) -> None:
        encoded = pc.dictionary_encode(column)
        self.names: list[str] = encoded.dictionary.to_pylist()
        self.codes = np.asarray(encoded.indices.fill_null(len(self.names)), dtype=np.int64)


@dataclass
class Flattened:
    """What ``validate`` and ``observed`` share of a chunk of rows (``flatten``)."""

    services: Services
    sections: dict[str, Flat]


def flatten(rows: pa.RecordBatch, types: Mapping[str, pa.Array]) -> Flattened:
    """The rows' services, and both attribute sections flattened once, for ``validate`` and
    ``observed``."""
    services = Services(rows.column("service_name"))
    return Flattened(
        services, {name: Flat(rows.column(name), types.get(name), services) for name in ATTRIBUTE_SECTIONS}
    )


def validate(
    rows: pa.RecordBatch,
    types: Mapping[str, pa.Array],
    policies: Mapping[str, Policy],
    flat: Flattened | None = None,
) -> Outcome:
    """Check ``rows`` against the policies of their services (``policies``: service → policy of
    a mode other than off) and apply each one's mode (``flat``: ``flatten``'s, if made)."""
    services = flat.services if flat is not None else Services(rows.column("service_name"))
    codes = services.codes
    outcome = Outcome(rows)
    active = [(index, name, policies[name]) for index, name in enumerate(services.names) if name in policies]
    if not active:
        return outcome
    n = rows.num_rows
    flagged: list[tuple[I64, I64]] = []
    messages_all: list[str] = []
    drops: dict[str, list[I64]] = {name: [] for name in ATTRIBUTE_SECTIONS}
    rejected = np.zeros(n, dtype=np.bool_)
    sections = (flat or flatten(rows, types)).sections
    for index, service, policy in active:
        in_subject = codes == index
        found = _Found()
        _check_columns(rows, policy.schema.columns, in_subject, found)
        for name in ATTRIBUTE_SECTIONS:
            shape: ObjectShape = getattr(policy.schema, name)
            sections[name].check(name, shape, index, in_subject, found)
        if not found.rows:
            continue
        violation_rows = np.concatenate(found.rows)
        violation_codes = np.concatenate(found.codes)
        texts = list(found.messages)
        droppable = np.asarray(found.droppable, dtype=np.bool_)
        if policy.mode == "reject":
            mine = np.zeros(n, dtype=np.bool_)
            mine[violation_rows] = True
            rejected |= mine
            outcome.counts[(service, "reject")] = int(np.count_nonzero(mine))
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
            order = _first(violation_rows, 5 - len(outcome.first))
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
        result = kept_rows(result, outcome.kept)
    outcome.rows = result
    return outcome


SLICES_FROM = 32
"""``kept_rows`` copies the attribute maps by slices while the kept rows are runs of at least
this many rows on average: a slice of a map column costs about as much as filtering ten to
twenty of its rows, the filter of a map about three times a copy of the same ranges (measured
on the corpus's spans; for every other column, ``filter`` is as cheap or cheaper)."""


def kept_rows(rows: pa.RecordBatch, kept: Bools) -> pa.RecordBatch:
    """The rows at ``kept``, in order, as one batch. The rows a subject rejects come in runs
    (a resource's items are contiguous), so the kept ones are runs too: one run holding most of
    the rows is a slice (no copy); else the map columns (``attributes`` and
    ``resource_attributes``, most of a filter's cost) are the concatenated slices of the kept
    runs when these are few (``SLICES_FROM``), and every other column is filtered."""
    edges = np.flatnonzero(np.diff(kept.view(np.int8), prepend=0, append=0))
    starts, ends = edges[::2].tolist(), edges[1::2].tolist()
    if len(starts) == 1 and 2 * (ends[0] - starts[0]) >= len(kept):
        return rows.slice(starts[0], ends[0] - starts[0])
    mask = pa.array(kept)
    if not starts or len(starts) * SLICES_FROM > len(kept):
        return rows.filter(mask)
    runs = list(zip(starts, ends, strict=True))
    columns = [
        pa.concat_arrays([column.slice(start, end - start) for start, end in runs])
        if pa.types.is_map(column.type)
        else column.filter(mask)
        for column in rows.columns
    ]
    return pa.RecordBatch.from_arrays(columns, schema=rows.schema)


def _first(rows: I64, k: int) -> I64:
    """The indices of the ``k`` smallest of ``rows`` in order, ties in their order (the first
    ``k`` of a stable argsort, without sorting them all)."""
    if len(rows) > k:
        candidates = np.flatnonzero(rows <= np.partition(rows, k - 1)[k - 1])
    else:
        candidates = np.arange(len(rows))
    order: I64 = candidates[np.argsort(rows[candidates], kind="stable")][:k]
    return order


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
    """One attribute section of all rows, flattened: each item's row, key code, value, type,
    and (``combined``) its row's service, its key and its type in one code, whose distinct
    values (``present``) say which (service, key, type) a chunk holds: what ``observed``
    records, and all the type, required and additionalProperties checks need to know before
    they look for the items of a (service, key, type) found wrong."""

    def __init__(self, maps: pa.Array, types: pa.Array | None, services: Services) -> None:
        if isinstance(maps, pa.ChunkedArray):
            maps = maps.combine_chunks()
        self.maps = maps
        self.services = services
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

    @cached_property
    def combined(self) -> I64:
        """Each item's (service, key, type) as ``(service * keys + key) * 8 + type`` (type 0
        when the types are not known)."""
        combined = self.services.codes[self.parent] * len(self.key_names) + self.key_codes
        combined *= 8
        if self.types is not None:
            combined += self.types
        return combined

    @cached_property
    def present(self) -> I64:
        """The distinct values of ``combined``, in order (one ``np.bincount``: they are few)."""
        return np.flatnonzero(np.bincount(self.combined)) if len(self.combined) else self.combined

    def check(self, section: str, shape: ObjectShape, service: int, in_subject: Bools, found: _Found) -> None:
        """Check the items of the rows of ``service`` (``in_subject``) against ``shape``."""
        low = service * len(self.key_names) * 8
        present = self.present
        kinds_of: dict[int, list[int]] = {}  # key code → the type codes the subject's items have
        mine = present[
            np.searchsorted(present, low) : np.searchsorted(present, low + len(self.key_names) * 8)
        ]
        for value in (mine - low).tolist():
            kinds_of.setdefault(value >> 3, []).append(value & 7)
        for key, spec in shape.properties.items():
            code = self.key_names.get(key)
            if code is not None and code in kinds_of:
                self._check_field(section, key, spec, low + code * 8, kinds_of[code], found)
        for key in shape.required:
            code = self.key_names.get(key)
            if code is None or code not in kinds_of:
                missing = np.flatnonzero(in_subject)
            else:
                has = np.zeros(len(in_subject), dtype=np.bool_)
                has[self.parent[self._items(low + code * 8, None)]] = True
                missing = np.flatnonzero(in_subject & ~has)
            found.add(missing, f"{section}.{key}: required key missing")
        if not shape.additional:
            allowed = {self.key_names[k] for k in shape.properties if k in self.key_names}
            names = list(self.key_names)
            for code in sorted(kinds_of.keys() - allowed):
                at = self._items(low + code * 8, None)
                found.add_items(section, at, self.parent[at], f"{section}.{names[code]}: key not allowed")

    def _items(self, key: int, kinds: list[int] | None) -> I64:
        """The items, in order, of the (service, key) whose ``combined`` code with type 0 is
        ``key``: of the types ``kinds`` (None: any)."""
        combined = self.combined
        if kinds is None:
            return np.flatnonzero((combined >= key) & (combined < key + 8))
        if len(kinds) == 1:
            return np.flatnonzero(combined == key + kinds[0])
        return np.flatnonzero(np.isin(combined, [key + kind for kind in kinds]))

    def _check_field(
        self, section: str, key: str, spec: Field, code: int, kinds: list[int], found: _Found
    ) -> None:
        """Check the items of one (service, key) (``code``: its ``combined`` with type 0), whose
        types are ``kinds``."""
        where = f"{section}.{key}"
        if spec.types is not None and self.types is not None:
            admitted = {kind for name in spec.types for kind in TYPE_CODES.get(name, ())}
            wrong = [kind for kind in kinds if kind not in admitted]
            if wrong:
                expected = " or ".join(sorted(spec.types))
                for kind in wrong:
                    bad = self._items(code, [kind])
                    found.add_items(
                        section, bad, self.parent[bad], f"{where}: {TYPE_NAMES[kind]}, not {expected}"
                    )
                kinds = [kind for kind in kinds if kind in admitted]
        if (spec.enum is None and spec.pattern is None) or not kinds:
            return
        at = self._items(code, kinds)
        values = self.values.take(pa.array(at))
        if spec.enum is not None:
            ok = _in_enum(values, spec.enum, None if self.types is None else self.types[at])
            bad = at[~ok]
            found.add_items(section, bad, self.parent[bad], f"{where}: not one of the enum's values")
        if spec.pattern is not None:
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


def observed(rows: pa.RecordBatch, types: Mapping[str, pa.Array], flat: Flattened | None = None) -> Observed:
    """The distinct (service, section, key, type) of ``rows``: ``Flat.present``, one
    ``np.bincount`` per section over (service, key, type) codes, which are few (no sort of the
    items)."""
    flat = flat or flatten(rows, types)
    service_names = flat.services.names
    seen: Observed = set()
    for section, items in flat.sections.items():
        if not len(items.parent) or items.types is None:
            continue
        keys = list(items.key_names)
        for value in items.present.tolist():
            rest, kind = divmod(value, 8)
            service, key = divmod(rest, len(keys))
            if service < len(service_names):
                seen.add((service_names[service], section, keys[key], TYPE_NAMES[kind]))
    return seen


__all__ = [
    "MODES",
    "TYPE_CODES",
    "TYPE_NAMES",
    "Flat",
    "Flattened",
    "Observed",
    "Outcome",
    "Policy",
    "Services",
    "flatten",
    "kept_rows",
    "observed",
    "validate",
]
