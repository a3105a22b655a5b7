"""The ``redact`` processor: replaces what its rules match in attribute values (both maps) and log
bodies, with a mask or a salted hash; counts replacements per rule (never the values).

Vectorised over a record batch's distinct values (a map's values are one flat string array,
dictionary-encoded: attribute values repeat a lot): one Arrow regex kernel finds the distinct
values any rule matches, and only those go through the rules. A rule that masks is one kernel to
count and one to replace; one that needs Python per match (``card``'s Luhn check, or any rule of
action ``hash``) runs Python's ``re`` on them. The results go back with one ``take``. Where
values repeat (attribute values; a resource's on every span) what each became, and its matches
per rule, is cached across batches, so only values not seen yet reach the regex kernels (which
compile their pattern on every call). With runs of rows of one resource (``runs.py``),
``resource_attributes`` is redacted once per run, then each row takes its run's values.

``deny_keys`` replace a whole value, ``allow_keys`` are left alone: both patterns run over a map's
distinct keys, and an entry takes its value as it is, wholly replaced or redacted by the rules in
the same ``take``. The hash is SHA-256 of the tenant's salt (SHA-256 of the secret salt and the
tenant) and the matched text: equal values stay equal, hence joinable, within a tenant, and
differ between tenants.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orasi_bridge.stream.config import BUILTIN_PATTERNS, RedactConfig
from orasi_bridge.stream.runs import RESOURCE, Runs

DENY_RULE = "deny_keys"
HASH_HEX = 32
"""Hex digits of the hash kept (128 bits)."""
REPEATED = 4
"""Values repeat when a column has at least this many per distinct value (attribute values do,
log bodies seldom): then what each became is cached across batches."""
CACHE_VALUES = 65_536
CACHE_CHARS = 8 << 20
"""Distinct values, and their characters, cached per tenant (the cache is emptied when either is
full: it holds at most these and one batch's new values)."""
UNCHANGED: tuple[None, None] = (None, None)

Count = Callable[[str, int], None]  # rule, replacements
Replace = Callable[[str], str]
Cached = tuple[str, np.ndarray] | tuple[None, None]  # the value redacted, matches per rule; or none matched


def luhn(text: str) -> bool:
    """Whether the digits of ``text`` pass the Luhn check (payment card numbers do)."""
    digits = [int(c) for c in text if c.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@dataclass(frozen=True)
class Rule:
    name: str
    regex: str
    compiled: re.Pattern[str]
    check: Callable[[str], bool] | None = None  # a match not passing it is left as it is


def read_salt(config: RedactConfig) -> bytes | None:
    """The secret salt of action ``hash`` (reads the environment or the file: at start or reload)."""
    if config.action != "hash":
        return None
    if config.salt_env is not None:
        value = os.environ.get(config.salt_env)
        if not value:
            raise ValueError(f"the environment variable {config.salt_env} holding the redact salt is not set")
        return value.encode()
    assert config.salt_file is not None
    with open(config.salt_file, "rb") as file:
        salt = file.read().strip()
    if not salt:
        raise ValueError(f"the redact salt file {config.salt_file} is empty")
    return salt


def _key_pattern(keys: list[str]) -> str | None:
    """One RE2 pattern matching any of ``keys`` (shell-style wildcards allowed) exactly."""
    if not keys:
        return None
    return "|".join(re.escape(key).replace("\\*", ".*") for key in keys)


class Redact:
    keeps_runs = True  # equal maps stay equal: their values are redacted value by value

    def __init__(self, config: RedactConfig, salt: bytes | None, count: Count) -> None:
        self._config = config
        self._salt = salt
        self._tenant_salts: dict[str, bytes] = {}
        self._cache: dict[str, dict[str, Cached]] = {}
        self._cache_chars: dict[str, int] = {}
        """Per tenant (hash) or for all (mask): what a value became, and its matches per rule."""
        self._count = count
        self._rules = [
            Rule(
                name,
                BUILTIN_PATTERNS[name],
                re.compile(BUILTIN_PATTERNS[name]),
                luhn if name == "card" else None,
            )
            for name in BUILTIN_PATTERNS
            if name in config.builtins
        ] + [Rule(p.name, p.regex, re.compile(p.regex)) for p in config.patterns]
        self._any = "|".join(f"(?:{rule.regex})" for rule in self._rules) or None
        """What any rule matches: the distinct values no rule matches are left at once."""
        self.expressions: list[str] = []
        self.writes: frozenset[str] = frozenset(config.fields)
        self._allow = _key_pattern(config.allow_keys)
        self._deny = _key_pattern(config.deny_keys)

    def _tenant_salt(self, tenant: str) -> bytes:
        salt = self._tenant_salts.get(tenant)
        if salt is None:
            assert self._salt is not None
            salt = self._tenant_salts[tenant] = hashlib.sha256(self._salt + b"\0" + tenant.encode()).digest()
        return salt

    def _replacement(self, rule: str, tenant: str) -> Replace:
        if self._config.action == "hash":
            salt = self._tenant_salt(tenant)
            return lambda text: "sha256:" + hashlib.sha256(salt + text.encode()).hexdigest()[:HASH_HEX]
        mask = self._config.mask.replace("{rule}", rule)
        return lambda _: mask

    def apply(
        self, table: str, tenant: str, rows: pa.RecordBatch, values: list[pa.Array], runs: Runs | None = None
    ) -> tuple[pa.RecordBatch, pa.Array | None]:
        for name in self._config.fields:
            index = rows.schema.get_field_index(name)
            if index < 0:
                continue  # body: logs only
            column = rows.column(index)
            if name == RESOURCE and runs is not None and column.null_count == 0 and runs.long():
                new = self._per_resource(column, tenant, runs)
            elif pa.types.is_map(column.type):
                new = self._map(column, tenant)
            else:
                new = self._values(column, tenant)
            if new is not column:
                rows = rows.set_column(index, rows.schema.field(index), new)
        return rows, None

    def _per_resource(self, column: pa.MapArray, tenant: str, runs: Runs) -> pa.Array:
        """``_map`` of the first row of each run, whose entries stand for the run's rows (counted
        so), then each row's entries take their run's values (the keys and offsets stay)."""
        first = column.take(pa.array(runs.starts))
        assert isinstance(first, pa.MapArray)
        first_offsets = first.offsets.to_numpy()
        weights = np.zeros(len(first.values), np.int64)
        weights[first_offsets[0] : first_offsets[-1]] = np.repeat(runs.lengths, np.diff(first_offsets))
        new = self._map(first, tenant, weights)
        if new is first:
            return column
        offsets = column.offsets.to_numpy()
        lengths = np.diff(offsets)
        start, end = int(offsets[0]), int(offsets[-1])
        # entry j of row i is entry j of its run's first row
        shift = first_offsets[:-1][runs.run_of_row] - offsets[:-1]
        gather = np.repeat(shift, lengths) + np.arange(start, end)
        assert isinstance(new, pa.MapArray)
        return pa.MapArray.from_arrays(
            pa.array((offsets - start).astype(np.int32)),
            column.values.field(0).slice(start, end - start),
            new.values.field(1).take(pa.array(gather)),
            type=column.type,
        )

    def _map(self, column: pa.MapArray, tenant: str, weights: np.ndarray | None = None) -> pa.Array:
        """``column`` redacted (``weights``: how many rows each entry of its values stands for)."""
        entries = column.values
        keys, values = entries.field(0), entries.field(1)
        allowed, denied = self._keys(keys)
        new = self._values(values, tenant, allowed, denied, weights)
        if new is values:
            return column
        rebuilt = pa.StructArray.from_arrays(
            [keys, new], fields=[column.type.key_field, column.type.item_field]
        )
        return pa.Array.from_buffers(
            column.type,
            len(column),
            column.buffers()[:2],
            null_count=column.null_count,
            offset=column.offset,
            children=[rebuilt],
        )

    def _keys(self, keys: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
        """Which of ``keys`` ``allow_keys`` and ``deny_keys`` match (None: no such keys): the
        patterns run over the distinct keys (a map's keys are few, repeated on every row; a regex
        over every entry costs 1.5 times the encoding), each entry taking its key's answer."""
        if self._allow is None and self._deny is None:
            return None, None
        encoded = pc.dictionary_encode(keys)

        def match(pattern: str | None) -> pa.Array | None:
            if pattern is None:
                return None
            return pc.match_substring_regex(encoded.dictionary, f"^(?:{pattern})$").take(encoded.indices)

        return match(self._allow), match(self._deny)

    def _values(
        self,
        values: pa.Array,
        tenant: str,
        allowed: pa.Array | None = None,
        denied: pa.Array | None = None,
        weights: np.ndarray | None = None,
    ) -> pa.Array:
        """``values`` redacted (the same object when nothing matched; ``weights``: how many
        values each stands for, counted so). Each value is one of its distinct values, which go
        through the rules once; with ``allowed`` and ``denied`` entries, the entries denied (and
        not allowed) take their value's replacement, those allowed their value, the others their
        value redacted, gathered in one ``take``."""
        encoded = pc.dictionary_encode(values)
        distinct, indices = encoded.dictionary, encoded.indices
        at, subject, whole = None, None, None  # per entry: its value's index, whether the rules apply, denied
        if allowed is not None or denied is not None:
            at = pc.fill_null(indices, -1).to_numpy()
            subject = at >= 0
            if allowed is not None:
                subject &= ~allowed.to_numpy(zero_copy_only=False)
            if denied is not None:
                whole = subject & denied.to_numpy(zero_copy_only=False)
                subject &= ~whole
                if not whole.any():
                    whole = None
            if whole is None and subject.sum() == len(indices) - indices.null_count:
                at, subject = None, None  # every value through the rules
        ruled = self._ruled(distinct, indices, at, subject, tenant, weights)
        if whole is None and at is None:
            return values if ruled is None else ruled.take(indices)
        assert at is not None and subject is not None
        size = len(distinct)
        gather = at.astype(np.int64) + size  # an allowed entry: its value as it is
        gather[subject] = at[subject]
        parts = [distinct if ruled is None else ruled, distinct]
        if whole is not None:
            used = np.unique(at[whole])
            place = np.empty(size, np.int64)
            place[used] = 2 * size + np.arange(len(used))
            gather[whole] = place[at[whole]]
            replace = self._replacement(DENY_RULE, tenant)
            texts = distinct.take(pa.array(used)).to_pylist()
            parts.append(pa.array([replace(text) for text in texts], pa.string()))
            self._count(DENY_RULE, int(whole.sum() if weights is None else weights[whole].sum()))
        elif ruled is None:
            return values
        nulls = at < 0
        return pa.concat_arrays(parts).take(pa.array(gather, mask=nulls if nulls.any() else None))

    def _ruled(
        self,
        distinct: pa.Array,
        indices: pa.Array,
        at: np.ndarray | None,
        subject: np.ndarray | None,
        tenant: str,
        weights: np.ndarray | None,
    ) -> pa.Array | None:
        """``distinct`` through the rules, those of the entries ``subject`` says (None: every
        entry not null) counted per rule (None: no rule matched any)."""
        if self._any is None:
            return None
        if subject is None:
            candidates, subset = None, distinct
            present = pc.drop_null(indices).to_numpy()
            weight = None if weights is None else weights[pc.is_valid(indices).to_numpy(zero_copy_only=False)]
        else:
            assert at is not None
            present = at[subject]
            weight = None if weights is None else weights[subject]
            seen = np.zeros(len(distinct), bool)
            seen[present] = True
            candidates = np.flatnonzero(seen)
            subset = distinct.take(pa.array(candidates))
        stands_for = len(indices) if weights is None else int(weights.sum())
        if len(subset) * REPEATED <= stands_for:
            hit, rewritten, counts = self._cached(subset, tenant)
        else:
            hit, rewritten, counts = self._fresh(subset, tenant)
        if rewritten is None:
            return None
        matched = np.flatnonzero(hit) if candidates is None else candidates[hit]
        occurrences = np.bincount(present, weight, minlength=len(distinct)).astype(np.int64)[matched]
        for rule, per_value in zip(self._rules, counts, strict=True):
            total = int(np.dot(per_value, occurrences))
            if total:
                self._count(rule.name, total)
        changed = np.zeros(len(distinct), bool)
        changed[matched] = True
        return pc.replace_with_mask(distinct, pa.array(changed), rewritten)

    def _fresh(self, distinct: pa.Array, tenant: str) -> tuple[np.ndarray, pa.Array | None, np.ndarray]:
        """Which ``distinct`` values any rule matches, those values through the rules (None:
        none matched) and their replacements per rule (one row per rule, one column per value)."""
        hit = pc.fill_null(pc.match_substring_regex(distinct, self._any), False)
        found = hit.to_numpy(zero_copy_only=False)
        if not found.any():
            return found, None, np.zeros((len(self._rules), 0), np.int64)
        rewritten, counts = self._redact(distinct.filter(hit), tenant)
        return found, rewritten, counts

    def _cached(self, distinct: pa.Array, tenant: str) -> tuple[np.ndarray, pa.Array | None, np.ndarray]:
        """``_fresh`` through the cache of what each value became: only values not seen yet go
        through the rules (and their regex kernels, which compile their pattern on every call)."""
        key = tenant if self._config.action == "hash" else ""
        cache = self._cache.setdefault(key, {})
        texts = distinct.to_pylist()
        new = [i for i, text in enumerate(texts) if text is not None and text not in cache]
        chars = self._cache_chars.get(key, 0) + sum(len(texts[i]) for i in new)
        if len(cache) + len(new) > CACHE_VALUES or chars > CACHE_CHARS:
            cache.clear()
            new = [i for i, text in enumerate(texts) if text is not None]
            chars = sum(len(texts[i]) for i in new)
        self._cache_chars[key] = chars
        if new:
            found, rewritten, counts = self._fresh(distinct.take(pa.array(new, pa.int64())), tenant)
            replaced = iter(rewritten.to_pylist() if rewritten is not None else ())
            per_value = iter(counts.T)
            for i, matched in zip(new, found, strict=True):
                cache[texts[i]] = (next(replaced), next(per_value)) if matched else UNCHANGED
        known = [cache[text] if text is not None else UNCHANGED for text in texts]
        hit = np.array([text is not None for text, _ in known], dtype=bool)
        if not hit.any():
            return hit, None, np.zeros((len(self._rules), 0), np.int64)
        matched = [entry for entry in known if entry[0] is not None]
        rewritten = pa.array([text for text, _ in matched], pa.string())
        return hit, rewritten, np.stack([counts for _, counts in matched], axis=1)

    def _redact(self, candidates: pa.Array, tenant: str) -> tuple[pa.Array, np.ndarray]:
        """Distinct values some rule matches, through every rule in order, and how many matches
        each rule replaced in each value (one row per rule)."""
        counts = np.zeros((len(self._rules), len(candidates)), np.int64)
        for row, rule in enumerate(self._rules):
            if rule.check is None and self._config.action == "mask":
                per_value = pc.count_substring_regex(candidates, rule.regex).to_numpy(zero_copy_only=False)
                if per_value.any():
                    mask = self._config.mask.replace("{rule}", rule.name).replace("\\", "\\\\")
                    candidates = pc.replace_substring_regex(candidates, rule.regex, mask)
                    counts[row] = per_value
                continue
            hit = pc.fill_null(pc.match_substring_regex(candidates, rule.regex), False)
            if not pc.any(hit).as_py():
                continue
            replace = self._replacement(rule.name, tenant)
            rewritten = []
            found = hit.to_numpy(zero_copy_only=False)
            for at, text in zip(np.flatnonzero(found), candidates.filter(hit).to_pylist(), strict=True):
                count = [0]
                rewritten.append(rule.compiled.sub(_substitute(rule, replace, count), text))
                counts[row, at] = count[0]
            candidates = pc.replace_with_mask(candidates, hit, pa.array(rewritten, pa.string()))
        return candidates, counts


def _substitute(rule: Rule, replace: Replace, count: list[int]) -> Callable[[re.Match[str]], str]:
    """What ``re.sub`` puts for a match of ``rule``: its replacement when it passes the rule's
    check (counted in ``count[0]``), else the match itself."""

    def substitute(match: re.Match[str]) -> str:
        if rule.check is not None and not rule.check(match.group(0)):
            return match.group(0)
        count[0] += 1
        return replace(match.group(0))

    return substitute
