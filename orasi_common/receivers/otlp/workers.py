"""OTLP/gRPC served by worker processes, for when receiving would compete with the pipelines.

One Python process serves gRPC at a few thousand requests per second, holding the GIL for most
of it; a pipeline that converts data in bulk (the bridge's lake) then waits its turn. With
``protocols.grpc.processes: N`` the receiver starts N workers (``worker``) that listen on the
same port (SO_REUSEPORT; the kernel spreads connections over them), validate and count each
request, and hand it to this process over a Unix socket (``handoff``). Here it is consumed as if
received directly: the sender's answer is the pipelines' verdict, so acknowledgement still
means what it means without workers.

A worker that dies is replaced (after ``RESTART_DELAY``); its clients reconnect to the others.
Shutdown stops the workers gracefully, then closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile

from orasi_common.errors import OrasiError
from orasi_common.pdata import Batch
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.receivers.otlp import handoff
from orasi_common.receivers.otlp.config import GrpcConfig
from orasi_common.receivers.otlp.grpc import TRANSPORT, Sink
from orasi_common.transport.endpoint import split_endpoint

START_TIMEOUT = 60.0
"""Seconds a worker may take to import, listen and say hello."""
RESTART_DELAY = 1.0
"""Seconds before a worker that died is replaced (so a crash loop does not spin)."""
STOP_GRACE = 5.0
"""Seconds a stopping worker gives its requests in flight (then it is killed 5 s later)."""


class GrpcWorkers:
    """``config.processes`` OTLP/gRPC workers on one port, feeding ``sink`` in this process."""

    def __init__(self, config: GrpcConfig, sink: Sink, tenant_header: str, logger: logging.Logger) -> None:
        self._config = config
        self._sink = sink
        self._tenant_header = tenant_header
        self._logger = logger
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._hellos: dict[str, asyncio.Future[dict[str, object]]] = {}  # by the token a worker got
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks = TaskScope()
        self._directory: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stopping = False
        self.port: int | None = None

    @property
    def pids(self) -> list[int]:
        """The workers' process ids, those still starting included (for operators and tests)."""
        return list(self._workers)

    async def start(self) -> None:
        self._directory = tempfile.mkdtemp(prefix="orasi-otlp-grpc-")
        path = os.path.join(self._directory, "handoff.sock")
        self._server = await asyncio.start_unix_server(self._serve_link, path=path, limit=2**16)
        await self._tasks.open()
        try:
            self.port = await self._start_worker()  # it picks the port when the endpoint says 0
            await asyncio.gather(*(self._start_worker() for _ in range(self._config.processes - 1)))
        except BaseException:
            await self.shutdown(grace=0)
            raise

    def _endpoint(self) -> str:
        host, port = split_endpoint(self._config.endpoint)
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port if self.port is not None else port}"

    async def _start_worker(self) -> int:
        """Start one worker and wait for its hello; the port it listens on."""
        assert self._directory is not None
        token = secrets.token_hex(16)
        settings = {
            "token": token,
            "socket": os.path.join(self._directory, "handoff.sock"),
            "config": {**self._config.model_dump(exclude={"processes"}), "endpoint": self._endpoint()},
            "tenant_header": self._tenant_header,
            "grace": STOP_GRACE,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        }
        hello = self._hellos[token] = asyncio.get_running_loop().create_future()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orasi_common.receivers.otlp.worker",
            json.dumps(settings),
            stdin=asyncio.subprocess.DEVNULL,
        )
        self._workers[process.pid] = process
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait(
                (hello, exited), timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if hello in done:
                info = hello.result()
                if "error" not in info:
                    self._tasks.spawn(self._supervise(process), name=f"otlp-grpc-worker-{process.pid}")
                    return int(str(info["port"]))
                reason = str(info["error"])
            elif exited in done:
                reason = f"the worker process exited with code {process.returncode} before listening"
            else:
                reason = f"the worker process did not listen within {START_TIMEOUT:.0f} s"
        except BaseException:  # cancelled (shutdown): the worker must not outlive us
            del self._workers[process.pid]
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        finally:
            exited.cancel()
            del self._hellos[token]
        del self._workers[process.pid]
        await _stop(process, grace=0)
        raise OSError(f"OTLP/gRPC worker on {self._endpoint()}: {reason}")

    async def _supervise(self, process: asyncio.subprocess.Process) -> None:
        """Replace the worker when it dies (not when shutdown stops it)."""
        code = await process.wait()
        self._workers.pop(process.pid, None)
        while not self._stopping:
            self._logger.error(
                "An OTLP/gRPC worker process exited; starting another.",
                extra={"pid": process.pid, "exit_code": code, "port": self.port},
            )
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                await self._start_worker()
                return
            except OSError as error:
                self._logger.error("An OTLP/gRPC worker could not start.", extra={"error": str(error)})

    async def _serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker's connection: its hello, then batches, each answered with its verdict."""
        self._links.add(writer)
        try:
            ident, body = await handoff.read_frame(reader)
            info = handoff.decode_hello(body) if ident == handoff.HELLO else {}
            hello = self._hellos.get(str(info.get("token")))
            if hello is None or hello.done():
                return  # not a worker we are waiting for
            hello.set_result(info)
            while True:
                ident, record = await handoff.read_frame(reader)
                self._tasks.spawn(self._consume(ident, record, writer))
        except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
            pass  # the worker went away (its supervisor replaces it), or we are stopping
        finally:
            self._links.discard(writer)
            writer.close()

    async def _consume(self, ident: int, record: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            await self._sink.consume(Batch.from_record(record), TRANSPORT)
            verdict = b""
        except OrasiError as error:
            verdict = handoff.encode_error(error)
        except Exception:  # a bug downstream: this request fails, the receiver keeps serving
            self._logger.exception("Consuming a request from an OTLP/gRPC worker failed.")
            verdict = handoff.encode_error(OrasiError("the receiver failed to consume the request"))
        if not writer.is_closing():
            handoff.write_frame(writer, ident, verdict)

    async def shutdown(self, grace: float = STOP_GRACE) -> None:
        """Stop the workers (with ``grace`` > 0 their requests in flight still get verdicts; 0
        kills them), then the socket."""
        self._stopping = True
        await asyncio.gather(
            *(_stop(process, grace and STOP_GRACE + 5) for process in list(self._workers.values()))
        )
        await self._tasks.close(cancel=True)
        if self._server is not None:
            self._server.close()
            for writer in list(self._links):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL past ``grace`` seconds; waits for the exit."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(process.wait(), grace if grace > 0 else None)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
