"""Reading a configuration file: YAML, `${env:VAR}` substitution, and errors that name paths.

Substitution follows the Collector: ``${env:VAR}``, ``${env:VAR:-default}`` and ``$$`` for a
literal ``$``. A value that is one whole reference is re-read as YAML, so ``${env:PORT}`` can be
an integer. An unset variable without a default is an error that names it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from orasi_common.config.model import ServiceConfig

_REFERENCE = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` are "path: what is wrong" sentences."""

    def __init__(self, problems: list[str], source: str = "configuration") -> None:
        self.problems = problems
        super().__init__(f"invalid {source}:\n" + "\n".join(f"  - {p}" for p in problems))


def _substitute(value: str, path: str, environ: Mapping[str, str]) -> Any:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            [
                f"{path}: environment variable {name} is not set "
                f"(set it, or give a default: ${{env:{name}:-value}})"
            ]
        )

    whole = _REFERENCE.fullmatch(value)
    result = _REFERENCE.sub(replace, value)
    if whole is not None and whole.group(0) != "$$":
        try:
            return yaml.safe_load(result) if result else result
        except yaml.YAMLError:
            return result
    return result


def substitute_env(node: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """A copy of a parsed YAML tree with every `${env:...}` reference replaced."""
    if isinstance(node, dict):
        return {
            key: substitute_env(value, environ, f"{path}.{key}" if path else str(key))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [substitute_env(value, environ, f"{path}[{i}]") for i, value in enumerate(node)]
    if isinstance(node, str):
        return _substitute(node, path, environ)
    return node


def format_validation_error(error: pydantic.ValidationError, prefix: str = "") -> list[str]:
    """Pydantic errors as "path: message" sentences; unknown keys are named as such."""
    problems = []
    for item in error.errors():
        path = prefix
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"]
        problems.append(f"{path or '(top level)'}: {message}")
    return problems


def parse_config(
    text: str, source: str = "configuration", environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Parse and shape-check a configuration document (components are checked by the graph)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from None
    if not isinstance(document, dict):
        raise ConfigError(["the document must be a mapping with a `service` key"], source)
    try:
        document = substitute_env(document, os.environ if environ is None else environ)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    try:
        return ServiceConfig.model_validate(document)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc), source) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], str(path)) from None
    return parse_config(text, str(path), environ)
