"""The synchronous API's way into asyncio: one event loop per call, a clear error where one is
already running, and a stop (Ctrl-C, SIGTERM) that cancels the work instead of raising in the
middle of whatever the main thread was doing.

``run_rollouts``, ``run_analyses``, ``run_consolidation`` (and ``evaluate``, ``evolve``,
``ablate`` above them) run their own event loop. Called from a running one (a Jupyter cell,
an async web handler), ``asyncio.run`` raises a bare ``RuntimeError`` and Python warns about
the coroutine it never ran; :func:`run_sync` says what to do instead, and
:func:`require_no_running_loop` says it before a call that writes first has written.

The command line's signal handlers call :func:`request_stop`: with a loop of ``run_sync``
running, the stop cancels its main task (every stage records itself interrupted on the way
out) and ``run_sync`` raises ``KeyboardInterrupt`` once the cancellation has unwound. A
``KeyboardInterrupt`` raised by the handler itself could land inside a fork's at-fork hooks
(the sandbox starts its workers while the loop runs), which left logging's lock held and the
process hung, or was swallowed there and the run went on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from toolkit.errors import ToolkitError

T = TypeVar("T")

_current: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
_stop_requested = False
_lock = threading.Lock()


class RunningLoopError(ToolkitError):
    """A synchronous call was made from inside a running event loop."""


def request_stop() -> bool:
    """Ask the running :func:`run_sync` call to stop; safe to call from a signal handler.

    Returns:
        True when a call was running and its work is being cancelled; False when none runs
        or a stop was already asked (the caller then stops the way it would without one).
    """
    global _stop_requested
    current = _current
    if current is None or _stop_requested:
        return False
    _stop_requested = True
    loop, task = current
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop closed meanwhile
        return False
    return True


async def _main(coro: Coroutine[Any, Any, T]) -> T:
    global _current
    loop = asyncio.get_running_loop()
    default = loop.get_exception_handler()

    def quiet_after_stop(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Cut-off calls and tasks torn down after a stop are expected, not errors to print.
        if _stop_requested:
            return
        if default is None:
            loop.default_exception_handler(context)
        else:
            default(loop, context)

    loop.set_exception_handler(quiet_after_stop)
    task = asyncio.current_task()
    assert task is not None
    with _lock:  # the outermost call owns the stop (a nested one runs in a thread)
        owner = _current is None
        if owner:
            _current = (loop, task)
    try:
        return await coro
    finally:
        if owner:
            with _lock:
                _current = None


def require_no_running_loop(call: str = "evaluate") -> None:
    """Refuse a synchronous call from inside a running event loop, before it does anything.

    ``evolve`` and ``ablate`` write (a run folder, its base commit, derived skill versions)
    before their first :func:`run_sync`; checked only there, a notebook's ``evolve`` left a
    run behind that the corrected call, in a thread, was then refused as taken.

    Raises:
        RunningLoopError: an event loop is running in this thread (``call`` is named in the
            message's ``asyncio.to_thread`` example).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RunningLoopError(
        "this call runs its own event loop, and one is already running here (a notebook "
        "cell?): await the async variant where there is one (arun_rollouts, "
        "arun_analyses, arun_consolidation), or run the call in a thread: "
        f"await asyncio.to_thread({call}, ...)"
    )


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a new event loop and return its result.

    Raises:
        RunningLoopError: an event loop is already running in this thread.
        KeyboardInterrupt: :func:`request_stop` cancelled the work.
    """
    global _stop_requested
    try:
        require_no_running_loop()
    except RunningLoopError:
        coro.close()  # never to be awaited: closed, so Python does not warn about it
        raise
    if _current is None:
        _stop_requested = False
    try:
        result = asyncio.run(_main(coro))
    except asyncio.CancelledError:
        if _stop_requested:
            raise KeyboardInterrupt from None
        raise
    if _stop_requested:  # the work swallowed its cancellation: the stop still stands
        raise KeyboardInterrupt
    return result
