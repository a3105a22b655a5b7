"""util-linux's `logger` (a real syslog sender) sends RFC 5424 and RFC 3164 messages over TCP
(octet counting and newline framing) and UDP to an agent's `syslog` receiver; the agent forwards
them to a bridge, and every message lands in the lake once, with its severity, facility,
structured data and times.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from integration.receivers.conftest import Processes, free_port, wait_rows
from orasi_common.testing.service_process import stop_process

SQL = (
    "SELECT body, severity_number, severity_text, time_unix_nano, observed_time_unix_nano, attributes "
    "FROM logs WHERE body LIKE '%{run}%'"
)


def logger(*args: str) -> None:
    binary = shutil.which("logger")
    assert binary, "util-linux's logger is not installed (apt-get install -y bsdutils)"
    subprocess.run([binary, *args], check=True, timeout=30)


def test_logger_over_tcp_and_udp_lands_in_the_lake(processes: Processes, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:12]
    bridge = processes.bridge_with({}, ("logs",))
    tcp, udp = free_port(), free_port()
    receiver = {
        "tcp": {"endpoint": f"127.0.0.1:{tcp}"},
        "udp": {"endpoint": f"127.0.0.1:{udp}"},
        "flush_interval": 0.1,
    }
    agent = processes.forwarder_with("agent", bridge, {"syslog": receiver}, ("logs",))
    server = ["--server", "127.0.0.1"]
    before = time.time_ns()
    logger(
        *server, "--tcp", "--port", str(tcp), "--rfc5424", "--octet-count", "-t", "billing",
        "-p", "local3.warning", "--sd-id", "order@32473", "--sd-param", 'id="7"', f"octet {run}",
    )  # fmt: skip
    logger(*server, "--tcp", "--port", str(tcp), "--rfc3164", "-t", "web", "-p", "user.err", f"newline {run}")
    logger(*server, "--udp", "--port", str(udp), "--rfc5424", "-t", "cron", "-p", "daemon.info", f"udp {run}")
    bulk = tmp_path / "bulk.txt"
    bulk.write_text("".join(f"bulk {run} {i}\n" for i in range(2000)))
    logger(*server, "--tcp", "--port", str(tcp), "--rfc5424", "--octet-count", "-t", "batch", "-f", str(bulk))
    after = time.time_ns()

    rows = wait_rows(bridge, SQL.format(run=run), lambda found: len(found) >= 2003, timeout=90)
    assert len(rows) == 2003  # each once
    by_body: dict[str, dict[str, Any]] = {row["body"]: row for row in rows}
    assert {body for body in by_body if body.startswith("bulk")} == {f"bulk {run} {i}" for i in range(2000)}

    octet = by_body[f"octet {run}"]
    assert (octet["severity_number"], octet["severity_text"]) == (13, "warning")
    attributes = octet["attributes"]
    assert (attributes["facility"], attributes["priority"], attributes["version"]) == ("19", "156", "1")
    assert attributes["appname"] == "billing"
    assert attributes["structured_data.order@32473.id"] == "7"
    assert before - 10**9 <= octet["time_unix_nano"] <= after + 10**9  # logger's own timestamp

    newline = by_body[f"newline {run}"]
    assert (newline["severity_number"], newline["severity_text"]) == (17, "err")
    assert (newline["attributes"]["facility"], newline["attributes"]["appname"]) == ("1", "web")
    assert "version" not in newline["attributes"]
    # RFC 3164 carries whole seconds (and no zone: UTC here)
    assert before - 2 * 10**9 <= newline["time_unix_nano"] <= after + 10**9

    udp_row = by_body[f"udp {run}"]
    assert (udp_row["severity_number"], udp_row["attributes"]["facility"]) == (9, "3")
    assert agent.metric("orasi_receiver_accepted_items_total", receiver="syslog", transport="udp") == 1
    assert agent.metric("orasi_receiver_accepted_items_total", receiver="syslog", transport="tcp") == 2002
    assert agent.metric("orasi_receiver_malformed_messages_total", receiver="syslog") == 0


def test_rsyslog_forwards_a_file_over_tcp_and_udp_through_a_gateway(
    processes: Processes, tmp_path: Path
) -> None:
    """Debian's rsyslog, run as a process of this test with a configuration of its own, reads a
    file (imfile) and forwards every line twice: RFC 5424 over TCP with octet counting, and
    RFC 3164 over UDP, to a gateway's `syslog` receiver; each line lands once per transport."""
    binary = shutil.which("rsyslogd")
    assert binary, "Debian's rsyslog is not installed (apt-get install -y rsyslog)"
    run = uuid.uuid4().hex[:12]
    bridge = processes.bridge_with({}, ("logs",))
    tcp, udp = free_port(), free_port()
    receiver = {"tcp": {"endpoint": f"127.0.0.1:{tcp}"}, "udp": {"endpoint": f"127.0.0.1:{udp}"}}
    processes.forwarder_with("gateway", bridge, {"syslog": receiver}, ("logs",))
    source = tmp_path / "app.log"
    source.write_text("".join(f"rsyslog {run} {i}\n" for i in range(200)))
    config = tmp_path / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{tmp_path}")\n'
        'module(load="imfile")\n'
        f'input(type="imfile" File="{source}" Tag="shop" Severity="warning" Facility="local2")\n'
        f'*.* action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" '
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")\n'
        f'*.* action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" '
        'template="RSYSLOG_TraditionalForwardFormat")\n'
    )
    with (tmp_path / "rsyslog.log").open("wb") as log:
        rsyslog = subprocess.Popen(
            [binary, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslog.pid")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        rows = wait_rows(bridge, SQL.format(run=run), lambda found: len(found) >= 400, timeout=90)
    finally:
        stop_process(rsyslog, 15)
    assert len(rows) == 400
    for version in ("1", None):  # RFC 5424 over TCP, RFC 3164 over UDP
        same = [row for row in rows if row["attributes"].get("version") == version]
        assert sorted(row["body"] for row in same) == sorted(f"rsyslog {run} {i}" for i in range(200))
        for row in same:
            assert (row["severity_number"], row["severity_text"]) == (13, "warning")
            assert (row["attributes"]["facility"], row["attributes"]["appname"]) == ("18", "shop")
