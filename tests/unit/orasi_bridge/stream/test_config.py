"""The stream section is checked when the configuration loads: each problem names its path."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from orasi_bridge.lake.config import Config
from orasi_bridge.stream.config import BUILTIN_PATTERNS, BUILTINS
from orasi_common.config.loader import format_validation_error


def problems(*stream: dict[str, Any]) -> list[str]:
    raw = {"catalog_uri": "sqlite:///lake.db", "warehouse": "file:///lake", "stream": list(stream)}
    try:
        Config.model_validate(raw)
    except pydantic.ValidationError as error:
        return format_validation_error(error, "exporters.lake", raw)
    return []


FILTER = {"type": "filter", "signals": ["traces"], "drop_where": "name = 'x'"}


def test_a_valid_stream_loads() -> None:
    assert (
        problems(
            FILTER,
            {"type": "redact"},
            {"type": "transform", "set": {"attributes['env']": "'prod'"}, "delete": ["secret"]},
            {"type": "sample", "probability": 0.1},
        )
        == []
    )


@pytest.mark.parametrize(
    ("processor", "expected"),
    [
        (
            {"type": "transform", "signals": ["traces"], "set": {"name": "regexp_replace(nme, 'a', 'b')"}},
            'exporters.lake.stream[2].set.name: Binder Error: Referenced column "nme" not found in FROM '
            "clause! (over the spans table)",
        ),
        (
            {"type": "transform", "set": {"name": "'x'"}},
            "exporters.lake.stream[2].set.name: the logs table has no column 'name'",
        ),
        (
            {"type": "transform", "set": {"tenant": "'other'"}},
            "exporters.lake.stream[2].set.tenant: the tenant of a row cannot be changed",
        ),
        (
            {"type": "transform", "signals": ["traces"], "set": {"duration_ns": "[1, 2]"}},
            "exporters.lake.stream[2].set.duration_ns: the expression's type does not convert to int64",
        ),
        (
            {"type": "filter", "signals": ["logs"], "drop_where": "body"},
            "exporters.lake.stream[2].drop_where: the expression must be a boolean",
        ),
        (
            {"type": "filter", "drop_where": "body = 'x'"},
            'exporters.lake.stream[2].drop_where: Binder Error: Referenced column "body" not found in FROM '
            "clause! (over the spans table)",
        ),
        (
            {"type": "filter", "signals": ["traces"], "drop_where": "name IN (SELECT name FROM spans)"},
            "exporters.lake.stream[2].drop_where: an expression reads the row's columns only",
        ),
        (
            {"type": "filter", "signals": ["traces"], "drop_where": "true); DROP TABLE rows; SELECT (1"},
            "exporters.lake.stream[2].drop_where: send exactly one statement (got 3)",
        ),
        (
            {"type": "filter", "signals": ["traces"], "drop_where": "count(*) > 0"},
            "exporters.lake.stream[2].drop_where: an expression gives one value per row (no aggregates)",
        ),
        (
            {"type": "redact", "patterns": [{"name": "x", "regex": "a(b"}]},
            "exporters.lake.stream[2].patterns[0].regex: not a valid regular expression: "
            "missing ), unterminated subpattern at position 1",
        ),
        (
            {"type": "redact", "action": "hash"},
            "exporters.lake.stream[2].action: hash takes one of salt_env or salt_file",
        ),
        (
            {"type": "sample", "signals": ["metrics"], "probability": 0.5},
            "exporters.lake.stream[2].signals: metric points have no trace id to sample by",
        ),
        (
            {"type": "sample", "probability": 1.5},
            "exporters.lake.stream[2].probability: Input should be less than or equal to 1",
        ),
        (
            {"type": "reduce"},
            "exporters.lake.stream[2]: Input tag 'reduce' found using 'type' does not match",
        ),
    ],
)
def test_a_wrong_processor_is_an_error_naming_its_path(processor: dict[str, Any], expected: str) -> None:
    found = problems(FILTER, {"type": "redact"}, processor)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_builtin_rules_are_listed_once() -> None:
    assert list(BUILTIN_PATTERNS) == BUILTINS
