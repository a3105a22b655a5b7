"""Fixtures of the registry tests: a registry database of its own per test (a PostgreSQL schema
in the catalog's database, or a SQLite file), and the real Redis of SERVERS.md.

A server that does not answer fails the tests (never skips) with the command that starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from orasi_common.testing.servers import CATALOG_URI, START_HINT, postgres_conninfo

REDIS_URL = "redis://127.0.0.1:6379/0"


def _database() -> str:
    return CATALOG_URI.rsplit("/", 1)[1].split("?", 1)[0]


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """``postgresql://…`` of the catalog's database, with a schema of this test's on its path."""
    schema = f"registry_{uuid.uuid4().hex[:12]}"
    conninfo = postgres_conninfo(_database())
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {CATALOG_URI} does not answer: {error} — {START_HINT}", pytrace=False)
    yield f"{conninfo}?options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["postgresql", "sqlite"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    uri: str = request.getfixturevalue("pg_uri")
    return uri


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis at {REDIS_URL} does not answer: {error} — start it with `redis-server --daemonize yes "
            '--bind 127.0.0.1 --port 6379 --save "" --appendonly no` (SERVERS.md)',
            pytrace=False,
        )
    finally:
        client.close()
    return REDIS_URL
