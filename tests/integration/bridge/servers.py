"""The real servers the lake tests use (SERVERS.md), and one isolated lake per test.

Addresses come from the environment the Makefile exports, with the same defaults, so that a plain
``python -m pytest`` works too:

    ORASI_TEST_S3_ENDPOINT   http://127.0.0.1:8333     (SeaweedFS, bucket orasi-telemetry-us-east-1)
    ORASI_TEST_CATALOG_URI   postgresql+psycopg://postgres@127.0.0.1:5432/orasi_test
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION   testkey / testsecret / us-east-1

Isolation: pyiceberg's SQL catalog keys every table by the catalog name, which the bridge fixes at
"orasi". Each test therefore gets its own PostgreSQL *schema* (the catalog URI carries
``options=-csearch_path=<schema>``, so the catalog's tables live there) and its own warehouse
prefix ``s3://<bucket>/test-<uuid>/warehouse``. Both are removed when the test ends. The URI also
names the test in ``application_name``, which lets a test count the connections a writer holds.

When a server is not reachable the tests fail (they never skip) with a message that says how to
start it: ``scripts/test-servers.sh start``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import sqlalchemy
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy.engine import make_url

from orasi_bridge.lake.commits import BATCH_IDS_PROPERTY
from orasi_common.testing.servers import (
    AWS_ENV,
    BUCKET,
    CATALOG_URI,
    S3_ENDPOINT,
    START_HINT,
    s3_filesystem,
    server_problems,
)

# Re-exported for the bridge and e2e tests.
__all__ = [
    "AWS_ENV",
    "BUCKET",
    "S3_ENDPOINT",
    "LakeSpace",
    "ServersUnreachable",
    "apply_aws_env",
    "check_servers",
    "s3_filesystem",
]


class ServersUnreachable(AssertionError):
    """A real server the tests need does not answer."""


def apply_aws_env() -> None:
    """Put the S3 credentials in this process's environment (the AWS chain reads them there)."""
    for key, value in AWS_ENV.items():
        os.environ.setdefault(key, value)


def _admin_engine() -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(
        CATALOG_URI, connect_args={"connect_timeout": 3}, poolclass=sqlalchemy.NullPool
    )


def check_servers() -> None:
    """Raise ServersUnreachable naming every server that does not answer."""
    problems = server_problems()
    if problems:
        raise ServersUnreachable(
            "the lake tests need real servers, and " + "; ".join(problems) + f" — {START_HINT}"
        )


@dataclass
class LakeSpace:
    """One test's own catalog (a PostgreSQL schema) and warehouse prefix (on SeaweedFS)."""

    name: str = field(default_factory=lambda: f"orasi_t_{uuid.uuid4().hex[:16]}")

    @property
    def schema(self) -> str:
        return self.name

    @property
    def application_name(self) -> str:
        return self.name

    @property
    def catalog_uri(self) -> str:
        url = make_url(CATALOG_URI)
        url = url.update_query_dict(
            {"options": f"-csearch_path={self.schema}", "application_name": self.application_name}
        )
        return url.render_as_string(hide_password=False)

    @property
    def prefix(self) -> str:
        return f"{BUCKET}/test-{self.name}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.prefix}/warehouse"

    def lake_config(self, **overrides: Any) -> dict[str, Any]:
        """A `lake` exporter section for this space (S3 region set: no region lookup on AWS)."""
        config: dict[str, Any] = {
            "region": "test-region-1",
            "catalog_uri": self.catalog_uri,
            "warehouse": self.warehouse,
            "s3": {"endpoint": S3_ENDPOINT, "region": AWS_ENV["AWS_REGION"]},
            "flush_interval": 3600,
        }
        config.update(overrides)
        return config

    def committed_batch_ids(self, table: str = "spans") -> list[str]:
        """Batch ids recorded in the table's Iceberg snapshot summaries (one per commit of each)."""
        catalog = SqlCatalog(
            "orasi",
            uri=self.catalog_uri,
            warehouse=self.warehouse,
            **{
                "s3.endpoint": S3_ENDPOINT,
                "s3.region": AWS_ENV["AWS_REGION"],
                "s3.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
                "s3.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            },
        )
        try:
            ids: list[str] = []
            for snapshot in catalog.load_table(f"orasi.{table}").snapshots():
                summary = snapshot.summary.additional_properties if snapshot.summary else {}
                if summary.get(BATCH_IDS_PROPERTY):
                    ids.extend(summary[BATCH_IDS_PROPERTY].split(","))
            return ids
        finally:
            catalog.close()

    @classmethod
    @contextlib.contextmanager
    def made(cls) -> Iterator[LakeSpace]:
        """A new space, created, and dropped when the block ends."""
        space = cls()
        space.create()
        try:
            yield space
        finally:
            space.drop()

    def create(self) -> None:
        engine = _admin_engine()
        try:
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{self.schema}"'))
        finally:
            engine.dispose()

    def connections(self) -> int:
        """Open PostgreSQL connections made with this space's catalog URI."""
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        sqlalchemy.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                        ),
                        {"name": self.application_name},
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    def written_files(self) -> list[str]:
        """Every file under this space's warehouse but Iceberg metadata: data files and trace
        indexes (bucket-relative paths)."""
        selector = pafs.FileSelector(self.prefix, recursive=True, allow_not_found=True)
        return sorted(
            info.path
            for info in s3_filesystem().get_file_info(selector)
            if info.type == pafs.FileType.File and "/metadata/" not in info.path
        )

    def data_files(self) -> list[str]:
        """Every Parquet file under this space's warehouse (bucket-relative paths)."""
        return [path for path in self.written_files() if path.endswith(".parquet")]

    def drop(self) -> None:
        engine = _admin_engine()
        try:
            with engine.begin() as connection:
                # Connections a leaky writer left open would keep the schema's locks.
                connection.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": self.application_name},
                )
                connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            engine.dispose()
        fs = s3_filesystem()
        if fs.get_file_info(self.prefix).type != pafs.FileType.NotFound:
            fs.delete_dir(self.prefix)
