"""The filelog parser: CRI and Docker lines, partial and multiline joining, severity, what stays
for the next block, and the Kubernetes metadata of a pod log's path (expected records written
by hand from the formats). Every request it writes passes ``check_request`` (the receiver does
not validate its own encoder's bytes again), also from lines that once broke that: lone
surrogates in JSON, times past 2262."""

from __future__ import annotations

import json
import re
from typing import Any

from opentelemetry.proto.logs.v1 import logs_pb2

from orasi_common.pdata import Signal
from orasi_common.pdata.validate import check_request
from orasi_common.receivers.filelog.parse import Encoder, Rules, detect, parse_block, parse_lines, rfc3339_ns
from orasi_common.receivers.filelog.receiver import kubernetes_attributes
from orasi_common.receivers.wire import field, key_values

T = 1_685_620_800_000_000_000  # 2023-06-01T12:00:00Z


def records(
    block: bytes, fmt: str, final: bool = False, tail: bool = False, **rules: Any
) -> tuple[list[Any], int]:
    encoder = Encoder(Rules(**rules), b"", 7)
    parsed = parse_block(block, fmt, Rules(format=fmt, **rules), encoder, final, tail)
    assert check_request(Signal.LOGS, field(1, field(2, parsed.data))) == parsed.count
    scope = logs_pb2.ScopeLogs.FromString(parsed.data)
    return list(scope.log_records), parsed.end


def summary(record: Any) -> tuple[str, int, dict[str, str]]:
    return (
        record.body.string_value,
        record.time_unix_nano,
        {kv.key: kv.value.string_value for kv in record.attributes},
    )


def test_rfc3339_times() -> None:
    assert rfc3339_ns(b"2023-06-01T12:00:00Z") == T
    assert rfc3339_ns(b"2023-06-01T12:00:00.123456789Z") == T + 123_456_789
    assert rfc3339_ns(b"2023-06-01T12:00:00.5Z") == T + 500_000_000
    assert rfc3339_ns(b"2023-06-01T14:00:00.25+02:00") == T + 250_000_000
    assert rfc3339_ns(b"yesterday") == 0


def test_cri_lines_and_partial_joining() -> None:
    block = (
        b"2023-06-01T12:00:00.000000001Z stdout F first line\n"
        b"2023-06-01T12:00:00.1Z stderr P part one, \n"
        b"2023-06-01T12:00:00.2Z stdout F interleaved\n"
        b"2023-06-01T12:00:00.3Z stderr F part two\n"
        b"2023-06-01T12:00:00.4Z stdout P open at the end\n"
    )
    found, end = records(block, "cri")
    assert [summary(r) for r in found] == [
        ("first line", T + 1, {"log.iostream": "stdout"}),
        ("interleaved", T + 200_000_000, {"log.iostream": "stdout"}),  # records in completion order
        # as the Collector does: a line's trailing space dropped, the first part's time
        ("part one,part two", T + 100_000_000, {"log.iostream": "stderr"}),
    ]
    assert found[0].observed_time_unix_nano == 7
    # the open part stays for the next block: the offset stops before it
    assert end == block.index(b"2023-06-01T12:00:00.4Z")
    final, final_end = records(block, "cri", final=True)
    assert final[-1].body.string_value == "open at the end"
    assert final_end == len(block)


def test_docker_json_with_partials() -> None:
    lines = [
        {"log": "hello\n", "stream": "stdout", "time": "2023-06-01T12:00:00.5Z"},
        {"log": "a long ", "stream": "stderr", "time": "2023-06-01T12:00:01Z"},
        {"log": "line\n", "stream": "stderr", "time": "2023-06-01T12:00:01.1Z"},
    ]
    block = b"".join(json.dumps(line).encode() + b"\n" for line in lines) + b'{"log": "unfinished'
    found, end = records(block, "docker")
    assert [summary(r) for r in found] == [
        ("hello\n", T + 500_000_000, {"log.iostream": "stdout"}),  # the Collector keeps the newline
        ("a long line\n", T + 1_000_000_000, {"log.iostream": "stderr"}),  # the first part's time
    ]
    assert end == block.rindex(b"\n") + 1  # the line without its newline waits
    _, idle_end = records(block, "docker", final=True)
    assert idle_end == end  # even when the file is idle: a writer may be in the middle of it
    closed, closed_end = records(block, "docker", final=True, tail=True)
    assert (closed[-1].body.string_value, closed_end) == ('{"log": "unfinished', len(block))


