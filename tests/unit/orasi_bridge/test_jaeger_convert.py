"""The pieces of the Jaeger API that need no lake: tag types, trace id text, Go durations."""

from __future__ import annotations

import pytest

from orasi_bridge.jaeger import api, convert


@pytest.mark.parametrize(
    ("canonical", "kind", "value"),
    [
        ("true", "bool", True),
        ("false", "bool", False),
        ("42", "int64", 42),
        ("-7", "int64", -7),
        ("9223372036854775807", "int64", 2**63 - 1),
        ("9223372036854775808", "string", "9223372036854775808"),  # past int64: kept as text
        ("007", "string", "007"),  # not canonical decimal: a string
        ("3.25", "float64", 3.25),
        ("-0.5", "float64", -0.5),
        ("1e+300", "float64", 1e300),
        ("NaN", "string", "NaN"),
        ("True", "string", "True"),
        ('["a",1]', "string", '["a",1]'),
        ("AAH+/w==", "string", "AAH+/w=="),
        ("", "string", ""),
        (None, "string", ""),
    ],
)
def test_tag_types_from_canonical_strings(canonical: str | None, kind: str, value: object) -> None:
    assert convert.tag("k", canonical) == {"key": "k", "type": kind, "value": value}


def test_trace_ids_as_jaeger_prints_them() -> None:
    assert convert.trace_id_text("00000000000000001122334455667788") == "1122334455667788"
    assert convert.trace_id_text("0af7651916cd43dd8448eb211c80319c") == "af7651916cd43dd8448eb211c80319c"
    assert api.parse_trace_id("1122334455667788") == "00000000000000001122334455667788"
    assert api.parse_trace_id("AF7651916CD43DD8448EB211C80319C") == "0af7651916cd43dd8448eb211c80319c"
    for bad in ("", "xyz", "1" * 33):
        with pytest.raises(api.BadParameter):
            api.parse_trace_id(bad)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1.5s", 1_500_000),
        ("250ms", 250_000),
        ("1h30m", 5_400_000_000),
        ("2d", 172_800_000_000),
        ("10us", 10),
        ("10µs", 10),
        ("1500ns", 1),
        ("-1s", -1_000_000),
    ],
)
def test_go_durations(text: str, micros: int) -> None:
    assert api.parse_duration_us(text, "minDuration") == micros


@pytest.mark.parametrize("text", ["", "fast", "1", "1 s", "s", "1sx"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(api.BadParameter, match="unable to parse param 'minDuration'"):
        api.parse_duration_us(text, "minDuration")


def test_literals_escape_quotes() -> None:
    assert api.literal("it's") == "'it''s'"
