"""Fixtures of the lake and query tests: real SeaweedFS + PostgreSQL, one isolated lake per test.

``make_writer(**config)`` builds the `lake` exporter exactly as the pipeline graph does (its
factory, a Config validated from a dict, Settings with the service's Metrics) and starts it;
every writer a test made is shut down when the test ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from integration.bridge.servers import LakeSpace, ServersUnreachable, apply_aws_env, check_servers
from orasi_bridge import lake
from orasi_bridge.lake import LakeWriter
from orasi_bridge.lake.config import ReplicateConfig
from orasi_bridge.query.engine import QueryEngine, QueryLimits
from orasi_common.pipeline.component import Kind, Settings
from orasi_common.telemetry.metrics import Metrics

MakeWriter = Callable[..., Awaitable[LakeWriter]]


@pytest.fixture(scope="session")
def lake_servers() -> None:
    """The real servers answer; otherwise every lake test fails (never skips) saying why."""
    apply_aws_env()
    problem = None
    try:
        check_servers()
    except ServersUnreachable as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def lake_space(lake_servers: None) -> Iterator[LakeSpace]:
    space = LakeSpace()
    space.create()
    try:
        yield space
    finally:
        space.drop()


@pytest.fixture
def global_lake(lake_space: LakeSpace) -> ReplicateConfig:
    """A global lake to replicate into: the test's lake space (PostgreSQL schema, SeaweedFS prefix)."""
    config = lake_space.lake_config()
    return ReplicateConfig(to=config["warehouse"], catalog_uri=config["catalog_uri"], s3=config["s3"])


def writer_settings(metrics: Metrics, component_id: str = "lake") -> Settings:
    """What the graph injects into an exporter (orasi_common.pipeline.graph.Graph.build)."""
    logger = logging.getLogger(f"orasi.bridge.{Kind.EXPORTER.value}.{component_id}")
    return Settings(component_id, Kind.EXPORTER, "bridge", metrics, logger)


def build_writer(config: dict[str, Any], metrics: Metrics | None = None) -> LakeWriter:
    validated = lake.FACTORY.config_type.model_validate(config)
    writer = lake.FACTORY.create(writer_settings(metrics or Metrics("bridge")), validated)
    assert isinstance(writer, LakeWriter)
    return writer


async def close_writer(writer: LakeWriter) -> None:
    await writer.shutdown()


@pytest.fixture
async def make_writer(lake_space: LakeSpace) -> AsyncIterator[MakeWriter]:
    writers: list[LakeWriter] = []

    async def make(metrics: Metrics | None = None, **overrides: Any) -> LakeWriter:
        writer = build_writer(lake_space.lake_config(**overrides), metrics)
        writers.append(writer)
        await writer.start()
        return writer

    try:
        yield make
    finally:
        for writer in reversed(writers):
            await close_writer(writer)


@pytest.fixture
async def writer(make_writer: MakeWriter) -> LakeWriter:
    return await make_writer()


@pytest.fixture
def engine(writer: LakeWriter) -> QueryEngine:
    return QueryEngine(writer, QueryLimits())
