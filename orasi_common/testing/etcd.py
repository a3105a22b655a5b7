"""An etcd of a test's own (Debian ``etcd-server``) on free loopback ports, for the tests that stop
or restart etcd: those must not touch the shared one (``servers.ETCD``) other tests use.

    with EtcdServer(tmp_path).start() as etcd:
        ... etcd.url ...
        etcd.stop(); etcd.start(wipe=True)   # a restart that lost every lease and key
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import httpx

from orasi_common.control.registry import etcd_client
from orasi_common.testing.service_process import free_port, stop_process


def read_prefix(url: str, prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` in the etcd at ``url`` and its value (from synchronous code)."""

    async def read() -> dict[str, bytes]:
        client = etcd_client(url)
        try:
            return {kv.key.decode(): kv.value for kv in await client.get_prefix(prefix.encode())}
        finally:
            await client.close()

    return asyncio.run(read())


def put_raw(url: str, key: str, value: bytes) -> None:
    """Writes ``key`` in the etcd at ``url`` as it is, bypassing the CLI's checks (from synchronous
    code)."""

    async def put() -> None:
        client = etcd_client(url)
        try:
            await client.put(key.encode(), value)
        finally:
            await client.close()

    asyncio.run(put())


class EtcdServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wipe: bool = False, timeout: float = 20.0) -> Self:
        """Start etcd (with the data of its last run unless ``wipe``) and wait until it is healthy."""
        binary = shutil.which("etcd")
        assert binary, "etcd is not installed: scripts/test-servers.sh start installs it (SERVERS.md)"
        data = self.directory / "etcd-data"
        if wipe:
            shutil.rmtree(data, ignore_errors=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        with (self.directory / "etcd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--name", "t", "--data-dir", str(data),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"t={peer}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).json().get("health") == "true":
                    return self
            time.sleep(0.1)
        raise AssertionError(f"etcd did not become healthy on {self.url}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop it by its PID (safe twice, safe without a start)."""
        if self.process is not None:
            stop_process(self.process, 10)
            self.process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
