"""A component's own TaskGroup, kept open between start() and shutdown()."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class TaskScope:
    """Owns a component's background tasks: nothing it spawns outlives ``close()``.

    Tasks should handle their own expected errors; an unexpected one cancels the siblings (as a
    TaskGroup does) and is re-raised from ``close()``.
    """

    def __init__(self) -> None:
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with asyncio.TaskGroup() as group:
                self._group = group
                ready.set()
                await self._stop.wait()

        self._stop.clear()
        self._runner = asyncio.create_task(run())
        await ready.wait()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        if self._group is None or self._stop.is_set():
            coro.close()
            raise RuntimeError("the component is not started")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, cancel: bool = False) -> None:
        """Wait for every spawned task to finish, cancelling them first if ``cancel``.

        If the wait itself is cancelled (e.g. by a deadline), the tasks keep running and a
        later ``close(cancel=True)`` ends them.
        """
        if self._runner is None:
            return
        if cancel:
            for task in list(self._tasks):
                task.cancel()
        self._stop.set()
        await asyncio.shield(self._runner)
        self._runner = self._group = None
