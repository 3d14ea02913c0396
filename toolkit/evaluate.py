"""Evaluation: pass rates with confidence intervals, stored per skill version, and comparisons.

:func:`evaluate` rolls out the agent with one skill (or none) on a split through
:func:`toolkit.rollout.run_rollouts` (finished tasks are reused: trajectory ids are hashes of
task, skill version, model, seed, delivery and agent fingerprint), then writes the outcome to
``run_dir/evals/<skill-commit>/<split>.jsonl``: one :class:`EvalRecord` per task (task id,
seed, model, passed, score, trajectory id) and one :class:`EvalSummary` (pass rate with a
bootstrap and a Wilson interval, the minimum detectable effect, tokens and seconds per task).
Files are append-only; a line identical to one already there is not written again, so a
re-run of finished work leaves the file byte-identical.

:func:`compare` pairs two evaluations by ``(task_id, seed)``, keeps only the pairs present in
both (the others are listed as dropped, with the reason) and reports the paired difference
B - A with a paired bootstrap CI, the exact McNemar p-value and the discordant counts (see
:mod:`toolkit.stats`)::

    base = evaluate(None, "gsm8k", "test", run_dir="runs/demo", limit=50)
    s0 = evaluate("skills/gsm8k-math", "gsm8k", "test", run_dir="runs/demo", limit=50)
    print(compare(base, s0).paired.difference)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel

from toolkit.errors import ToolkitError
from toolkit.known import add_known
from toolkit.llm.config import LLMConfig
from toolkit.memory import MEMORY_PREFIX, Memory
from toolkit.skill import Skill
from toolkit.stats import (
    DEFAULT_RESAMPLES,
    PairedComparison,
    PassRate,
    minimum_detectable_effect,
    paired_comparison,
    pass_rate,
)
from toolkit.tasks import Suite, get_suite
from toolkit.trajectory import (
    NO_SKILL_COMMIT,
    Trajectory,
    TrajectoryError,
    append_jsonl,
    read_jsonl,
    read_trajectories,
    skill_commit,
)

if TYPE_CHECKING:
    from toolkit.agent import AgentConfig

EVAL_SCHEMA_VERSION = 2
"""2: a task's ``tokens`` is null when its provider did not report them, and a summary's
``tokens_per_task`` is the mean over the tasks that did (``tokens_unreported`` counts the
others). Version 1 files read as they are: they hold no null."""
#: What ``--skill`` takes for the no-skill baseline.
NO_SKILL = "none"


class EvalError(ToolkitError):
    """An evaluation cannot run or a stored evaluation cannot be read as asked."""


class AmbiguousEvalError(EvalError):
    """An eval file holds several evaluations that match; a filter must choose one."""

    def __init__(self, message: str, summaries: Sequence[EvalSummary] = ()) -> None:
        super().__init__(message)
        #: The matching summaries, so a caller can see what tells them apart.
        self.summaries = list(summaries)


class EvalRecord(BaseModel):
    """One task's outcome in one evaluation: a line of ``evals/<commit>/<split>.jsonl``."""

    schema_version: int = Field(default=EVAL_SCHEMA_VERSION, description="Format version.")
    kind: Literal["task"] = Field(default="task", description="Line type: a per-task record.")
    suite: str = Field(description="Suite name, e.g. 'gsm8k'.")
    split: str = Field(description="Split name, e.g. 'test'.")
    skill_commit: str = Field(
        description="Git tree id of the skill; 'none' for no skill; 'memory-<hash>' for a "
        "skill with a memory bank (toolkit.memory)."
    )
    model: str = Field(description="litellm model string of the agent.")
    seed: int = Field(description="Run seed of the trajectory.")
    delivery: str = Field(description="How the skill reached the agent: system/progressive/none.")
    protocol: str | None = Field(
        default=None,
        description="How the agent talked to its model (code, json, tools, plain); None in "
        "files written before it was recorded.",
    )
    task_id: str = Field(description="Task id within the suite.")
    passed: bool = Field(description="The suite's verdict.")
    score: float = Field(description="The suite's score in [0, 1].")
    trajectory_id: str = Field(description="Id of the trajectory in trajectories.jsonl.")
    tokens: int | None = Field(
        description="Prompt + completion tokens of the trajectory; None when the provider did "
        "not report them (toolkit.tokens)."
    )
    seconds: float = Field(description="Wall seconds of the trajectory.")
    error: str | None = Field(default=None, description="Model error, when the rollout failed.")
    cached_steps: int = Field(
        default=0, description="Steps whose model reply came from the response cache."
    )
    steps: int = Field(default=0, description="Steps of the trajectory.")


