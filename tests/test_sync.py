"""The synchronous API from inside a running event loop (a notebook cell)."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from pathlib import Path

import pytest

from toolkit.rollout import run_rollouts
from toolkit.sync import RunningLoopError, run_sync


def test_a_sync_call_inside_a_running_loop_says_what_to_do(tmp_path: Path) -> None:
    """It was a bare RuntimeError from asyncio.run, and a warning about the coroutine."""

    async def notebook_cell() -> None:
        run_rollouts("gsm8k", "test", None, "fake/echo", run_dir=tmp_path / "r", limit=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail here
        with pytest.raises(RunningLoopError, match="await asyncio.to_thread"):
            asyncio.run(notebook_cell())
    assert not (tmp_path / "r").exists()

    async def answer() -> int:
        return 42

    assert run_sync(answer()) == 42  # no loop running: runs as asyncio.run does


def test_a_stop_signal_cancels_the_work_instead_of_raising_where_it_lands() -> None:
    """A kill trial: the handler's KeyboardInterrupt landed in a fork's at-fork hook, which
    left logging's lock held (the process hung) or swallowed it (the run went on, exit 0)."""
    import signal

    from toolkit.cli.interrupt import interrupt

    events: list[str] = []

    async def work() -> None:
        try:
            try:
                signal.raise_signal(signal.SIGINT)  # the handler runs here, in this frame
                events.append("no raise where the signal landed")
            except KeyboardInterrupt:
                events.append("raised mid-code")
            await asyncio.sleep(5)  # the cancellation arrives at the next await
            events.append("not cancelled")
        finally:
            events.append("cleanup ran")

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sync(work())
        assert events == ["no raise where the signal landed", "cleanup ran"]

        async def swallows() -> int:
            signal.raise_signal(signal.SIGINT)
            # Work that swallows its cancellation does not swallow the stop.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(5)
            return 1

        with pytest.raises(KeyboardInterrupt):
            run_sync(swallows())
        # Outside the toolkit's loop, Ctrl-C is Python's own KeyboardInterrupt.
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
