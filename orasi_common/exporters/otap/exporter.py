"""The `otap` exporter: a queue and retries in front of one OTAP peer."""

from __future__ import annotations

import grpc

from orasi_common.exporters.otap.client import OtapClient
from orasi_common.exporters.otap.config import Config
from orasi_common.exporters.otlp.client import open_channel
from orasi_common.pdata import Batch
from orasi_common.pipeline.component import Settings
from orasi_common.pipeline.exporter_helper import ExporterHelper


class OtapExporter:
    def __init__(self, settings: Settings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._client: OtapClient | None = None
        self._helper = ExporterHelper(settings, config, self._send)

    async def start(self) -> None:
        self._channel = await open_channel(self._config)
        self._client = OtapClient(self._settings, self._config, self._channel)
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
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