class EvalSummary(BaseModel):
    """The figures of one evaluation (skill version x model x split x seed x delivery)."""

    schema_version: int = Field(default=EVAL_SCHEMA_VERSION, description="Format version.")
    kind: Literal["summary"] = Field(default="summary", description="Line type: a summary.")
    suite: str = Field(description="Suite name.")
    split: str = Field(description="Split name.")
    skill: str = Field(description="Skill name, or 'none' for the no-skill baseline.")
    skill_commit: str = Field(
        description="Git tree id of the skill; 'none' for no skill; 'memory-<hash>' for a "
        "skill with a memory bank (toolkit.memory)."
    )
    model: str = Field(description="litellm model string of the agent.")
    seed: int = Field(description="Run seed (task subset, sampling seeds, bootstrap seed).")
    delivery: str = Field(description="system, progressive or none.")
    protocol: str | None = Field(
        default=None,
        description="The agent's protocol (code, json, tools, plain); None: not recorded.",
    )
    limit: int | None = Field(description="The --limit asked for (None: the whole split).")
    task_ids: list[str] = Field(description="The evaluated tasks, in task order.")
    n: int = Field(description="Number of tasks evaluated.")
    passed: int = Field(description="Number of passing tasks.")
    pass_rate: PassRate = Field(description="Pass rate with bootstrap and Wilson 95% CIs.")
    mde: float | None = Field(
        description="Minimum detectable paired difference at this n (alpha 0.05, power 0.8, "
        "discordant rate 0.5 assumed); None when n < 4."
    )
    mean_score: float | None = Field(
        description="Mean score (differs from the pass rate "
        "only for soft-scored suites); None when n == 0."
    )
    errors: int = Field(description="Tasks whose rollout ended in a model error (count as fail).")
    tokens_per_task: float | None = Field(
        description="Mean prompt + completion tokens per task, over the tasks whose counts "
        "were reported; None when none were."
    )
    tokens_unreported: int = Field(
        default=0,
        description="Tasks whose token counts the provider did not report: left out of "
        "tokens_per_task rather than counted as 0.",
    )
    seconds_per_task: float = Field(description="Mean wall seconds per task.")
    seconds_median: float | None = Field(
        default=None,
        description="Median wall seconds per task (robust to a cold model start); None: n=0.",
    )
    cached_tasks: int = Field(
        default=0,
        description="Tasks with at least one reply from the response cache: their seconds "
        "are mostly replay time, not model time.",
    )
    seconds_per_fresh_task: float | None = Field(
        default=None,
        description="Mean wall seconds over the tasks with no cached reply (the model cost); "
        "None when every task used the cache.",
    )


class _EvalLine(RootModel[Annotated[EvalRecord | EvalSummary, Field(discriminator="kind")]]):
    """One line of an eval file: a task record or a summary."""


class EvalResult(BaseModel):
    """An evaluation: its summary, its per-task records and the file they are stored in."""

    summary: EvalSummary
    records: list[EvalRecord] = Field(description="One record per task, in task order.")
    path: Path | None = Field(default=None, description="The eval file (None if not stored).")

    @property
    def n(self) -> int:
        """Number of tasks."""
        return self.summary.n

    @property
    def rate(self) -> float | None:
        """Pass rate; None when n == 0."""
        return self.summary.pass_rate.rate

    @property
    def ci(self) -> tuple[float, float]:
        """Bootstrap 95% percentile interval of the pass rate."""
        return (self.summary.pass_rate.ci.low, self.summary.pass_rate.ci.high)

    @property
    def mde(self) -> float | None:
        """Minimum detectable effect at this n (see :class:`EvalSummary`)."""
        return self.summary.mde

    @property
    def tokens_per_task(self) -> float | None:
        """Mean tokens per task over the tasks that reported them (None: none did)."""
        return self.summary.tokens_per_task

    @property
    def seconds_per_task(self) -> float:
        """Mean seconds per task."""
        return self.summary.seconds_per_task


class Condition(BaseModel):
    """Which evaluation one side of a comparison is."""

    skill: str
    skill_commit: str
    model: str
    seed: int
    delivery: str
    protocol: str | None = Field(
        default=None, description="How the agent talked to the model; None in older files."
    )
    n: int = Field(description="Tasks in that evaluation (before pairing).")
    path: Path | None = None


