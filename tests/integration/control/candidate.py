"""One election candidate, run as a subprocess by test_election.py.

    python candidate.py ETCD_URL REGION ROLE NAME TTL EVENTS_FILE

Campaigns, and appends ``<lead|follow> NAME <CLOCK_MONOTONIC seconds>`` to EVENTS_FILE at each
change (the clock is the machine's, so the test can compare it with its own); on SIGTERM it
resigns and exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from orasi_common.control.election import Election


async def main(url: str, region: str, role: str, name: str, ttl: int, events: str) -> None:
    def record(leader: bool) -> None:
        with open(events, "a") as out:  # one line per change, flushed at once
            out.write(f"{'lead' if leader else 'follow'} {name} {time.monotonic():.6f}\n")

    election = Election([url], region, role, name, ttl=ttl, on_change=record)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await election.campaign()
    await stop.wait()
    await election.shutdown()


if __name__ == "__main__":
    url, region, role, name, ttl, events = sys.argv[1:]
    asyncio.run(main(url, region, role, name, int(ttl), events))
