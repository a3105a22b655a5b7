"""What the monitoring files ask of the services: the PromQL of the rules and the dashboards, and
the metric names in it, matched against the families a ``/metrics`` page declares."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

MONITORING = Path(__file__).resolve().parents[2] / "helm" / "orasi" / "files" / "monitoring"
RULES = MONITORING / "rules.yaml"
SCRAPE = MONITORING / "scrape.yaml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))

# What Grafana puts in place of the dashboards' variables ("All" everywhere).
VARIABLES = {
    "$__rate_interval": "15s",
    "$region": ".*",
    "$component": ".*",
    "$instance": ".*",
    "$signal": "traces|metrics|logs",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\)\s*$")


def tool(name: str) -> str:
    """The path of ``name`` (scripts/test-packages.sh installs it; `make test` runs that)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test-packages.sh (Debian's prometheus)")
    return path


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue  # a function or an aggregation (its grouping was removed above)
        names.add(match.group())
    return names


def rules() -> dict[str, dict[str, Any]]:
    """Every rule of rules.yaml by its alert name."""
    document = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def _targets(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        yield from _targets(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a dashboard."""
    dashboard = json.loads(path.read_text())
    queries = [(f"{path.stem}: {title}", expr) for title, expr in _targets(dashboard["panels"])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = _LABEL_VALUES.match(variable["definition"])
            assert selector, f"{path.stem}: variable {variable['name']} is not label_values(selector, label)"
            queries.append((f"{path.stem}: ${variable['name']}", selector.group("selector")))
    return queries


def every_query() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and every dashboard query."""
    found = [(f"rule {name}", rule["expr"]) for name, rule in rules().items()]
    for path in DASHBOARDS:
        found += dashboard_queries(path)
    return found


def substitute(expr: str) -> str:
    """``expr`` as Grafana sends it with "All" selected."""
    for variable, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable is not substituted in {expr}"
    return expr


_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def exposed_names(text: str) -> tuple[set[str], set[str]]:
    """From a /metrics page: the sample names its families declare (with or without samples:
    a labelled family nothing has touched yet shows only its HELP and TYPE), and those that have
    samples. A histogram ``h`` declares ``h_bucket``, ``h_count``, ``h_sum``; a counter ``c``
    declares ``c_total``."""
    declared: set[str] = set()
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)))
        sampled.update(sample.name for sample in family.samples)
    return declared, sampled
