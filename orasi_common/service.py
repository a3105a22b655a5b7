"""A running service: its pipeline graph plus the admin port, started and stopped as one.

On SIGHUP a service started from a file reads it again (``reload``) and applies the changed
reloadable keys of its components (``control.settings.Reconfigurable``) while it runs; a value
stored in etcd's live settings for a component stays over its file's (``FileFollower``). Other
changed keys take effect at the next restart, and are logged; an invalid file changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orasi_common.config import ConfigError, load_config
from orasi_common.config.model import ComponentConfig, ServiceConfig
from orasi_common.control import settings
from orasi_common.control.settings import FileFollower, Reconfigurable
from orasi_common.pipeline.component import Factories
from orasi_common.pipeline.graph import Graph, ResolvedConfig, resolve
from orasi_common.ports import admin_port
from orasi_common.telemetry.admin import AdminApp
from orasi_common.telemetry.metrics import Metrics
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer
from orasi_common.transport.tls import ServerTls


@dataclass(frozen=True)
class _AdminListening:
    """The admin port as a ``Listening`` component, for the registration of the service."""

    server: HttpServer
    endpoint: str

    def listening(self) -> dict[str, str]:
        port = self.server.port
        return {} if port is None else {"admin": join_endpoint(split_endpoint(self.endpoint)[0], port)}


def _sections(resolved: ResolvedConfig) -> dict[str, ComponentConfig]:
    return {**resolved.receivers, **resolved.processors, **resolved.exporters, **resolved.extensions}


def _pick(document: Mapping[str, Any], paths: list[str]) -> dict[str, Any]:
    """The leaves of ``document`` at the dotted ``paths`` (null where it has none), nested."""
    picked: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = document
        into = picked
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
            into = into.setdefault(part, {})
        into[leaf] = node.get(leaf) if isinstance(node, Mapping) else None
    return picked


class Service:
    """One of agent / gateway / bridge, built from a configuration (validated on construction);
    ``config_path``: the file it came from, read again on SIGHUP."""

    def __init__(
        self, name: str, config: ServiceConfig, factories: Factories, config_path: str | None = None
    ) -> None:
        self.name = name
        self.metrics = Metrics(name)
        resolved = resolve(config, factories)
        self.graph = Graph.build(resolved, factories, name, self.metrics)
        self._factories = factories
        self._config_path = config_path
        self._file = _sections(resolved)  # what the file sets now, per component id
        self.ready = False
        admin_endpoint = config.service.telemetry.admin.endpoint or f"0.0.0.0:{admin_port(name)}"
        admin_tls = config.service.telemetry.admin.tls
        self.admin = HttpServer(
            AdminApp(name, self.metrics, lambda: self.ready, self.describe),
            admin_endpoint,
            tls=ServerTls(admin_tls, logging.getLogger(f"orasi.{name}.admin")) if admin_tls else None,
        )
        self.graph.listeners.append(_AdminListening(self.admin, admin_endpoint))
        self._logger = logging.getLogger(f"orasi.{name}")

    def describe(self) -> dict[str, Any]:
        return {"service": self.name, "ready": self.ready, **self.graph.describe()}

    async def start(self) -> None:
        """Admin port first (live, not ready), then the graph; ready once everything runs."""
        await self.admin.start()
        try:
            await self.graph.start()
        except BaseException:
            await self.admin.shutdown()
            raise
        self.ready = True
        self._logger.info("Service started.", extra={"admin_port": self.admin.port})

    async def shutdown(self) -> None:
        self.ready = False
        self._logger.info("Service stopping: receivers first, then queues drain.")
        await self.graph.shutdown()
        await self.admin.shutdown()
        self._logger.info("Service stopped.")

    async def reload(self) -> list[str]:
        """Read the configuration file again and apply its changed reloadable keys to the running
        components; the ids of the components reconfigured."""
        assert self._config_path is not None
        try:
            config = await asyncio.to_thread(load_config, self._config_path)
            new_file = _sections(resolve(config, self._factories))
        except ConfigError as error:
            self._logger.warning(
                "The configuration file was not reloaded: it is not valid; nothing changed.",
                extra={"path": self._config_path, "problems": error.problems},
            )
            return []
        reconfigured = []
        for component_id, new in new_file.items():
            old = self._file.get(component_id)
            targets = [c for c in self.graph.components(component_id) if isinstance(c, Reconfigurable)]
            if old is None or new == old:
                continue
            changed = settings.changed_keys(old, new)
            reloadable = settings.reloadable_keys(type(targets[0])) if targets else frozenset()
            later = [path for path in changed if not settings.is_reloadable(path, reloadable)]
            if later:
                self._logger.warning(
                    "Keys changed in the configuration file take effect at the next restart.",
                    extra={"component": component_id, "keys": later},
                )
            now = [path for path in changed if settings.is_reloadable(path, reloadable)]
            if not now:
                continue
            try:
                stored = _pick(new.model_dump(), now)
                file_config = settings.resolve(component_id, old, stored, reloadable)
                running = file_config
                for follower in self._followers():
                    running = follower.file_changed(component_id, file_config)
                for target in targets:
                    target.reconfigure(running)
            except Exception as error:  # a component's bug must not stop the service
                self._logger.exception(
                    "A component failed to apply its reloaded configuration; it keeps its current one.",
                    extra={"component": component_id, "error": repr(error)},
                )
                continue
            self._file[component_id] = file_config
            reconfigured.append(component_id)
            self._logger.info(
                "Reloaded the configuration file.",
                extra={"component": component_id, "keys": now, "instances": len(targets)},
            )
        return reconfigured

    def _followers(self) -> list[FileFollower]:
        found = [getattr(extension, "live_settings", None) for extension in self.graph.extensions.values()]
        return [follower for follower in found if isinstance(follower, FileFollower)]

    async def run_until_signal(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then shut down gracefully; on SIGHUP, ``reload``
        (when started from a file)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[list[str]]] = set()
        if self._config_path is not None:

            def hangup() -> None:
                task = loop.create_task(self.reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, hangup)
        await self.start()
        try:
            await stop.wait()
        finally:
            if self._config_path is not None:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in list(reloads):
                await task
            await self.shutdown()
