"""Elections between real processes on a real etcd: a killed (-9) leader is replaced within the
lease TTL + 2 s, a resigning one at once, and there are never two leaders at the same time
(leadership intervals recorded by the candidates themselves, on the machine's monotonic clock)."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from pathlib import Path

from orasi_common.control.election import leader_key
from orasi_common.testing.service_process import stop_process

TTL = 2
CANDIDATE = Path(__file__).with_name("candidate.py")
Candidates = dict[str, subprocess.Popen[bytes]]


def _events(path: Path) -> list[tuple[str, str, float]]:
    if not path.exists():
        return []
    lines = (line.split() for line in path.read_text().splitlines())
    return [(kind, name, float(at)) for kind, name, at in lines]


def _leader_since(path: Path, after: float, timeout: float) -> tuple[str, float]:
    """The first candidate to lead after ``after`` (monotonic), waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leads = [(name, at) for kind, name, at in _events(path) if kind == "lead" and at > after]
        if leads:
            return leads[0]
        time.sleep(0.05)
    raise AssertionError(f"no candidate led within {timeout} s: {_events(path)}")


def test_kill9_leader_is_replaced_within_ttl_plus_2s_and_never_two_leaders(
    etcd_url: str, region: str, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    killed: dict[str, float] = {}  # when a leader was killed: the end of its interval
    with contextlib.ExitStack() as stack:
        log = stack.enter_context((tmp_path / "candidates.log").open("wb"))
        candidates: Candidates = {}
        for name in ("a", "b", "c"):
            argv = [sys.executable, str(CANDIDATE), etcd_url, region, "jobs", name, str(TTL), str(events)]
            candidates[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop_process, candidates[name], 10)
        leaders = _elect(candidates, events, killed)
        for name, process in candidates.items():
            code = stop_process(process, 10)
            assert code == (-9 if name in killed else 0), (tmp_path / "candidates.log").read_text()

    # Leadership intervals: from each lead to the same candidate's next follow (or its kill).
    intervals = []
    for kind, name, at in _events(events):
        if kind == "lead":
            ends = [t for k, n, t in _events(events) if k == "follow" and n == name and t > at]
            intervals.append((at, min([*ends, killed.get(name, float("inf"))]), name))
    intervals.sort()
    assert [name for _, _, name in intervals] == leaders
    for (_, end, name), (start, _, other) in itertools.pairwise(intervals):
        assert end <= start, f"{name} led until {end}, {other} from {start}"


def _elect(candidates: Candidates, events: Path, killed: dict[str, float]) -> list[str]:
    """Kill the first leader (-9), stop the second (SIGTERM): the leaders in their order."""
    first, _ = _leader_since(events, 0, 20)
    time.sleep(TTL)  # the leader keeps its lease past the TTL, and nobody else leads
    assert [name for kind, name, _ in _events(events)] == [first]

    candidates[first].kill()  # SIGKILL: no resignation, the lease has to expire
    killed[first] = at_kill = time.monotonic()
    candidates[first].wait(5)
    second, at = _leader_since(events, at_kill, TTL + 2)
    assert second != first and at - at_kill <= TTL + 2

    resigned = time.monotonic()
    assert stop_process(candidates[second], 10) == 0  # SIGTERM: resigns, the key goes at once
    third, at = _leader_since(events, resigned, 2)
    assert third not in (first, second) and at - resigned < 2
    return [first, second, third]


def test_leader_key_is_one_per_region_and_role() -> None:
    assert leader_key("us-east-1", "compaction") == "/orasi/us-east-1/leader/compaction"
