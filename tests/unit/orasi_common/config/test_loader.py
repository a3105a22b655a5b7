"""Reading configuration: YAML, ${env:...} substitution, and problems that name the dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from orasi_agent.factories import FACTORIES
from orasi_common.config import ConfigError, load_config, parse_config
from orasi_common.config.loader import substitute_env
from orasi_common.pipeline.graph import resolve

MINIMAL = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  batch: {}
exporters:
  otlp:
    endpoint: 127.0.0.1:4417
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"""


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    """The problems parsing and resolving ``text`` for the agent reports (fails if none)."""
    with pytest.raises(ConfigError) as caught:
        resolve(parse_config(text, environ=environ or {}), FACTORIES)
    return caught.value.problems


def test_minimal_config_parses_into_sections() -> None:
    config = parse_config(MINIMAL, environ={})
    assert config.receivers["otlp"] == {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}}}
    assert config.processors == {"batch": {}}
    pipeline = config.service.pipelines["traces"]
    assert (pipeline.receivers, pipeline.processors, pipeline.exporters) == (["otlp"], ["batch"], ["otlp"])
    resolved = resolve(config, FACTORIES)
    assert resolved.exporters["otlp"].endpoint == "127.0.0.1:4417"  # type: ignore[attr-defined]


def test_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("receivers: [unclosed", source="my.yaml", environ={})
    assert "not valid YAML" in caught.value.problems[0]
    assert "my.yaml" in str(caught.value)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string"])
def test_document_must_be_a_mapping(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert "mapping" in caught.value.problems[0]


# --- substitution -----------------------------------------------------------------------------


def test_env_reference_inside_a_string() -> None:
    out = substitute_env({"a": "http://${env:HOST}:${env:PORT}/x"}, {"HOST": "gw", "PORT": "4318"})
    assert out == {"a": "http://gw:4318/x"}


def test_env_default_used_only_when_unset() -> None:
    doc = {"a": "${env:MISSING:-fallback}", "b": "${env:SET:-fallback}", "c": "${env:MISSING:-}"}
    assert substitute_env(doc, {"SET": "given"}) == {"a": "fallback", "b": "given", "c": ""}


def test_dollar_dollar_is_a_literal_dollar() -> None:
    doc = {"price": "$$5", "escaped": "$${env:HOST}", "alone": "$$"}
    assert substitute_env(doc, {"HOST": "gw"}) == {"price": "$5", "escaped": "${env:HOST}", "alone": "$"}


def test_substituted_values_stay_text_for_the_model_to_convert() -> None:
    doc = {"port": "${env:PORT}", "ratio": "${env:RATIO}", "flag": "${env:FLAG}", "mixed": "p${env:PORT}"}
    out = substitute_env(doc, {"PORT": "4317", "RATIO": "0.5", "FLAG": "true"})
    assert out == {"port": "4317", "ratio": "0.5", "flag": "true", "mixed": "p4317"}


def test_substitution_reaches_lists_and_nested_maps() -> None:
    doc = {"a": [{"b": "${env:X}"}, "${env:Y}"], "n": 3, "none": None}
    assert substitute_env(doc, {"X": "1", "Y": "why"}) == {"a": [{"b": "1"}, "why"], "n": 3, "none": None}


def test_whole_value_reference_validates_as_an_int_field() -> None:
    text = MINIMAL.replace(
        "endpoint: 127.0.0.1:4417", "endpoint: ${env:GW}\n    sending_queue:\n      num_consumers: ${env:N}"
    )
    resolved = resolve(parse_config(text, environ={"GW": "gw:4417", "N": "3"}), FACTORIES)
    exporter = resolved.exporters["otlp"]
    assert exporter.endpoint == "gw:4417"  # type: ignore[attr-defined]
    assert exporter.sending_queue.num_consumers == 3  # type: ignore[attr-defined]


def test_numeric_looking_secret_stays_a_string_in_a_string_field() -> None:
    """A header value from the environment is text, even when it looks like a (YAML 1.1) number.

    ``0123`` must reach the header as "0123", not as the octal integer 83 or a validation error
    (today it fails with "Input should be a valid string", even though the user quoted it).
    """
    text = MINIMAL.replace(
        "endpoint: 127.0.0.1:4417", "endpoint: 127.0.0.1:4417\n    headers: {x-token: '${env:TOKEN}'}"
    )
    resolved = resolve(parse_config(text, environ={"TOKEN": "0123"}), FACTORIES)
    assert resolved.exporters["otlp"].headers == {"x-token": "0123"}  # type: ignore[attr-defined]


def test_unset_variable_is_named_with_its_path() -> None:
    text = MINIMAL.replace("127.0.0.1:4417", "${env:ORASI_GATEWAY}")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="agent.yaml", environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("exporters.otlp.endpoint:")
    assert "ORASI_GATEWAY" in problem
    assert "agent.yaml" in str(caught.value)


def test_bare_brace_reference_is_substituted_too() -> None:
    assert substitute_env({"a": "${HOST}"}, {"HOST": "h"}) == {"a": "h"}


# --- unknown keys, anywhere, named by their full dotted path ----------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("service:\n", "servce: {}\nservice:\n", "servce"),
        ("processors:\n", "procesors: {}\nprocessors:\n", "procesors"),
        ("      processors: [batch]\n", "      procesors: [batch]\n", "service.pipelines.traces.procesors"),
        (
            "  pipelines:\n",
            "  telemetry: {logs: {levl: info}}\n  pipelines:\n",
            "service.telemetry.logs.levl",
        ),
        (
            "        endpoint: 127.0.0.1:4317",
            "        endpiont: 127.0.0.1:4317",
            "receivers.otlp.protocols.grpc.endpiont",
        ),
        (
            "    endpoint: 127.0.0.1:4417\n",
            "    endpoint: 127.0.0.1:4417\n    sending_queue: {on_ful: block}\n",
            "exporters.otlp.sending_queue.on_ful",
        ),
        (
            "    endpoint: 127.0.0.1:4417\n",
            "    endpoint: 127.0.0.1:4417\n    retry_on_failure: {max_elapsed: 1}\n",
            "exporters.otlp.retry_on_failure.max_elapsed",
        ),
        ("  batch: {}", "  batch: {timout: 1}", "processors.batch.timout"),
    ],
)
def test_typo_is_named_by_full_path(old: str, new: str, path: str) -> None:
    assert old in MINIMAL
    problems = problems_of(MINIMAL.replace(old, new, 1))
    assert f"{path}: unknown key (check its spelling and indentation)" in problems


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("endpoint: 127.0.0.1:4317", "endpiont: 127.0.0.1:4317").replace(
        "  batch: {}", "  batch: {timout: 1}"
    )
    problems = problems_of(text)
    assert any(p.startswith("receivers.otlp.protocols.grpc.endpiont:") for p in problems)
    assert any(p.startswith("processors.batch.timout:") for p in problems)


