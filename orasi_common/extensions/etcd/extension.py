"""The `etcd` extension: registers the service's endpoints under a lease while it runs.

It starts after every receiver and after the extensions listed before it in
``service.extensions`` (list it last), reads where they listen (``Host.listening``), and writes one
record (``control.registration``) at ``/orasi/<region>/services/<kind>/<instance>``. The lease is
kept alive and the record written again after a lost lease by ``EtcdRegistry``; shutdown revokes
the lease, so the record disappears at once.

With etcd endpoints (and ``live_settings``, the default), it also applies the live settings of
its kind (``live_settings.LiveSettings``: ``/orasi/<region>/config/<kind>/<component_id>``) to the
service's reconfigurable components, from its start (the stored values first) until shutdown.
Without etcd (the in-process registry of ``orasi up``) there are no live settings.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from orasi_common.control.registration import KINDS, Endpoints, encode, key_of, make_record
from orasi_common.control.registry import LOCAL, EtcdRegistry, Registry
from orasi_common.extensions.etcd.config import Config
from orasi_common.extensions.etcd.live_settings import LiveSettings
from orasi_common.pipeline.component import Host, Settings
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.version import __version__

UNSPECIFIED = {"0.0.0.0", "::", ""}


def advertised(address: str, host: str) -> str:
    """``address`` with an unspecified bind host replaced by ``host``."""
    bound, port = split_endpoint(address)
    return join_endpoint(host, port) if bound in UNSPECIFIED else address


def this_host() -> str:
    """This machine's address as others reach it (its name's address; the name when unresolved)."""
    name = socket.gethostname()
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


class EtcdExtension:
    def __init__(self, settings: Settings, config: Config, host: Host) -> None:
        self._settings = settings
        self._config = config
        self._host = host
        self.registry: Registry = LOCAL
        self.live_settings: LiveSettings | None = None
        if config.endpoints:
            self.registry = EtcdRegistry(config.endpoints, config.lease_ttl)
            if config.live_settings and settings.service in KINDS:
                self.live_settings = LiveSettings(
                    config.endpoints, config.region, settings.service, host, settings.metrics, settings.logger
                )
        self.key = key_of(
            config.region, settings.service, config.instance or f"{socket.gethostname()}-{os.getpid()}"
        )
        self._registered = False

    def endpoints(self) -> Endpoints:
        host = self._config.advertise_host or this_host()
        listening = self._host.listening()
        known = Endpoints.model_fields
        return Endpoints(
            **{name: advertised(address, host) for name, address in listening.items() if name in known}
        )

    async def start(self) -> None:
        if self.live_settings is not None:  # before registering: a new instance serves the live values
            await self.live_settings.start()
        record = make_record(
            self.endpoints(),
            region=self._config.region,
            zone=self._config.zone,
            version=__version__,
            started_at=datetime.now(UTC),
        )
        await self.registry.start()
        await self.registry.register(self.key, encode(record))
        self._registered = True
        self._settings.logger.info(
            "Registered in the control plane.",
            extra={"key": self.key, "protocols": list(record.protocols), "ttl": self._config.lease_ttl},
        )

    async def shutdown(self) -> None:
        if self.live_settings is not None:
            await self.live_settings.stop()
        if self._registered:
            await self.registry.deregister(self.key)
            self._registered = False
        if self.registry is not LOCAL:
            await self.registry.shutdown()
