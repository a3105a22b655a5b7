"""The real servers the test suite and benchmarks use (SERVERS.md), in one place.

Settings come from the environment the Makefile exports, with the same defaults, so a plain
`python -m pytest` works once `scripts/test-servers.sh start` ran.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import httpx
import psycopg
import pyarrow.fs as pafs
from sqlalchemy.engine import make_url

S3_ENDPOINT = os.environ.get("ORASI_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")
CATALOG_URI = os.environ.get(
    "ORASI_TEST_CATALOG_URI", "postgresql+psycopg://postgres@127.0.0.1:5432/orasi_test"
)
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testkey"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testsecret"),
    "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
}
ETCD = os.environ.get("ORASI_TEST_ETCD", "http://127.0.0.1:2379")
BUCKET = "orasi-telemetry-us-east-1"
START_HINT = "start them with `scripts/test-servers.sh start` (or `make servers`)"


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = urlparse(S3_ENDPOINT)
    return pafs.S3FileSystem(
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "http",
        region=AWS_ENV["AWS_REGION"],
        access_key=AWS_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        connect_timeout=3,
        request_timeout=10,
    )


def postgres_conninfo(database: str) -> str:
    """A libpq connection string for ``database`` on the catalog's server."""
    url = make_url(CATALOG_URI).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def server_problems() -> list[str]:
    """What is wrong with SeaweedFS and PostgreSQL (empty when both answer)."""
    problems = []
    try:
        if s3_filesystem().get_file_info(BUCKET).type != pafs.FileType.Directory:
            problems.append(f"S3 at {S3_ENDPOINT} has no bucket {BUCKET}")
    except OSError as error:
        problems.append(f"S3 at {S3_ENDPOINT} does not answer: {error}")
    try:
        with psycopg.connect(postgres_conninfo("postgres"), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        problems.append(f"PostgreSQL at {CATALOG_URI} does not answer: {error}")
    return problems


def servers_missing(what: str) -> str | None:
    """Why ``what`` cannot run: the servers that do not answer and how to start them (None when
    both answer). Tests fail with it, never skip."""
    problems = server_problems()
    return f"{what} need real servers, and " + "; ".join(problems) + f" — {START_HINT}" if problems else None


def etcd_problem(endpoint: str = ETCD) -> str | None:
    """What is wrong with the etcd at ``endpoint`` (None when it answers healthy)."""
    try:
        response = httpx.get(f"{endpoint}/health", timeout=3)
    except httpx.HTTPError as error:
        return f"etcd at {endpoint} does not answer: {error!r}"
    if response.status_code != 200 or response.json().get("health") != "true":
        return f"etcd at {endpoint} is not healthy: {response.status_code} {response.text.strip()}"
    return None


def etcd_missing(what: str) -> str | None:
    """Why ``what`` cannot run without etcd (None when it answers). Tests fail with it, never skip."""
    problem = etcd_problem()
    return f"{what} need a real etcd, and {problem} — {START_HINT}" if problem else None
