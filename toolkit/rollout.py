"""Rollouts: run the agent with a skill on a split of a suite, one trajectory per task.

:func:`run_rollouts` (sync) / :func:`arun_rollouts` (async) load the tasks (recording the split
in ``run_dir/splits.json``), give each task a fresh sandbox session from one shared
:class:`~toolkit.sandbox.SandboxPool` with the task's files, run the agent, score the answer
with the suite and append the :class:`~toolkit.trajectory.Trajectory` to
``run_dir/trajectories.jsonl`` as soon as it is done. ``manifest.json`` records the config and
the stage status; model calls are logged to ``run_dir/llm_calls.jsonl``.

Resuming: with ``resume=True`` the tasks whose trajectory id (a hash of task, skill version,
model, seed and delivery) is already in the trajectories file are skipped; finished lines are
never rewritten. Without ``resume`` an existing trajectories file is an error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from toolkit.skill import Skill
from toolkit.tasks import Suite

ROLLOUT_SCHEMA_VERSION = 1


class RolloutSummary(BaseModel):
    """What a rollout call did, over all tasks of the split (resumed ones included)."""

    schema_version: int = ROLLOUT_SCHEMA_VERSION
    run_dir: Path = Field(description="The run directory.")
    trajectories_path: Path = Field(description="The JSONL file the trajectories went to.")
    suite: str
    split: str
    model: str
    skill_name: str | None = Field(description="None for the no-skill baseline.")
    skill_commit: str = Field(description="Git tree id of the skill (see skill_commit()).")
    delivery: str
    seed: int
    tasks: int = Field(description="Tasks in the split (after --limit).")
    ran: int = Field(description="Trajectories produced by this call.")
    resumed: int = Field(description="Tasks skipped because their trajectory was already there.")
    passed: int = Field(description="Passing trajectories among all tasks.")
    errors: int = Field(description="Trajectories that ended with stop_reason=error.")
    pass_rate: float = Field(description="passed / tasks (0 when there are no tasks).")
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    wall_s: float = Field(0.0, description="Wall seconds of this call.")
    seconds_per_task: float = Field(0.0, description="Mean trajectory latency (all tasks).")
    trajectory_ids: list[str] = Field(
        default_factory=list, description="The ids of the split's trajectories, in task order."
    )


def run_rollouts(
    suite: str | Suite,
    split: str,
    skill: str | Path | Skill | None,
    model: str | None = None,
    *,
    run_dir: str | Path,
    seed: int = 0,
    concurrency: int = 4,
    limit: int | None = None,
    delivery: str = "system",
    resume: bool = False,
    executor: object | None = None,
    progress: bool = True,
) -> RolloutSummary:
    """Roll out the agent on ``split`` of ``suite`` with ``skill``; see the module docstring.

    Args:
        suite: a suite name (``gsm8k``, ``wikitq``...) or a :class:`Suite`.
        split: ``train``, ``test``... (recorded in ``run_dir/splits.json``; a split already
            recorded there is reused as is).
        skill: a skill folder, a loaded :class:`Skill`, or None for the no-skill baseline.
        model: litellm model string (default: the LLM config's model).
        run_dir: the run directory (created if needed).
        seed: run seed (task subset with ``limit``, per-task sampling seeds).
        concurrency: tasks run at once.
        limit: a seeded subset of at most this many tasks.
        delivery: ``system``, ``progressive`` or ``none``.
        resume: skip tasks already in the trajectories file.
        executor: an :class:`toolkit.executor.Executor` (default: a LocalExecutor).
        progress: draw a progress bar on stderr.

    Returns:
        The :class:`RolloutSummary`.

    Raises:
        ToolkitError: bad suite/split/skill/delivery, or an existing trajectories file
            without ``resume``.
    """
    raise NotImplementedError("being written")
