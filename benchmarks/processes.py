"""Every process a benchmark starts, and how it is stopped: by its PID, in ``finally`` blocks.

* ``orasi`` services and ``orasi up`` run as ``orasi_common.testing.service_process.ServiceProcess``
  (the one runner: config file, one log per process, ``/readyz`` readiness); ``orasi_up`` picks
  free ports and tries new ones when another process took one meanwhile.
* Python children that are part of a measurement (load generators, sinks) are ``spawn``-ed
  multiprocessing processes that die with their parent (Linux ``PR_SET_PDEATHSIG``).
* Any other program (``py-spy``, a Collector) goes through ``Processes.popen``.

``Processes`` records them all; ``stop(process)`` stops one (SIGTERM, SIGKILL after a grace
period) and ``stop_all()`` the rest in reverse order. ``watchdog(seconds)`` bounds a run:
past its time, or on SIGTERM, it raises ``Stopped`` wherever the run is, so that the ``finally``
that stops those processes runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from orasi_common.testing.service_process import ServiceProcess, free_port, start_on_free_ports
from orasi_common.testing.up_process import UpProcess

HOST = "127.0.0.1"
Started = ServiceProcess | subprocess.Popen[bytes] | multiprocessing.process.BaseProcess


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Processes:
    """What this run started, stopped by PID (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.mp = multiprocessing.get_context("spawn")
        self._started: list[Started] = []

    def add(self, process: Started) -> Started:
        self._started.append(process)
        return process

    # --- starting ---------------------------------------------------------------------------

    def service(
        self, service: str, config: Mapping[str, Any], label: str, env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """``orasi <service> --config FILE``, ready (its /readyz answers 200)."""
        process = ServiceProcess.from_config(service, config, self.workdir, label=label, env=env)
        self.add(process)
        process.start()
        return process

    def orasi_up(
        self, data_dir: Path, env: Mapping[str, str] | None = None, attempts: int = 3
    ) -> tuple[ServiceProcess, dict[str, int]]:
        """``orasi up`` on free ports, ready (agent and bridge); a port taken by another process
        between choosing and binding it means new ports, up to ``attempts`` times."""

        def make() -> UpProcess:
            up = UpProcess.on_free_ports(self.workdir, data_dir, ["--host", HOST])
            up.label, up.env = "orasi-up", dict(env or {})
            self.add(up)
            return up

        up = start_on_free_ports(make, attempts, ready_timeout=90)
        wait_http(f"http://{HOST}:{up.ports['bridge.admin']}/readyz", up, 90)
        return up, up.ports

    def spawn(
        self, target: Callable[..., None], *args: Any, name: str
    ) -> multiprocessing.process.BaseProcess:
        """A ``spawn``-ed Python child running ``target(*args)`` (it should call die_with_parent)."""
        process = self.mp.Process(target=target, args=args, name=name, daemon=True)
        process.start()
        self.add(process)
        return process

    def popen(
        self, argv: list[str], log_name: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Any other program, its output in ``workdir/log_name``."""
        with (self.workdir / log_name).open("wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                preexec_fn=die_with_parent,  # the benchmarks run no threads of their own here
            )
        self.add(process)
        return process

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, process: Started, grace: float = 20.0) -> None:
        with contextlib.suppress(ValueError):
            self._started.remove(process)
        if isinstance(process, ServiceProcess):
            process.stop(grace)
            return
        pid = process.pid
        if pid is None:
            return
        if isinstance(process, subprocess.Popen):
            if process.poll() is None:
                _signal(pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal(pid, signal.SIGKILL)
                    process.wait(5)
            return
        if process.is_alive():
            _signal(pid, signal.SIGTERM)
            process.join(grace)
            if process.is_alive():
                _signal(pid, signal.SIGKILL)
                process.join(5)

    def stop_all(self) -> None:
        for process in reversed(list(self._started)):
            with contextlib.suppress(Exception):
                self.stop(process, grace=10.0)


class Stopped(Exception):
    """What ``watchdog`` raises: the run went past its time (SIGALRM) or was sent SIGTERM."""

    def __init__(self, reason: str, signum: signal.Signals) -> None:
        super().__init__(reason)
        self.signal = signum


@contextlib.contextmanager
def watchdog(seconds: float, overrun: str | None = None) -> Iterator[None]:
    """Bound the block to ``seconds`` (whole, at least 1): past them, and on SIGTERM, raise
    ``Stopped`` (``overrun``, by default "the run took longer than N s"; or "stopped by SIGTERM")
    in the main thread, wherever it is.

    Leaving the block cancels the alarm and puts the previous handlers back: put the cleanup
    (``Processes.stop_all`` in a ``finally``) outside the block, so that the alarm cannot
    interrupt it.
    """
    limit = max(1, int(seconds))
    late = overrun or f"the run took longer than {limit} s"

    def on_signal(signum: int, _frame: Any) -> None:
        received = signal.Signals(signum)
        reason = late if received is signal.SIGALRM else f"stopped by {received.name}"
        raise Stopped(reason, received)

    previous = {received: signal.signal(received, on_signal) for received in (signal.SIGALRM, signal.SIGTERM)}
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        for received, handler in previous.items():
            signal.signal(received, handler)


def pid_of(process: multiprocessing.process.BaseProcess) -> int:
    assert process.pid is not None, f"{process.name} was never started"
    return process.pid


def wait_http(url: str, process: ServiceProcess, timeout: float) -> None:
    """Poll ``url`` until it answers 200; RuntimeError when ``process`` exits first or past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.label} exited with {process.returncode}:\n{log_tail(process)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s:\n{log_tail(process)}")


def log_tail(process: ServiceProcess, lines: int = 30) -> str:
    return "\n".join(process.log_text().splitlines()[-lines:])


def receive(conn: multiprocessing.connection.Connection, process: Any, timeout: float) -> dict[str, Any]:
    """The next message a child sends; RuntimeError when it exits first, sends an error, or is silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            try:
                message: dict[str, Any] = dict(conn.recv())
            except EOFError:
                raise RuntimeError(f"{process.name} exited with {process.exitcode}") from None
            if "error" in message:
                raise RuntimeError(f"{process.name}: {message['error']}")
            return message
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
    raise RuntimeError(f"{process.name} did not answer within {timeout:g} s")


def report_errors(conn: multiprocessing.connection.Connection, work: Callable[[], dict[str, Any]]) -> None:
    """Run a child's ``work`` and send its result; on failure send the error, so that the parent
    does not wait for nothing."""
    try:
        result = work()
    except BaseException as error:
        conn.send({"error": f"{type(error).__name__}: {error}"})
        raise
    conn.send(result)


__all__ = [
    "HOST",
    "Processes",
    "Stopped",
    "die_with_parent",
    "free_port",
    "log_tail",
    "pid_of",
    "receive",
    "report_errors",
    "wait_http",
    "watchdog",
]
