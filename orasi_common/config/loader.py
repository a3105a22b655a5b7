"""Reading a configuration file: YAML, `${env:VAR}` substitution, and errors that name paths.

Substitution follows the Collector: ``${env:VAR}``, ``${env:VAR:-default}`` and ``$$`` for a
literal ``$``. Substituted values stay text; the component's config model converts them where a
number or boolean is expected, so a secret like ``0123`` stays ``"0123"``. An unset variable
without a default is an error that names it.
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

MAX_DEPTH = 100
"""The deepest nesting of mappings and sequences a configuration document may have."""

MAX_VALUES = 100_000
"""The most values a document may hold with its aliases expanded (against "billion laughs")."""

_REFERENCE = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` are "path: what is wrong" sentences."""

    def __init__(self, problems: list[str], source: str = "configuration") -> None:
        self.problems = problems
        super().__init__(f"invalid {source}:\n" + "\n".join(f"  - {p}" for p in problems))


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document nested deeper than ``MAX_DEPTH`` or holding
    more than ``MAX_VALUES`` values once its aliases are expanded. Both are checked while the
    document is composed, before any expansion (PyYAML's scanner costs time quadratic in the
    nesting of flow collections, so the walk stops at the first level too deep)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) → its number of values, aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"the document nests deeper than {MAX_DEPTH} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if (
            node is not None and id(node) not in self._sizes
        ):  # an alias returns the node it names, sized already
            children = node.value if isinstance(node.value, list) else []
            flat = [n for child in children for n in (child if isinstance(child, tuple) else (child,))]
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(n), 1) for n in flat)
        if self._sizes.get(id(node), 0) > MAX_VALUES:
            raise yaml.YAMLError(
                f"the document holds more than {MAX_VALUES} values with its aliases expanded"
            )
        return node


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

    return _REFERENCE.sub(replace, value)


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


def _document_path(loc: tuple[int | str, ...], document: Any, prefix: str) -> str:
    """The dotted path of ``loc`` in the input, leaving out pydantic's union-member labels."""
    path, node = prefix, document
    for index, part in enumerate(loc):
        is_key = isinstance(node, dict) and part in node
        is_index = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (is_key or is_index or (index == len(loc) - 1 and isinstance(node, dict))):
            continue  # a union member's name, not a key of the document
        path += f"[{part}]" if is_index else (f".{part}" if path else str(part))
        node = node[part] if is_key or is_index else None
    return path


def format_validation_error(
    error: pydantic.ValidationError, prefix: str = "", document: Any = None
) -> list[str]:
    """Pydantic errors as "path: message" sentences, one per path; unknown keys are named."""
    messages: dict[str, list[str]] = {}
    for item in error.errors():
        path = _document_path(item["loc"], document, prefix) if document is not None else prefix
        if document is None:
            for part in item["loc"]:
                path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"]
        found = messages.setdefault(path or "(top level)", [])
        if message not in found:
            found.append(message)
    return [f"{path}: {' or '.join(found)}" for path, found in messages.items()]


def parse_config(
    text: str, source: str = "configuration", environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Parse and shape-check a configuration document (components are checked by the graph)."""
    try:
        document = yaml.load(text, Loader=_BoundedLoader)
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
        raise ConfigError(format_validation_error(exc, document=document), source) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], str(path)) from None
    return parse_config(text, str(path), environ)