def test_multiline_by_start_pattern() -> None:
    block = b"2024 ERROR boom\n  at a()\n  at b()\n2024 INFO next\n  more\n"
    rules = {"line_start": re.compile(r"\d{4} ")}
    found, end = records(block, "none", **rules)
    assert [r.body.string_value for r in found] == ["2024 ERROR boom\n  at a()\n  at b()"]
    assert end == block.index(b"2024 INFO")  # the last record may go on
    final, _ = records(block, "none", final=True, **rules)
    assert final[-1].body.string_value == "2024 INFO next\n  more"


def test_severity_from_a_regex_or_a_json_field() -> None:
    regex = re.compile(r"level=(?P<severity>\w+)")
    found, _ = records(b"ts level=warning disk\nts level=bogus x\nplain\n", "none", severity_regex=regex)
    assert [(r.severity_number, r.severity_text) for r in found] == [(13, "warning"), (0, "bogus"), (0, "")]
    found, _ = records(b'{"level": "ERROR", "msg": "x"}\n', "none", severity_field="level")
    assert (found[0].severity_number, found[0].severity_text) == (17, "ERROR")


def test_what_a_request_cannot_hold_is_written_as_it_can() -> None:
    # each of these once made a block that check_request refused or that failed to encode: the
    # block failed again at every scan and its file stopped being read
    found, _ = records(b"2300-01-01T00:00:00Z stdout F past 2262\n", "cri")
    assert (found[0].body.string_value, found[0].time_unix_nano) == ("past 2262", 0)
    assert rfc3339_ns(b"2262-04-11T23:47:16.854775807Z") == 2**63 - 1
    assert rfc3339_ns(b"2262-04-11T23:47:16.854775808Z") == 0
    docker = b'{"log": "a\\ud800b\\n", "stream": "std\\udfffout", "time": "2023-06-01T12:00:00\\ud800Z"}\n'
    found, _ = records(docker, "docker")
    assert [summary(r) for r in found] == [("a\ufffdb\n", 0, {"log.iostream": "std\ufffdout"})]
    found, _ = records(b'{"level": "\\udc00err"}\n', "none", severity_field="level")
    assert (found[0].severity_number, found[0].severity_text) == (0, "\ufffderr")
    rules = Rules(format="cri")
    for parse in (parse_block, parse_lines):  # the per-line reading too
        parsed = parse(
            b"2400-01-01T00:00:00.5+01:00 stdout F x\n", "cri", rules, Encoder(rules, b"", 7), False
        )
        assert check_request(Signal.LOGS, field(1, field(2, parsed.data))) == parsed.count == 1


def test_long_lines_are_cut_and_bad_utf8_replaced() -> None:
    found, _ = records(b"x" * 600 + b"\n\xff\xfeok\n", "none", max_line_bytes=256)
    assert len(found[0].body.string_value) == 256
    assert found[1].body.string_value == "\ufffd\ufffdok"


def test_detect_and_kubernetes_metadata() -> None:
    assert detect(b"2023-06-01T12:00:00.1Z stdout F x") == "cri"
    assert detect(b'{"log":"x\\n"}') == "docker"
    assert detect(b"plain text") == "none"
    path = "/var/log/pods/shop_cart-7d9f_0f1e2d3c-aaaa-bbbb/cart/3.log"
    assert dict(kubernetes_attributes(path)) == {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "cart-7d9f",
        "k8s.pod.uid": "0f1e2d3c-aaaa-bbbb",
        "k8s.container.name": "cart",
        "k8s.container.restart_count": "3",
    }
    assert kubernetes_attributes("/var/log/syslog") == []
    assert key_values([], 1) == b""
