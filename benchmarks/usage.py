"""CPU and memory of processes by PID, sampled while a benchmark runs (psutil and /proc).

* ``sample(pids, start, end, rss_of)`` — CPU (% of one core) of each process over a window, its
  busiest second, the event-loop thread's share and RSS; how busy the whole machine was.
* ``cpu_seconds(pid, children=True)`` — CPU seconds of a process (and its children, by pid).
* ``memory(pid)`` — RSS and its anonymous and file-backed parts (``/proc/PID/smaps_rollup``,
  which psutil does not split), and threads.
* ``pressure(resource)`` — the machine's CPU or IO stall share (Linux PSI).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psutil

MIB = 1024 * 1024


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every core, every process, the kernel)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def main_thread_cpu(process: psutil.Process) -> float:
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def sample(
    pids: dict[str, int], start: float, end: float, rss_of: set[str], every: float = 1.0
) -> dict[str, Any]:
    """CPU (% of one core) and, for ``rss_of``, RSS of each process between ``start`` and ``end``.

    For processes in ``rss_of`` the share of their main thread (the event loop) is given too, and
    ``machine`` says how busy the whole machine was (up to 100 per core) and how much of that the
    watched processes do not explain (other load on a shared machine, kernel networking).
    """
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    if (delay := start - time.monotonic()) > 0:
        time.sleep(delay)
    first = {name: cpu(p) for name, p in processes.items()}
    first_main = {name: main_thread_cpu(processes[name]) for name in rss_of}
    first_machine = machine_busy()
    began = previous_at = time.monotonic()
    previous = dict(first)
    per_second: dict[str, list[float]] = {name: [] for name in processes}
    rss: dict[str, list[int]] = {name: [processes[name].memory_info().rss] for name in rss_of}
    while (now := time.monotonic()) < end:
        time.sleep(min(every, end - now))
        at = time.monotonic()
        for name, process in processes.items():
            used = cpu(process)
            if at - previous_at > 0.2:
                per_second[name].append(100 * (used - previous[name]) / (at - previous_at))
            previous[name] = used
            if name in rss:
                rss[name].append(process.memory_info().rss)
        previous_at = at
    machine = machine_busy() - first_machine
    last_main = {name: main_thread_cpu(processes[name]) for name in rss_of}
    elapsed = max(1e-9, previous_at - began)
    out: dict[str, Any] = {}
    for name in processes:
        entry: dict[str, Any] = {
            "cpu_pct_avg": round(100 * (previous[name] - first[name]) / elapsed, 1),
            "cpu_pct_max_1s": round(max(per_second[name]), 1) if per_second[name] else None,
        }
        if name in rss:
            entry["main_thread_cpu_pct_avg"] = round(100 * (last_main[name] - first_main[name]) / elapsed, 1)
            entry["rss_mib_avg"] = round(statistics.fmean(rss[name]) / MIB, 1)
            entry["rss_mib_max"] = round(max(rss[name]) / MIB, 1)
        out[name] = entry
    watched = sum(previous[name] - first[name] for name in processes)
    out["machine"] = {
        "cpus": psutil.cpu_count(),
        "busy_cpu_pct": round(100 * machine / elapsed, 1),
        "unexplained_cpu_pct": round(100 * (machine - watched) / elapsed, 1),
    }
    return out


def cpu_seconds(pid: int, children: bool = False) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and, with ``children``, of each child, by pid."""
    process = psutil.Process(pid)
    every = (process, *process.children(recursive=True)) if children else (process,)
    return {each.pid: float(sum(each.cpu_times()[:2])) for each in every}


def memory(pid: int) -> dict[str, float]:
    """RSS, its anonymous and file-backed parts (MiB), and threads, of process ``pid``."""
    fields: dict[str, int] = {}
    for path in (f"/proc/{pid}/smaps_rollup", f"/proc/{pid}/status"):
        with open(path) as file:
            for line in file:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields.setdefault(name, int(parts[0]))
    rss, anon = fields["Rss"] / 1024, fields["Anonymous"] / 1024
    return {"rss": rss, "anon": anon, "file": rss - anon, "threads": fields["Threads"]}


def pressure(resource: str) -> float | None:
    """The machine's stall share for ``resource`` (cpu, io) over the last 10 s, % (Linux PSI)."""
    try:
        with open(f"/proc/pressure/{resource}") as file:
            return float(file.readline().split()[1].partition("=")[2])  # some avg10=…
    except (OSError, IndexError, ValueError):
        return None


__all__ = ["cpu_seconds", "machine_busy", "memory", "pressure", "sample"]
