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


def test_evolve_and_ablate_in_a_running_loop_write_nothing(tmp_path: Path) -> None:
    """They wrote first (evolve: the run folder and t2s/<run>/base; ablate: the derived skill
    versions' refs) and met the running loop only at their first stage: the call the message
    pointed to, asyncio.to_thread(evolve, ...) with the same run id, was refused as taken."""
    import shutil

    from tests.repo_helpers import git
    from tests.run_fixture import RUN, build_run
    from toolkit.attribution import ablate
    from toolkit.evolve import EvolveConfig, evolve

    root = tmp_path / "user"
    (root / "skills").mkdir(parents=True)
    skill = root / "skills" / "gsm8k-math"
    shutil.copytree(Path(__file__).parents[1] / "skills" / "gsm8k-math", skill)
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=U", "-c", "user.email=u@x", "add", ".")
    git(root, "-c", "user.name=U", "-c", "user.email=u@x", "commit", "-q", "-m", "skill")
    config = EvolveConfig(
        run_id="nb", runs_dir=tmp_path / "runs", skill=skill, suite="gsm8k", model="fake/rehearsal"
    )
    repo, run_dir = build_run(tmp_path / "evolved")
    refs = git(repo, "for-each-ref", f"refs/heads/t2s/{RUN}")

    async def notebook_cell() -> list[str]:
        said = []
        with pytest.raises(RunningLoopError) as refused:
            evolve(config, progress=False)
        said.append(str(refused.value))
        with pytest.raises(RunningLoopError) as refused:
            ablate(run_dir, suite="gsm8k", model="fake/rehearsal", repo=repo, top=1)
        return [*said, str(refused.value)]

    said = asyncio.run(notebook_cell())
    assert not (tmp_path / "runs" / "nb").exists()
    assert git(root, "for-each-ref", "refs/heads/t2s") == ""
    assert git(repo, "for-each-ref", f"refs/heads/t2s/{RUN}") == refs
    assert "asyncio.to_thread(evolve, ...)" in said[0]  # the call to make instead
    assert "asyncio.to_thread(ablate, ...)" in said[1]
