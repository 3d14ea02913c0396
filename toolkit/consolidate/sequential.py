"""Sequential consolidation: the paper's Seq-B baselines (the skill edited online, batch by batch).

The alternative to the parallel, hierarchical consolidation (:mod:`toolkit.consolidate.run`).
The trajectories the chosen analysts take are put in an order drawn from the run's seed and cut
into batches of B (the paper's Seq-B=1 and Seq-B=4). Step k

1. analyses its batch against the skill S_{k-1} the steps before made (S_0: the base), not
   the frozen S0: the same analysts, checks and ``analyses.jsonl`` records as the analyse
   stage (:func:`toolkit.analysts.stage.analyse_batch`; each record names its step), the kept
   patches committed on ``t2s/<run>/patch/<id>`` with S_{k-1} as parent;
2. merges the batch's kept patches into S_{k-1} with the same merge operator, as one forced
   group (one patch alone is taken as it is, without a model call; under the ``git``
   strategy a batch without conflicts takes git's textual union);
3. commits S_k on ``t2s/<run>/seq/<k>``: first parent S_{k-1}, then the batch's patch
   commits; its tree is S_{k-1} plus the merged patch, its trailers name the leaf patches
   behind it and their count (support, computed from the operator's citations, as for the
   parallel merges); its ``merges.jsonl`` line carries ``step`` = k.

The last step is ``t2s/<run>/result``; ``git log --first-parent`` of it walks the chain. A step
whose batch kept no patch, or whose merge failed, leaves the skill as it was: its commit has
S_{k-1}'s tree and its line is ``failed`` with the reason. A step is finished once its ref and
its line exist: a resume goes on at the first unfinished step and redoes nothing before it
(within a step, finished analyses are kept too).

The manifest records the stage as ``consolidate`` (config ``consolidation: sequential``), so
readers of a run's S* (index, review, provenance) find it where they find a parallel one. There
is no single final patch on S0: each step's edits anchor on the skill of the step before.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolkit.analysts.records import AnalyseConfig, AnalysisBatch, AnalysisRecord
from toolkit.analysts.stage import analyse_batch, frozen_s0, select_pairs
from toolkit.consolidate.nodes import Node, leaf_node
from toolkit.consolidate.operator import MergeOperator, OperatorSettings, Strategy
from toolkit.consolidate.records import (
    MergeRecord,
    append_merges,
    read_merges,
    read_patch,
    save_patch,
)
from toolkit.errors import ToolkitError
from toolkit.executor import Executor
from toolkit.llm.config import LLMConfig, stored_api_base
from toolkit.llm.gateway import Gateway
from toolkit.repo import SkillRepo, analyse_groups
from toolkit.repo.plumbing import CommitSpec
from toolkit.repo.trailers import Trailers, format_message
from toolkit.runs import (
    ANALYSES_FILE,
    CALLS_FILE,
    TRAJECTORIES_FILE,
    read_manifest,
    update_stage,
    with_recorded_server,
)
from toolkit.sandbox import SandboxConfig
from toolkit.skill import Budgets, Skill
from toolkit.sync import run_sync
from toolkit.tasks import Suite
from toolkit.trajectory import IMPORTED_MODEL, Trajectory, read_jsonl, read_trajectories

STAGE = "consolidate"
"""The manifest stage a sequential consolidation records (as the parallel one does)."""
#: The paper's larger sequential batch (Seq-B=4); Seq-B=1 edits the skill after every analysis.
DEFAULT_SEQ_BATCH = 4
#: Settings a resume must keep: others would plan another chain and replace S*.
RESUME_SETTINGS = ("seq_batch", "strategy", "seed", "author_model")


class SequentialConfig(BaseModel):
    """Settings of a sequential consolidation (``evolve --consolidation sequential``)."""

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(DEFAULT_SEQ_BATCH, ge=1, description="Seq-B: trajectories per step.")
    strategy: Strategy = Field(
        "llm", description="llm: the merge operator merges each batch; git: union when clean."
    )
    seed: int = Field(0, description="Draws the order of the trajectories.")
    max_tokens: int = Field(2048, ge=64, description="Room for one merge reply.")
    temperature: float | None = 0.0
    allow_protected: bool = False
    budgets: Budgets = Field(default_factory=Budgets)
    progress: bool = True


class SequentialSummary(BaseModel):
    """What a sequential consolidation did, over every step (resumed ones included)."""

    run: str
    model: str
    batch: int
    steps: int
    resumed: int = Field(description="Steps finished before this call (not redone).")
    analyses: int
    kept: int
    dropped: int
    reasons: dict[str, int] = Field(default_factory=dict)
    statuses: dict[str, int] = Field(default_factory=dict, description="Steps by merge status.")
    merge_calls: int = Field(0, description="Merge operator calls over the steps.")
    result_commit: str | None = Field(description="S* (the last step); None: nothing kept.")
    wall_s: float = 0.0


def seeded_order(trajectories: list[Trajectory], seed: int) -> list[str]:
    """The trajectories' ids in the order drawn from ``seed``: sorted by task id, then
    shuffled, so the same tasks come in the same order on every machine, resume and model
    (the rollouts' file order, which concurrency decides, plays no part)."""
    order = sorted({t.id: t for t in trajectories}.values(), key=lambda t: (t.task_id, t.id))
    random.Random(f"trace2skill-seq-{seed}").shuffle(order)
    return [t.id for t in order]


def plan_steps(count: int, batch: int) -> list[int]:
    """The batch sizes of ``count`` trajectories taken ``batch`` at a time (the last may be
    smaller): ``ceil(count / batch)`` steps."""
    if batch < 1:
        raise ValueError(f"the sequential batch must be at least 1, got {batch}")
    return [min(batch, count - start) for start in range(0, count, batch)]


def step_ref(run: str, step: int) -> str:
    """``t2s/<run>/seq/<step>``."""
    return f"t2s/{run}/seq/{step}"


def _group(step: int, steps: int) -> str:
    return f"step-{step:0{max(4, len(str(steps)))}d}"


def _check_resume(run_dir: Path, run: str, settings: dict[str, Any]) -> None:
    """Refuse to go on with a run consolidated another way or with other settings."""
    manifest = read_manifest(run_dir)
    record = manifest.stages.get(STAGE) if manifest else None
    if record is None or not record.config:
        return
    if record.config.get("consolidation") != "sequential":
        raise ToolkitError(
            f"run {run!r} was consolidated in parallel (its consolidate stage says so): a "
            "sequential consolidation would mix two ways of making S*; start a new run"
        )
    changed = [
        f"{k} {record.config[k]}"
        for k in RESUME_SETTINGS
        if k in record.config and record.config[k] != settings[k]
    ]
    if changed:
        raise ToolkitError(
            f"run {run!r} was consolidated sequentially with {', '.join(changed)}; a resume "
            "goes on with the run's settings (others would plan another chain and replace S*)"
        )


async def _merge_step(
    store: SkillRepo,
    run: str,
    run_dir: Path,
    step: int,
    steps: int,
    parent: str,
    skill: Skill,
    prefix: str,
    leaves: list[Node],
    settings: OperatorSettings,
    gateway: Gateway,
    timestamp: int,
) -> tuple[MergeRecord, str]:
    """Merge one step's kept patches into ``skill`` (at ``parent``), commit S_k on its ref and
    append its ``merges.jsonl`` line; returns the line (``commit``: the merge, or None when
    the skill stayed as it was) and S_k's commit."""
    group = _group(step, steps)
    started = time.time()
    parents: list[str] = [parent]
    changes: dict[str, bytes | None] = {}
    tree: str | None = None
    sources: list[str] = []
    body = ""
    if not leaves:
        record = MergeRecord(
            level=1,
            group=group,
            children=[],
            child_commits=[],
            status="failed",
            reason="nothing to merge: no analysis of the batch was kept; the skill is unchanged",
            forced=True,
            started_at=started,
            ended_at=time.time(),
        )
        patch = None
    else:
        [merge] = analyse_groups(store, {group: [n.commit for n in leaves]}, timestamp=timestamp)
        operator = MergeOperator(skill, prefix, settings, gateway)
        operator.register(leaves)
        # One forced group: a failed model merge falls back to the union, one patch alone
        # is taken as it is (min-support, a parallel run's final filter, stays at 1).
        operator.level, operator.forced = 1, True
        await operator.aresolve([merge])
        outcome = operator.outcomes[group]
        record, patch = outcome.record, outcome.patch
        resolution = outcome.resolution
        if resolution.passed_up or patch is None:
            record.reason = f"{record.reason}; the skill is unchanged"
            patch = None
        else:
            unresolved = [f for f in merge.conflicted_files if f not in resolution.changes]
            if unresolved:
                raise ToolkitError(
                    f"step {step} leaves conflicts unresolved in {', '.join(unresolved)}"
                )
            parents += merge.children
            changes, tree = resolution.changes, merge.union_tree
            sources = sorted(set(resolution.sources or []))
            body = resolution.body
    record.step = step
    if patch is not None and len(leaves) == 1 and leaves[0].patch.changelog_entries:
        # One patch taken as it is: its own words, not "Consolidate 1 patches".
        patch = patch.model_copy(update={"changelog_entries": leaves[0].patch.changelog_entries})
    entries = patch.changelog_entries if patch is not None else []
    subject = (
        f"trace2skill: step {step}/{steps}: {entries[0] if entries else 'merge'}"
        if patch is not None
        else f"trace2skill: step {step}/{steps}: skill unchanged"
    )
    trailers = Trailers(
        run=run,
        kind="seq",
        step=step,
        sources=sources,
        support=len(sources) or None,
        model=record.model,
    )
    message = format_message(subject[:200], trailers, body or str(record.reason or ""))
    spec = CommitSpec(parents, message, timestamp, changes=changes, tree=tree)
    # A commit written before a kill but never recorded is written again: replace its ref.
    [commit] = store.write(run, [(f"seq/{step}", spec)], replace=True)
    if patch is not None:
        save_patch(run_dir, patch)
        record.commit = commit
    append_merges(run_dir, [record])
    return record, commit


def _step_line(step: int, steps: int, record: MergeRecord, analysed: int, kept: int) -> str:
    against = "S0" if step == 1 else f"S{step - 1}"
    if record.commit:
        what = f"{record.status}: {len(record.edits)} edit(s) -> S{step}"
    else:
        what = f"S{step} = {against} ({record.reason})"
    return f"  step {step}/{steps}: {analysed} analysed against {against}, {kept} kept; {what}"


async def arun_sequential(
    run_dir: str | Path,
    analyse: AnalyseConfig,
    config: SequentialConfig | None = None,
    *,
    llm_config: LLMConfig | None = None,
    executor: Executor | None = None,
    sandbox_config: SandboxConfig | None = None,
    suite: Suite | None = None,
    before_step: Callable[[int], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> SequentialSummary:
    """Consolidate a run sequentially (see the module docstring); resumable.

    Args:
        run_dir: the run folder (holds ``trajectories.jsonl``).
        analyse: the analysts' settings (as for :func:`~toolkit.analysts.run_analyses`).
        config: the chain's settings (Seq-B, merge strategy, seed).
        llm_config: gateway settings; its model is replaced by the author model.
        executor: runs each batch's analyses (a budget executor stops between them).
        sandbox_config: the agentic analyst's sandbox pool settings.
        suite: the suite of the trajectories (as for the analyse stage).
        before_step: called with the step number before an unfinished step starts (a budget
            check may raise there).
        echo: where one line per finished step goes.

    Returns:
        The summary; ``result_commit`` is None when no analysis of any step was kept (then
        ``t2s/<run>/result`` is not written and the stage is recorded ``failed``).

    Raises:
        ToolkitError: no trajectories, nothing for the analysts, a run consolidated another
            way or with other settings; the analysts' and the merge operator's errors.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = config or SequentialConfig()
    say = echo or (lambda _line: None)
    path = run_dir / TRAJECTORIES_FILE
    if not path.is_file():
        raise ToolkitError(f"{run_dir} has no {TRAJECTORIES_FILE}: roll out first")
    trajectories = read_trajectories(path).records
    if not trajectories:
        raise ToolkitError(f"{path} holds no trajectories")
    store, aconfig, s0 = frozen_s0(run_dir, analyse)
    try:
        return await _chain(
            run_dir,
            store,
            aconfig,
            s0,
            trajectories,
            config,
            llm_config=llm_config or LLMConfig.from_env(),
            executor=executor,
            sandbox_config=sandbox_config,
            suite=suite,
            before_step=before_step,
            say=say,
            started=started,
        )
    finally:
        store.close()


async def _chain(
    run_dir: Path,
    store: SkillRepo,
    aconfig: AnalyseConfig,
    s0: Skill,
    trajectories: list[Trajectory],
    config: SequentialConfig,
    *,
    llm_config: LLMConfig,
    executor: Executor | None,
    sandbox_config: SandboxConfig | None,
    suite: Suite | None,
    before_step: Callable[[int], None] | None,
    say: Callable[[str], None],
    started: float,
) -> SequentialSummary:
    # The author model as the analyse stage resolves it: given, else the agent's.
    agent_model = trajectories[0].model
    model = aconfig.model or (llm_config.model if agent_model == IMPORTED_MODEL else agent_model)
    aconfig = aconfig.model_copy(update={"model": model})
    assert aconfig.run_id and aconfig.base_commit and aconfig.skill_path is not None
    run, base, rel = aconfig.run_id, aconfig.base_commit, aconfig.skill_path
    pairs, _skipped = select_pairs(trajectories, aconfig)
    order = seeded_order([t for t, _ in pairs], config.seed)
    sizes = plan_steps(len(order), config.batch)
    batches, start = [], 0
    for size in sizes:
        batches.append(order[start : start + size])
        start += size
    steps = len(batches)
    settings = {
        "seq_batch": config.batch,
        "strategy": config.strategy,
        "seed": config.seed,
        "author_model": model,
    }
    _check_resume(run_dir, run, settings)
    llm = llm_config.model_copy(update={"model": model})
    if llm.calls_log is None:
        llm = llm.model_copy(update={"calls_log": run_dir / CALLS_FILE})
    gateway = Gateway(with_recorded_server(llm, read_manifest(run_dir), model, "author"))
    operator_settings = OperatorSettings(
        strategy=config.strategy,
        model=model,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        budgets=config.budgets,
        allow_protected=config.allow_protected,
    )
    stage_config = {
        "consolidation": "sequential",
        **settings,
        **config.model_dump(mode="json", exclude={"batch", "progress", "strategy", "seed"}),
        "steps": steps,
        "repo": str(store.root),
        "skill_path": rel,
        "run": run,
        "api_base": stored_api_base(gateway.config.api_base),
    }
    update_stage(run_dir, STAGE, status="running", config=stage_config, counts={}, error=None)
    prefix = f"{rel}/" if rel else ""
    timestamp = store.commit_time(base)
    done = {r.step: r for r in read_merges(run_dir) if r.step is not None}
    refs = store.run_refs(run)
    records: list[MergeRecord] = []
    resumed = 0
    parent = base
    try:
        for step, ids in enumerate(batches, start=1):
            ref = step_ref(run, step)
            old = done.get(step)
            if old is not None and ref in refs and old.commit in (None, refs[ref]):
                parent, resumed = refs[ref], resumed + 1
                records.append(old)
                continue
            if before_step is not None:
                before_step(step)
            skill = s0 if parent == base else store.load_skill(parent, rel)
            batch = AnalysisBatch(step=step, steps=steps, trajectory_ids=ids, parent=parent)
            analysed = await analyse_batch(
                run_dir,
                aconfig,
                store,
                skill,
                trajectories,
                batch,
                progress=config.progress,
                llm_config=llm,
                executor=executor,
                sandbox_config=sandbox_config,
                suite=suite,
            )
            leaves = [
                leaf_node(read_patch(run_dir, pid), analysed.branches[pid])
                for pid in analysed.patch_ids
            ]
            record, parent = await _merge_step(
                store, run, run_dir, step, steps, parent, skill, prefix, leaves,
                operator_settings, gateway, timestamp,
            )  # fmt: skip
            records.append(record)
            say(_step_line(step, steps, record, analysed.trajectories, analysed.kept))
        analyses = [
            r
            for r in read_jsonl(run_dir / ANALYSES_FILE, AnalysisRecord).records
            if r.step is not None
        ]
        kept = sum(r.status == "kept" for r in analyses)
        totals = {
            "trajectories": len(analyses),
            "kept": kept,
            "dropped": len(analyses) - kept,
            "reasons": dict(Counter((r.reason or "").split(":")[0] for r in analyses if r.reason)),
        }
        update_stage(run_dir, "analyse", counts=totals)
        statuses = Counter(r.status for r in records)
        counts: dict[str, Any] = {
            "steps": steps,
            "steps_done": len(records),
            "resumed": resumed,
            "analyses": len(analyses),
            "kept": kept,
            **{f"steps_{k}": v for k, v in sorted(statuses.items())},
            "llm_calls": sum(r.attempts for r in records),
            "cached_calls": sum(r.cached for r in records),
            "final_patch_id": None,
        }
        result = parent if kept else None
        if result is None:
            update_stage(
                run_dir,
                STAGE,
                status="failed",
                counts=counts,
                error=f"no analysis of the {len(analyses)} was kept: S* would be S0",
            )
        else:
            store.set_refs(run, {"result": result}, replace=True)
            counts["result_commit"] = result
            update_stage(run_dir, STAGE, status="done", counts=counts, ended_at=_iso_now())
    except BaseException as exc:
        status = (
            "interrupted"
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
            or not isinstance(exc, Exception)
            else "failed"
        )
        update_stage(run_dir, STAGE, status=status, error=str(exc)[:500])
        raise
    finally:
        gateway.close()
    return SequentialSummary(
        run=run,
        model=model,
        batch=config.batch,
        steps=steps,
        resumed=resumed,
        analyses=len(analyses),
        kept=kept,
        dropped=len(analyses) - kept,
        reasons=totals["reasons"],
        statuses=dict(statuses),
        merge_calls=counts["llm_calls"],
        result_commit=result,
        wall_s=round(time.perf_counter() - started, 3),
    )


def _iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def run_sequential(
    run_dir: str | Path,
    analyse: AnalyseConfig,
    config: SequentialConfig | None = None,
    **kwargs: Any,
) -> SequentialSummary:
    """Synchronous :func:`arun_sequential` (not from inside a running event loop)."""
    return run_sync(arun_sequential(run_dir, analyse, config, **kwargs))
