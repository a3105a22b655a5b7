"""What users write in the lake exporter's ``stream`` section: a list of processors, each with a
``type`` (``filter``, ``transform``, ``redact``, ``sample``, ``tail_sample``: last), the
``signals`` it applies to and its ``on_error``.

Every expression is compiled against the empty table of each signal's lake table when the
configuration loads (``expressions.result_type``), so a typo is an error naming its path
(``exporters.lake.stream[2].set.name``) and the column; so is every regular expression (RE2, the
dialect of Arrow's string kernels, which must also compile in Python's ``re``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from orasi_bridge.stream.expressions import lake_tables, result_type
from orasi_common.config.model import ComponentConfig
from orasi_common.pdata import Signal

MAPS = ("attributes", "resource_attributes")
"""The attribute columns (``MAP(VARCHAR, VARCHAR)``) of every lake table."""

ALL_SIGNALS = [Signal.TRACES, Signal.LOGS, Signal.METRICS]

_ATTRIBUTE = re.compile(r"^(attributes|resource_attributes)\[\s*'((?:[^']|'')*)'\s*\]$")


@dataclass(frozen=True)
class Target:
    """What a ``set`` key names: a column, or one key of an attribute map (``key`` not None)."""

    column: str
    key: str | None = None


def target(text: str) -> Target:
    """``attributes['env']`` → the key ``env`` of ``attributes``; ``name`` → the column ``name``."""
    found = _ATTRIBUTE.match(text.strip())
    if found:
        return Target(found.group(1), found.group(2).replace("''", "'"))
    return Target(text.strip())


def _problem(loc: tuple[str | int, ...], message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("stream", "{message}", {"message": message}), loc=loc, input=value
    )


def _raise(title: str, problems: list[InitErrorDetails]) -> None:
    if problems:
        raise ValidationError.from_exception_data(title, problems)


class ProcessorConfig(ComponentConfig):
    signals: list[Signal] = Field(
        default_factory=lambda: list(ALL_SIGNALS),
        min_length=1,
        description="The signals (traces, logs, metrics) whose lake rows the processor sees "
        "(tables spans, logs, metric_points).",
    )
    on_error: Literal["pass", "drop"] = Field(
        default="pass",
        description="When the processor fails on a record batch at run time: pass (the rows go on "
        "as they were) or drop (the rows are left out); counted in orasi_stream_errors_total.",
    )
    name: str | None = Field(
        default=None, description="The processor's label in metrics and logs (default: TYPE_INDEX)."
    )

    def tables(self) -> list[str]:
        """The lake tables of ``signals``."""
        from orasi_bridge.lake.rows import TABLE_OF_SIGNAL  # not at the top: see lake_tables

        return [TABLE_OF_SIGNAL[signal] for signal in self.signals]

    def _expression(self, loc: tuple[str | int, ...], expression: str) -> list[InitErrorDetails]:
        """Problems of an expression over each table of the processor (none: it compiles)."""
        for table in self.tables():
            try:
                result_type(expression, table)
            except ValueError as error:
                return [_problem(loc, str(error), expression)]
        return []


class FilterConfig(ProcessorConfig):
    type: Literal["filter"]
    drop_where: str = Field(
        description="Rows for which this SQL expression is true are dropped (false or null: kept), "
        "e.g. \"name = 'GET /healthz'\"."
    )

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        problems = self._expression(("drop_where",), self.drop_where)
        for table in self.tables() if not problems else ():
            if not pa.types.is_boolean(result_type(self.drop_where, table)):
                problems.append(
                    _problem(("drop_where",), "the expression must be a boolean", self.drop_where)
                )
                break
        _raise("filter", problems)
        return self


class TransformConfig(ProcessorConfig):
    type: Literal["transform"]
    set: dict[str, str] = Field(
        default_factory=dict,
        description="Column or attribute key (attributes['k'], resource_attributes['k']) → SQL "
        "expression of its new value; every expression reads the rows as they came in; a null "
        "attribute value removes the key.",
    )
    delete: list[str] = Field(
        default_factory=list,
        description="Attribute keys removed: attributes['k'], resource_attributes['k'], or k "
        "(of attributes).",
    )

    @model_validator(mode="after")
    def _check(self) -> TransformConfig:
        problems: list[InitErrorDetails] = []
        if not self.set and not self.delete:
            problems.append(_problem((), "a transform sets or deletes something", None))
        for key, expression in self.set.items():
            named = target(key)
            loc: tuple[str | int, ...] = ("set", key)
            if named.column == "tenant":
                problems.append(_problem(loc, "the tenant of a row cannot be changed", expression))
                continue
            missing = [t for t in self.tables() if named.column not in lake_tables()[t].names]
            if missing:
                problems.append(_problem(loc, f"the {missing[0]} table has no column {named.column!r}", key))
                continue
            found = self._expression(loc, expression)
            if not found and named.key is None:
                for table in self.tables():
                    wanted = lake_tables()[table].field(named.column).type
                    try:
                        pa.array([], result_type(expression, table)).cast(wanted)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        found.append(
                            _problem(loc, f"the expression's type does not convert to {wanted}", expression)
                        )
                        break
            problems += found
        for i, key in enumerate(self.delete):
            if target(key).column not in MAPS:  # a bare key of attributes
                continue
            if target(key).key is None:
                problems.append(_problem(("delete", i), "name an attribute key, not a column", key))
        _raise("transform", problems)
        return self


BUILTIN_PATTERNS: dict[str, str] = {
    "bearer": r"\b(?i:bearer)\s+[A-Za-z0-9\-._~+/]+=*",
    "aws_access_key": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ \-]?){12,18}\d\b",
    "ipv6": r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"
    r"|(?:\b(?:[0-9A-Fa-f]{1,4}:){1,6}|::)(?::[0-9A-Fa-f]{1,4}){1,6}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,7}:",
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
}
"""Built-in rules, applied in this order (``card`` matches only numbers passing the Luhn check)."""

Builtin = Literal["bearer", "aws_access_key", "email", "card", "ipv6", "ipv4"]
Field_ = Literal["attributes", "resource_attributes", "body"]
BUILTINS: list[Builtin] = ["bearer", "aws_access_key", "email", "card", "ipv6", "ipv4"]
FIELDS: list[Field_] = ["attributes", "resource_attributes", "body"]


class PatternConfig(ComponentConfig):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="The rule's label in metrics.")
    regex: str = Field(description="What is redacted (RE2 syntax, valid in Python's re too).")


def regex_problem(regex: str) -> str | None:
    """Why ``regex`` cannot be used (None: it compiles in RE2 and in Python's re)."""
    try:
        re.compile(regex)
        pc.match_substring_regex(pa.array([""]), regex)
    except (re.error, pa.ArrowInvalid) as error:
        return f"not a valid regular expression: {str(error).splitlines()[0]}"
    return None


class RedactConfig(ProcessorConfig):
    type: Literal["redact"]
    builtins: list[Builtin] = Field(
        default_factory=lambda: list(BUILTINS),
        description="Built-in rules: bearer, aws_access_key, email, card (Luhn-checked), ipv6, ipv4.",
    )
    patterns: list[PatternConfig] = Field(default_factory=list, description="Rules of your own.")
    fields: list[Field_] = Field(
        default_factory=lambda: list(FIELDS),
        min_length=1,
        description="Where values are redacted (body: log records only).",
    )
    allow_keys: list[str] = Field(
        default_factory=list, description="Attribute keys whose values are never redacted."
    )
    deny_keys: list[str] = Field(
        default_factory=list,
        description="Attribute keys whose whole value is always redacted (e.g. password, authorization).",
    )
    action: Literal["mask", "hash"] = Field(
        default="mask",
        description="mask: replace with `mask`; hash: with sha256:<hex> of the value and the "
        "tenant's salt (equal values stay joinable within a tenant).",
    )
    mask: str = Field(default="[REDACTED:{rule}]", description="The replacement of action mask.")
    salt_env: str | None = Field(
        default=None, description="Environment variable holding the secret salt of action hash."
    )
    salt_file: str | None = Field(default=None, description="File holding the secret salt of action hash.")

    @model_validator(mode="after")
    def _check(self) -> RedactConfig:
        problems: list[InitErrorDetails] = []
        if self.action == "hash" and (self.salt_env is None) == (self.salt_file is None):
            problems.append(_problem(("action",), "hash takes one of salt_env or salt_file", self.action))
        names: set[str] = set(self.builtins)
        for i, pattern in enumerate(self.patterns):
            if pattern.name in names:
                problems.append(_problem(("patterns", i, "name"), "a rule of this name exists", pattern.name))
            names.add(pattern.name)
            problem = regex_problem(pattern.regex)
            if problem:
                problems.append(_problem(("patterns", i, "regex"), problem, pattern.regex))
        if not names and not self.deny_keys:
            problems.append(_problem((), "a redact has rules or deny_keys", None))
        _raise("redact", problems)
        return self


class SampleConfig(ProcessorConfig):
    type: Literal["sample"]
    signals: list[Signal] = Field(
        default_factory=lambda: [Signal.TRACES, Signal.LOGS],
        min_length=1,
        description="traces and/or logs (rows with a trace id).",
    )
    probability: float = Field(
        ge=0, le=1, description="Share of traces kept: the same traces on every bridge and region."
    )
    keep_without_trace: bool = Field(default=True, description="Keep rows that have no trace id.")

    @model_validator(mode="after")
    def _check(self) -> SampleConfig:
        if Signal.METRICS in self.signals:
            _raise(
                "sample", [_problem(("signals",), "metric points have no trace id to sample by", "metrics")]
            )
        return self


class TailSampleConfig(ProcessorConfig):
    type: Literal["tail_sample"]
    on_error: Literal["pass"] = Field(
        default="pass",
        description="When keep_where fails on a record batch at run time: no span of it matches "
        "(counted in orasi_stream_errors_total); the other policies decide.",
    )
    signals: list[Signal] = Field(
        default_factory=lambda: [Signal.TRACES],
        min_length=1,
        description="traces (the spans table) only: a decision keeps or drops a whole trace.",
    )
    decision_wait: float = Field(
        default=10.0,
        gt=0,
        description="Seconds after a trace's last span arrived before it is decided (its spans are "
        "held, unwritten and unseen by queries, until then).",
    )
    errors: bool = Field(default=True, description="Keep traces with a span whose status is ERROR.")
    min_duration_ms: float | None = Field(
        default=None,
        gt=0,
        description="Keep traces with a span lasting at least this (unset: no such policy).",
    )
    keep_where: str | None = Field(
        default=None,
        description="Keep traces with a span for which this SQL expression is true, e.g. "
        "\"attributes['http.route'] = '/checkout'\" (unset: no such policy).",
    )
    probability: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of the other traces kept, by trace id (the rule of `sample`).",
    )
    max_traces: int = Field(
        default=50_000,
        ge=1,
        description="Traces held at most; past it the oldest held are decided early (counted in "
        "orasi_stream_tail_early_decisions_total).",
    )
    max_spans: int = Field(
        default=500_000, ge=1, description="Spans held at most; past it the oldest are decided early."
    )
    decision_cache: int = Field(
        default=200_000,
        ge=1,
        description="Decisions remembered (and, with the lake's wal, kept on disk beside it): later "
        "spans of a decided trace, and spans replayed after a crash, get the same decision.",
    )

    @model_validator(mode="after")
    def _check(self) -> TailSampleConfig:
        problems: list[InitErrorDetails] = []
        if self.signals != [Signal.TRACES]:
            problems.append(_problem(("signals",), "tail sampling decides traces: signals is [traces]", None))
        if self.keep_where is not None:
            problems += self._expression(("keep_where",), self.keep_where)
            if not problems and not pa.types.is_boolean(result_type(self.keep_where, "spans")):
                problems.append(
                    _problem(("keep_where",), "the expression must be a boolean", self.keep_where)
                )
        if not (self.errors or self.min_duration_ms or self.keep_where or self.probability):
            problems.append(_problem((), "a tail_sample keeps something: errors, min_duration_ms, ...", None))
        _raise("tail_sample", problems)
        return self