class DroppedPair(BaseModel):
    """A task present in only one of the two evaluations, left out of the pairing."""

    task_id: str
    seed: int
    reason: Literal["only-in-a", "only-in-b"]


class PairOutcome(BaseModel):
    """One compared (task_id, seed) pair: whether each side passed it."""

    task_id: str
    seed: int
    passed_a: bool
    passed_b: bool


class Comparison(BaseModel):
    """B against A on the (task_id, seed) pairs both evaluated; the difference is B - A."""

    schema_version: int = Field(default=EVAL_SCHEMA_VERSION, description="Format version.")
    suite: str
    split: str
    a: Condition
    b: Condition
    paired: PairedComparison = Field(description="Counts, difference, CI, p-value, MDE.")
    pairs: list[tuple[str, int]] = Field(description="The (task_id, seed) pairs compared.")
    outcomes: list[PairOutcome] = Field(
        default_factory=list, description="Each pair's outcome on both sides, in pair order."
    )
    dropped: list[DroppedPair] = Field(description="Tasks left out: in only one evaluation.")

    @property
    def only_a_passed(self) -> list[str]:
        """Task ids of the pairs that A passed and B failed (B lost them), in pair order."""
        return [o.task_id for o in self.outcomes if o.passed_a and not o.passed_b]

    @property
    def only_b_passed(self) -> list[str]:
        """Task ids of the pairs that B passed and A failed (B gained them), in pair order."""
        return [o.task_id for o in self.outcomes if o.passed_b and not o.passed_a]


# ---------------------------------------------------------------------------------------------
# Pure parts: records from trajectories, summaries, pairing
# ---------------------------------------------------------------------------------------------


def record_of(trajectory: Trajectory, split: str) -> EvalRecord:
    """The eval record of one trajectory."""
    return EvalRecord(
        suite=trajectory.suite,
        split=split,
        skill_commit=trajectory.skill_commit,
        model=trajectory.model,
        seed=trajectory.seed,
        delivery=trajectory.delivery,
        protocol=trajectory.protocol,
        task_id=trajectory.task_id,
        passed=trajectory.verdict.passed,
        score=trajectory.verdict.score,
        trajectory_id=trajectory.id,
        tokens=add_known(trajectory.tokens_in, trajectory.tokens_out),
        seconds=trajectory.latency_s,
        error=trajectory.error if trajectory.stop_reason == "error" else None,
        cached_steps=sum(step.cache_hit for step in trajectory.steps),
        steps=len(trajectory.steps),
    )


def summarise(
    records: Sequence[EvalRecord],
    *,
    suite: str,
    split: str,
    skill: str,
    skill_commit: str,
    model: str,
    seed: int,
    delivery: str,
    limit: int | None,
    resamples: int = DEFAULT_RESAMPLES,
    protocol: str | None = None,
) -> EvalSummary:
    """The summary of ``records``: pass rate with CIs (bootstrap seeded with ``seed``), MDE,
    mean tokens and seconds per task."""
    n = len(records)
    fresh = [r for r in records if r.cached_steps == 0]
    # Mean over the tasks that reported their tokens: a silent provider's 0 is no count.
    counted = [r.tokens for r in records if r.tokens is not None]
    if protocol is None:  # the records' own, so summary and records key alike
        protocol = next((r.protocol for r in records if r.protocol), None)
    return EvalSummary(
        suite=suite,
        split=split,
        skill=skill,
        skill_commit=skill_commit,
        model=model,
        seed=seed,
        delivery=delivery,
        protocol=protocol,
        limit=limit,
        task_ids=[r.task_id for r in records],
        n=n,
        passed=sum(r.passed for r in records),
        pass_rate=pass_rate([r.passed for r in records], resamples=resamples, seed=seed),
        mde=minimum_detectable_effect(n),
        mean_score=sum(r.score for r in records) / n if n else None,
        errors=sum(r.error is not None for r in records),
        tokens_per_task=sum(counted) / len(counted) if counted else (None if n else 0.0),
        tokens_unreported=n - len(counted),
        seconds_per_task=sum(r.seconds for r in records) / n if n else 0.0,
        seconds_median=statistics.median(r.seconds for r in records) if n else None,
        cached_tasks=len(records) - len(fresh),
        seconds_per_fresh_task=sum(r.seconds for r in fresh) / len(fresh) if fresh else None,
    )


def _condition(result: EvalResult) -> Condition:
    s = result.summary
    return Condition(
        skill=s.skill,
        skill_commit=s.skill_commit,
        model=s.model,
        seed=s.seed,
        delivery=s.delivery,
        protocol=s.protocol,
        n=s.n,
        path=result.path,
    )


