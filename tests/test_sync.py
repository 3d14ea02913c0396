"""The synchronous API from inside a running event loop (a notebook cell)."""

from __future__ import annotations

import asyncio
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
