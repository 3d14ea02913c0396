"""Rollouts: run the agent with a skill on a split of a suite, one trajectory per task.

:func:`run_rollouts` (sync) / :func:`arun_rollouts` (async) load the tasks (recording the split
in ``run_dir/splits.json``), give each task a fresh sandbox session from one shared
:class:`~toolkit.sandbox.SandboxPool` with the task's files, run the agent, score the answer
with the suite and append the :class:`~toolkit.trajectory.Trajectory` to
``run_dir/trajectories.jsonl`` as soon as it is done. ``manifest.json`` records the config and
the stage status; model calls are logged to ``run_dir/llm_calls.jsonl``.

Resuming: with ``resume=True`` the tasks whose trajectory id (a hash of task, skill version,
model, seed, delivery and the agent's fingerprint) is already in the trajectories file are
skipped; finished lines are never rewritten (a torn last line left by a kill is cut off).
Without ``resume`` an existing trajectories file is an error, so a run is never mixed up with
another by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.agent import Agent, AgentConfig, agent_fingerprint
from toolkit.atomic import write_atomic
from toolkit.cost import CostTally
from toolkit.errors import ToolkitError, ToolkitNotice
from toolkit.executor import Executor, LocalExecutor
from toolkit.llm._litellm import get_litellm
from toolkit.llm.config import LLMConfig, stored_api_base
from toolkit.llm.gateway import Gateway
from toolkit.memory import MEMORY_PREFIX, Memory, Retrieved, memory_block
from toolkit.memory import shown as shown_items
from toolkit.runs import (
    CALLS_FILE,
    EVALS_DIR,
    MANIFEST_FILE,
    SPLITS_FILE,
    TRAJECTORIES_FILE,
    Manifest,
    StageRecord,
    StageSpec,
    read_manifest,
    run_stage,
    toolkit_version,
    update_stage,
    with_recorded_server,
)
from toolkit.sandbox import SandboxConfig, SandboxPool
from toolkit.skill import Skill, invalid_summary, load_skill, validate_skill
from toolkit.sync import run_sync
from toolkit.tasks import (
    Suite,
    Task,
    TaskError,
    describe_scoring,
    get_suite,
    scoring_options,
    suite_source,
)
from toolkit.tasks.check import empty_split_message, skipped_rows_notice
from toolkit.tasks.splits import SplitsFile, load_splits, make_splits, save_splits, tasks_for_split
from toolkit.tokens import TokenTally
from toolkit.trajectory import (
    DELIVERIES,
    Trajectory,
    Verdict,
    append_trajectory,
    drop_failed_trajectories,
    read_trajectories,
    repair_jsonl,
    skill_commit,
    task_seed,
    trajectory_id,
)

ROLLOUT_SCHEMA_VERSION = 1

# Kept importable from here for callers written before toolkit.runs existed.
__all__ = [
    "CALLS_FILE",
    "MANIFEST_FILE",
    "SPLITS_FILE",
    "TRAJECTORIES_FILE",
    "Manifest",
    "RolloutConfig",
    "RolloutError",
    "RolloutSummary",
    "RolloutUnit",
    "StageRecord",
    "arun_rollouts",
    "default_concurrency",
    "read_manifest",
    "resolve_skill",
    "run_rollouts",
    "score_answer",
    "split_tasks",
    "toolkit_version",
    "update_stage",
    "workspace_files",
]


class RolloutError(ToolkitError):
    """A rollout cannot start as asked (existing run without resume, bad delivery...)."""


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def split_tasks(
    suite: Suite, split: str, *, limit: int | None, seed: int, run_dir: Path
) -> list[Task]:
    """The tasks of ``split``, as recorded in ``run_dir/splits.json`` (recorded if new).

    A split already in splits.json is reused as is (same task ids, data files unchanged), so
    a resumed run and a later evaluation see exactly the same tasks. A new split is drawn
    with the seed recorded in the file (the run's seed for a new file) and added.

    Raises:
        TaskError: a different suite or limit than recorded, changed data files, overlapping
            splits.
    """
    suite.check_split(split)
    path = run_dir / SPLITS_FILE
    if path.exists():
        splits = load_splits(path)
        if splits.suite != suite.name:
            raise TaskError(f"{path} is for suite {splits.suite!r}, not {suite.name!r}")
        if split in splits.splits:
            recorded = splits.limits.get(split)
            if limit is not None and recorded != limit:
                raise TaskError(
                    f"{path} records split {split!r} with limit {recorded}, not {limit}; "
                    "use the same --limit or another --run-dir"
                )
            return tasks_for_split(suite, splits, split, splits_path=path)
        new = make_splits(suite, {split: limit}, seed=splits.seed)
        try:
            merged = SplitsFile(
                suite=suite.name,
                seed=splits.seed,
                limits={**splits.limits, split: limit},
                splits={**splits.splits, split: new.splits[split]},
                source_hashes={**splits.source_hashes, **new.source_hashes},
            )
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            raise TaskError(f"cannot add split {split!r} to {path}: {message}") from None
        save_splits(merged, path)
        return suite.load_ids(new.splits[split])
    splits = make_splits(suite, {split: limit}, seed=seed)
    save_splits(splits, path)
    return suite.load_ids(splits.splits[split])


def reuse_sources(
    sources: Sequence[str | Path], source_hashes: dict[str, str] | None = None
) -> list[tuple[Path, list[Path]]]:
    """Each ``--reuse`` source with its trajectory files: a run folder's
    ``trajectories.jsonl`` and ``evals/trajectories.jsonl``, or (only without
    ``source_hashes``: nothing to check) a trajectory file.

    Raises:
        RolloutError: a source that does not exist or holds no trajectories, or (given this
            run's ``source_hashes``) a file, a folder with no ``splits.json``, or one whose
            ``splits.json`` does not record each of this run's data files with the same hash.
    """
    found: list[tuple[Path, list[Path]]] = []
    for source in sources:
        src = Path(source)
        if src.is_dir():
            files = [src / TRAJECTORIES_FILE, src / EVALS_DIR / TRAJECTORIES_FILE]
            files = [f for f in files if f.is_file()]
            if source_hashes is not None and files and not (src / SPLITS_FILE).is_file():
                raise RolloutError(
                    f"cannot reuse {src}: it has no {SPLITS_FILE} to show which data files its "
                    "tasks came from"
                )
            if source_hashes is not None and files:
                theirs = load_splits(src / SPLITS_FILE).source_hashes
                # A data file of ours the source never read counts as other data too: task
                # ids (a JSONL file's "q1") recur across files, so the ids alone would match.
                other = sorted(n for n, h in source_hashes.items() if theirs.get(n) != h)
                if other:
                    raise RolloutError(
                        f"cannot reuse {src}: its tasks came from other data files "
                        f"({', '.join(other)} differ from this run's; it read "
                        f"{', '.join(sorted(theirs)) or 'none recorded'})"
                    )
        elif src.is_file() and source_hashes is None:
            files = [src]
        elif src.is_file():
            raise RolloutError(
                f"cannot reuse {src}: give the run folder it belongs to (its {SPLITS_FILE} "
                "shows which data files the tasks came from)"
            )
        else:
            raise RolloutError(f"cannot reuse {src}: no such run folder or trajectory file")
        if not files:
            raise RolloutError(
                f"cannot reuse {src}: it holds no {TRAJECTORIES_FILE} (nor "
                f"{EVALS_DIR}/{TRAJECTORIES_FILE})"
            )
        found.append((src, files))
    return found


def reusable_ids(
    sources: Sequence[str | Path], source_hashes: dict[str, str] | None = None
) -> set[str]:
    """Ids of the trajectories ``sources`` hold finished (not ended on a model error);
    given ``source_hashes``, sources of other data are refused (see :func:`reuse_sources`)."""
    return set(reusable_trajectories(sources, source_hashes))


def reusable_trajectories(
    sources: Sequence[str | Path], source_hashes: dict[str, str] | None = None
) -> dict[str, Trajectory]:
    """The trajectories of :func:`reusable_ids`, by id."""
    return {
        record.id: record
        for _src, files in reuse_sources(sources, source_hashes)
        for path in files
        for record in read_trajectories(path).records
        if record.stop_reason != "error"
    }


def recorded_scoring_conflict(
    run_path: Path, suite: str, scoring: Mapping[str, Any], stages: Sequence[str] | None = None
) -> str | None:
    """Why the finished tasks in ``run_path`` cannot stand for tasks scored with ``scoring``
    (:func:`toolkit.tasks.scoring_options`), or None when they can.

    A trajectory keeps the verdict it got when it ran, and its id does not name the scoring
    rule, so a run folder evaluated with ``--scoring numeric`` answered a later ``--scoring
    exact`` on the same folder with the numeric passes. ``stages`` limits the check to those
    manifest stages (a resume checks its own); by default every stage on ``suite`` counts.
    """
    manifest = read_manifest(run_path) if run_path.is_dir() else None
    if manifest is None:
        return None
    for name, record in manifest.stages.items():
        if stages is not None and name not in stages:
            continue
        source = record.config.get("suite_source")
        if record.config.get("suite") != suite or source is None:
            continue  # another suite, or a manifest from before sources were recorded
        theirs = scoring_options(source)
        if theirs != dict(scoring):
            return (
                f"its {name} scored answers with {describe_scoring(theirs)}, not "
                f"{describe_scoring(scoring)}, and a finished task keeps the verdict it got"
            )
    return None


def reuse_finished(
    sources: Sequence[str | Path],
    units: Sequence[RolloutUnit],
    finished: dict[str, Trajectory],
    traj_path: Path,
    run_path: Path,
    scoring: tuple[str, Mapping[str, Any]] | None = None,
) -> int:
    """Copy the tasks another run already finished under this exact condition into this run.

    A trajectory id names the suite, task, skill version, model, seed, delivery and agent
    fingerprint, so a record with one of ``units``' ids in another run is the work this run
    would do (an evolve's S0 evaluation after ``eval`` of the same skill, a benchmark's
    conditions). ``sources`` are run folders (their ``trajectories.jsonl`` and
    ``evals/trajectories.jsonl``; their ``splits.json`` must record this run's data files:
    task ids alone recur across data files). The copies are appended to
    ``traj_path`` (the run stays self-contained) and added to ``finished``; tasks that ended
    on a model error are not taken. Returns how many were copied.

    ``scoring`` (the suite's name and :func:`toolkit.tasks.scoring_options`), when given,
    refuses a source whose tasks were scored otherwise.

    Raises:
        RolloutError: a source that does not exist or holds no trajectories, or whose
            ``splits.json`` records other data files than this run's, or (given ``scoring``)
            whose manifest records another scoring rule.
    """
    wanted = {u.id for u in units if u.id not in finished}
    ours = load_splits(run_path / SPLITS_FILE).source_hashes
    found = reuse_sources(sources, ours)  # every source checked before any is copied
    if scoring is not None:
        suite_name, options = scoring
        for src, _files in found:
            why = recorded_scoring_conflict(src, suite_name, options)
            if why:
                raise RolloutError(f"cannot reuse {src}: {why}")
    copied = 0
    for src, files in found:
        taken = 0
        for path in files:
            if path.resolve() == traj_path.resolve():
                continue
            for record in read_trajectories(path).records:
                if record.id in wanted and record.stop_reason != "error":
                    append_trajectory(traj_path, record)
                    finished[record.id] = record
                    wanted.discard(record.id)
                    taken += 1
        if taken:
            warnings.warn(
                f"reused {taken} finished tasks of this condition from {src}",
                ToolkitNotice,
                stacklevel=2,
            )
        copied += taken
    return copied


# ---------------------------------------------------------------------------------------------
# Rollouts
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before a run, for the run.

    A full (generation 2) collection walks every tracked object in the process; with litellm
    loaded that stalls the event loop for about 250 ms each time, during which no rollout
    moves (measured with benchmarks/rollouts.py). What exists before the run (modules,
    litellm's cost map, the suite's tasks) outlives it anyway, so it is frozen out of sight
    (without a collection first, which would cost that same stall; garbage frozen with it is
    collected after the run).
    """
    get_litellm()  # its module state is most of the heap
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    tokens_in: int = Field(0, description="Prompt tokens of the trajectories that reported them.")
    tokens_out: int = Field(
        0, description="Completion tokens of the trajectories that reported them."
    )
    tokens_unreported: int = Field(
        0,
        description="Trajectories whose token counts the provider did not report, left out "
        "of tokens_in and tokens_out.",
    )
    cost_usd: float = Field(0.0, description="Cost in USD of the trajectories priced.")
    cost_unpriced: int = Field(
        0,
        description="Trajectories with a call whose cost is unknown (no price for the model, "
        "no usage reported), left out of cost_usd rather than counted as $0.",
    )
    wall_s: float = Field(0.0, description="Wall seconds of this call.")
    seconds_per_task: float = Field(0.0, description="Mean trajectory latency (all tasks).")
    cached_tasks: int = Field(
        0,
        description="Tasks with at least one reply from the response cache: their seconds are "
        "mostly replay time, not model time.",
    )
    seconds_per_fresh_task: float | None = Field(
        None,
        description="Mean latency of the tasks with no cached reply (the model cost); None "
        "when every task used the cache.",
    )
    trajectory_ids: list[str] = Field(
        default_factory=list, description="The ids of the split's trajectories, in task order."
    )


def _warn_if_invalid(skill: Skill, named: object) -> None:
    # A rollout of an invalid skill is allowed (one may measure a draft), but evolve and
    # repo snapshot refuse it: say so before the work rather than after.
    why = invalid_summary(named, validate_skill(skill))
    if why:
        warnings.warn(f"{why}; evolve will refuse it", ToolkitNotice, stacklevel=3)


def resolve_skill(skill: str | Path | Skill | None, repo: str | Path = ".") -> Skill | None:
    """The skill ``skill`` names: a folder, or ``REV:PATH``, or the skill itself, or None.

    ``REV:PATH`` is the folder PATH (from the root of the git repository holding ``repo``)
    as committed in revision REV, e.g. ``t2s/run1/base:skills/gsm8k-math`` or
    ``HEAD~3:skills/gsm8k-math``; an existing folder of that name wins.

    Raises:
        SkillError: no such folder, or not a skill. RepoError: bad revision or path.
    """
    if skill is None or isinstance(skill, Skill):
        return skill
    text = str(skill)
    if ":" in text and not Path(text).exists():
        from toolkit.repo import SkillRepo

        rev, _, path = text.partition(":")
        store = SkillRepo.open(repo)
        try:
            return store.load_skill(rev, path)
        finally:
            store.close()
    return load_skill(skill)


def score_answer(suite: Suite, task: Task, answer: str | None, workspace: Path) -> Verdict:
    """The suite's verdict on ``answer``.

    SpreadsheetBench tasks are answered by files: their score reads the output workbooks the
    agent wrote in its workspace, whatever it submitted.
    """
    target: object = workspace if suite.name == "spreadsheet" else answer
    score = suite.score(task, target)
    return Verdict(
        passed=score.passed,
        score=score.value,
        details=score.details,
        predicted=score.predicted,
        gold=score.gold,
    )


# The embedded llama.cpp provider has one context per model, so it serves one conversation at
# a time: concurrent tasks would take turns and re-evaluate their whole prompts on each call.
_SERIAL_PROVIDERS = ("local/",)


def default_concurrency(model: str) -> int:
    """Tasks rolled out at once by default for ``model``: 1 for the embedded local model
    (one request at a time), else 4."""
    return 1 if model.startswith(_SERIAL_PROVIDERS) else 4


class RolloutConfig(BaseModel):
    """The resolved settings of one rollout stage: what ``manifest.json`` records, and what
    every part of the stage reads instead of a relay of keyword arguments."""

    model_config = ConfigDict(frozen=True)

    stage: str = Field(description="Stage name in the manifest (rollout, eval...).")
    suite: str
    suite_source: dict[str, Any] = Field(
        default_factory=dict,
        description="Options that reopen the suite on its data (toolkit.tasks.suite_source).",
    )
    split: str
    limit: int | None = None
    seed: int = Field(description="Run seed: the task subset and the per-task sampling seeds.")
    model: str
    api_base: str | None = None
    delivery: str
    concurrency: int = Field(ge=1)
    executor: str = "local"
    agent: AgentConfig
    skill_name: str | None = None
    skill_path: str | None = None
    skill_dir: str | None = Field(
        None, description="The skill folder as an absolute path (skill_path is as given)."
    )
    skill_source: str | None = Field(
        None, description="The REV:PATH the skill was read from when it was no folder."
    )
    skill_commit: str
    trajectories: str = Field(description="The trajectories file, relative to the run folder.")
    skipped_rows: int = Field(
        0,
        description="Malformed data rows the loader skipped (trace2skill tasks check lists them).",
    )
    memory: dict[str, Any] | None = Field(
        None,
        description="The memory bank shown with the skill (toolkit.memory.Memory.describe); "
        "skill_commit is then the memory condition's id. None: no memory (not recorded).",
    )

    @property
    def agent_fingerprint(self) -> str:
        """Hash of the agent's config and prompts (part of every trajectory id)."""
        return agent_fingerprint(self.agent)

    def trajectory_id(self, task_id: str) -> str:
        """The id the trajectory of ``task_id`` gets in this stage (the resume key)."""
        return trajectory_id(
            self.suite,
            task_id,
            self.skill_commit,
            self.model,
            self.seed,
            self.delivery,
            self.agent_fingerprint,
        )

    def manifest_config(self) -> dict[str, object]:
        """The stage config as recorded in ``manifest.json``."""
        data = self.model_dump(
            mode="json", exclude={"stage"} | ({"memory"} if self.memory is None else set())
        )
        data["seeds"] = {"run": self.seed, "per_task": "task_seed(run, task_id) + step index"}
        data["agent_fingerprint"] = self.agent_fingerprint
        del data["seed"]
        return data


class RolloutUnit(BaseModel):
    """One task of a rollout stage, as plain data: its trajectory id (the resume key) and
    task id; the rest comes from the stage's :class:`RolloutConfig`."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_id: str


async def arun_rollouts(
    suite: str | Suite,
    split: str,
    skill: str | Path | Skill | None,
    model: str | None = None,
    *,
    run_dir: str | Path,
    seed: int = 0,
    concurrency: int = 4,
    limit: int | None = None,
    delivery: str | None = None,
    resume: bool = False,
    executor: Executor | None = None,
    progress: bool = True,
    agent_config: AgentConfig | None = None,
    llm_config: LLMConfig | None = None,
    sandbox_config: SandboxConfig | None = None,
    trajectories_path: str | Path | None = None,
    stage: str = "rollout",
    sandbox_pool: SandboxPool | None = None,
    reuse: Sequence[str | Path] = (),
    memory: Memory | None = None,
) -> RolloutSummary:
    """Async :func:`run_rollouts` (same arguments, plus ``sandbox_pool``: a started pool to
    borrow sessions from instead of starting one; it stays open, so a long-lived process
    (an evaluation of several conditions, a benchmark) pays the worker start-up once)."""
    wall0 = time.perf_counter()
    suite_obj = get_suite(suite) if isinstance(suite, str) else suite
    # Before anything is made (a refused request's splits.json would meet the corrected retry
    # with another --limit): every command that rolls out (rollout, eval, evolve) passes here.
    protocol = (agent_config or AgentConfig()).protocol
    suite_obj.check_protocol(protocol)
    if protocol == "tools":
        from toolkit import tools_protocol

        tools_protocol.check_support(model or (llm_config or LLMConfig.from_env()).model)
    if concurrency < 1:
        raise RolloutError(f"concurrency must be at least 1, got {concurrency}")
    skill_obj = resolve_skill(skill)
    if skill_obj is not None:
        _warn_if_invalid(skill_obj, skill)
    delivery = delivery or ("system" if skill_obj is not None else "none")
    if delivery not in DELIVERIES:
        raise RolloutError(f"unknown delivery {delivery!r}; choose from {', '.join(DELIVERIES)}")
    if delivery == "none" and skill_obj is not None:
        # Dropping the skill quietly would record a no-skill run the user did not ask for.
        raise RolloutError(
            "delivery 'none' is the no-skill baseline: leave out the skill, or choose "
            "delivery 'system' or 'progressive' to use it"
        )
    if delivery != "none" and skill_obj is None:
        raise RolloutError(
            f"delivery {delivery!r} needs a skill; use delivery 'none' for the no-skill baseline"
        )
    run_path = Path(run_dir)
    traj_path = Path(trajectories_path) if trajectories_path else run_path / TRAJECTORIES_FILE
    manifest = read_manifest(run_path) if run_path.exists() else None
    if not resume and (
        (traj_path.exists() and traj_path.stat().st_size > 0)
        or (manifest is not None and stage in manifest.stages)
    ):
        found = traj_path.name if traj_path.exists() else f"its {MANIFEST_FILE} records one"
        raise RolloutError(
            f"{run_path} already holds a {stage} run ({found}); pass --resume to "
            "continue it, or choose a new --run-dir"
        )
    suite_obj.check_split(split)
    created = not run_path.exists()
    run_path.mkdir(parents=True, exist_ok=True)
    splits_path = run_path / SPLITS_FILE
    splits_before = splits_path.read_bytes() if splits_path.is_file() else None
    try:
        tasks = split_tasks(suite_obj, split, limit=limit, seed=seed, run_dir=run_path)
        loaded = suite_obj.load_all()
        bad = loaded.bad_rows
        if not tasks:
            raise RolloutError(empty_split_message(suite_obj, split, loaded))
    except BaseException:
        if created:  # leave no half-made run directory behind a bad request
            shutil.rmtree(run_path, ignore_errors=True)
        raise
    if bad:
        # Said by every command that rolls out (rollout, eval, compare, evolve); the warnings
        # filter shows one message once per process, so an evolve's stages repeat nothing.
        warnings.warn(skipped_rows_notice(suite_obj, bad), ToolkitNotice, stacklevel=1)

    commit = skill_commit(skill_obj)
    retrieved: dict[str, list[Retrieved]] = {}
    if memory is not None:
        try:
            memory.check(
                suite_obj.name,
                load_splits(splits_path).source_hashes,
                [t.id for t in tasks],
            )
            retrieved = await asyncio.to_thread(memory.retrieve, {t.id: t.question for t in tasks})
        except BaseException:
            # A refused request leaves no half-made run folder, and no split it drew.
            if created:
                shutil.rmtree(run_path, ignore_errors=True)
            elif splits_before is None:
                splits_path.unlink(missing_ok=True)
            else:
                write_atomic(splits_path, splits_before)
            raise
    llm = llm_config or LLMConfig.from_env()
    llm = llm.model_copy(
        update={
            "calls_log": run_path / CALLS_FILE,
            "concurrency": max(llm.concurrency, concurrency),
            **({"model": model} if model else {}),
        }
    )
    if resume:  # the server the run started on, unless another is given
        llm = with_recorded_server(llm, manifest, llm.model)
    config = RolloutConfig(
        stage=stage,
        suite=suite_obj.name,
        suite_source=suite_source(suite_obj),
        split=split,
        limit=limit,
        seed=seed,
        model=llm.model,
        api_base=stored_api_base(llm.api_base),
        delivery=delivery,
        concurrency=concurrency,
        executor=(executor or LocalExecutor()).name,
        agent=(agent_config or AgentConfig()).model_copy(update={"delivery": delivery}),
        skill_name=skill_obj.name if skill_obj else None,
        skill_path=str(skill_obj.root) if skill_obj and skill_obj.root else None,
        skill_dir=str(Path(skill_obj.root).resolve()) if skill_obj and skill_obj.root else None,
        skill_source=(
            str(skill) if skill_obj and not skill_obj.root and isinstance(skill, str) else None
        ),
        skill_commit=memory.condition(commit) if memory is not None else commit,
        trajectories=os.path.relpath(traj_path, run_path),
        skipped_rows=len(bad),
        memory=memory.describe(commit) if memory is not None else None,
    )
    earlier = manifest.stages.get(stage) if manifest else None
    earlier_model = earlier.config.get("model") if earlier else None
    if resume and earlier_model and earlier_model != config.model:
        # Different ids, so nothing would be reused: the file would hold two models' runs
        # and the manifest name only the last.
        raise RolloutError(
            f"{run_path}'s {stage} ran with model {earlier_model}; resuming with "
            f"{config.model} would mix two models' trajectories: resume with that model, or "
            "choose a new run folder"
        )
    scoring = scoring_options(config.suite_source)
    conflict = resume and recorded_scoring_conflict(run_path, config.suite, scoring, [stage])
    if conflict:
        raise RolloutError(
            f"{run_path}: {conflict}; run it with the same --scoring and --tolerance, or "
            "choose a new run folder"
        )
    units = [RolloutUnit(id=config.trajectory_id(t.id), task_id=t.id) for t in tasks]

    finished: dict[str, Trajectory] = {}
    if traj_path.exists():
        if repair_jsonl(traj_path):
            warnings.warn(
                f"cut an incomplete last line off {traj_path}", ToolkitNotice, stacklevel=2
            )
        for record in read_trajectories(traj_path).records:
            finished.setdefault(record.id, record)
        # A task that ended on a model error (a missing key, a server that was down) has no
        # result yet: it runs again, so fixing the model settings and resuming is enough.
        failed = [u.id for u in units if u.id in finished and finished[u.id].stop_reason == "error"]
        if failed and drop_failed_trajectories(traj_path, failed):
            warnings.warn(
                f"running {len(failed)} tasks again whose model call failed last time",
                ToolkitNotice,
                stacklevel=2,
            )
            for unit_id in failed:
                del finished[unit_id]
    if reuse:
        try:
            reuse_finished(reuse, units, finished, traj_path, run_path, (config.suite, scoring))
        except RolloutError:
            if created:  # a refused request leaves no half-made run folder
                shutil.rmtree(run_path, ignore_errors=True)
            raise
    done_before = [finished[u.id] for u in units if u.id in finished]

    gateway = Gateway(llm)
    agent = Agent(config.model, gateway, skill_obj, config.agent)
    by_id = {t.id: t for t in tasks}
    pools: list[SandboxPool] = [sandbox_pool] if sandbox_pool is not None else []

    @contextlib.asynccontextmanager
    async def resources() -> AsyncIterator[None]:
        with _frozen_heap():
            if sandbox_pool is not None:
                yield
                return
            pending = sum(u.id not in finished for u in units)
            async with SandboxPool(size=min(concurrency, pending), config=sandbox_config) as pool:
                pools.append(pool)
                yield

    async def work(unit: RolloutUnit) -> Trajectory:
        task = by_id[unit.task_id]
        shown = (memory, commit, retrieved[task.id]) if memory is not None else None
        return await _rollout_one(unit, task, suite_obj, agent, pools[0], config, shown)

    summary: RolloutSummary | None = None
    first_error = ""

    def counts(new: list[Trajectory]) -> dict[str, object]:
        nonlocal summary, first_error
        first_error = next((t.error for t in new if t.error), first_error)
        everything = {**finished, **{t.id: t for t in new}}
        done = [everything[u.id] for u in units if u.id in everything]
        summary = _summarise(
            done,
            config,
            run_dir=run_path,
            traj_path=traj_path,
            skill=skill_obj,
            tasks=len(tasks),
            ran=len(new),
            resumed=len(done_before),
            wall_s=time.perf_counter() - wall0,
        )
        return summary.model_dump(
            mode="json",
            include={"tasks", "ran", "resumed", "passed", "errors", "pass_rate", "stop_reasons"},
        )

    spec: StageSpec[RolloutUnit, Trajectory] = StageSpec(
        run_dir=run_path,
        name=stage,
        # What a person reads in the bar: the stage's kind and the skill version, not the
        # manifest key (eval:test:1a2b...:system:model:seed0).
        label=f"{stage.split(':')[0]} {_who(config.skill_name, config.skill_commit)} "
        f"{suite_obj.name}/{split}",
        config=config.manifest_config(),
        units=units,
        finished=finished.keys(),
        work=work,
        save=lambda trajectory: append_trajectory(traj_path, trajectory),
        passed=lambda trajectory: trajectory.passed,
        already_passed=sum(t.passed for t in done_before),
        resources=resources,
        executor=executor,
        concurrency=concurrency,
        progress=progress,
    )
    try:
        await run_stage(spec, counts)
    finally:
        gateway.close()
    assert summary is not None  # set by counts() when the stage finished
    if summary.ran and summary.errors == summary.tasks:
        from toolkit.llm.gateway import AFTER_REPAIR

        if AFTER_REPAIR in first_error:
            # The model answered, in a form the json protocol cannot use: running it again
            # with the same settings gets the same replies.
            fix = (
                "The model replies, but not in the json protocol's schema: --protocol code "
                "asks it for plain text instead"
            )
        else:
            fix = (
                "Fix the model settings (--model, --api-base, the provider's API key) and run "
                "it again (rollout with --resume; eval, compare and evolve --resume go on by "
                "themselves): the failed tasks run again"
            )
        raise RolloutError(
            f"the model failed on every one of the {summary.tasks} tasks, so nothing was "
            f"scored; first error: {first_error}. {fix}"
        )
    return summary


def workspace_files(suite: Suite, task: Task) -> dict[str, str | bytes] | None:
    """The task's input files as the sandbox session's file map (None when there are none).

    Equivalent to :meth:`Suite.build_workspace` without a temporary folder in between (the
    session writes the files into its own task dir); a suite that overrides
    ``build_workspace`` gets it called on a temporary folder instead.
    """
    if not task.files:
        return None
    if type(suite).build_workspace is not Suite.build_workspace:
        with tempfile.TemporaryDirectory(prefix="t2s-task-") as tmp:
            suite.build_workspace(task, Path(tmp))
            return {
                p.relative_to(tmp).as_posix(): p.read_bytes()
                for p in sorted(Path(tmp).rglob("*"))
                if p.is_file()
            }
    return {item.path: item.content() for item in task.files}


def session_files(
    suite: Suite, task: Task, skill: Skill | None, protocol: str = "code"
) -> dict[str, str | bytes] | None:
    """The sandbox session's files: the skill's scripts and assets at the paths its text
    names them by (so ``scripts/x.py`` runs as written), then the task's input files (which
    win a clash). ``plain`` runs no code, so it gets the task's files only."""
    files = workspace_files(suite, task)
    own = skill.workspace_files() if skill is not None and protocol != "plain" else []
    if not own:
        return files
    return {**{p: skill.files[p] for p in own}, **(files or {})}


async def _rollout_one(
    unit: RolloutUnit,
    task: Task,
    suite: Suite,
    agent: Agent,
    pool: SandboxPool,
    config: RolloutConfig,
    memory: tuple[Memory, str, list[Retrieved]] | None = None,
) -> Trajectory:
    """One task: workspace, sandbox session, agent loop, verdict, trajectory record.

    ``memory``: the memory, S0's commit and the items retrieved for this task: they go to
    the end of the agent's system prompt and their ids into the trajectory's metadata.
    """
    started, t0 = time.time(), time.perf_counter()
    summary = suite.summarise(task)
    sample_seed = task_seed(config.seed, task.id)
    files = session_files(suite, task, agent.skill, agent.config.protocol)
    metadata: dict[str, Any] = {"max_turns": agent.config.max_turns}
    block = ""
    if memory is not None:
        chosen, s0_commit, items = memory
        block = memory_block([r.item for r in items])
        metadata["memory"] = shown_items(chosen, s0_commit, items)
    async with pool.session(files) as session:
        result = await agent.run(summary, session, seed=sample_seed, memory=block)
        await session.ready()  # the workspace exists even if the agent ran no code
        # Scoring may read the workspace (spreadsheets), so it runs before the session
        # closes; those go to a thread because LibreOffice recalculation blocks for ~1 s.
        if suite.name == "spreadsheet":
            verdict = await asyncio.to_thread(
                score_answer, suite, task, result.final_answer, session.path
            )
        else:
            verdict = score_answer(suite, task, result.final_answer, session.path)
    latency = time.perf_counter() - t0
    return Trajectory(
        id=unit.id,
        task_id=task.id,
        suite=suite.name,
        split=config.split,
        question=task.question,
        skill_name=config.skill_name,
        skill_commit=config.skill_commit,
        model=agent.model,
        seed=config.seed,
        sample_seed=sample_seed,
        temperature=agent.config.temperature,
        delivery=agent.config.delivery,
        protocol=agent.config.protocol,
        steps=result.steps,
        final_answer=result.final_answer,
        verdict=verdict,
        section_uses=result.section_uses,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost_usd=result.cost_usd,
        latency_s=latency,
        started_at=started,
        ended_at=started + latency,
        stop_reason=result.stop_reason,
        error=result.error,
        metadata=metadata,
    )


def _summarise(
    done: list[Trajectory],
    config: RolloutConfig,
    *,
    run_dir: Path,
    traj_path: Path,
    skill: Skill | None,
    tasks: int,
    ran: int,
    resumed: int,
    wall_s: float,
) -> RolloutSummary:
    passed = sum(t.passed for t in done)
    tokens = TokenTally.of((t.tokens_in, t.tokens_out) for t in done)
    cost = CostTally.of(t.cost_usd for t in done)
    fresh = [t.latency_s for t in done if not any(s.cache_hit for s in t.steps)]
    return RolloutSummary(
        run_dir=run_dir,
        trajectories_path=traj_path,
        suite=config.suite,
        split=config.split,
        model=config.model,
        skill_name=skill.name if skill else None,
        skill_commit=config.skill_commit,
        delivery=config.delivery,
        seed=config.seed,
        tasks=tasks,
        ran=ran,
        resumed=resumed,
        passed=passed,
        errors=sum(t.stop_reason == "error" for t in done),
        pass_rate=passed / tasks if tasks else 0.0,
        stop_reasons=dict(Counter(t.stop_reason for t in done)),
        tokens_in=tokens.tokens_in,
        tokens_out=tokens.tokens_out,
        tokens_unreported=tokens.unreported,
        cost_usd=cost.cost_usd,
        cost_unpriced=cost.unpriced,
        wall_s=wall_s,
        seconds_per_task=sum(t.latency_s for t in done) / len(done) if done else 0.0,
        cached_tasks=len(done) - len(fresh),
        seconds_per_fresh_task=sum(fresh) / len(fresh) if fresh else None,
        trajectory_ids=[t.id for t in done],
    )


def _who(skill_name: str | None, commit: str) -> str:
    if commit.startswith(MEMORY_PREFIX):
        return f"{skill_name or 'no skill'} + {commit[:13]}"
    return f"{skill_name}@{commit[:8]}" if skill_name else "no skill"


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
    delivery: str | None = None,
    resume: bool = False,
    executor: Executor | None = None,
    progress: bool = True,
    agent_config: AgentConfig | None = None,
    llm_config: LLMConfig | None = None,
    sandbox_config: SandboxConfig | None = None,
    trajectories_path: str | Path | None = None,
    stage: str = "rollout",
    reuse: Sequence[str | Path] = (),
    memory: Memory | None = None,
) -> RolloutSummary:
    """Roll out the agent on ``split`` of ``suite`` with ``skill``; see the module docstring.

    Args:
        suite: a suite name (``gsm8k``, ``wikitq``...) or a :class:`Suite`.
        split: ``train``, ``test``... (recorded in ``run_dir/splits.json``; a split already
            recorded there is reused as is).
        skill: a skill folder, a loaded :class:`Skill`, or None for the no-skill baseline.
        model: litellm model string (default: ``llm_config``'s, else $TRACE2SKILL_MODEL or the
            embedded model).
        run_dir: the run directory (created if needed).
        seed: run seed: the task subset with ``limit`` and the per-task sampling seeds.
        concurrency: tasks run at once (also the floor of the model-request limit).
        limit: a seeded subset of at most this many tasks.
        delivery: ``system``, ``progressive`` or ``none`` (default: ``system`` with a skill,
            ``none`` without).
        resume: skip tasks whose trajectory is already in the trajectories file.
        executor: an :class:`~toolkit.executor.Executor` (default: :class:`LocalExecutor`).
        progress: draw a progress bar on stderr.
        agent_config: turn and token budgets, sampling, observation limits.
        llm_config: the gateway config (its calls log is redirected to the run's).
        sandbox_config: the sandbox pool's config (limits, interpreter).
        trajectories_path: where to append trajectories (default ``run_dir/trajectories.jsonl``;
            an evaluation writes elsewhere in the same run).
        stage: the stage name recorded in ``manifest.json``.
        reuse: other run folders whose finished tasks of this exact condition are copied
            in instead of run again (see :func:`reuse_finished`).
        memory: a memory bank and its retrieval (:class:`toolkit.memory.Memory`): each
            task's top items go into the agent's system prompt after the skill, and the
            condition's id (:meth:`~toolkit.memory.Memory.condition`) takes the skill's
            version id's place. Refused on another suite, other data, or a task the bank
            learned from.

    Returns:
        The :class:`RolloutSummary` over every task of the split.

    Raises:
        ToolkitError: bad suite, split, skill or delivery; an existing trajectories file (or
            stage) without ``resume``; a changed data file; a model config error.
    """
    return run_sync(
        arun_rollouts(
            suite,
            split,
            skill,
            model,
            run_dir=run_dir,
            seed=seed,
            concurrency=concurrency,
            limit=limit,
            delivery=delivery,
            resume=resume,
            executor=executor,
            progress=progress,
            agent_config=agent_config,
            llm_config=llm_config,
            sandbox_config=sandbox_config,
            trajectories_path=trajectories_path,
            stage=stage,
            reuse=reuse,
            memory=memory,
        )
    )