def pair_results(
    a: EvalResult, b: EvalResult, *, resamples: int = DEFAULT_RESAMPLES, seed: int | None = None
) -> Comparison:
    """Pair two evaluations by ``(task_id, seed)`` and compare B with A.

    Pairs keep A's task order. Bootstrap seed: ``seed``, else A's evaluation seed.

    Raises:
        EvalError: the evaluations are of different suites or splits.
    """
    sa, sb = a.summary, b.summary
    if (sa.suite, sa.split) != (sb.suite, sb.split):
        raise EvalError(
            f"cannot pair {sa.suite}/{sa.split} with {sb.suite}/{sb.split}: "
            "compare evaluations of the same suite and split"
        )
    by_key_a = {(r.task_id, r.seed): r for r in a.records}
    by_key_b = {(r.task_id, r.seed): r for r in b.records}
    pairs = [key for key in by_key_a if key in by_key_b]
    dropped = [
        DroppedPair(task_id=t, seed=s, reason="only-in-a")
        for t, s in by_key_a
        if (t, s) not in by_key_b
    ] + [
        DroppedPair(task_id=t, seed=s, reason="only-in-b")
        for t, s in by_key_b
        if (t, s) not in by_key_a
    ]
    paired = paired_comparison(
        [by_key_a[k].passed for k in pairs],
        [by_key_b[k].passed for k in pairs],
        resamples=resamples,
        seed=sa.seed if seed is None else seed,
    )
    return Comparison(
        suite=sa.suite,
        split=sa.split,
        a=_condition(a),
        b=_condition(b),
        paired=paired,
        pairs=pairs,
        outcomes=[
            PairOutcome(
                task_id=t, seed=s, passed_a=by_key_a[t, s].passed, passed_b=by_key_b[t, s].passed
            )
            for t, s in pairs
        ],
        dropped=dropped,
    )


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------


def eval_trajectories_path(run_dir: str | Path) -> Path:
    """``run_dir/evals/trajectories.jsonl``: the trajectories of every evaluation of the run."""
    return Path(run_dir) / "evals" / "trajectories.jsonl"


def eval_path(run_dir: str | Path, skill_commit: str, split: str) -> Path:
    """``run_dir/evals/<skill-commit>/<split>.jsonl``."""
    return Path(run_dir) / "evals" / skill_commit / f"{split}.jsonl"


def read_eval_lines(path: Path) -> list[EvalRecord | EvalSummary]:
    """The task records and summaries of an eval file (a torn last line skipped).

    Raises:
        EvalError: a complete line is not a valid record (file and line named).
    """
    try:
        read = read_jsonl(path, _EvalLine)
    except TrajectoryError as exc:
        raise EvalError(f"not an eval file: {exc}") from None
    return [line.root for line in read.records]


def store(result: EvalResult, path: Path) -> None:
    """Append ``result`` to the eval file ``path``: its records, then its summary.

    Lines identical to lines already in the file are skipped, so storing the same result
    again leaves the file unchanged (byte-identical re-runs). One atomic append per call.
    """
    existing = (
        {line.model_dump_json() for line in read_eval_lines(path)} if path.exists() else set()
    )
    new: list[BaseModel] = []
    for line in [*result.records, result.summary]:
        text = line.model_dump_json()
        if text not in existing:
            existing.add(text)
            new.append(line)
    append_jsonl(path, new)


def _key(line: EvalRecord | EvalSummary) -> tuple[str, str, int, str, str]:
    # What tells evaluations in one file apart: the file itself fixes commit and split.
    return (line.suite, line.model, line.seed, line.delivery, line.protocol or "")


