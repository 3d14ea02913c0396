"""The synchronous API's way into asyncio: one event loop per call, and a clear error where
one is already running.

``run_rollouts``, ``run_analyses``, ``run_consolidation`` (and ``evaluate``, ``evolve``,
``ablate`` above them) run their own event loop. Called from a running one (a Jupyter cell,
an async web handler), ``asyncio.run`` raises a bare ``RuntimeError`` and Python warns about
the coroutine it never ran; :func:`run_sync` says what to do instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from toolkit.errors import ToolkitError

T = TypeVar("T")


class RunningLoopError(ToolkitError):
    """A synchronous call was made from inside a running event loop."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a new event loop and return its result.

    Raises:
        RunningLoopError: an event loop is already running in this thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()  # never to be awaited: closed, so Python does not warn about it
    raise RunningLoopError(
        "this call runs its own event loop, and one is already running here (a notebook "
        "cell?): await the async variant where there is one (arun_rollouts, arun_analyses, "
        "arun_consolidation), or run the call in a thread: "
        "await asyncio.to_thread(evaluate, ...)"
    )
