"""Background tasks the service starts and must cancel at stop (REST look-ups, shared-store calls).

One job: keep a strong reference to each task until it is done (asyncio keeps only weak ones) and
cancel them all at stop. No decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any

__all__ = ["TaskSet", "cancel_and_wait"]


class TaskSet:
    """Fire-and-forget tasks, held until done and cancelled together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def named(self, name: str) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if t.get_name() == name]

    async def cancel_all(self) -> None:
        await cancel_and_wait(list(self._tasks))


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task, then wait for each to end (whatever it ends with: this is a stop)."""
    held = [t for t in tasks if t is not None]
    for task in held:
        task.cancel()
    for task in held:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
