"""An exporter made of a queue with retries (ExporterHelper) and a client on one gRPC channel."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import grpc

from orasi_common.exporters.otlp.client import open_channel
from orasi_common.exporters.otlp.config import GrpcClientConfig
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterConfig, ExporterHelper


class Client(Protocol):
    async def send(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class GrpcExporter:
    """Subclasses name their ``client_type``: ``client_type(settings, config, channel)``."""

    client_type: ClassVar[Any]

    def __init__(self, settings: Settings, config: Any) -> None:
        assert isinstance(config, ExporterConfig) and isinstance(config, GrpcClientConfig)
        self._settings = settings
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._client: Client | None = None
        self._helper = ExporterHelper(settings, config, self._send)

    async def start(self) -> None:
        self._channel = await open_channel(self._config)
        self._client = self.client_type(self._settings, self._config, self._channel)
        await self._helper.start()

    async def consume(self, batch: Batch) -> None:
        await self._helper.consume(batch)

    async def _send(self, batch: Batch) -> None:
        assert self._client is not None
        await self._client.send(batch)

    async def shutdown(self) -> None:
        await self._helper.shutdown()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
