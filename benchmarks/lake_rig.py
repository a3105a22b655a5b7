"""The lake benchmark's rig: this run's databases, S3 prefix and processes, the lake's
configuration, an in-process lake writer, and a running ``orasi bridge``.

Each run uses its own PostgreSQL databases (``orasi_bench_<id>_<part>``) and S3 prefix
(``s3://orasi-telemetry-us-east-1/bench-<id>/``); ``Lab.close`` drops both, stops every process
by its PID and removes the temporary directory (``--keep`` leaves them).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import HOST, Processes, free_port, wait_http
from benchmarks.report import say
from orasi_common.testing.service_process import ServiceProcess

S3_ENDPOINT = f"http://{HOST}:8333"
S3_REGION = "us-east-1"
BUCKET = "orasi-telemetry-us-east-1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
CATALOG_URL = "postgresql+psycopg://postgres@{host}:5432/{db}"
# The engine's default limit is 30 s; a full-scan trace lookup over 10M spans can take longer on a
# loaded machine, and a figure is more useful than a refusal, so the benchmark allows more.
QUERY_TIMEOUT_S = 180.0


def env() -> dict[str, str]:
    """The S3 credentials and region of the test servers (the environment's, where set)."""
    out = {
        "AWS_ACCESS_KEY_ID": "testkey",
        "AWS_SECRET_ACCESS_KEY": "testsecret",
        "AWS_REGION": S3_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return {name: os.environ.get(name, value) for name, value in out.items()}


def s3_filesystem() -> Any:
    import pyarrow.fs as pafs

    credentials = env()
    return pafs.S3FileSystem(
        endpoint_override=f"{HOST}:8333",
        scheme="http",
        region=S3_REGION,
        access_key=credentials["AWS_ACCESS_KEY_ID"],
        secret_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )


class Lab:
    """This run's PostgreSQL databases, S3 prefix, temporary directory and child processes."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.prefix = f"bench-{self.run_id}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"orasi-lake-bench-{self.run_id}-"))
        self.databases: list[str] = []
        self.processes = Processes(self.tmp)
        self.keep = False

    def database(self, suffix: str) -> str:
        import psycopg

        name = f"orasi_bench_{self.run_id}_{suffix}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return CATALOG_URL.format(host=HOST, db=name)

    def warehouse(self, part: str) -> str:
        return f"s3://{BUCKET}/{self.prefix}/{part}/warehouse"

    def close(self) -> None:
        self.processes.stop_all()
        if self.keep:
            say(f"--keep: left s3://{BUCKET}/{self.prefix}/, databases {self.databases}, {self.tmp}")
            return
        with contextlib.suppress(Exception):
            s3_filesystem().delete_dir(f"{BUCKET}/{self.prefix}")
        if self.databases:
            import psycopg

            with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
                for name in self.databases:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_servers() -> None:
    """Fail early, with the fix, when SeaweedFS or PostgreSQL is not there."""
    import psycopg
    import pyarrow.fs as pafs

    try:
        s3_filesystem().get_file_info(pafs.FileSelector(BUCKET))
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except Exception as error:
        raise SystemExit(
            f"the test servers are not reachable ({type(error).__name__}: {error}); "
            "start them with scripts/test-servers.sh start"
        ) from None


def lake_config(catalog_uri: str, warehouse: str, **overrides: Any) -> dict[str, Any]:
    return {
        "region": S3_REGION,
        "catalog_uri": catalog_uri,
        "warehouse": warehouse,
        "s3": {"endpoint": S3_ENDPOINT, "region": S3_REGION},
        **overrides,
    }


def make_writer(config: dict[str, Any]) -> Any:
    from orasi_bridge.lake.config import Config
    from orasi_bridge.lake.writer import LakeWriter
    from orasi_common.pipeline.component import Kind, Settings
    from orasi_common.telemetry.metrics import Metrics

    settings = Settings(
        "lake", Kind.EXPORTER, "bridge", Metrics("bridge"), logging.getLogger("orasi.bench.lake")
    )
    return LakeWriter(settings, Config.model_validate(config))


def open_spans_table(config: dict[str, Any]) -> Any:
    """The pyiceberg ``orasi.spans`` table of a lake configuration (created when missing)."""
    from orasi_bridge.lake.catalog import ensure_table, open_catalog
    from orasi_bridge.lake.config import Config

    return ensure_table(open_catalog(Config.model_validate(config)), "spans")


def commit_rows(writer: Any, batch: Any) -> None:
    """One flush's commit of ``batch`` as the lake writer makes it (blocking)."""
    batch_id = uuid.uuid4().hex
    writer._commit("spans", {"default": [batch]}, {"default": [[(batch_id, batch.num_rows)]]}, [batch_id])


@dataclass
class Bridge:
    service: ServiceProcess
    grpc_port: int
    query_port: int


def start_bridge(
    lab: Lab, name: str, lake: dict[str, Any], timeout: float = 60, receiver_processes: int = 0
) -> Bridge:
    """``orasi bridge --config FILE`` with the otlp receiver (OTLP/gRPC served by
    ``receiver_processes`` workers; 0 = in the bridge's process), the lake exporter and the query API."""
    grpc_port, query_port = free_port(), free_port()
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {
                        "endpoint": f"{HOST}:{grpc_port}",
                        "max_recv_msg_size_mib": 16,
                        "processes": receiver_processes,
                    }
                }
            }
        },
        "processors": {"memory_limiter": {"limit_mib": 4096, "spike_limit_mib": 512}},
        "exporters": {"lake": lake},
        "extensions": {
            "query_api": {
                "endpoint": f"{HOST}:{query_port}",
                "lake": "lake",
                "limits": {"timeout": QUERY_TIMEOUT_S},
            }
        },
        "service": {
            "telemetry": {"logs": {"level": "warning"}, "admin": {"endpoint": f"{HOST}:{free_port()}"}},
            "extensions": ["query_api"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["lake"]}
            },
        },
    }
    service = lab.processes.service("bridge", config, name, env=env())
    service.wait_ready(timeout)
    wait_http(f"http://{HOST}:{query_port}/api/v1/tables", service, timeout)
    return Bridge(service, grpc_port, query_port)


def py_spy(lab: Lab, args: argparse.Namespace, pid: int, name: str, seconds: float) -> Any:
    """``py-spy record`` of ``pid`` for ``seconds`` into --profile-dir, when asked.

    Raw collapsed stacks, one file per profile. ``--profile-gil`` samples only the thread that
    holds the GIL (where Python time goes; threads waiting for the GIL are not counted).
    """
    if not args.profile_dir or shutil.which("py-spy") is None:
        return None
    target = Path(args.profile_dir) / f"{name}{'-gil' if args.profile_gil else ''}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = ["py-spy", "record", *(["--gil"] if args.profile_gil else []), "--pid", str(pid), "--rate", "100"]
    argv += ["--format", "raw", "--threads", "--duration", str(int(seconds)), "--output", str(target)]
    return lab.processes.popen(argv, f"py-spy-{name}.log")
