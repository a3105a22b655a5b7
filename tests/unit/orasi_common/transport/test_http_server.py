"""The HTTP server's limits: a slow client is disconnected, an oversized head gets 431, and an
ordinary request (its body sent slowly but within the deadline) is still served."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orasi_common.transport.http_server import HttpServer, Limits

LIMITS = Limits(max_header_bytes=4096, header_timeout=0.5, request_timeout=1.5, keep_alive_timeout=5)


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    started = HttpServer(echo_length, "127.0.0.1:0", limits=LIMITS)
    await started.start()
    try:
        yield started
    finally:
        await started.shutdown()


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing; fails if it is still open after ``seconds``."""
    return await asyncio.wait_for(reader.read(), seconds)


async def test_a_client_sending_its_headers_byte_by_byte_is_disconnected(server: HttpServer) -> None:
    reader, writer = await connect(server)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in b"POST /x HTTP/1.1\r\nhost: a\r\nx-slow: " + b"a" * 1000:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))  # dropped once the server closed the connection
            await asyncio.sleep(0.02)

    sending = asyncio.create_task(trickle())
    try:
        assert await closed_within(reader, 10) == b""
    finally:
        sending.cancel()
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"a slow head held the connection for {elapsed:.1f} s (limit 0.5 s)"
    await close(writer)


async def test_a_connection_that_sends_nothing_is_closed(server: HttpServer) -> None:
    reader, writer = await connect(server)
    assert await closed_within(reader, 3) == b""
    await close(writer)


async def test_a_slow_body_past_the_request_timeout_is_disconnected(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n")
    for _ in range(10):  # 10 of 100 bytes over 2 s: past the 1.5 s request timeout
        if writer.is_closing() or reader.at_eof():
            break
        with contextlib.suppress(ConnectionError):
            writer.write(b"x")
        await asyncio.sleep(0.2)
    answer = await closed_within(reader, 3)
    assert b" 200 " not in answer
    await close(writer)


async def test_an_oversized_head_gets_431(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET / HTTP/1.1\r\nhost: a\r\nx-big: " + b"b" * 10_000 + b"\r\n\r\n")
    answer = await closed_within(reader, 3)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"larger than 4096 bytes" in answer
    await close(writer)


async def test_requests_within_the_limits_are_served_on_one_connection(server: HttpServer) -> None:
    reader, writer = await connect(server)
    for _ in range(3):
        writer.write(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n")
        await asyncio.sleep(0.6)  # longer than the header timeout: the head's deadline is met
        writer.write(b"hello")
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert status.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readexactly(1), 3) == b"5"
    await close(writer)
