"""Fixtures of the Flight SQL tests: the `query_api` extension (REST + Flight SQL on free ports)
over a real lake (SeaweedFS + PostgreSQL, the bridge tests' fixtures), and clients of it.

Clients block, and the server's handlers run their queries on the test's event loop: tests call
the clients in a thread (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from integration.bridge.conftest import MakeWriter, lake_servers, lake_space, make_writer
from orasi_bridge import api
from orasi_bridge.api.extension import QueryApi
from orasi_bridge.lake import LakeWriter
from orasi_common.config.model import ComponentConfig
from orasi_common.pipeline.component import Exporter, Kind, Settings
from orasi_common.telemetry.metrics import Metrics

__all__ = ["lake_servers", "lake_space", "make_writer"]  # the bridge tests' fixtures, used here too

StartApi = Callable[..., Awaitable[QueryApi]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    """``start_api(writer, extensions=None, **config)``: a started `query_api` extension serving
    Flight SQL (``extensions``: the service's extensions' configs by id, as ``Settings`` holds them)."""
    started: list[QueryApi] = []

    async def start(
        writer: LakeWriter, extensions: Mapping[str, ComponentConfig] | None = None, **overrides: Any
    ) -> QueryApi:
        class Host:
            def exporter(self, exporter_id: str) -> Exporter:
                assert exporter_id == "lake"
                return writer

        settings = Settings(
            "query_api",
            Kind.EXTENSION,
            "bridge",
            Metrics("bridge"),
            logging.getLogger("orasi.test"),
            extensions=dict(extensions or {}),
        )
        config = api.FACTORY.config_type.model_validate(
            {"endpoint": "127.0.0.1:0", "flight_sql": "127.0.0.1:0", **overrides}
        )
        extension = api.FACTORY.create(settings, config, Host())
        assert isinstance(extension, QueryApi)
        await extension.start()
        started.append(extension)
        return extension

    try:
        yield start
    finally:
        for extension in reversed(started):
            await extension.shutdown()


@pytest.fixture
async def writer(make_writer: MakeWriter) -> LakeWriter:
    return await make_writer()
