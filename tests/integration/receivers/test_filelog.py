"""An agent's `filelog` receiver tails files the test writes — CRI lines under a Kubernetes pod
log path and Docker json-file lines — through its WAL to a real bridge; the lake is read back.

- Rotation under load: the CRI file is renamed away and re-created, later copied and truncated
  (copytruncate, once the agent has read it: lines written after a copy are lost to any tailer),
  while lines keep coming; every line is in the lake once, with the pod's metadata.
- kill -9 of the agent in the middle of a file, and a restart on its checkpoint and WAL: every
  line is in the lake exactly once; and kill -9 twice while lines keep coming (the checkpoint's
  slots written in place at every block), each restart reading on from the slot it finds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fault.harness import wait_until

from integration.receivers.conftest import Processes, rows, wait_rows
from orasi_common.receivers.filelog import checkpoint

POD = "shop_cart-7d9f_0f1e2d3c-aaaa-bbbb"
PADDING = "x" * 120


def cri_line(run: str, seq: int, stream: str = "stdout") -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{seq % 1_000_000_000:09d}Z"
    return f"{stamp} {stream} F {run} {seq:06d} {PADDING}\n".encode()


def receiver_config(tmp: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "include": [f"{tmp}/var/log/pods/*/*/*.log", f"{tmp}/docker/*.log"],
        "start_at": "beginning",
        "checkpoint_directory": str(tmp / "checkpoints"),
        "poll_interval": 0.05,
        "force_flush_period": 0.3,
        "max_batch_bytes": 64 * 1024,
        **overrides,
    }


def committed(tmp: Path, path: Path) -> int:
    """The agent's committed offset of ``path``'s current inode (0 when it has none yet)."""
    try:
        entries, _ = checkpoint.read(tmp / "checkpoints" / "filelog.checkpoint")
    except FileNotFoundError:
        return 0
    stat = path.stat()
    entry = entries.get(f"{stat.st_dev}:{stat.st_ino}")
    return entry.offset if entry else 0


def agent_on_a_pod_log(processes: Processes, tmp: Path, max_batch_bytes: int) -> tuple[str, Path, Any, Any]:
    """(run, the pod log's path, a bridge, an agent tailing it in blocks of ``max_batch_bytes``)."""
    container = tmp / "var/log/pods" / POD / "cart"
    container.mkdir(parents=True)
    (tmp / "docker").mkdir()
    bridge = processes.bridge_with({}, ("logs",))
    config = receiver_config(tmp, max_batch_bytes=max_batch_bytes, max_line_bytes=4096)
    agent = processes.forwarder_with("agent", bridge, {"filelog": config}, ("logs",))
    return uuid.uuid4().hex[:10], container / "0.log", bridge, agent


def seqs_in_lake(bridge: Any, run: str, expected: int) -> Counter[str]:
    found = wait_rows(
        bridge,
        f"SELECT body FROM logs WHERE body LIKE '{run} %'",
        lambda got: len(got) >= expected,
        timeout=120,
    )
    time.sleep(1.0)  # a duplicate would arrive with or right after the last one
    found = rows(bridge, f"SELECT body FROM logs WHERE body LIKE '{run} %'")
    return Counter(row["body"].split(" ")[1] for row in found)


def test_rotation_under_load_every_line_once(processes: Processes, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:10]
    container = tmp_path / "var/log/pods" / POD / "cart"
    container.mkdir(parents=True)
    (tmp_path / "docker").mkdir()
    bridge = processes.bridge_with({}, ("logs",))
    agent = processes.forwarder_with("agent", bridge, {"filelog": receiver_config(tmp_path)}, ("logs",))
    log = container / "0.log"
    total = 6000

    def write() -> None:
        handle = log.open("ab")
        for seq in range(total):
            if seq == 2000:  # rotation by rename, as the kubelet does
                handle.close()
                log.rename(container / "0.log.20230601-120000")
                handle = log.open("ab")
            if seq == 4000:  # rotation by copy and truncate, once the agent read the file
                handle.flush()
                wait_until(
                    lambda: committed(tmp_path, log) == log.stat().st_size, 30, "the agent to catch up"
                )
                shutil.copy(log, container / "0.log.1")
                os.truncate(log, 0)
            handle.write(cri_line(run, seq, "stderr" if seq % 7 == 0 else "stdout"))
            if seq % 100 == 0:
                handle.flush()
                time.sleep(0.01)
        handle.close()

    writer = threading.Thread(target=write)
    writer.start()
    docker = tmp_path / "docker" / "abc123-json.log"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the lake is read over the last hours
    with docker.open("w") as handle:
        for seq in range(total, total + 500):
            if seq % 50 == 0:  # a line the runtime split in two
                handle.write(json.dumps({"log": f"{run} {seq:06d} ", "stream": "stdout", "time": now}) + "\n")
                handle.write(json.dumps({"log": "second half\n", "stream": "stdout", "time": now}) + "\n")
            else:
                handle.write(
                    json.dumps({"log": f"{run} {seq:06d} d\n", "stream": "stdout", "time": now}) + "\n"
                )
    writer.join(timeout=120)
    assert not writer.is_alive()

    counts = seqs_in_lake(bridge, run, total + 500)
    assert set(counts) == {f"{seq:06d}" for seq in range(total + 500)}
    assert [seq for seq, n in counts.items() if n != 1] == []

    columns = "body, time_unix_nano, attributes, resource_attributes"
    sample = rows(bridge, f"SELECT {columns} FROM logs WHERE body LIKE '{run} 000007 %'")[0]
    assert sample["attributes"]["log.iostream"] == "stderr"
    assert sample["attributes"]["log.file.path"] == str(log)
    assert sample["resource_attributes"] == {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "cart-7d9f",
        "k8s.pod.uid": "0f1e2d3c-aaaa-bbbb",
        "k8s.container.name": "cart",
        "k8s.container.restart_count": "0",
    }
    assert sample["time_unix_nano"] % 1_000_000_000 == 7  # the runtime's time, to the nanosecond
    joined = rows(bridge, f"SELECT body, attributes FROM logs WHERE body LIKE '{run} {total + 50:06d} %'")[0]
    assert (
        joined["body"] == f"{run} {total + 50:06d} second half\n"
    )  # Docker's newline, as the Collector keeps it
    assert agent.metric("orasi_receiver_refused_items_total", receiver="filelog") == 0


def test_kill9_mid_file_and_restart_every_line_exactly_once(processes: Processes, tmp_path: Path) -> None:
    run, log, bridge, agent = agent_on_a_pod_log(processes, tmp_path, 16 * 1024)
    total = 20_000
    with log.open("ab") as handle:
        for seq in range(total // 2):
            handle.write(cri_line(run, seq))
    accepted = "orasi_receiver_accepted_items_total"
    wait_until(
        lambda: agent.metric(accepted, receiver="filelog") >= 1000, 60, "the agent to read part of the file"
    )
    agent.kill9()
    assert committed(tmp_path, log) < log.stat().st_size  # killed in the middle of the file
    with log.open("ab") as handle:
        for seq in range(total // 2, total):
            handle.write(cri_line(run, seq))
    agent.start()

    counts = seqs_in_lake(bridge, run, total)
    assert set(counts) == {f"{seq:06d}" for seq in range(total)}
    assert [seq for seq, n in counts.items() if n != 1] == []


def test_kill9_twice_under_load_every_line_exactly_once(processes: Processes, tmp_path: Path) -> None:
    run, log, bridge, agent = agent_on_a_pod_log(processes, tmp_path, 8 * 1024)
    total = 24_000
    stop = threading.Event()

    def write() -> None:
        with log.open("ab") as handle:
            for seq in range(total):
                handle.write(cri_line(run, seq, "stderr" if seq % 5 == 0 else "stdout"))
                if seq % 50 == 0:
                    handle.flush()
                    if stop.wait(0.04):  # about 1,200 lines/s, for some 20 s
                        return
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        accepted = "orasi_receiver_accepted_items_total"
        for kill in range(2):  # while the writer writes and the agent reads, block after block
            wait_until(lambda: agent.metric(accepted, receiver="filelog") >= 3000, 60, "the agent to read on")
            assert not stop.is_set(), "the writer finished before the kill: write more slowly"
            agent.send_signal(signal.SIGSTOP)  # frozen wherever it is, as the kill below finds it
            at_kill = committed(tmp_path, log)  # the slot file reads (a valid slot)
            # killed in the middle of the file: the writer writes on past what the frozen agent
            # committed (killed at once, an agent that had caught up with a writer slowed by the
            # load could be killed at the file's end)
            wait_until(lambda end=at_kill: log.stat().st_size > end, 30, "lines the frozen agent missed")
            agent.kill9()
            assert 0 < committed(tmp_path, log) == at_kill, kill
            agent.start()
    except BaseException:
        stop.set()
        raise
    finally:
        writer.join(timeout=120)
    assert not writer.is_alive()

    counts = seqs_in_lake(bridge, run, total)
    assert set(counts) == {f"{seq:06d}" for seq in range(total)}
    assert [seq for seq, n in counts.items() if n != 1] == []
