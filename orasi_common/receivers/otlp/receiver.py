"""The `otlp` receiver: OTLP/gRPC and OTLP/HTTP feeding the same pipelines."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from orasi_common.extensions.auth import authenticator
from orasi_common.extensions.ratelimit import rate_limiter
from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.otlp.config import Config
from orasi_common.receivers.otlp.grpc import OtlpGrpcServer
from orasi_common.receivers.otlp.http import OtlpHttpApp
from orasi_common.receivers.otlp.workers import GrpcWorkers
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer
from orasi_common.transport.tls import ServerTls


class OtlpReceiver:
    grpc_protocol = "otlp_grpc"  # what its gRPC port is registered as (``Listening``)

    def __init__(self, settings: Settings, config: Config, consumers: Mapping[Signal, Consumer]) -> None:
        self.logger = settings.logger
        self._config = config
        ingest = Ingest(
            settings,
            consumers,
            authenticator(settings, config.auth),
            rate_limiter(settings, config.rate_limit),
        )
        self._ingest = ingest
        grpc_config, http_config = config.protocols.grpc, config.protocols.http
        self.grpc: OtlpGrpcServer | GrpcWorkers | None = None
        if grpc_config and grpc_config.processes:
            self.grpc = GrpcWorkers(grpc_config, ingest, config.tenant_header, settings.logger)
        elif grpc_config:
            self.grpc = OtlpGrpcServer(
                grpc_config, ingest, config.tenant_header, self.grpc_services(ingest, config)
            )
        self.http = (
            HttpServer(
                OtlpHttpApp(http_config, ingest, config.tenant_header, settings.metrics),
                http_config.endpoint,
                tls=ServerTls(http_config.tls, settings.logger) if http_config.tls else None,
            )
            if http_config
            else None
        )

    def grpc_services(self, ingest: Ingest, config: Config) -> list[grpc.GenericRpcHandler]:
        """More gRPC services on the OTLP port (none here; the otap receiver adds OTAP's, and
        serves without worker processes)."""
        return []

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc else None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def listening(self) -> dict[str, str]:
        endpoints: dict[str, str] = {}
        for protocol, config, port in (
            (self.grpc_protocol, self._config.protocols.grpc, self.grpc_port),
            ("otlp_http", self._config.protocols.http, self.http_port),
        ):
            if config is not None and port is not None:
                endpoints[protocol] = join_endpoint(split_endpoint(config.endpoint)[0], port)
        return endpoints

    async def start(self) -> None:
        await self._ingest.start()
        if self.grpc:
            await self.grpc.start()
        if self.http:
            await self.http.start()
        self.logger.info(
            "OTLP receiver listening.", extra={"grpc_port": self.grpc_port, "http_port": self.http_port}
        )

    async def shutdown(self) -> None:
        if self.http:
            await self.http.shutdown()
        if self.grpc:
            await self.grpc.shutdown()
        await self._ingest.shutdown()
