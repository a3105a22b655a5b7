"""Syslog parsing (RFC 5424 and RFC 3164, expected records written by hand from the RFCs' own
examples), TCP framing, and the receiver's refusals over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from orasi_common.pdata import Signal
from orasi_common.pipeline.component import Kind
from orasi_common.receivers import syslog
from orasi_common.receivers.syslog.parse import Framer, FramingError, MalformedMessage, parse, zone_of
from orasi_common.telemetry.metrics import Metrics

from ...doubles import RecordingConsumer, make_settings, sample

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)


def ns(*args: int, tz: dt.tzinfo = dt.UTC) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp()) * 1_000_000_000


def test_rfc5424_with_structured_data() -> None:
    message = (
        b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="Appli\\"cation" eventID="1011"][examplePriority@32473 class="high"][empty] '
        b"\xef\xbb\xbfAn application event log entry..."
    )
    record = parse(message, "auto", dt.UTC, NOW)
    assert record.time_unix_nano == ns(2003, 10, 11, 22, 14, 15) + 3_000_000
    assert (record.severity_number, record.severity_text) == (10, "notice")  # 165 = local4.notice
    assert record.body == "An application event log entry..."
    assert record.attributes == {
        "priority": 165,
        "facility": 20,
        "version": 1,
        "hostname": "mymachine.example.com",
        "appname": "evntslog",
        "msg_id": "ID47",
        "structured_data.exampleSDID@32473.iut": "3",
        "structured_data.exampleSDID@32473.eventSource": 'Appli"cation',
        "structured_data.exampleSDID@32473.eventID": "1011",
        "structured_data.examplePriority@32473.class": "high",
        "structured_data.empty": "",
    }


def test_rfc5424_nil_values_and_offset_time() -> None:
    record = parse(
        b"<34>1 2003-08-24T05:14:15.000003-07:00 - su - - - 'su root' failed", "rfc5424", dt.UTC, NOW
    )
    assert record.time_unix_nano == ns(2003, 8, 24, 12, 14, 15) + 3_000
    assert (record.severity_number, record.severity_text) == (18, "crit")
    assert record.attributes == {"priority": 34, "facility": 4, "version": 1, "appname": "su"}
    assert record.body == "'su root' failed"


def test_rfc3164_year_and_zone() -> None:
    paris = zone_of("Europe/Paris")
    record = parse(
        b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed on /dev/pts/8", "auto", paris, NOW
    )
    # October seen in January: last year's; Paris is UTC+2 in October
    assert record.time_unix_nano == ns(2025, 10, 11, 20, 14, 15)
    assert record.attributes == {
        "priority": 34,
        "facility": 4,
        "hostname": "mymachine",
        "appname": "su",
        "proc_id": "123",
    }
    assert record.body == "'su root' failed on /dev/pts/8"
    single_digit_day = parse(b"<13>Jan  2 11:00:00 host app: hi\r\n", "rfc3164", dt.UTC, NOW)
    assert single_digit_day.body == "hi"  # a line end inside the frame is not the message
    assert single_digit_day.time_unix_nano == ns(2026, 1, 2, 11, 0, 0)


@pytest.mark.parametrize(
    ("message", "protocol", "problem"),
    [
        (b"no pri here", "auto", "PRI"),
        (b"<999>1 - - - - - - x", "auto", "out of range"),
        (b"<13>1 yesterday host app - - - x", "rfc5424", "RFC 3339"),
        (b"<13>1 2003-10-11T22:14:15 host app - - - x", "rfc5424", "time zone"),
        (b"<13>1 - host app - - [broken x", "rfc5424", "not closed"),
        (b"<13>Foo 11 22:14:15 host app: x", "rfc3164", "month"),
        (b"<13>just text", "rfc3164", "RFC 3164"),
    ],
)
def test_malformed_messages(message: bytes, protocol: str, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=problem):
        parse(message, protocol, dt.UTC, NOW)


def test_framing_newline_and_octet_counting() -> None:
    lines = Framer(1000)
    assert lines.feed(b"<13>a\n<13>b\r\n<13>c") == [b"<13>a", b"<13>b"]
    assert lines.feed(b"d\n\n") == [b"<13>cd"]
    counted = Framer(1000)
    assert counted.feed(b"5 <13>a6 <13>bc\n7 <13>") == [b"<13>a", b"<13>bc"]
    assert counted.feed(b"def") == [b"<13>def"]
    with pytest.raises(FramingError, match="not a number"):
        Framer(1000).feed(b"12x <13>a")
    with pytest.raises(FramingError, match="longer than"):
        Framer(1000).feed(b"2000 <13>a")
    with pytest.raises(FramingError, match="no newline"):
        Framer(1000).feed(b"<13>" + b"x" * 1001)


def records(consumer: RecordingConsumer) -> list[Any]:
    out = []
    for batch in consumer.batches:
        request = ExportLogsServiceRequest.FromString(batch.raw)
        out.extend(r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records)
    return out


async def test_receiver_refuses_bad_frames_and_keeps_serving(metrics: Metrics) -> None:
    consumer = RecordingConsumer()
    config = syslog.Config.model_validate(
        {"tcp": {"endpoint": "127.0.0.1:0"}, "udp": {"endpoint": "127.0.0.1:0"}, "max_message_bytes": 1000}
    )
    receiver = syslog.FACTORY.create(
        make_settings("syslog", Kind.RECEIVER, metrics), config, {Signal.LOGS: consumer}
    )
    await receiver.start()
    try:
        for sent in (
            b"<13>Jan  2 11:00:00 host app: first\nnot syslog\n<13>" + b"x" * 1200 + b"\n",  # too long
            b"12x <13>broken",  # octet counting with a bad length
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
            writer.write(sent)
            await writer.drain()
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed by the receiver
            writer.close()
            await writer.wait_closed()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"<13>" + b"x" * 2000, ("127.0.0.1", receiver.udp_port))
        udp.sendto(b"<14>1 2026-01-02T11:00:00Z host app - - - second", ("127.0.0.1", receiver.udp_port))
        udp.close()
        await consumer.wait_until(lambda: consumer.items == 2)
        bodies = sorted(r.body.string_value for r in records(consumer))
        assert bodies == ["first", "second"]
    finally:
        await receiver.shutdown()
    assert sample(metrics, "orasi_receiver_malformed_messages_total", reason="framing") == 2
    assert sample(metrics, "orasi_receiver_malformed_messages_total", reason="malformed") == 1
    assert sample(metrics, "orasi_receiver_malformed_messages_total", reason="too_long") == 1


def test_config_needs_a_transport_and_a_known_zone() -> None:
    with pytest.raises(ValueError, match="tcp, udp"):
        syslog.Config.model_validate({})
    with pytest.raises(ValueError, match="time zone"):
        syslog.Config.model_validate({"udp": {}, "location": "Mars/Olympus"})
