"""The services the `orasi` command runs, found through the entry points they declare.

The shared package never imports a service. Each service declares one plain value, a
:class:`ServicePlugin`, in the ``orasi.services`` entry-point group of its distribution
(``pyproject.toml``), the way plugins are found::

    [project.entry-points."orasi.services"]
    agent = "orasi_agent.service:SERVICE"

and `orasi <service>`, `orasi validate-config` and `orasi up` look it up by name here.

Loading the entry point imports only the module that declares it, which imports nothing heavy
(no pyarrow); the factories are imported by :meth:`ServicePlugin.load_factories`, after the
command has tuned the allocators for the services that ask for it (``allocator.py``: Arrow reads
its pool once, when pyarrow is first imported).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orasi_common.pipeline.component import Factories

GROUP = "orasi.services"
"""The entry-point group every service declares itself in."""


class ServiceNotFound(LookupError):
    """A service's entry point is missing or cannot be loaded; the message says what to reinstall."""


@dataclass(frozen=True)
class Commands:
    """A service's own `orasi` commands: ``add_parsers(subparsers)`` adds the parsers of the
    commands ``names`` and returns them; ``run(args)`` runs the one parsed (exit status)."""

    names: tuple[str, ...]
    add_parsers: Callable[[Any], list[argparse.ArgumentParser]]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class ServicePlugin:
    """What a service declares for the `orasi` command: a plain value, built at import."""

    name: str
    """The command (`orasi agent`) and the entry point's name."""
    help: str
    """One line for `orasi --help`."""
    factories: str
    """``module:attribute`` of the service's :class:`Factories`, imported only when needed."""
    tune_allocators: bool = False
    """Converts telemetry to Arrow in bulk, and so starts with ``allocator.tune_allocators``."""
    commands: str | None = None
    """``module:attribute`` of the service's own `orasi` commands (:class:`Commands`; e.g. the
    bridge's `orasi lake`), in a module that imports nothing heavy: it is loaded to build the
    parser."""

    def load_commands(self) -> Commands | None:
        """The service's own commands, if it declares any."""
        if self.commands is None:
            return None
        commands = metadata.EntryPoint(self.name, self.commands, GROUP).load()
        if not isinstance(commands, Commands):
            raise TypeError(f"{self.commands} is {type(commands).__name__}, not Commands")
        return commands

    def load_factories(self) -> Factories:
        """Every component the service can be built from (imports the service's components)."""
        from orasi_common.pipeline.component import Factories

        factories = metadata.EntryPoint(self.name, self.factories, GROUP).load()
        if not isinstance(factories, Factories):
            raise TypeError(f"{self.factories} is {type(factories).__name__}, not Factories")
        return factories


def names() -> list[str]:
    """The services the installed distributions declare, in their metadata's order (imports none)."""
    return list(dict.fromkeys(entry.name for entry in metadata.entry_points(group=GROUP)))


def load(name: str) -> ServicePlugin:
    """The service declared as ``name``; raises :class:`ServiceNotFound` saying what to reinstall."""
    found = metadata.entry_points(group=GROUP, name=name)
    if not found:
        declared = ", ".join(names()) or "none"
        raise ServiceNotFound(
            f"no service {name!r} in the entry-point group {GROUP!r} (declared: {declared}); "
            f"reinstall the distribution {_own_distribution()!r} (pip install -e . in a checkout) "
            "so that its metadata declares it"
        )
    entry = next(iter(found))
    distribution = entry.dist.name if entry.dist is not None else _own_distribution()
    try:
        plugin = entry.load()
    except (ImportError, AttributeError) as error:
        raise ServiceNotFound(
            f"the service {name!r} ({entry.value}, entry-point group {GROUP!r}) cannot be loaded: "
            f"{error}; reinstall the distribution {distribution!r}"
        ) from error
    if not isinstance(plugin, ServicePlugin) or plugin.name != name:
        raise ServiceNotFound(
            f"the service {name!r} ({entry.value}, entry-point group {GROUP!r}) is not a "
            f"ServicePlugin named {name!r}; reinstall the distribution {distribution!r}"
        )
    return plugin


def _own_distribution() -> str:
    """The distribution that ships this package (and declares the services): ``orasi``."""
    return metadata.packages_distributions().get(__name__.partition(".")[0], ["orasi"])[0]
