"""Live settings of one service: its kind's ``/orasi/<region>/config/<kind>/`` applied to its components.

The prefix is followed by ``control.watch.PrefixWatch`` (listed at start, so a restarted instance
comes up with the stored values; watched from that revision; resumed after an outage; listed
again after a compaction). Each key names a component id (``control.settings``); its value is
merged over the component's file configuration, validated by its ``Config`` model and handed to
every instance of the component (``Host.components``) that is ``Reconfigurable``::

    put    → resolve → reconfigure (applied: log once with the keys changed, never their values)
                     └ refused: log once per revision with each bad key's path; keep running
    delete → the file configuration again

``orasi_config_updates_total{component,outcome}`` counts both outcomes (once per revision: a
resync reads the same revision again without counting it); ``orasi_config_revision{component}``
is the revision last applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from orasi_common.config.model import ComponentConfig
from orasi_common.control import settings
from orasi_common.control.settings import Reconfigurable, SettingsError
from orasi_common.control.watch import Entry, PrefixWatch
from orasi_common.pipeline.component import Host
from orasi_common.telemetry.metrics import Metrics


class LiveSettings:
    def __init__(
        self,
        endpoints: Sequence[str],
        region: str,
        kind: str,
        host: Host,
        metrics: Metrics,
        logger: logging.Logger,
    ) -> None:
        self.prefix = settings.settings_prefix(region, kind)
        self._host = host
        self._updates = metrics.config_updates
        self._revision = metrics.config_revision
        self._log = logger
        self._file: dict[str, ComponentConfig] = {}  # the file configuration of each component touched
        self._seen: dict[str, int] = {}  # component id → the mod revision last handled (put or delete)
        self._stored: set[str] = set()  # components running with a stored value
        self._values: dict[str, dict[str, object]] = {}  # the stored value each of them runs with
        self._watch = PrefixWatch(
            endpoints,
            self.prefix.encode(),
            self,
            name=f"live settings {self.prefix}",
            down_message="etcd is unreachable; live settings keep their values until it answers again.",
            up_message="etcd answers; live settings follow it again.",
            extra=lambda: {"prefix": self.prefix},
            logger=logger,
        )

    async def start(self) -> None:
        await self._watch.start()

    async def stop(self) -> None:
        await self._watch.stop()

    def _targets(self, component_id: str) -> list[Reconfigurable]:
        return [c for c in self._host.components(component_id) if isinstance(c, Reconfigurable)]

    # PrefixHandler

    def listed(self, entries: Sequence[Entry], revision: int) -> None:
        listed = set()
        for entry in entries:
            listed.add(self._component(entry.key))
            self.put(entry)
        for component_id in sorted(self._stored - listed):  # deleted while the watch was cut
            self.delete((self.prefix + component_id).encode(), revision)

    def put(self, entry: Entry) -> None:
        component_id = self._component(entry.key)
        if self._seen.get(component_id) == entry.mod_revision:
            return  # a resync reading what was handled already
        self._seen[component_id] = entry.mod_revision
        targets = self._targets(component_id)
        try:
            if not targets:
                raise SettingsError(
                    [f"{component_id}: this service has no component with reloadable keys of that id"]
                )
            file_config = self._file.setdefault(component_id, targets[0].config)
            stored = settings.decode(component_id, entry.value)
            reloadable = settings.reloadable_keys(type(targets[0]))
            config = settings.resolve(component_id, file_config, stored, reloadable)
        except SettingsError as error:
            self._updates.labels(component_id, "refused").inc()
            self._log.warning(
                "Refused live settings; the component keeps its current values.",
                extra={"component": component_id, "revision": entry.mod_revision, "problems": error.problems},
            )
            return
        self._apply(component_id, targets, config, entry.mod_revision, "Applied live settings.")
        self._stored.add(component_id)
        self._values[component_id] = stored

    def delete(self, key: bytes, revision: int) -> None:
        component_id = self._component(key)
        self._seen[component_id] = revision
        file_config = self._file.get(component_id)
        if component_id not in self._stored or file_config is None:
            return  # nothing was applied: nothing to revert
        self._stored.discard(component_id)
        self._values.pop(component_id, None)
        message = "Live settings deleted; the component runs with its file configuration again."
        self._apply(component_id, self._targets(component_id), file_config, revision, message)

    def file_changed(self, component_id: str, file_config: ComponentConfig) -> ComponentConfig:
        """``FileFollower``: the stored value stays over the new file configuration (a deletion
        reverts to it); the file's alone when the stored value does not fit it any more."""
        targets = self._targets(component_id)
        self._file[component_id] = file_config
        stored = self._values.get(component_id)
        if stored is None or not targets:
            return file_config
        try:
            return settings.resolve(
                component_id, file_config, stored, settings.reloadable_keys(type(targets[0]))
            )
        except SettingsError as error:
            self._log.warning(
                "Live settings do not fit the reloaded configuration file; its values apply.",
                extra={"component": component_id, "problems": error.problems},
            )
            return file_config

    def _apply(
        self,
        component_id: str,
        targets: Sequence[Reconfigurable],
        config: ComponentConfig,
        revision: int,
        message: str,
    ) -> None:
        changed = settings.changed_keys(targets[0].config, config) if targets else []
        try:
            for target in targets:
                target.reconfigure(config)
        except Exception as error:  # a component's bug must not end the watch
            self._updates.labels(component_id, "refused").inc()
            self._log.exception(
                "A component failed to apply live settings.",
                extra={"component": component_id, "revision": revision, "error": repr(error)},
            )
            return
        self._updates.labels(component_id, "applied").inc()
        self._revision.labels(component_id).set(revision)
        self._log.info(
            message,
            extra={
                "component": component_id,
                "revision": revision,
                "keys": changed,
                "instances": len(targets),
            },
        )

    def _component(self, key: bytes) -> str:
        return key.decode("utf-8", "replace").removeprefix(self.prefix)