def test_invalid_value_names_path_and_reason() -> None:
    problems = problems_of(MINIMAL.replace("endpoint: 127.0.0.1:4317", "endpoint: localhost"))
    assert len(problems) == 1
    assert problems[0].startswith("receivers.otlp.protocols.grpc.endpoint:")
    assert "host:port" in problems[0]


def test_cross_field_rule_names_the_component() -> None:
    problems = problems_of(
        MINIMAL.replace("  batch: {}", "  batch: {send_batch_size: 10, send_batch_max_size: 5}")
    )
    assert problems == [
        "processors.batch: Value error, send_batch_max_size must be 0 or at least send_batch_size"
    ]


def test_union_typed_value_names_the_key_once() -> None:
    """A value of the wrong type in `attributes` is one problem at the key's path.

    Pydantic reports one error per union member (str, bool, int, float) with the member's name
    appended to the location; a config path must not grow a `.str` that the user never wrote.
    """
    text = MINIMAL.replace("  batch: {}", "  batch: {}\n  resource:\n    attributes: {team: [a, b]}")
    problems = problems_of(text)
    assert problems
    assert all(p.startswith("processors.resource.attributes.team:") for p in problems), problems
    assert len(problems) == 1, problems


def test_missing_required_key() -> None:
    problems = problems_of(MINIMAL.replace("    endpoint: 127.0.0.1:4417\n", "    timeout: 1\n"))
    assert problems == ["exporters.otlp.endpoint: required key is missing"]


def test_missing_service_section() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("receivers: {}\n", environ={})
    assert caught.value.problems == ["service: required key is missing"]


# --- components and pipelines -------------------------------------------------------------------


