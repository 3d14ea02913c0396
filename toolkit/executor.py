"""Executors run a stage's independent units (rollouts, analyses, merges of one level).

The interface is one coroutine, :meth:`Executor.map`: apply an async function to every item
with bounded concurrency, hand each result to ``on_result`` as soon as it is ready (so a stage
can persist it at once and a killed run loses only the units in flight) and return all results
in input order. :class:`LocalExecutor` does it with asyncio in this process; a Ray executor can
implement the same method by submitting each unit as a remote task.

Example::

    async def square(x: int) -> int:
        return x * x

    results = await LocalExecutor().map(square, [1, 2, 3], concurrency=2)
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from toolkit.errors import ToolkitError

T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs independent units of a stage."""

    name: str = ""

    @abstractmethod
    async def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Sequence[T],
        *,
        concurrency: int,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """Run ``fn`` on every item, at most ``concurrency`` at once.

        Args:
            fn: the unit of work (an async function of one item).
            items: the units' inputs.
            concurrency: most units in flight at once (>= 1).
            on_result: called with ``(index, result)`` as each unit finishes, in completion
                order; an exception it raises stops the map like a failing unit.

        Returns:
            The results, in the order of ``items``.

        Raises:
            The first exception of a unit (or of ``on_result``); units still in flight are
            cancelled and no further units start.
        """


class LocalExecutor(Executor):
    """asyncio in this process: a fixed set of worker tasks pulling from the item list."""

    name = "local"

    async def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Sequence[T],
        *,
        concurrency: int,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """See :meth:`Executor.map`."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        results: list[Any] = [None] * len(items)
        # Workers pull indexes from one iterator: no task per item up front (scales to large
        # stages) and the next unit starts the moment a slot frees up.
        pending = iter(range(len(items)))

        async def worker() -> None:
            for index in pending:
                result = await fn(items[index])
                results[index] = result
                if on_result is not None:
                    on_result(index, result)

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return results


def get_executor(name: str = "local") -> Executor:
    """The executor called ``name`` (only ``local`` for now).

    Raises:
        ToolkitError: an unknown executor name.
    """
    if name == "local":
        return LocalExecutor()
    raise ToolkitError(f"unknown executor {name!r}; available: local")