def load_eval(
    path: str | Path,
    *,
    suite: str | None = None,
    model: str | None = None,
    seed: int | None = None,
    delivery: str | None = None,
    protocol: str | None = None,
) -> EvalResult:
    """Read an evaluation back from an eval file: of the summaries matching the filters, the
    one over the most tasks (the latest of those). A file holds several summaries of one
    condition when it was evaluated on subsets too (``ablate --tasks 5`` re-evaluates S0 and
    S* on 5 of the run's tasks): the widest evaluation is what the file stands for.

    Raises:
        EvalError: missing or malformed file, no matching summary, or several different
            evaluations match (the message lists them; narrow with ``model``/``seed``/
            ``delivery``/``protocol``).
    """
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"eval file not found: {path}")
    lines = read_eval_lines(path)
    summaries = [
        line
        for line in lines
        if isinstance(line, EvalSummary)
        and (suite is None or line.suite == suite)
        and (model is None or line.model == model)
        and (seed is None or line.seed == seed)
        and (delivery is None or line.delivery == delivery)
        and (protocol is None or line.protocol == protocol)
    ]
    if not summaries:
        held = sorted(
            {
                f"suite={s.suite} model={s.model} seed={s.seed} delivery={s.delivery} "
                f"protocol={s.protocol or '?'}"
                for s in lines
                if isinstance(s, EvalSummary)
            }
        )
        what = (
            f"; it holds: {'; '.join(held)} (pick one with --model, --seed, --delivery or "
            "--protocol)"
            if held
            else ""
        )
        # Only the filters asked for: a None filter matches anything, so naming it misleads.
        asked = {
            "suite": suite,
            "model": model,
            "seed": seed,
            "delivery": delivery,
            "protocol": protocol,
        }
        given = ", ".join(f"{k}={v}" for k, v in asked.items() if v is not None)
        raise EvalError(
            f"{path}: no evaluation summary matches" + (f" ({given})" if given else "") + what
        )
    keys = {_key(s) for s in summaries}
    if len(keys) > 1:
        listed = "; ".join(
            f"suite={su} model={m} seed={se} delivery={d} protocol={pr or '?'}"
            for su, m, se, d, pr in sorted(keys)
        )
        raise AmbiguousEvalError(
            f"{path} holds several evaluations ({listed}); choose one (compare: --model, "
            "--seed, --delivery, --protocol or --protocol-a/--protocol-b)",
            summaries,
        )
    summary = max(reversed(summaries), key=lambda s: s.n)  # max keeps the first: the latest
    # The latest record of each task of this evaluation.
    latest: dict[str, EvalRecord] = {}
    for line in lines:
        if isinstance(line, EvalRecord) and _key(line) == _key(summary):
            latest[line.task_id] = line
    missing = [t for t in summary.task_ids if t not in latest]
    if missing:
        raise EvalError(f"{path}: summary lists tasks without records: {', '.join(missing[:5])}")
    records = [latest[t] for t in summary.task_ids]
    return EvalResult(summary=summary, records=records, path=path)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _is_no_skill(skill: str | Path | Skill | None) -> bool:
    return skill is None or (isinstance(skill, str) and skill.strip().lower() == NO_SKILL)


def _resolve_suite(suite: str | Suite, split: str, data_dir: str | Path | None) -> Suite:
    chosen = (
        get_suite(suite, **({"data_dir": data_dir} if data_dir else {}))
        if isinstance(suite, str)
        else suite
    )
    chosen.check_split(split)
    return chosen


