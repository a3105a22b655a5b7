"""The `query_api` extension: serves the REST API, and Flight SQL when configured, over the lake
writer's tables (one engine: the same limits and concurrency for both)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from orasi_bridge.api.config import Config
from orasi_bridge.api.rest import Forbidden, Unauthorized, create_app, resolve_tenant
from orasi_bridge.federation import Federation, registry_of
from orasi_bridge.flightsql import FlightSqlServer
from orasi_bridge.lake.writer import LakeWriter
from orasi_bridge.query.engine import QueryEngine
from orasi_bridge.registry.registry import Registry
from orasi_common.errors import OrasiError, PermanentError, PermissionDenied, Unauthenticated
from orasi_common.extensions.auth import authenticator
from orasi_common.extensions.auth.asgi import TokenGate
from orasi_common.extensions.ratelimit import rate_limiter
from orasi_common.pipeline.component import Host, Settings
from orasi_common.telemetry.audit import ACTOR
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import HttpServer
from orasi_common.transport.tls import ServerTls

AUTH_TIMEOUT = 30.0
"""Seconds a Flight SQL call waits for its token's check (a database round trip at most)."""


def required_scope(method: str, path: str) -> str | None:
    """The token scope a REST request needs: `admin` to change the registry, `query` to read
    (the query, Jaeger and registry routes); none for the console's pages."""
    if path.startswith("/registry"):
        return "query" if method in ("GET", "HEAD") else "admin"
    return "query" if path.startswith("/api/") else None


class QueryApi:
    def __init__(self, settings: Settings, config: Config, host: Host) -> None:
        writer = host.exporter(config.lake)
        if not isinstance(writer, LakeWriter):
            raise TypeError(f"exporter {config.lake!r} is not a `lake` exporter")
        self.limiter = rate_limiter(settings, config.rate_limit)
        self.engine = QueryEngine(writer, config.limits, self.limiter)
        self.registry = (
            Registry(config.registry, writer.config.catalog_uri, settings.logger.getChild("registry"))
            if config.registry.enabled
            else None
        )
        if self.registry is not None:
            writer.use_registry(self.registry)  # ingest is validated against it, and observed
        self.federation = Federation(
            config.federation, self.engine, registry_of(host, config.federation.registry)
        )
        app: Any = create_app(config, self.engine, settings.metrics, self.registry, self.federation)
        self.auth = authenticator(settings, config.auth)
        if self.auth is not None:
            app = TokenGate(app, self.auth, required_scope, "x-orasi-tenant")
        self._loop: asyncio.AbstractEventLoop | None = None
        tls = ServerTls(config.tls, settings.logger) if config.tls is not None else None
        self.server = HttpServer(app, config.endpoint, tls=tls)
        self._logger = settings.logger
        self._endpoint = config.endpoint
        self._config = config
        self.flight: FlightSqlServer | None = None

    @property
    def port(self) -> int | None:
        return self.server.port

    @property
    def flight_port(self) -> int | None:
        return self.flight.port if self.flight is not None else None

    def listening(self) -> dict[str, str]:
        found = {}
        if self.port is not None:
            found["query_http"] = join_endpoint(split_endpoint(self._endpoint)[0], self.port)
        if self.flight is not None and self._config.flight_sql is not None:
            found["query_grpc"] = join_endpoint(split_endpoint(self._config.flight_sql)[0], self.flight.port)
        return found

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.auth is not None:
            await self.auth.start()
        if self.limiter is not None:
            await self.limiter.start()
        if self.registry is not None:
            await self.registry.start()
        await self.server.start()
        if self._config.flight_sql is not None and self.flight is None:
            host, port = split_endpoint(self._config.flight_sql)
            scheme = "grpc+tls" if self._config.tls is not None else "grpc"
            location = f"{scheme}://{join_endpoint(host, port)}"
            loop = asyncio.get_running_loop()
            self.flight = await asyncio.to_thread(
                FlightSqlServer,
                location,
                self.engine,
                self._tenant_of,
                loop,
                self.federation,
                self._config.tls,
            )
        self._logger.info(
            "Query API listening.", extra={"port": self.port, "flight_sql_port": self.flight_port}
        )

    def _tenant_of(self, headers: Mapping[str, str]) -> str:
        """A Flight SQL call's tenant, from its headers as REST reads them (on Flight's thread).
        With `auth`, the token also becomes this thread's audit ``ACTOR``, which the call's query
        task on the loop inherits (``run_coroutine_threadsafe`` copies the caller's context)."""
        if self.auth is not None and self._loop is not None:
            auth = self.auth

            async def check() -> tuple[str, str | None]:
                tenant = await auth.tenant(
                    headers.get("authorization"), "query", headers.get("x-orasi-tenant")
                )
                return tenant, ACTOR.get()

            try:
                tenant, actor = asyncio.run_coroutine_threadsafe(check(), self._loop).result(AUTH_TIMEOUT)
                ACTOR.set(actor)
                return tenant
            except Unauthenticated as error:
                raise flight.FlightUnauthenticatedError(error.message) from None
            except PermissionDenied as error:
                raise flight.FlightUnauthorizedError(error.message) from None
            except OrasiError as error:
                raise flight.FlightUnavailableError(error.message) from None
        try:
            return resolve_tenant(
                self._config,
                headers.get("x-orasi-tenant"),
                headers.get("authorization"),
                headers.get("x-api-key"),
            )
        except Unauthorized as error:
            raise flight.FlightUnauthenticatedError(error.message) from None
        except Forbidden as error:
            raise flight.FlightUnauthorizedError(error.message) from None
        except PermanentError as error:
            raise pa.ArrowInvalid(error.message) from None

    async def shutdown(self) -> None:
        if self.flight is not None:
            await asyncio.to_thread(self.flight.shutdown)
            self.flight = None
        await self.server.shutdown()
        await self.federation.close()
        if self.limiter is not None:
            await self.limiter.shutdown()
        if self.registry is not None:
            await self.registry.shutdown()
        if self.auth is not None:
            await self.auth.shutdown()
        self.engine.close()
