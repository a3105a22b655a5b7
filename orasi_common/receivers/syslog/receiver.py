"""The `syslog` receiver: RFC 5424 / RFC 3164 messages over TCP (TLS with ``tcp.tls``: RFC 5425)
and UDP into OTLP log records.

Messages are parsed as they arrive (``parse.py``) and gathered per transport; a batch is handed
on when it holds ``send_batch_size`` messages or every ``flush_interval``. Syslog has no
acknowledgement, so delivery rests on backpressure: while the next consumer refuses for now
(retryable), the batch is offered again after the delay it asked for and TCP connections are not
read (their senders block or buffer); UDP datagrams past ten batches' worth are dropped and
counted. A permanently refused batch is dropped and logged.

Refusals are counted in ``orasi_receiver_malformed_messages_total{reason}``: ``framing`` (a TCP
stream that cannot be split: the connection is closed and the closing logged), ``too_long`` (a
datagram over ``max_message_bytes``), ``malformed`` (a message that does not follow its RFC:
left out, logged at most every 10 s), ``buffer_full`` (UDP under backpressure),
``connections`` (a connection past ``tcp.max_connections``, closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orasi_common.errors import OrasiError, RetryableError
from orasi_common.pdata import Batch, Signal
from orasi_common.pipeline.component import Consumer, Settings
from orasi_common.pipeline.tasks import TaskScope
from orasi_common.receivers.ingest import Ingest
from orasi_common.receivers.syslog.config import Config
from orasi_common.receivers.syslog.parse import Framer, FramingError, MalformedMessage, Record, parse, zone_of
from orasi_common.transport.endpoint import join_endpoint, split_endpoint
from orasi_common.transport.http_server import bind_tcp
from orasi_common.transport.tls import ServerTls
from orasi_common.version import __version__

SCOPE_NAME = "orasi/receiver/syslog"
_READ_BYTES = 256 * 1024
_LOG_EVERY = 10.0  # seconds between two logs of malformed messages
_UDP_PENDING_BATCHES = 10


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def to_request(records: list[tuple[Record, int]]) -> ExportLogsServiceRequest:
    """One request holding ``records`` (with their observed times) under one scope."""
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    scope_logs.scope.name = SCOPE_NAME
    scope_logs.scope.version = __version__
    add = scope_logs.log_records.add
    for record, observed in records:
        add(
            time_unix_nano=record.time_unix_nano,
            observed_time_unix_nano=observed,
            severity_number=record.severity_number,
            severity_text=record.severity_text,
            body=AnyValue(string_value=record.body),
            attributes=[_kv(k, v) for k, v in record.attributes.items()],
        )
    return request


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self._receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._receiver.datagram(data)


class SyslogReceiver:
    def __init__(self, settings: Settings, config: Config, consumers: Mapping[Signal, Consumer]) -> None:
        self.logger = settings.logger
        self._config = config
        self._ingest = Ingest(settings, consumers)
        self._ingest.check_signal(Signal.LOGS)
        self._zone = zone_of(config.location)
        self._malformed = settings.metrics.receiver_malformed
        self._id = settings.id
        self._pending: dict[str, list[tuple[Record, int]]] = {"tcp": [], "udp": []}
        self._flush_lock = asyncio.Lock()
        self._scope = TaskScope()
        self._tcp: asyncio.Server | None = None
        self._tls: ServerTls | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()
        self._udp_flushing = False
        self._last_log = 0.0
        self.tcp_port: int | None = None
        self.udp_port: int | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        await self._scope.open()
        config = self._config
        if config.tcp is not None:
            sock = bind_tcp(config.tcp.endpoint)
            self.tcp_port = sock.getsockname()[1]
            if config.tcp.tls is not None:
                self._tls = ServerTls(config.tcp.tls, self.logger)
                await self._tls.start()
            context = self._tls.context if self._tls is not None else None
            self._tcp = await asyncio.start_server(self._accept, sock=sock, limit=_READ_BYTES, ssl=context)
        if config.udp is not None:
            host, port = split_endpoint(config.udp.endpoint)
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(host, port)
            )
            self._udp = transport
            self.udp_port = transport.get_extra_info("sockname")[1]
        self._scope.spawn(self._flush_periodically(), name=f"{self._id} flush")
        self.logger.info(
            "Syslog receiver listening.", extra={"tcp_port": self.tcp_port, "udp_port": self.udp_port}
        )

    async def shutdown(self) -> None:
        self._stopping.set()
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for writer in list(self._connections):
            writer.close()
        await self._scope.close(cancel=True)
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        self._tcp = self._udp = None
        if self._tls is not None:
            await self._tls.shutdown()
        for transport in ("tcp", "udp"):
            await self._flush(transport, retry=False)

    def listening(self) -> dict[str, str]:
        endpoints = {}
        if self._config.tcp is not None and self.tcp_port is not None:
            endpoints["syslog_tcp"] = join_endpoint(
                split_endpoint(self._config.tcp.endpoint)[0], self.tcp_port
            )
        if self._config.udp is not None and self.udp_port is not None:
            endpoints["syslog_udp"] = join_endpoint(
                split_endpoint(self._config.udp.endpoint)[0], self.udp_port
            )
        return endpoints

    # --- input ------------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self._scope.spawn(self._serve(reader, writer))
        except RuntimeError:  # shutting down
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        assert self._config.tcp is not None
        if len(self._connections) >= self._config.tcp.max_connections:
            self._count("tcp", "connections")
            self.logger.warning(
                "Syslog connection refused: too many open connections.",
                extra={"peer": peer, "max_connections": self._config.tcp.max_connections},
            )
            writer.close()
            return
        self._connections.add(writer)
        framer = Framer(self._config.max_message_bytes)
        try:
            while not self._stopping.is_set():
                data = await reader.read(_READ_BYTES)
                if not data:
                    if framer.pending and not framer.octet_counting:
                        self._add("tcp", framer.feed(b"\n"))  # the last line, closed by the close
                    break
                try:
                    messages = framer.feed(data)
                except FramingError as error:
                    self._add("tcp", error.messages)
                    self._count("tcp", "framing")
                    self.logger.warning(
                        "Syslog connection closed: its framing is broken.",
                        extra={"peer": peer, "error": str(error)},
                    )
                    break
                self._add("tcp", messages)
                if len(self._pending["tcp"]) >= self._config.send_batch_size:
                    await self._flush("tcp")  # not reading meanwhile: backpressure
        except ConnectionError:
            pass
        except Exception:  # a bug must end this connection, not the receiver
            self.logger.exception("Syslog connection closed by an unexpected error.", extra={"peer": peer})
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def datagram(self, data: bytes) -> None:
        if len(data) > self._config.max_message_bytes:
            self._count("udp", "too_long")
            return
        if len(self._pending["udp"]) >= _UDP_PENDING_BATCHES * self._config.send_batch_size:
            self._count("udp", "buffer_full")
            return
        self._add("udp", [data.rstrip(b"\r\n")])
        if len(self._pending["udp"]) >= self._config.send_batch_size and not self._udp_flushing:
            self._udp_flushing = True
            with contextlib.suppress(RuntimeError):
                self._scope.spawn(self._flush_udp())

    async def _flush_udp(self) -> None:
        try:
            await self._flush("udp")
        finally:
            self._udp_flushing = False

    def _add(self, transport: str, messages: list[bytes]) -> None:
        pending = self._pending[transport]
        observed = time.time_ns()
        now = dt.datetime.now(dt.UTC)
        protocol, zone = self._config.protocol, self._zone
        for message in messages:
            try:
                pending.append((parse(message, protocol, zone, now), observed))
            except MalformedMessage as error:
                self._count(transport, "malformed")
                if time.monotonic() - self._last_log > _LOG_EVERY:
                    self._last_log = time.monotonic()
                    self.logger.warning(
                        "Syslog message refused: it does not follow its RFC.",
                        extra={
                            "transport": transport,
                            "error": str(error),
                            "sample": message[:200].decode("utf-8", "replace"),
                        },
                    )

    def _count(self, transport: str, reason: str) -> None:
        self._malformed.labels(self._id, transport, reason).inc()

    # --- output -----------------------------------------------------------------------------

    async def _flush_periodically(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._config.flush_interval)
            for transport in ("tcp", "udp"):
                await self._flush(transport)

    async def _flush(self, transport: str, retry: bool = True) -> None:
        """Hand on what ``transport`` gathered, a batch at a time; while the consumer refuses for
        now, offer it again (unless stopping or not ``retry``)."""
        async with self._flush_lock:
            pending = self._pending[transport]
            size = self._config.send_batch_size
            while pending:
                records = pending[:size]
                batch = Batch.from_message(Signal.LOGS, to_request(records), tenant=self._config.tenant)
                try:
                    await self._ingest.consume(batch, transport)
                except RetryableError as error:
                    if not retry or self._stopping.is_set():
                        self.logger.warning(
                            "Syslog messages dropped at shutdown: the pipeline refuses them.",
                            extra={"messages": len(records), "error": error.message},
                        )
                    else:
                        await asyncio.sleep(error.retry_after or 0.5)
                        continue
                except OrasiError as error:
                    self.logger.warning(
                        "Syslog messages dropped: the pipeline refused them.",
                        extra={"messages": len(records), "error": error.message},
                    )
                del pending[: len(records)]