def evaluate(
    skill: str | Path | Skill | None,
    suite: str | Suite,
    split: str,
    model: str | None = None,
    *,
    run_dir: str | Path,
    seed: int = 0,
    limit: int | None = None,
    delivery: str | None = None,
    concurrency: int = 4,
    resamples: int = DEFAULT_RESAMPLES,
    data_dir: str | Path | None = None,
    progress: bool = False,
    llm_config: LLMConfig | None = None,
    agent_config: AgentConfig | None = None,
    memory: Memory | None = None,
    **rollout_options: Any,
) -> EvalResult:
    """Evaluate ``skill`` (a folder, ``REV:PATH``, a :class:`Skill`, or None / ``"none"``).

    Runs the missing rollouts into ``run_dir/evals/trajectories.jsonl`` (kept apart from the
    run's training trajectories; tasks already there with the same skill version, model, seed,
    delivery and agent settings are reused), then stores and returns the result.

    Args:
        skill: the skill (see :func:`toolkit.rollout.resolve_skill`), or None / ``"none"``
            for the no-skill baseline.
        suite: a suite name or a :class:`Suite`.
        split: the split, e.g. ``test``.
        model: litellm model string (default: the LLM config's model).
        run_dir: the run directory (created if needed).
        seed: run seed: task subset with ``limit``, sampling seeds, bootstrap seed.
        limit: evaluate a seeded subset of at most this many tasks.
        delivery: ``system`` (default with a skill) or ``progressive``; ``none`` without skill.
        concurrency: tasks run at once.
        resamples: bootstrap resamples.
        data_dir: data root for a suite given by name.
        progress: show the rollouts' progress bar.
        llm_config: the gateway config (model, api base, cache); ``model`` wins over its model.
        agent_config: the agent's turn and token budgets and sampling.
        memory: the retrieval memory baseline (:class:`toolkit.memory.Memory`): the skill
            plus each task's top items of a memory bank in the agent's prompt. Its own
            condition: the version id is ``memory-<hash>`` (trajectory ids, and the eval
            file ``evals/memory-<hash>/<split>.jsonl``), never mixed with the skill's.
        **rollout_options: passed on to :func:`toolkit.rollout.run_rollouts` (``executor``,
            ``sandbox_config``).

    Raises:
        ToolkitError: unknown suite or split, bad skill, bad delivery, rollout failures.
    """
    from toolkit.rollout import resolve_skill, run_rollouts

    no_skill = _is_no_skill(skill)
    if no_skill:
        if delivery not in (None, "none"):
            raise EvalError(
                f"delivery {delivery!r} needs a skill; the no-skill baseline uses 'none'"
            )
        delivery = "none"
    else:
        delivery = delivery or "system"
        if delivery == "none":
            raise EvalError("delivery 'none' is the no-skill baseline: pass the skill as 'none'")
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be >= 1, got {limit}")
    suite_obj = _resolve_suite(suite, split, data_dir)
    skill_obj = None if no_skill else resolve_skill(skill)  # type: ignore[arg-type]
    commit = skill_commit(skill_obj)
    if memory is not None:
        commit = memory.condition(commit)
    model_name = model or (llm_config or LLMConfig.from_env()).model
    trajectories = eval_trajectories_path(run_dir)
    from toolkit.agent import AgentConfig

    protocol = (agent_config or AgentConfig()).protocol
    rolled = run_rollouts(
        suite_obj,
        split,
        skill_obj,
        model_name,
        run_dir=run_dir,
        seed=seed,
        concurrency=concurrency,
        limit=limit,
        delivery=delivery,
        resume=True,  # finished tasks of this exact condition are reused, never re-run
        progress=progress,
        llm_config=llm_config,
        agent_config=agent_config,
        trajectories_path=trajectories,
        # One manifest stage per evaluated condition, so conditions do not overwrite each other.
        stage=f"eval:{split}:{_stage_tag(commit)}:{delivery}:{protocol}:{model_name}:seed{seed}",
        memory=memory,
        **rollout_options,
    )
    by_id = {t.id: t for t in read_trajectories(trajectories).records}
    missing = [i for i in rolled.trajectory_ids if i not in by_id]
    if missing:
        raise EvalError(f"{run_dir}: trajectories missing after the rollouts: {missing[:3]}")
    records = [record_of(by_id[i], split) for i in rolled.trajectory_ids]
    summary = summarise(
        records,
        suite=suite_obj.name,
        split=split,
        skill=rolled.skill_name or NO_SKILL,
        skill_commit=rolled.skill_commit,
        model=rolled.model,
        seed=seed,
        delivery=delivery,
        limit=limit,
        resamples=resamples,
        protocol=protocol,
    )
    path = eval_path(run_dir, rolled.skill_commit or NO_SKILL_COMMIT, split)
    result = EvalResult(summary=summary, records=records, path=path)
    store(result, path)
    return result


def _stage_tag(commit: str) -> str:
    """The version in an eval's manifest stage name: a skill's tree id's first 12 hex
    digits, a memory condition's whole id (its first 12 characters are mostly prefix)."""
    return commit if commit.startswith(MEMORY_PREFIX) else commit[:12]


def compare(
    a: EvalResult | str | Path,
    b: EvalResult | str | Path,
    *,
    model: str | None = None,
    seed: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    protocol: str | None = None,
) -> Comparison:
    """Compare evaluation B with evaluation A on the tasks both ran (see :func:`pair_results`).

    ``a`` and ``b`` are results or eval files (read with :func:`load_eval` and the ``model``,
    ``seed`` and ``protocol`` filters).
    """

    def read(side: EvalResult | str | Path) -> EvalResult:
        if isinstance(side, EvalResult):
            return side
        return load_eval(side, model=model, seed=seed, protocol=protocol)

    return pair_results(read(a), read(b), resamples=resamples)


__all__ = [
    "EVAL_SCHEMA_VERSION",
    "NO_SKILL",
    "Comparison",
    "Condition",
    "DroppedPair",
    "EvalError",
    "EvalRecord",
    "EvalResult",
    "EvalSummary",
    "PairOutcome",
    "compare",
    "eval_path",
    "eval_trajectories_path",
    "evaluate",
    "load_eval",
    "pair_results",
    "record_of",
    "store",
    "summarise",
]