def test_unknown_component_type_names_the_known_ones() -> None:
    text = MINIMAL.replace("receivers:\n", "receivers:\n  jaeger: {}\n", 1)
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith("receivers.jaeger: unknown receiver type 'jaeger'")
    assert "otlp" in problems[0]


def test_named_component_ids_use_their_type() -> None:
    text = MINIMAL.replace("exporters:\n", "exporters:\n  otlp/backup:\n    endpoint: b:1\n", 1).replace(
        "exporters: [otlp]", "exporters: [otlp, otlp/backup]"
    )
    resolved = resolve(parse_config(text, environ={}), FACTORIES)
    assert resolved.exporters["otlp/backup"].endpoint == "b:1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "exporters: [otlp]",
            "exporters: [otlp, otlphttp]",
            "service.pipelines.traces.exporters: 'otlphttp' is not defined under exporters",
        ),
        (
            "processors: [batch]",
            "processors: [batch, memory_limiter]",
            "service.pipelines.traces.processors: 'memory_limiter' is not defined under processors",
        ),
        (
            "receivers: [otlp]",
            "receivers: [otlp/2]",
            "service.pipelines.traces.receivers: 'otlp/2' is not defined under receivers",
        ),
        (
            "processors: [batch]",
            "processors: [batch, batch]",
            "service.pipelines.traces.processors: an id is listed twice",
        ),
    ],
)
def test_pipeline_references(old: str, new: str, expected: str) -> None:
    assert expected in problems_of(MINIMAL.replace(old, new))


@pytest.mark.parametrize("pipeline_id", ["trace", "spans", "logs_main", "Traces"])
def test_bad_pipeline_id(pipeline_id: str) -> None:
    problems = problems_of(MINIMAL.replace("    traces:\n", f"    {pipeline_id}:\n"))
    assert problems == [
        f"service.pipelines.{pipeline_id}: a pipeline id must start with traces, metrics or logs "
        "(e.g. traces/main)"
    ]


@pytest.mark.parametrize("pipeline_id", ["traces", "metrics/main", "logs/2"])
def test_good_pipeline_ids(pipeline_id: str) -> None:
    resolved = resolve(
        parse_config(MINIMAL.replace("    traces:\n", f"    {pipeline_id}:\n"), environ={}), FACTORIES
    )
    assert list(resolved.service.service.pipelines) == [pipeline_id]


def test_pipeline_needs_a_receiver_and_an_exporter() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("receivers: [otlp]", "receivers: []"), environ={})
    assert caught.value.problems[0].startswith("service.pipelines.traces.receivers:")


def test_no_pipelines_is_an_error() -> None:
    text = MINIMAL.split("service:")[0] + "service:\n  pipelines: {}\n"
    assert "service.pipelines: at least one pipeline is required" in problems_of(text)


def test_undefined_extension() -> None:
    text = MINIMAL.replace("  pipelines:\n", "  extensions: [health_check]\n  pipelines:\n")
    assert "service.extensions: 'health_check' is not defined under extensions" in problems_of(text)


# --- files --------------------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(MINIMAL)
    assert load_config(path, environ={}).service.pipelines["traces"].exporters == ["otlp"]


def test_load_config_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)
    assert "cannot read the file" in caught.value.problems[0]


def test_shipped_example_validates() -> None:
    example = Path(__file__).resolve().parents[4] / "examples" / "agent.yaml"
    resolved = resolve(load_config(example, environ={}), FACTORIES)
    assert set(resolved.service.service.pipelines) == {"traces", "metrics", "logs"}
    assert resolved.processors["memory_limiter"].limit_mib == 400  # type: ignore[attr-defined]
    assert resolved.exporters["otlp"].endpoint == "127.0.0.1:4417"  # type: ignore[attr-defined]


def test_a_document_nested_too_deep_is_refused_quickly() -> None:
    """PyYAML's scanner takes time quadratic in flow nesting, and its composer recursion ends in
    RecursionError: the loader stops at the first level past MAX_DEPTH (found by fuzzing)."""
    from orasi_common.config.loader import MAX_DEPTH

    with pytest.raises(ConfigError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_config("service: " + "[" * 20_000 + "]" * 20_000)


def test_aliases_expanding_past_the_limit_are_refused() -> None:
    """A "billion laughs" document (nine levels of ten aliases) is refused before expansion."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(ConfigError, match="more than 100000 values"):
        parse_config("\n".join(lines) + "\nservice: {pipelines: {}}\n")
