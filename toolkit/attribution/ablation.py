"""Per-edit ablation: which edit of the final patch caused what, measured with paired CIs.

For each selected edit ``e`` of the final patch P (S* = S0 + P):

* **leave-one-out** ``ablate``: S0 + (P without e), committed on ``t2s/<run>/ablate/<e>``
  (parent S*), compared with S*; its ``delta`` is ablate - S*, so an edit that helps has a
  negative delta and a positive ``effect`` (= -delta);
* **add-one-in** ``only``: S0 + e alone, on ``t2s/<run>/only/<e>`` (parent S0), compared with
  S0; ``delta`` = only - S0 = ``effect``.

Every version is evaluated on the same tasks and seeds (pairs by task id and seed), with a
paired bootstrap 95% CI and the exact McNemar p-value (:mod:`toolkit.stats`). When the two
effects disagree the edit interacts with the others (it needs them, or they already cover
it). Results go to ``ablations.jsonl`` (one line per edit and kind) and the manifest stage
``attribute``. Derived versions are built by applying patches with the guardrails of
:func:`toolkit.patch.apply_patch`, never by editing text by hand: an edit whose anchor lives in
another edit's text can only be removed together with it (``also_removed``).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from toolkit.attribution.run import (
    AttributionError,
    EditSupport,
    RunContext,
    load_version,
    open_run,
    read_jsonl_dicts,
    stage_value,
)
from toolkit.evaluate import EvalResult, pair_results
from toolkit.patch import Edit, Patch, apply_patch
from toolkit.repo import DerivedCommit, write_ablations, write_only
from toolkit.rollout import split_tasks
from toolkit.runs import SPLITS_FILE, update_stage
from toolkit.skill import Skill
from toolkit.stats import DEFAULT_RESAMPLES, PairedComparison
from toolkit.tasks import TaskError
from toolkit.tasks.splits import load_splits
from toolkit.trajectory import append_jsonl, read_jsonl, skill_commit, trajectory_id

if TYPE_CHECKING:
    from toolkit.agent import AgentConfig
    from toolkit.llm.config import LLMConfig
    from toolkit.tasks import Suite

ABLATIONS_FILE = "ablations.jsonl"
ABLATION_SCHEMA_VERSION = 1
STAGE = "attribute"
Kind = Literal["ablate", "only"]
KINDS: tuple[Kind, ...] = ("ablate", "only")


class AblationRecord(BaseModel):
    """One evaluated edit version: a line of ``ablations.jsonl`` (run-file contract)."""

    schema_version: int = Field(default=ABLATION_SCHEMA_VERSION, description="Format version.")
    edit_id: str = Field(description="The edit of the final patch.")
    patch_id: str = Field(description="The final patch the edit belongs to.")
    kind: Kind = Field(description="ablate: S* without the edit; only: S0 with only the edit.")
    commit: str = Field(description="Git commit of the evaluated skill (the ablate/only ref).")
    skill_commit: str = Field(description="Version id (tree id) of the skill: evals/<id>/.")
    ref: str = Field(description="Branch of the evaluated skill, t2s/<run>/<kind>/<edit>.")
    reference_commit: str = Field(description="Git commit it is compared with (S* or S0).")
    reference_skill_commit: str = Field(description="Version id of the reference skill.")
    suite: str
    split: str
    model: str
    seed: int
    n: int = Field(description="Paired tasks.")
    passed: int = Field(description="Tasks the evaluated version passed.")
    pass_rate: float | None
    reference_passed: int = Field(description="Tasks the reference passed.")
    reference_pass_rate: float | None
    delta: float | None = Field(description="pass rate minus the reference's (paired).")
    ci_low: float = Field(description="Paired bootstrap 95% CI of delta, low end.")
    ci_high: float = Field(description="Paired bootstrap 95% CI of delta, high end.")
    p_value: float = Field(description="Exact McNemar p-value.")
    effect: float | None = Field(
        description="The edit's contribution: -delta for ablate, delta for only (> 0 helps)."
    )
    effect_ci_low: float
    effect_ci_high: float
    gained: list[str] = Field(description="Tasks only the evaluated version passed.")
    lost: list[str] = Field(description="Tasks only the reference passed.")
    tasks: list[str] = Field(description="Task ids evaluated (paired).")
    file: str = Field(description="File the edit touches.")
    op: str
    target_section: str | None = None
    support: int = Field(description="Leaf patches behind the edit.")
    sources: list[str] = Field(default_factory=list)
    also_removed: list[str] = Field(
        default_factory=list,
        description="Other edits that no longer apply without this one (ablate only).",
    )


class PlannedVersion(BaseModel):
    """One derived skill version to build and evaluate."""

    edit_id: str
    kind: Kind
    changes: dict[str, bytes | None] = Field(description="Files relative to the parent commit.")
    also_removed: list[str] = Field(default_factory=list)


class SkippedVersion(BaseModel):
    """A derived version that cannot be built, with the reason."""

    edit_id: str
    kind: Kind
    reason: str


class AblationPlan(BaseModel):
    """What an ablation will run, shown (with its cost) before anything runs."""

    run: str
    patch_id: str
    edits: list[str] = Field(description="Selected edit ids, by support.")
    support: dict[str, int]
    versions: list[PlannedVersion]
    skipped: list[SkippedVersion]
    suite: str
    split: str
    seed: int
    model: str
    tasks: list[str]
    rollouts: int = Field(description="Rollouts at most (S*, S0 and each version x tasks).")
    finished: int = Field(
        default=0, description="Of those, rollouts the run's evaluations hold (reused)."
    )
    other_agent: int = Field(
        default=0,
        description="Rollouts left that the run evaluated with another agent (its prompts or "
        "settings changed since): they run again.",
    )
    seconds_per_task: float | None = Field(description="From earlier evaluations of the run.")
    tokens_per_task: float | None = Field(
        description="From earlier evaluations of the run, over the tasks that reported their "
        "tokens; None when none did."
    )
    mismatch: list[str] = Field(
        default_factory=list,
        description="Files where S0 + final patch differs from S* (attribution is approximate).",
    )

    @property
    def estimate_s(self) -> float | None:
        """Estimated wall seconds (rollouts left x seconds per task), if known."""
        if self.seconds_per_task is None:
            return None
        return (self.rollouts - self.finished) * self.seconds_per_task


class AblationOutcome(BaseModel):
    """What :func:`ablate` did: the plan, the records written, S* and S0 evaluations."""

    plan: AblationPlan
    records: list[AblationRecord]
    star: EvalResult | None = None
    s0: EvalResult | None = None
    path: Path | None = None


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def check_ablate_args(
    *, top: int | None, tasks: int | None, limit: int | None, kinds: Sequence[str]
) -> None:
    """Refuse settings :func:`ablate` cannot honour, in one line, before anything is built.

    The command line's options have these bounds; the Python API had none: ``top=-1`` sliced
    the ranking to every edit but the last, ``tasks=0`` read "split 'test' has no tasks", and
    an unknown kind "no edit selected".

    Raises:
        AttributionError: a count below 1, or no kind / an unknown one.
    """
    for name, value in (("top", top), ("tasks", tasks), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or value < 1):
            raise AttributionError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise AttributionError(
            f"kinds must be some of {', '.join(KINDS)} (leave-one-out, add-one-in), got "
            f"{list(kinds)!r}"
        )


def select_edits(
    patch: Patch,
    support: dict[str, EditSupport],
    *,
    top: int | None = 3,
    edits: Sequence[str] | None = None,
) -> list[Edit]:
    """The edits to attribute: ``edits`` by id (prefixes accepted), else the ``top`` by support.

    Ties keep patch order. Raises AttributionError for an unknown or ambiguous id.
    """
    if edits:
        chosen = []
        for wanted in edits:
            hits = [e for e in patch.edits if (e.id or "").startswith(wanted)]
            if len(hits) != 1:
                # Several: the ones that match, to pick from; none: every id there is.
                known = ", ".join(e.id or "" for e in (hits or patch.edits))
                what = "no edit" if not hits else f"{len(hits)} edits"
                raise AttributionError(f"{what} of patch {patch.id} match {wanted!r}: {known}")
            if hits[0] not in chosen:
                chosen.append(hits[0])
        return chosen
    order = {e.id: i for i, e in enumerate(patch.edits)}
    ranked = sorted(
        patch.edits,
        key=lambda e: (-(support[e.id].support if e.id in support else 0), order[e.id]),
    )
    return ranked if top is None else ranked[:top]


def _without(patch: Patch, edit_id: str) -> Patch:
    return Patch(
        reasoning=patch.reasoning,
        edits=[e for e in patch.edits if e.id != edit_id],
        id=f"{patch.id}-without-{edit_id}",
    )


def _changes(
    parent: dict[str, str | bytes], files: dict[str, str | bytes], skill_path: str
) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for name in sorted(set(parent) | set(files)):
        if parent.get(name) == files.get(name):
            continue
        new = files.get(name)
        out[f"{skill_path}/{name}"] = (
            None if new is None else new.encode("utf-8") if isinstance(new, str) else new
        )
    return out


def plan_versions(
    s0: Skill,
    star: Skill,
    patch: Patch,
    selected: Sequence[Edit],
    *,
    skill_path: str,
    kinds: Sequence[Kind] = KINDS,
) -> tuple[list[PlannedVersion], list[SkippedVersion], list[str]]:
    """The derived versions of each selected edit, the ones that cannot be built, and the files
    where S0 + patch differs from S* (empty when the run's result is exactly S0 + patch)."""
    full = apply_patch(s0, patch)
    applied = {r.id for r in full.edits if r.status == "applied"}
    mismatch = sorted(
        name
        for name in set(full.files) | set(star.files)
        if full.files.get(name) != star.files.get(name)
    )
    versions: list[PlannedVersion] = []
    skipped: list[SkippedVersion] = []
    for edit in selected:
        eid = edit.id or ""
        if eid not in applied:
            for kind in kinds:
                skipped.append(
                    SkippedVersion(edit_id=eid, kind=kind, reason="the edit is not in S*")
                )
            continue
        if "ablate" in kinds:
            minus = apply_patch(s0, _without(patch, eid))
            if not minus.valid:
                skipped.append(SkippedVersion(edit_id=eid, kind="ablate", reason=minus.summary()))
            else:
                kept = {r.id for r in minus.edits if r.status == "applied"}
                versions.append(
                    PlannedVersion(
                        edit_id=eid,
                        kind="ablate",
                        changes=_changes(star.files, minus.files, skill_path),
                        also_removed=sorted(applied - kept - {eid}),
                    )
                )
        if "only" in kinds:
            alone = apply_patch(s0, Patch(reasoning=patch.reasoning, edits=[edit]))
            if not alone.clean:
                reason = alone.rejected[0].message if alone.rejected else alone.summary()
                skipped.append(
                    SkippedVersion(
                        edit_id=eid, kind="only", reason=f"does not apply alone: {reason}"
                    )
                )
            else:
                versions.append(
                    PlannedVersion(
                        edit_id=eid,
                        kind="only",
                        changes=_changes(s0.files, alone.files, skill_path),
                    )
                )
    return versions, skipped, mismatch


def subsample(task_ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A seeded subset of at most ``n`` task ids, kept in split order."""
    if n is None or n >= len(task_ids):
        return list(task_ids)
    keep = set(random.Random(f"attribute:{seed}").sample(list(task_ids), n))
    return [t for t in task_ids if t in keep]


def edit_effect(
    kind: str, delta: float | None, ci_low: float | None, ci_high: float | None
) -> tuple[float | None, float | None, float | None]:
    """An edit's effect (> 0 helps) and its 95% CI from a record's ``delta`` and CI.

    ``delta`` is the version tried minus its reference: for ``ablate`` (S* without the edit
    minus S*) the effect is ``-delta`` with the interval flipped; for ``only`` (S0 with the
    edit minus S0) it is ``delta``. ``+ 0.0`` keeps -0.0 out of the files.
    """

    def signed(value: float | None) -> float | None:
        return None if value is None else (-value if kind == "ablate" else value) + 0.0

    if kind == "ablate":
        return signed(delta), signed(ci_high), signed(ci_low)
    return signed(delta), signed(ci_low), signed(ci_high)


def paired_fields(kind: Kind, p: PairedComparison) -> dict[str, Any]:
    """A record's figures from the paired comparison of the version (B) with its reference
    (A): counts, delta with its CI and p-value, and the edit's effect (> 0 helps)."""
    effect, low, high = edit_effect(kind, p.difference, p.ci.low, p.ci.high)
    return {
        "n": p.n,
        "passed": p.both_pass + p.only_b,
        "pass_rate": p.rate_b,
        "reference_passed": p.both_pass + p.only_a,
        "reference_pass_rate": p.rate_a,
        "delta": p.difference,
        "ci_low": p.ci.low,
        "ci_high": p.ci.high,
        "p_value": p.p_value,
        "effect": effect,
        "effect_ci_low": low,
        "effect_ci_high": high,
    }


def ablation_record(
    *,
    context: RunContext,
    edit: Edit,
    version: PlannedVersion,
    commit: str,
    reference_commit: str,
    result: EvalResult,
    reference: EvalResult,
    resamples: int = DEFAULT_RESAMPLES,
) -> AblationRecord:
    """The record of one version compared with its reference on the paired tasks."""
    comparison = pair_results(reference, result, resamples=resamples)
    ref_pass = {(r.task_id, r.seed): r.passed for r in reference.records}
    new_pass = {(r.task_id, r.seed): r.passed for r in result.records}
    support = context.support.get(version.edit_id)
    return AblationRecord(
        edit_id=version.edit_id,
        patch_id=context.final_patch.id or "",
        kind=version.kind,
        commit=commit,
        skill_commit=result.summary.skill_commit,
        ref=context.ref(f"{version.kind}/{version.edit_id}"),
        reference_commit=reference_commit,
        reference_skill_commit=reference.summary.skill_commit,
        suite=result.summary.suite,
        split=result.summary.split,
        model=result.summary.model,
        seed=result.summary.seed,
        **paired_fields(version.kind, comparison.paired),
        gained=[t for (t, s) in comparison.pairs if new_pass[(t, s)] and not ref_pass[(t, s)]],
        lost=[t for (t, s) in comparison.pairs if ref_pass[(t, s)] and not new_pass[(t, s)]],
        tasks=[t for t, _ in comparison.pairs],
        file=edit.file,
        op=edit.op,
        target_section=edit.target_section,
        support=support.support if support else 1,
        sources=support.sources if support else [],
        also_removed=version.also_removed,
    )


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------


def ablations_path(run_dir: str | Path) -> Path:
    """``run_dir/ablations.jsonl``."""
    return Path(run_dir) / ABLATIONS_FILE


def read_ablations(run_dir: str | Path) -> list[AblationRecord]:
    """The latest record per (edit, kind, split, model, seed) of ``ablations.jsonl``."""
    path = ablations_path(run_dir)
    if not path.is_file():
        return []
    latest: dict[tuple[str, str, str, str, int], AblationRecord] = {}
    for record in read_jsonl(path, AblationRecord).records:
        latest[(record.edit_id, record.kind, record.split, record.model, record.seed)] = record
    return list(latest.values())


def store_ablations(run_dir: str | Path, records: Sequence[AblationRecord]) -> Path:
    """Append records not already in ``ablations.jsonl`` (a re-run adds nothing)."""
    path = ablations_path(run_dir)
    existing = (
        {r.model_dump_json() for r in read_jsonl(path, AblationRecord).records}
        if path.is_file()
        else set()
    )
    new = [r for r in records if r.model_dump_json() not in existing]
    if new:
        append_jsonl(path, new)
    return path


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _task_subset(suite: Suite, keep: Sequence[str]) -> Suite:
    # The split stays the one recorded in splits.json (so trajectories and evals are those of
    # the run); only the tasks outside ``keep`` are left out of the rollouts.
    wanted = set(keep)
    subset = copy.copy(suite)
    load_ids = suite.load_ids
    subset.load_ids = lambda ids: load_ids([i for i in ids if i in wanted])  # type: ignore[method-assign]
    return subset


def _past_cost(run_dir: Path, split: str) -> tuple[float | None, float | None]:
    """Mean seconds and tokens per task of the run's earlier evaluations on ``split`` (tokens
    over the tasks that reported them; None when none did)."""
    seconds, tokens = [], []
    for path in (run_dir / "evals").glob(f"*/{split}.jsonl"):
        for line in read_jsonl_dicts(path):
            if line.get("kind") == "task":
                seconds.append(float(line.get("seconds") or 0.0))
                if line.get("tokens") is not None:  # null: not reported, not 0
                    tokens.append(float(line["tokens"]))
    if not seconds:
        return None, None
    return sum(seconds) / len(seconds), (sum(tokens) / len(tokens) if tokens else None)


def _version_commit(parent: Skill, changes: dict[str, bytes | None], skill_path: str) -> str:
    """The version id a planned version will have: ``parent`` with ``changes`` applied."""
    files: dict[str, str | bytes] = dict(parent.files)
    for path, data in changes.items():
        name = path.removeprefix(f"{skill_path.strip('/')}/")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return skill_commit(parent.model_copy(update={"files": files}))


def _finished_rollouts(
    run_dir: Path,
    suite: str,
    commits: Sequence[str],
    task_ids: Sequence[str],
    *,
    model: str,
    seed: int,
    delivery: str | None,
    agent_config: AgentConfig | None,
) -> tuple[int, int]:
    """How many of the (version, task) rollouts the run's evaluations already hold, and how
    many of the others they hold from another agent.

    Matched by trajectory id, the key :func:`~toolkit.evaluate.evaluate` reuses finished work
    by (same version, task, model, seed, delivery and agent); a rollout that ended on a model
    error runs again, so it is not counted. A changed agent (prompts, budgets) gives other
    ids: those rollouts run again, which the second count lets the plan say.
    """
    from toolkit.agent import AgentConfig, agent_fingerprint
    from toolkit.evaluate import eval_trajectories_path

    path = eval_trajectories_path(run_dir)
    if not path.is_file():
        return 0, 0
    delivery = delivery or "system"  # evaluate's default
    have: set[str] = set()
    others: set[tuple[str, str]] = set()
    for line in read_jsonl_dicts(path):
        if line.get("stop_reason") == "error":
            continue
        have.add(str(line.get("id")))
        if (line.get("model"), line.get("seed"), line.get("delivery")) == (model, seed, delivery):
            others.add((str(line.get("skill_commit")), str(line.get("task_id"))))
    agent = (agent_config or AgentConfig()).model_copy(update={"delivery": delivery})
    fingerprint = agent_fingerprint(agent)
    finished = other = 0
    for commit in commits:
        for task in task_ids:
            if trajectory_id(suite, task, commit, model, seed, delivery, fingerprint) in have:
                finished += 1
            elif (commit, task) in others:
                other += 1
    return finished, other


def _split_ids(
    suite: Suite, split: str, limit: int | None, seed: int, run_dir: Path, *, dry_run: bool
) -> list[str]:
    """The split's task ids as the run records them; a dry run only previews a new split."""
    if not dry_run:
        return [t.id for t in split_tasks(suite, split, limit=limit, seed=seed, run_dir=run_dir)]
    path = run_dir / SPLITS_FILE
    if path.is_file():
        recorded = load_splits(path)
        if recorded.suite != suite.name:  # as the real run would refuse it
            raise TaskError(f"splits file is for suite {recorded.suite!r}, not {suite.name!r}")
        if split in recorded.splits:
            return list(recorded.splits[split])
        seed = recorded.seed  # a new split of an existing file is drawn with the file's seed
    return suite.load(split, limit=limit, seed=seed).ids


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def ablate(
    run_dir: str | Path,
    *,
    suite: str | Suite | None = None,
    split: str = "test",
    model: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    tasks: int | None = None,
    top: int | None = 3,
    edits: Sequence[str] | None = None,
    kinds: Sequence[Kind] = KINDS,
    repo: str | Path | None = None,
    skill_path: str | None = None,
    delivery: str | None = None,
    concurrency: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    data_dir: str | Path | None = None,
    llm_config: LLMConfig | None = None,
    agent_config: AgentConfig | None = None,
    progress: bool = False,
    dry_run: bool = False,
    on_plan: Callable[[AblationPlan], None] | None = None,
) -> AblationOutcome:
    """Ablate the selected edits of a run's final patch and store the paired effects.

    Args:
        run_dir: the run folder (``runs/<run-id>``) or a run id under ``./runs``.
        suite: suite name or object (default: the manifest's ``suite``).
        split: the held-out split (its tasks as recorded in the run's splits.json).
        model: the agent's model (default: the run's, else the LLM config's).
        seed: run seed: sampling seeds, subsample, bootstrap.
        limit: the split's task limit when the split is not recorded yet.
        tasks: evaluate a seeded subsample of at most this many of the split's tasks.
        top: how many edits, by support (ignored when ``edits`` is given; None: all).
        edits: edit ids (or unique prefixes) to ablate.
        kinds: ``ablate`` (leave-one-out), ``only`` (add-one-in), or both.
        repo, skill_path: override what the manifest says.
        delivery: how the skill reaches the agent (default: the run's, else ``system``).
        concurrency: tasks at once (default: by model, see rollout.default_concurrency).
        resamples: bootstrap resamples.
        data_dir: data root for a suite given by name.
        llm_config, agent_config: as for :func:`toolkit.evaluate.evaluate` (default agent
            config: the run's protocol).
        progress: progress bars on stderr.
        dry_run: build the plan (and its cost estimate) only; write nothing.
        on_plan: called with the plan before anything runs (the CLI prints the estimate).

    Raises:
        AttributionError: see :func:`open_run`; no suite; nothing to evaluate.
        RunningLoopError: called from a running event loop (a notebook:
            ``asyncio.to_thread(ablate, ...)``), with nothing written.
    """
    from toolkit.agent import AgentConfig
    from toolkit.evaluate import evaluate
    from toolkit.llm.config import LLMConfig
    from toolkit.rollout import default_concurrency
    from toolkit.sync import require_no_running_loop
    from toolkit.tasks import get_suite, reopen_suite

    check_ablate_args(top=top, tasks=tasks, limit=limit, kinds=kinds)
    if not dry_run:  # before the ablate/only versions are committed
        require_no_running_loop("ablate")
    context, store = open_run(run_dir, repo=repo, skill_path=skill_path)
    running = False
    try:
        suite = suite or stage_value(context.manifest, "suite")
        if suite is None:
            raise AttributionError("which suite? pass --suite (the manifest names none)")
        source = stage_value(context.manifest, "suite_source")
        own = data_dir is None and suite == stage_value(context.manifest, "suite")
        if own and isinstance(suite, str) and source is not None:
            # The run's own data and scoring, as its rollouts recorded them (a jsonl run's
            # task file is no data folder: get_suite("jsonl", data_dir=...) was refused; a
            # copied run's missing data folder falls back to the default one).
            suite_obj = reopen_suite(suite, source)
        else:
            if own:
                # A run from before suite sources were recorded: its data when still there.
                recorded = stage_value(context.manifest, "data")
                data_dir = recorded if recorded and Path(str(recorded)).exists() else None
            suite_obj = (
                get_suite(suite, **({"data_dir": data_dir} if data_dir else {}))
                if isinstance(suite, str)
                else suite
            )
        config = llm_config or LLMConfig.from_env()
        # The run's own agent: versions are compared under the agent that made S*. Another
        # model's records would sit beside the run's in its report and PR as if comparable.
        recorded_model = stage_value(context.manifest, "model")
        if model and recorded_model and model != recorded_model:
            raise AttributionError(
                f"run {context.run} was made and evaluated with {recorded_model}; ablating "
                f"it with {model} would mix the two models' figures in its report. Leave "
                "--model (and $TRACE2SKILL_MODEL) out, or compare skills under another model "
                "with trace2skill compare"
            )
        model_name = model or recorded_model or config.model
        # The agent on the server the run recorded for it, unless --api-base names another.
        from toolkit.runs import with_recorded_server

        config = with_recorded_server(config, context.manifest, model_name)
        delivery = delivery or stage_value(context.manifest, "delivery")
        if agent_config is None and stage_value(context.manifest, "protocol"):
            agent_config = AgentConfig(protocol=stage_value(context.manifest, "protocol"))
        s0, s0_commit = load_version(store, context, context.base)
        star, star_commit = load_version(store, context, context.result)
        selected = select_edits(context.final_patch, context.support, top=top, edits=edits)
        versions, skipped, mismatch = plan_versions(
            s0, star, context.final_patch, selected, skill_path=context.skill_path, kinds=kinds
        )
        split_ids = _split_ids(suite_obj, split, limit, seed, context.run_dir, dry_run=dry_run)
        task_ids = subsample(split_ids, tasks, seed)
        seconds, tokens = _past_cost(context.run_dir, split)
        parents = {"ablate": star, "only": s0}
        commits = [star_commit, s0_commit] + [
            _version_commit(parents[v.kind], v.changes, context.skill_path) for v in versions
        ]
        finished, other_agent = _finished_rollouts(
            context.run_dir, suite_obj.name, commits, task_ids, model=model_name, seed=seed,
            delivery=delivery, agent_config=agent_config,
        )  # fmt: skip
        plan = AblationPlan(
            run=context.run,
            patch_id=context.final_patch.id or "",
            edits=[e.id or "" for e in selected],
            support={e.id or "": context.support[e.id or ""].support for e in selected},
            versions=versions,
            skipped=skipped,
            suite=suite_obj.name,
            split=split,
            seed=seed,
            model=model_name,
            tasks=task_ids,
            rollouts=(2 + len(versions)) * len(task_ids),
            finished=finished,
            other_agent=other_agent,
            seconds_per_task=seconds,
            tokens_per_task=tokens,
            mismatch=mismatch,
        )
        if on_plan is not None:
            on_plan(plan)
        if dry_run:
            return AblationOutcome(plan=plan, records=[])
        if not versions:
            reasons = "; ".join(f"{s.kind}/{s.edit_id}: {s.reason}" for s in skipped)
            raise AttributionError(f"no edit version can be built: {reasons or 'no edit selected'}")
        running = True
        update_stage(
            context.run_dir,
            STAGE,
            status="running",
            ended_at=None,
            error=None,
            config={
                "suite": suite_obj.name,
                "split": split,
                "seed": seed,
                "model": model_name,
                "tasks": len(task_ids),
                "edits": plan.edits,
                "kinds": list(kinds),
            },
        )
        timestamp = store.commit_time(context.result)
        by_kind: dict[str, list[PlannedVersion]] = {k: [] for k in KINDS}
        for version in versions:
            by_kind[version.kind].append(version)
        edit_of = {e.id: e for e in selected}

        def derived(version: PlannedVersion) -> DerivedCommit:
            edit = edit_of[version.edit_id]
            what = "without" if version.kind == "ablate" else "with only"
            parent = "S*" if version.kind == "ablate" else "S0"
            body = f"{parent} {what} edit {version.edit_id} ({edit.op} {edit.file}"
            body += f" {edit.target_section})" if edit.target_section else ")"
            if version.also_removed:
                body += "\nAlso removed (they need its text): " + ", ".join(version.also_removed)
            return DerivedCommit(
                id=version.edit_id,
                changes=version.changes,
                subject=f"trace2skill: {version.kind} {version.edit_id}",
                body=body,
                patch=context.final_patch.id,
                sources=context.support[version.edit_id].sources,
            )

        commits: dict[tuple[str, str], str] = {}
        if by_kind["ablate"]:
            made = write_ablations(
                store,
                context.run,
                [derived(v) for v in by_kind["ablate"]],
                timestamp=timestamp,
                result=context.result,
            )
            commits.update({("ablate", k): v for k, v in made.items()})
        if by_kind["only"]:
            made = write_only(
                store,
                context.run,
                [derived(v) for v in by_kind["only"]],
                timestamp=timestamp,
                base=context.base,
            )
            commits.update({("only", k): v for k, v in made.items()})
        from toolkit.attribution.run import refresh_bundle

        refresh_bundle(store, context)  # other clones get the new refs from the run's bundle

        subset = _task_subset(suite_obj, task_ids)
        common: dict[str, Any] = dict(
            run_dir=context.run_dir,
            seed=seed,
            limit=limit,
            delivery=delivery,
            concurrency=concurrency or default_concurrency(model_name),
            resamples=resamples,
            progress=progress,
            llm_config=config,
            agent_config=agent_config,
        )
        started = time.time()
        star_eval = evaluate(star, subset, split, model_name, **common)
        s0_eval = evaluate(s0, subset, split, model_name, **common)
        records = []
        for version in versions:
            commit = commits[(version.kind, version.edit_id)]
            skill, _ = load_version(store, context, commit)
            result = evaluate(skill, subset, split, model_name, **common)
            reference, reference_commit = (
                (star_eval, context.result) if version.kind == "ablate" else (s0_eval, context.base)
            )
            records.append(
                ablation_record(
                    context=context,
                    edit=edit_of[version.edit_id],
                    version=version,
                    commit=commit,
                    reference_commit=reference_commit,
                    result=result,
                    reference=reference,
                    resamples=resamples,
                )
            )
        path = store_ablations(context.run_dir, records)
        update_stage(
            context.run_dir,
            STAGE,
            status="done",
            ended_at=_now(),
            counts={
                "records": len(records),
                "skipped": len(skipped),
                "tasks": len(task_ids),
                "star_skill_commit": star_commit,
                "s0_skill_commit": s0_commit,
                "seconds": round(time.time() - started, 1),
            },
        )
        return AblationOutcome(plan=plan, records=records, star=star_eval, s0=s0_eval, path=path)
    except BaseException as exc:
        if running:
            update_stage(context.run_dir, STAGE, status="failed", ended_at=_now(), error=str(exc))
        raise
    finally:
        store.close()