StreamProcessor = Annotated[
    FilterConfig | TransformConfig | RedactConfig | SampleConfig | TailSampleConfig,
    Field(discriminator="type"),
]


def check_stream(processors: list[Any]) -> list[Any]:
    """A ``stream`` list's own rule: one ``tail_sample`` at most, and last (it holds the rows that
    every processor before it let through until its decisions)."""
    tails = [i for i, config in enumerate(processors) if isinstance(config, TailSampleConfig)]
    if tails and tails != [len(processors) - 1]:
        _raise(
            "stream",
            [_problem((tails[0],), "one tail_sample at most, and last in the stream", "tail_sample")],
        )
    return processors


Stream = Annotated[list[StreamProcessor], AfterValidator(check_stream)]
"""The type of the lake exporter's ``stream`` section."""


def label(config: Any, index: int) -> str:
    """A processor's label in metrics and logs."""
    name: str | None = config.name
    return name or f"{config.type}_{index}"


__all__ = [
    "BUILTIN_PATTERNS",
    "MAPS",
    "FilterConfig",
    "PatternConfig",
    "RedactConfig",
    "SampleConfig",
    "Stream",
    "StreamProcessor",
    "TailSampleConfig",
    "Target",
    "TransformConfig",
    "check_stream",
    "label",
    "target",
]
