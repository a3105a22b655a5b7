"""An OTLP/gRPC worker process: ``python -m orasi_common.receivers.otlp.worker SETTINGS_JSON``.

Started by ``workers.GrpcWorkers``, never by hand. It connects to the owner's Unix socket,
serves OTLP/gRPC on the given endpoint (with SO_REUSEPORT, beside its sibling workers), sends
its hello (the port it got, or why it could not listen), and hands every validated request to
the owner (``handoff``). SIGTERM stops it gracefully (requests in flight still get the owner's
verdict); the owner going away (end of the socket) stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from orasi_common.errors import Unavailable
from orasi_common.pdata import Batch
from orasi_common.receivers.otlp import handoff
from orasi_common.receivers.otlp.config import GrpcConfig
from orasi_common.receivers.otlp.grpc import OtlpGrpcServer
from orasi_common.transport import headers

OWNER_GONE = "the receiver's pipelines went away; retry"


class OwnerLink:
    """The worker's end of the hand-off: ``consume`` sends a batch and waits for its verdict."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._verdicts: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = handoff.HELLO + 1
        self.closed = asyncio.Event()

    def hello(self, token: str, **info: Any) -> None:
        hello = {"pid": os.getpid(), "token": token, **info}
        handoff.write_frame(self._writer, handoff.HELLO, handoff.encode_hello(hello))

    async def tenant(self, authorization: str | None, tenant_header: str | None) -> str:
        """The tenant header's (workers serve receivers without `auth`: the config refuses both)."""
        return headers.incoming_tenant(tenant_header)

    async def consume(self, batch: Batch, transport: str) -> None:
        if self.closed.is_set():
            raise Unavailable("the receiver is shutting down")
        ident, self._next_id = self._next_id, self._next_id % 0xFFFFFFFF + 1
        verdict = asyncio.get_running_loop().create_future()
        self._verdicts[ident] = verdict
        try:
            handoff.write_frame(self._writer, ident, batch.to_record())
            await self._writer.drain()
            body = await verdict
        except ConnectionError:
            raise Unavailable(OWNER_GONE) from None
        finally:
            del self._verdicts[ident]
        if body:
            raise handoff.decode_error(body)

    async def read_verdicts(self) -> None:
        """Deliver the owner's verdicts until it closes the socket; then refuse what waits."""
        try:
            while True:
                ident, body = await handoff.read_frame(self._reader)
                verdict = self._verdicts.get(ident)
                if verdict is not None and not verdict.done():
                    verdict.set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for verdict in self._verdicts.values():
                if not verdict.done():
                    verdict.set_exception(Unavailable(OWNER_GONE))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def serve(settings: dict[str, Any]) -> int:
    reader, writer = await asyncio.open_unix_connection(settings["socket"])
    link = OwnerLink(reader, writer)
    verdicts = asyncio.create_task(link.read_verdicts())
    server = OtlpGrpcServer(
        GrpcConfig.model_validate(settings["config"]), link, settings["tenant_header"], reuse_port=True
    )
    try:
        await server.start()
    except OSError as error:
        link.hello(settings["token"], error=str(error))
        await writer.drain()
        await link.close()
        return 1
    link.hello(settings["token"], port=server.port)
    terminated = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
    ended = asyncio.create_task(link.closed.wait())
    stop = asyncio.create_task(terminated.wait())
    await asyncio.wait((ended, stop), return_when=asyncio.FIRST_COMPLETED)
    # Gracefully on SIGTERM: requests in flight still get their verdicts. At once when the owner
    # is gone: nothing could be accepted any more.
    await server.shutdown(grace=settings["grace"] if not link.closed.is_set() else 0)
    await link.close()
    for task in (verdicts, ended, stop):
        task.cancel()
    return 0


def main(argv: list[str]) -> int:
    settings = json.loads(argv[1])
    from orasi_common.telemetry.logs import configure_logging

    configure_logging(settings["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the owner's to handle
    import uvloop

    return uvloop.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
