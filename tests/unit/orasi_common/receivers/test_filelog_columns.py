"""The columnar reading of CRI blocks against the per-line one: the same request bytes (the
receiver's frame, the records), count, end and cut lines on edge cases and on generated blocks
(hypothesis), block after block, each request one that ``check_request`` accepts (the receiver
trusts its encoder's bytes); and the common layout is read by the columns (not left to the
per-line reading)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from orasi_common.pdata import Batch, Signal
from orasi_common.pdata.validate import check_request
from orasi_common.receivers.filelog import cri
from orasi_common.receivers.filelog.parse import Encoder, Parsed, Rules, parse_block, parse_lines, rfc3339_ns
from orasi_common.receivers.filelog.receiver import _frame, kubernetes_attributes
from orasi_common.receivers.wire import field, key_values

ATTRIBUTES = key_values([("log.file.name", "0.log"), ("log.file.path", "/var/log/pods/a_b_c/d/0.log")], 6)
FRAME = functools.partial(
    _frame, field(1, key_values(kubernetes_attributes("/var/log/pods/a_b_c/d/0.log"), 1))
)
RULES = [
    Rules(format="cri", max_line_bytes=64 * 1024),
    Rules(format="cri", max_line_bytes=60),
    Rules(format="cri", severity_regex=re.compile(r"level=(?P<severity>\w+)")),
    Rules(format="cri", severity_field="level", severity_regex=re.compile(r"(?P<severity>WARN|ERROR)")),
]


def both(block: bytes, rules: Rules, final: bool, tail: bool) -> tuple[Parsed, Parsed]:
    encoder = Encoder(rules, ATTRIBUTES, 1_700_000_000_123_456_789, FRAME)
    return (
        parse_block(block, "cri", rules, encoder, final, tail),
        parse_lines(block, "cri", rules, encoder, final, tail),
    )


def assert_same(block: bytes) -> None:
    for rules in RULES:
        for final, tail in ((False, False), (True, False), (True, True)):
            columns, lines = both(block, rules, final, tail)
            assert (columns.data, columns.count, columns.end, columns.too_long) == (
                lines.data,
                lines.count,
                lines.end,
                lines.too_long,
            ), (block, rules, final, tail)
            if columns.count:
                assert check_request(Signal.LOGS, columns.data) == columns.count, (block, rules)


def read_all(data: bytes, size: int, parse: Callable[..., Parsed], rules: Rules) -> list[bytes]:
    """Every record of ``data`` read block after block from each block's end, as the receiver reads
    a file (the last block final, as for an idle file)."""
    encoder = Encoder(rules, ATTRIBUTES, 5, FRAME)
    out, offset, grow = [], 0, 0
    while offset < len(data):
        block = data[offset : offset + size + grow]
        last = offset + len(block) >= len(data)
        parsed = parse(block, "cri", rules, encoder, last, last)
        out.append(parsed.data)
        if not parsed.end:
            grow += size  # nothing complete in this block yet: a longer one
            continue
        offset, grow = offset + parsed.end, 0
    return out


EDGES = [
    b"2023-06-01T12:00:00.123456789Z stdout F hello world\n",
    b"2023-06-01T12:00:00Z stdout F no fraction\n",
    b"2023-06-01T12:00:00.5Z stderr F one digit\n",
    b"2023-06-01T12:00:00.1234567891Z stdout F ten digits\n",
    b"2023-06-01T12:00:00.Z stdout F a dot without digits\n",
    b"2023-06-01T14:00:00.25+02:00 stdout F an offset\n",
    b"2023-06-01T10:00:00.25-02:30 stdout F a negative offset\n",
    b"2023-06-01T14:00:00.25+0200 stdout F an offset without colon\n",
    b"2023-06-01T14:00:00.25+24:00 stdout F an offset out of range\n",
    b"2023-06-01t12:00:00z stdout F lowercase\n",
    b"2023-02-29T12:00:00Z stdout F not a leap year\n",
    b"2024-02-29T12:00:00Z stdout F a leap year\n",
    b"2023-13-01T12:00:00Z stdout F month 13\n",
    b"2023-06-01T24:00:00Z stdout F hour 24\n",
    b"2023-06-01T12:00:60Z stdout F a leap second\n",
    b"0000-01-01T00:00:00Z stdout F year zero\n",
    b"2300-01-01T00:00:00Z stdout F past int64 nanoseconds\n",
    b"2023-06-01T12:00:00Z stdout F\n",
    b"2023-06-01T12:00:00Z stdout F \n",
    b"2023-06-01T12:00:00Z stdout F  two spaces\n",
    b"2023-06-01T12:00:00Z stdout FX a long tag\n",
    b"2023-06-01T12:00:00Z stdout\n",
    b"2023-06-01T12:00:00Z other F another stream\n",
    b"2023-06-01T12:00:00Z \xc3\xa9t\xc3\xa9 F a non-ASCII stream\n",
    b"2023-06-01T12:00:00Z stdout F trailing spaces and tabs \t \t  \t\n",
    b"2023-06-01T12:00:00Z stdout F crlf\r\n",
    b"2023-06-01T12:00:00Z stdout F caf\xc3\xa9 \xe2\x82\xac\n",
    b"2023-06-01T12:00:00Z stdout F level=warn {json}\n",
    b'2023-06-01T12:00:00Z stdout F {"level": "ERROR", "msg": "x"}\n',
    b"2023-06-01T12:00:00Z stdout P part one \n2023-06-01T12:00:01Z stdout F part two\n",
    b"2023-06-01T12:00:00Z stdout P a \n2023-06-01T12:00:01Z stderr F b\n2023-06-01T12:00:02Z stdout P c\n",
    b"2023-06-01T12:00:00Z stdout P open\nplain text in between\n2023-06-01T12:00:02Z stdout F done\n",
    b"2023-06-01T12:00:00Z stdout F " + b"x" * 200 + b"\n",
    b"2023-06-01T12:00:00Z stdout F " + b"y" * 30 + b" " * 40 + b"\n",
    b"2023-06-01T12:00:00Z stdout F bad \xff\xfe utf-8\n",
    b"2023-06-01T12:00:00Z stdout F "
    + b"y" * 29
    + "\u00e9\u20ac\U0001f600 cut inside characters".encode()
    + b"\n",
    b"2023-06-01T12:00:00Z stdout F " + b"y" * 28 + "\u20ac\u20ac cut inside a character".encode() + b"\n",
    b"\n\n",
    b"plain text\n",
    b"2023-06-01T12:00:00Z stdout F no newline at the end",
    b"2023-06-01T12:00:00Z stdout P no newline at the end",
    b"",
    b"2023-06-01T12:00:00Z std",
]


def test_edge_cases_read_alike() -> None:
    for block in EDGES:
        assert_same(block)
    assert_same(b"".join(EDGES))


def test_a_cut_line_keeps_whole_characters() -> None:
    # a character split by max_line_bytes is dropped: the request stays valid UTF-8
    line = b"2023-06-01T12:00:00Z stdout F " + b"y" * 28 + "\u20ac!".encode() + b"\n"  # the euro: bytes 58-60
    rules = Rules(format="cri", max_line_bytes=60)
    for parse in (parse_block, parse_lines):
        parsed = parse(line * 3, "cri", rules, Encoder(rules, ATTRIBUTES, 5, FRAME), False)
        Batch.from_serialized(Signal.LOGS, parsed.data)  # valid, as a received request is checked
        request = ExportLogsServiceRequest.FromString(parsed.data)
        bodies = [r.body.string_value for r in request.resource_logs[0].scope_logs[0].log_records]
        assert (bodies, parsed.too_long) == (["y" * 28] * 3, 3)
    assert cri.whole_characters("a\u00e9".encode()[:2]) == b"a"
    assert cri.whole_characters("a\U0001f600".encode()) == "a\U0001f600".encode()
    assert cri.whole_characters(b"ab\x80") == b"ab\x80"  # not UTF-8 to begin with: left as it is


def test_the_common_layout_is_read_by_columns() -> None:
    lines = [
        b"2023-06-01T12:00:00.123456789Z stdout F hello",
        b"2023-06-01T12:00:00.1Z stderr P part",
        b"2024-02-29T23:59:59Z stdout F leap",
        b"2023-06-01T14:00:00.25+02:00 stdout F",
        b"1970-01-01T00:00:00-00:01 stderr F x y z",
    ]
    text = b"\n".join(lines) + b"\n" + b"-" * 60 + b"\n"  # (a line near the end is read per line)
    found = cri.lines(text, len(text), 1024)
    columns = cri.fields(text, found.starts, found.ends)
    assert columns.regular.tolist() == [True] * len(lines) + [False]
    assert columns.time.tolist()[:-1] == [rfc3339_ns(line.split(b" ")[0]) for line in lines]
    assert columns.stream.tolist()[:-1] == [cri.STDOUT, cri.STDERR, cri.STDOUT, cri.STDOUT, cri.STDERR]
    assert columns.partial.tolist()[:-1] == [False, True, False, False, False]
    bounds = zip(columns.message.tolist()[:-1], found.ends.tolist(), strict=False)
    messages = [text[s:e] for s, e in bounds]
    assert messages == [b"hello", b"part", b"leap", b"", b"x y z"]
    bad = b"2023-02-29T12:00:00Z stdout F x\n2023-06-01T12:00:00Z stdin F x\nplain\n" + b"-" * 60
    found = cri.lines(bad, len(bad), 1024)
    assert not cri.fields(bad, found.starts, found.ends).regular.any()


def test_lines_are_cut_and_stripped_as_bytes_do() -> None:
    text = b"abc  \nx" + b" " * 10 + b"\n\r\n" + b"y" * 20 + b"\n\t\x0b\x0c end"
    found = cri.lines(text, len(text), 12)
    expected = [line[:12].rstrip() for line in text.split(b"\n")]
    got = [text[s:e] for s, e in zip(found.starts.tolist(), found.ends.tolist(), strict=True)]
    assert got == expected
    assert found.too_long == 1
    assert found.offsets.tolist()[-1] == len(text) + 1


@st.composite
def cri_lines(draw: Any) -> bytes:
    year = draw(st.sampled_from([1970, 2023, 2024, 2100, 2262, 1969, 9999]))
    odd = draw(st.integers(0, 9)) == 0  # a field out of range now and then
    month = draw(st.integers(0, 13) if odd else st.integers(1, 12))
    day = draw(st.integers(0, 32) if odd else st.integers(1, 28))
    hour = draw(st.integers(0, 24) if odd else st.integers(0, 23))
    minute, second = draw(st.integers(0, 59)), draw(st.integers(0, 61) if odd else st.integers(0, 59))
    stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    digits = draw(st.integers(0, 10))
    if digits:
        stamp += "." + "".join(
            draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits))
        )
    stamp += draw(st.sampled_from(["Z", "Z", "Z", "+02:00", "-05:30", "+23:59", "z", "+0100", ""]))
    stream = draw(st.sampled_from(["stdout", "stdout", "stderr", "stdin", ""]))
    tag = draw(st.sampled_from(["F", "F", "F", "P", "X"]))
    text = draw(
        st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=90)
        | st.sampled_from(["level=info ok", "level=ERROR boom ", " ", "", "WARN x\r"])
    )
    line = f"{stamp} {stream} {tag} {text}".encode()
    if draw(st.integers(0, 20)) == 0:
        line = draw(st.binary(max_size=40)).replace(b"\n", b"")  # not CRI, maybe not UTF-8
    end: bytes = draw(st.sampled_from([b"\n", b"\n", b"\n", b"\r\n"]))
    return line + end


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cri_lines(), min_size=1, max_size=30), st.booleans())
def test_generated_blocks_read_alike(lines: list[bytes], cut_last: bool) -> None:
    block = b"".join(lines)
    if cut_last:
        block = block[:-1]
    assert_same(block)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cri_lines(), min_size=1, max_size=40), st.integers(40, 400))
def test_partial_runs_across_blocks_read_alike(lines: list[bytes], size: int) -> None:
    data = b"".join(lines)
    for rules in RULES[:3]:
        assert b"".join(read_all(data, size, parse_block, rules)) == b"".join(
            read_all(data, size, parse_lines, rules)
        )


def test_a_block_of_the_benchmark_layout_is_byte_identical() -> None:
    rng = np.random.default_rng(3)
    lines = [
        f"2026-01-02T03:04:{seq % 60:02d}.{int(rng.integers(10**9)):09d}Z "
        f"{'stdout' if seq % 7 else 'stderr'} {'P' if seq % 13 == 0 else 'F'} msg=request-{seq}".encode()
        for seq in range(3000)
    ]
    assert_same(b"\n".join(lines) + b"\n")


def test_runs_of_lines_of_one_minute_read_alike() -> None:
    # the date and time to the minute are read once per run of lines sharing them: runs of
    # several lengths, a line out of range or not CRI inside a run, the minute changing each line
    lines = []
    for seq in range(400):
        minute = seq // 25 if seq < 360 else seq % 60  # (runs under a quarter of the lines)
        lines.append(f"2023-06-01T12:{minute:02d}:{seq % 60:02d}.{seq:09d}Z stdout F line {seq}".encode())
    lines[40] = b"2023-13-01T12:01:00Z stdout F month 13 inside a run"
    lines[41] = b"2023-02-29T12:01:00Z stdout F not a leap year inside a run"
    lines[42] = b"plain text inside a run"
    lines[43] = b"2023-06-01T12:01:00+02:00 stderr F an offset inside a run"
    block = b"\n".join(lines) + b"\n"
    found = cri.lines(block, len(block), 1024)
    columns = cri.fields(block, found.starts, found.ends)
    assert columns.regular.tolist() == [n not in (40, 41, 42) for n in range(400)]
    assert_same(block)
