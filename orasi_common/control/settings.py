"""Live settings: the reloadable keys of a running component, stored in etcd.

Key and value::

    /orasi/<region>/config/<kind>/<component_id>
        → a YAML (or JSON) object of reloadable keys, e.g. for gateway/batch
          {send_batch_size: 2000, timeout: 0.5}

- ``kind`` is ``agent``, ``gateway`` or ``bridge``: every instance of that kind in the region
  applies the object to its component ``component_id`` (the id of the configuration file, e.g.
  ``batch``, ``memory_limiter``, ``loadbalancing/bridges``; a processor in several pipelines is
  reconfigured in each).
- The object is merged over the component's *file* configuration (nested objects key by key; a
  null removes a key, so its default applies) and the result is validated by the component's own
  ``Config`` model, as the file was. Only the component's reloadable keys may appear
  (``reloadable_keys``: dotted paths, ``circuit_breaker.*`` naming every key below).
- Deleting the key reverts the component to its file configuration.

``resolve`` is that rule, pure, used by the service before it applies a value and by
``orasi config set`` before it writes one; a refusal (``SettingsError``) lists one
``<component_id>.<path>: <message>`` sentence per bad key.

Components that can change while running implement ``Reconfigurable``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import pydantic
import yaml

from orasi_common.config.loader import format_validation_error
from orasi_common.config.model import ComponentConfig
from orasi_common.control.registration import KINDS, ROOT
from orasi_common.errors import MalformedData
from orasi_common.topology import deep_merge

C = TypeVar("C", bound=ComponentConfig)


@runtime_checkable
class Reconfigurable(Protocol):
    """A component whose ``reloadable_keys`` can change while it runs."""

    reloadable_keys: ClassVar[frozenset[str]]
    """Dotted paths of the ``Config`` keys ``reconfigure`` applies; ``a.*``: every key below ``a``."""

    @property
    def config(self) -> ComponentConfig:
        """The configuration in effect."""
        ...

    def reconfigure(self, config: ComponentConfig) -> None:
        """Apply ``config`` (validated, differing from ``config`` only in reloadable keys) now;
        on the event loop, without blocking; the next item sees it."""


@runtime_checkable
class FileFollower(Protocol):
    """Something that keeps values over components' file configurations (live settings)."""

    def file_changed(self, component_id: str, file_config: ComponentConfig) -> ComponentConfig:
        """The configuration ``component_id`` runs with now that its file's is ``file_config``
        (SIGHUP): the values it keeps over it, if any, else ``file_config``."""
        ...


class SettingsError(MalformedData):
    """A stored object that is not a valid change of a component's reloadable keys."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _segment(value: str, what: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"{what} must be a non-empty name without '/', got {value!r}")
    return value


def settings_prefix(region: str, kind: str) -> str:
    """``/orasi/<region>/config/<kind>/`` (the prefix every instance of ``kind`` watches)."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {', '.join(KINDS)}, got {kind!r}")
    return f"{ROOT}/{_segment(region, 'region')}/config/{kind}/"


def settings_key(region: str, kind: str, component_id: str) -> str:
    """``/orasi/<region>/config/<kind>/<component_id>``."""
    if not component_id or component_id.startswith("/") or component_id.endswith("/"):
        raise ValueError(f"a component id is e.g. batch or loadbalancing/bridges, got {component_id!r}")
    return settings_prefix(region, kind) + component_id


def parse_target(target: str) -> tuple[str, str]:
    """``gateway/loadbalancing/bridges`` → ``("gateway", "loadbalancing/bridges")``."""
    kind, _, component_id = target.partition("/")
    if kind not in KINDS or not component_id:
        raise ValueError(
            f"name KIND/COMPONENT_ID, KIND one of {', '.join(KINDS)} (e.g. gateway/batch), got {target!r}"
        )
    return kind, component_id


def decode(component_id: str, value: bytes) -> dict[str, Any]:
    """The stored object (YAML or JSON); SettingsError if it is not an object."""
    try:
        document = yaml.safe_load(value.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise SettingsError([f"{component_id}: not a YAML or JSON object ({type(error).__name__})"]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError([f"{component_id}: not a YAML or JSON object, got {type(document).__name__}"])
    return document


def encode(settings: Mapping[str, Any]) -> bytes:
    """The object as stored by ``orasi config set`` (YAML, keys in order)."""
    return yaml.safe_dump(dict(settings), sort_keys=False).encode()


def leaves(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The dotted path and value of every leaf of ``document`` (an empty object is a leaf)."""
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def is_reloadable(path: str, reloadable: frozenset[str]) -> bool:
    return path in reloadable or any(
        pattern.endswith(".*") and path.startswith(pattern[:-1]) for pattern in reloadable
    )


def not_reloadable(component_id: str, stored: Mapping[str, Any], reloadable: frozenset[str]) -> list[str]:
    """A sentence per key of ``stored`` that is not reloadable."""
    return [
        f"{component_id}.{path}: not reloadable (reloadable: {', '.join(sorted(reloadable)) or 'none'})"
        for path, _ in leaves(stored)
        if not is_reloadable(path, reloadable)
    ]


def reloadable_keys(component_type: Any) -> frozenset[str]:
    """The reloadable keys of a component class (a factory's ``create``); empty when it is not
    ``Reconfigurable``."""
    keys: object = getattr(component_type, "reloadable_keys", frozenset())
    return keys if isinstance(keys, frozenset) else frozenset()


def resolve(component_id: str, file_config: C, stored: Mapping[str, Any], reloadable: frozenset[str]) -> C:
    """``stored`` merged over ``file_config`` and validated by its model; SettingsError naming every
    bad key otherwise (one that is not reloadable, or that the model refuses)."""
    problems = not_reloadable(component_id, stored, reloadable)
    merged = deep_merge(file_config.model_dump(), stored)
    try:
        config = type(file_config).model_validate(merged)
    except pydantic.ValidationError as error:
        problems += format_validation_error(error, component_id, merged)
    if problems:
        raise SettingsError(problems)
    return config


def changed_keys(old: ComponentConfig, new: ComponentConfig) -> list[str]:
    """The dotted paths whose values differ (names only: values may be secret)."""
    before, after = dict(leaves(old.model_dump())), dict(leaves(new.model_dump()))
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


__all__ = [
    "FileFollower",
    "Reconfigurable",
    "SettingsError",
    "changed_keys",
    "decode",
    "encode",
    "is_reloadable",
    "leaves",
    "not_reloadable",
    "parse_target",
    "reloadable_keys",
    "resolve",
    "settings_key",
    "settings_prefix",
]
