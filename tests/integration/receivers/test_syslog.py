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
