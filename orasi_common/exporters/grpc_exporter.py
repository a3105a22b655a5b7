"""An exporter made of a queue with retries (ExporterHelper) and a client on one gRPC channel.

The peer is the configured ``endpoint``, or one endpoint that a ``resolver`` lists: the same one
while it stays listed, else the listed endpoint that ranks first for this process under
rendezvous hashing (so many senders spread over the peers, and when one peer leaves only its
senders move). Switching opens the new channel first, then closes the old one with a grace of
``timeout`` for calls in flight; a batch whose call failed on the way is retried by the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, ClassVar, Protocol

import grpc

from orasi_common.discovery.etcd import EtcdDefaults, RecordEndpoint
from orasi_common.discovery.resolvers import Resolver, pick
from orasi_common.errors import Unavailable
from orasi_common.exporters.otlp.client import open_channel
from orasi_common.exporters.otlp.config import PeerConfig
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterConfig, ExporterHelper
from orasi_common.pipeline.tasks import TaskScope


class Client(Protocol):
    async def send(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class GrpcExporter:
    """Subclasses name their ``client_type`` (``client_type(settings, config, channel)``) and the
    ``record_endpoint`` an etcd resolver dials."""

    client_type: ClassVar[Any]
    record_endpoint: ClassVar[RecordEndpoint] = "otlp_grpc"

    def __init__(self, settings: Settings, config: Any) -> None:
        assert isinstance(config, ExporterConfig) and isinstance(config, PeerConfig)
        self._settings = settings
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._client: Client | None = None
        self._peer: str | None = None
        self._resolver: Resolver | None = None
        self._identity = f"{socket.gethostname()}/{os.getpid()}/{settings.id}"
        self._follow_lock = asyncio.Lock()
        self._tasks = TaskScope()
        self._helper = ExporterHelper(settings, config, self._send)

    async def start(self) -> None:
        if self._config.resolver is None:
            await self._connect(self._config.endpoint)
        else:
            await self._tasks.open()
            self._resolver = Resolver(
                self._config.resolver,
                self._on_endpoints,
                name=self._settings.id,
                metrics=self._settings.metrics,
                protocol=self.record_endpoint,
                etcd_defaults=EtcdDefaults.of(self._settings.extensions),
            )
            await self._resolver.start()
            await self._follow()
        await self._helper.start()

    def _on_endpoints(self, _: list[str]) -> None:
        self._tasks.spawn(self._follow(), name=f"{self._settings.id} follow")

    async def _follow(self) -> None:
        """Connect to the endpoint to use now (serialised: the latest list wins)."""
        assert self._resolver is not None
        async with self._follow_lock:
            choice = pick(self._resolver.endpoints, self._peer, self._identity)
            if choice != self._peer:
                await self._connect(choice)

    async def _connect(self, endpoint: str | None) -> None:
        old_channel, old_client, previous = self._channel, self._client, self._peer
        if endpoint is None:
            self._channel = self._client = None
        else:
            config = self._config.model_copy(update={"endpoint": endpoint})
            self._channel = await open_channel(config)
            self._client = self.client_type(self._settings, config, self._channel)
        self._peer = endpoint
        if self._resolver is not None:
            self._settings.logger.log(
                logging.INFO if endpoint else logging.WARNING,
                "Upstream endpoint changed." if endpoint else "No upstream endpoint is listed.",
                extra={"endpoint": endpoint, "previous": previous},
            )
        if old_client is not None:
            await old_client.close()
        if old_channel is not None:
            await old_channel.close(self._config.timeout)

    async def consume(self, batch: Batch) -> None:
        await self._helper.consume(batch)

    async def _send(self, batch: Batch) -> None:
        client = self._client
        if client is None:
            raise Unavailable("no upstream endpoint is known: the resolver lists none")
        await client.send(batch)

    async def shutdown(self) -> None:
        await self._helper.shutdown()
        if self._resolver is not None:
            await self._resolver.stop()
        await self._tasks.close(cancel=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
