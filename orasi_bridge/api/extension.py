"""The `query_api` extension: serves the REST API over the lake writer's tables."""

from __future__ import annotations

from orasi_bridge.api.config import Config
from orasi_bridge.api.rest import create_app
from orasi_bridge.lake.writer import LakeWriter
from orasi_bridge.query.engine import QueryEngine
from orasi_bridge.registry.registry import Registry
from orasi_common.pipeline.component import Host, Settings
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer


class QueryApi:
    def __init__(self, settings: Settings, config: Config, host: Host) -> None:
        writer = host.exporter(config.lake)
        if not isinstance(writer, LakeWriter):
            raise TypeError(f"exporter {config.lake!r} is not a `lake` exporter")
        self.engine = QueryEngine(writer, config.limits)
        self.registry = (
            Registry(config.registry, writer.config.catalog_uri, settings.logger.getChild("registry"))
            if config.registry.enabled
            else None
        )
        app = create_app(config, self.engine, settings.metrics, self.registry)
        self.server = HttpServer(app, config.endpoint)
        self._logger = settings.logger
        self._endpoint = config.endpoint

    @property
    def port(self) -> int | None:
        return self.server.port

    def listening(self) -> dict[str, str]:
        if self.port is None:
            return {}
        return {"query_http": join_endpoint(split_endpoint(self._endpoint)[0], self.port)}

    async def start(self) -> None:
        if self.registry is not None:
            await self.registry.start()
        await self.server.start()
        self._logger.info("Query API listening.", extra={"port": self.port})

    async def shutdown(self) -> None:
        await self.server.shutdown()
        if self.registry is not None:
            await self.registry.shutdown()
        self.engine.close()
