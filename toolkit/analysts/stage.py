"""The analyse stage: every selected trajectory of a run -> one analysis -> one leaf patch.

:func:`run_analyses` / :func:`arun_analyses`:

1. reads ``trajectories.jsonl`` and finds S0: the skill folder (``config.skill_path``, else
   the rollout's recorded ``skill_path``) in its git repository; ``t2s/<run>/base`` is
   snapshotted from it if the run has no base yet, and S0 is read back from the base, so
   every analyst sees the same frozen skill;
2. selects trajectories (made with S0, or imported) and an analyst for each
   (:func:`~toolkit.analysts.records.analyst_for`), at most ``config.limit``;
3. runs the analyses through the stage runner (:mod:`toolkit.runs`), concurrently; each
   result is checked (leak filter, patch engine against S0), its patch saved to
   ``patches/<id>.json`` and its record appended to ``analyses.jsonl``, kept or dropped
   with the reason;
4. commits every kept patch on ``t2s/<run>/patch/<id>`` in one batch.

``resume=True`` skips the analyses already in ``analyses.jsonl`` (by analysis id) and commits
any kept patch whose branch is missing.

:func:`analyse_batch` runs the same on one step of a sequential consolidation
(:mod:`toolkit.consolidate.sequential`): a batch of trajectories against the skill the steps
before made instead of S0, its patches committed on that skill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from toolkit.analysts.agentic import analyse_error_agentic
from toolkit.analysts.calls import AnalystOutput
from toolkit.analysts.patches import check_patch, commit_patches, save_patch
from toolkit.analysts.records import (
    MAX_REPORT_CHARS,
    AnalyseConfig,
    AnalyseSummary,
    AnalysisBatch,
    AnalysisRecord,
    AnalysisUnit,
    analysis_id,
    analyst_for,
)
from toolkit.analysts.single import analyse_error_single, analyse_success
from toolkit.analysts.specific import task_text
from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError, ToolkitNotice
from toolkit.executor import Executor, LocalExecutor
from toolkit.llm.config import LLMConfig, stored_api_base
from toolkit.llm.gateway import Gateway
from toolkit.patch import Patch
from toolkit.repo import SkillRepo, sanitize_run_id
from toolkit.rollout import default_concurrency
from toolkit.runs import (
    ANALYSES_FILE,
    CALLS_FILE,
    PATCHES_DIR,
    TRAJECTORIES_FILE,
    StageSpec,
    read_manifest,
    run_epoch,
    run_stage,
    update_stage,
    with_recorded_server,
)
from toolkit.sandbox import SandboxConfig, SandboxPool
from toolkit.skill import Skill
from toolkit.sync import run_sync
from toolkit.tasks import Suite, Task, TaskError, get_suite, reopen_suite
from toolkit.tokens import TokenTally
from toolkit.trajectory import (
    IMPORTED_MODEL,
    Trajectory,
    append_jsonl,
    read_jsonl,
    read_trajectories,
    repair_jsonl,
    skill_commit,
    task_seed,
)

STAGE = "analyse"


class AnalyseError(ToolkitError):
    """The analyse stage cannot start as asked (no trajectories, no skill, nothing to do)."""


def _skill_folder(run_dir: Path, config: AnalyseConfig) -> Path:
    if config.skill_path:
        return Path(config.skill_path)
    manifest = read_manifest(run_dir)
    source = None
    for stage in ("rollout", "import"):
        record = manifest.stages.get(stage) if manifest else None
        # The absolute folder first: skill_path is as the user gave it, relative to the
        # directory the rollout ran in, which a later call need not share.
        absolute = record.config.get("skill_dir") if record else None
        if absolute and Path(absolute).is_dir():
            return Path(absolute)
        recorded = record.config.get("skill_path") if record else None
        if recorded:
            return Path(recorded)
        source = source or (record.config.get("skill_source") if record else None)
    if source:
        raise AnalyseError(
            f"{run_dir}'s rollouts read the skill from git ({source}), not from a folder: pass "
            "--skill FOLDER holding that version (patches are made against a folder; a "
            "different version is refused)"
        )
    raise AnalyseError(
        f"{run_dir} does not record which skill its trajectories used: pass --skill FOLDER"
    )


def recorded_suite(run_dir: Path) -> Suite | None:
    """The suite the run's rollouts (or import) read, on the data they read (a jsonl task
    file included); None when the run records none.

    Raises:
        TaskError: the recorded task file is not on this machine.
    """
    manifest = read_manifest(run_dir)
    for stage in ("rollout", "import"):
        record = manifest.stages.get(stage) if manifest else None
        name = record.config.get("suite") if record else None
        if record is not None and name:
            return reopen_suite(name, record.config.get("suite_source"))
    return None


def frozen_s0(run_dir: Path, config: AnalyseConfig) -> tuple[SkillRepo, AnalyseConfig, Skill]:
    """Open the skill repository, make sure ``t2s/<run>/base`` exists, read S0 from it; the
    config comes back resolved (repository, skill folder, run id, base, S0's tree id)."""
    folder = _skill_folder(run_dir, config)
    missing = AnalyseError(f"skill folder {folder} does not exist: pass --skill FOLDER")
    # A base that exists is S0 (Creation's draft lives only there): the folder is needed on
    # disk only to find the repository or to snapshot a base.
    if not folder.is_dir() and not config.repo:
        raise missing
    store = SkillRepo.open(config.repo or folder)
    rel = store.relpath(folder)
    manifest = read_manifest(run_dir)
    run_id = config.run_id or sanitize_run_id(manifest.run_id if manifest else run_dir.name)
    refs = store.run_refs(run_id)
    prefix = f"t2s/{run_id}/patch/"
    foreign = sorted(
        name[len(prefix) :]
        for name in refs
        if name.startswith(prefix)
        and not (run_dir / PATCHES_DIR / f"{name[len(prefix) :]}.json").is_file()
    )
    if foreign:
        # Another run folder of the same name analysed into these refs: the two would mix.
        raise AnalyseError(
            f"run id {run_id!r} already has patch refs in {store.root} that {run_dir} does "
            f"not hold ({len(foreign)}, e.g. {foreign[0]}): another run folder with the same "
            f"name? Choose another run id (--run-id, AnalyseConfig.run_id) or delete them "
            f"(trace2skill refs delete {run_id} --yes)"
        )
    base = refs.get(f"t2s/{run_id}/base")
    if base is None:
        if not folder.is_dir():
            raise missing
        base = store.snapshot_base(run_id, store.root / rel, timestamp=run_epoch(run_dir))
    s0 = store.load_skill(base, rel)
    resolved = config.model_copy(
        update={
            "repo": str(store.root),
            "skill_path": rel,
            "run_id": run_id,
            "base_commit": base,
            "skill_commit": skill_commit(s0),
        }
    )
    return store, resolved, s0


def select_pairs(
    trajectories: list[Trajectory], config: AnalyseConfig
) -> tuple[list[tuple[Trajectory, str]], int]:
    """(trajectory, analyst) pairs to analyse, in file order, and how many were skipped."""
    made_with_s0 = [
        t for t in trajectories if t.source == "import" or t.skill_commit == config.skill_commit
    ]
    if trajectories and not made_with_s0:
        used = sorted({t.skill_commit[:12] for t in trajectories})
        raise AnalyseError(
            f"no trajectory was made with the skill at t2s/{config.run_id}/base (tree "
            f"{(config.skill_commit or '')[:12]}); they used {', '.join(used)}: pass the "
            "skill folder they used with --skill"
        )
    pairs = [(t, kind) for t in made_with_s0 if (kind := analyst_for(config.analyst, t.passed))]
    if not pairs:
        wanted = "passed" if config.analyst == "success" else "failed"
        raise AnalyseError(
            f"no {wanted} trajectories to analyse with --analyst {config.analyst} "
            f"({len(made_with_s0)} trajectories, {sum(t.passed for t in made_with_s0)} passed); "
            + (
                "use --analyst success or combined"
                if wanted == "failed"
                else "use --analyst error or combined"
            )
        )
    skipped = len(trajectories) - len(pairs)
    if config.limit is not None:
        skipped += max(0, len(pairs) - config.limit)
        pairs = pairs[: config.limit]
    return pairs, skipped


def _record(
    unit: AnalysisUnit,
    trajectory: Trajectory,
    out: AnalystOutput,
    s0: Skill,
    config: AnalyseConfig,
    started: float,
    task: Task | None = None,
) -> tuple[AnalysisRecord, Patch | None]:
    """The analysis' record (kept or dropped, with the reason) and its leaf patch.

    ``task``: the analysed task, whose input files the task-specific check reads (None: the
    check is skipped).
    """
    fields: dict[str, Any] = {
        "id": unit.id,
        "trajectory_id": trajectory.id,
        "task_id": trajectory.task_id,
        "outcome": "pass" if trajectory.passed else "fail",
        "analyst": unit.analyst,
        "model": config.model,
        "fix_passed": out.fix_passed,
        "turns": out.turns,
        "tokens_in": out.tokens_in,
        "tokens_out": out.tokens_out,
        "started_at": started,
        "ended_at": time.time(),
        "report": out.report[:MAX_REPORT_CHARS],
    }
    if out.failure is not None or out.reply is None:
        reason = out.failure or "no-reply"
        return AnalysisRecord(status="dropped", reason=reason, **fields), None
    data_text = task_text(task) if task is not None else ""
    checked = check_patch(
        out.reply.patch,
        s0,
        trajectory.verdict.gold,
        unit.id,
        data_text,
        question=trajectory.question,
    )
    if checked.patch is None:
        record = AnalysisRecord(
            status="dropped", reason=checked.reason, dropped_edits=checked.dropped, **fields
        )
        return record, None
    record = AnalysisRecord(
        status="kept",
        patch_id=checked.patch.id,
        dropped_edits=checked.dropped,
        repaired_edits=checked.repaired,
        **fields,
    )
    return record, checked.patch


async def arun_analyses(
    run_dir: str | Path,
    config: AnalyseConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    llm_config: LLMConfig | None = None,
    executor: Executor | None = None,
    sandbox_config: SandboxConfig | None = None,
    suite: Suite | None = None,
) -> AnalyseSummary:
    """Async :func:`run_analyses` (same arguments)."""
    wall0 = time.perf_counter()
    run_path = Path(run_dir)
    config = config or AnalyseConfig()
    traj_path = run_path / TRAJECTORIES_FILE
    if not traj_path.is_file():
        raise AnalyseError(f"{run_path} has no {TRAJECTORIES_FILE}: roll out or import first")
    trajectories = read_trajectories(traj_path).records
    if not trajectories:
        raise AnalyseError(f"{traj_path} holds no trajectories")
    analyses_path = run_path / ANALYSES_FILE
    manifest = read_manifest(run_path)
    if not resume and (
        (analyses_path.exists() and analyses_path.stat().st_size > 0)
        or (manifest is not None and STAGE in manifest.stages)
    ):
        found = (
            ANALYSES_FILE
            if analyses_path.exists() and analyses_path.stat().st_size > 0
            else f"its manifest's {STAGE} stage"
        )
        raise AnalyseError(
            f"{run_path} was already analysed ({found}); pass --resume to continue it "
            "(with another --analyst too: finished analyses are kept, the others are added, "
            "and those dropped on a model error are done again)"
        )
    store, config, s0 = frozen_s0(run_path, config)
    try:
        return await _analyse(
            run_path,
            config,
            store,
            s0,
            trajectories,
            resume=resume,
            progress=progress,
            llm_config=llm_config,
            executor=executor,
            sandbox_config=sandbox_config,
            suite=suite,
            wall0=wall0,
        )
    finally:
        store.close()


def _refuse_new_after_consolidation(
    run_path: Path, analyses_path: Path, units: list[AnalysisUnit]
) -> None:
    """Refuse a resume that would add patches to a run already consolidated (before the
    analyses file is touched): S* was merged from the patches there were, so new ones (another
    --analyst or --author-model, or analyses retried after a model error) would sit beside
    S* unmerged while the run reads as finished."""
    from toolkit.consolidate.records import MERGES_FILE
    from toolkit.consolidate.run import STAGE as CONSOLIDATE

    manifest = read_manifest(run_path)
    merges = run_path / MERGES_FILE
    if not (
        (manifest is not None and CONSOLIDATE in manifest.stages)
        or (merges.is_file() and merges.stat().st_size > 0)
    ):
        return
    done = {
        r.id
        for r in read_jsonl(analyses_path, AnalysisRecord).records
        if not failed_on_model_error(r)
    }
    new = Counter(u.analyst for u in units if u.id not in done)
    if new:
        which = ", ".join(f"{n} {kind}" for kind, n in sorted(new.items()))
        raise AnalyseError(
            f"{run_path} was already consolidated (S* merges the patches it had): {which} "
            "analyses more would not be in S*. Analyse in a new run instead: `trace2skill "
            f"evolve ... --reuse {run_path}` shares this run's rollouts"
        )


def failed_on_model_error(record: object) -> bool:
    """Whether an analyses.jsonl record was dropped on a model error (a server down, a wrong
    address): a resume analyses its trajectory again."""
    return (
        isinstance(record, dict)
        and record.get("status") == "dropped"
        and str(record.get("reason") or "").startswith("model-error")
    )


def drop_model_errors(path: Path, only: set[str] | None = None) -> int:
    """Remove the analyses dropped on a model error (a server down, a wrong address) from
    ``path`` so a resume does them again; return how many went. ``only``: just those with
    these analysis ids. Every other line stays byte-identical; the file is rewritten
    atomically."""
    if not path.is_file():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            kept.append(line)
            continue
        if failed_on_model_error(record) and (only is None or record.get("id") in only):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_atomic(path, "".join(kept))
    return dropped


async def _analyse(
    run_path: Path,
    config: AnalyseConfig,
    store: SkillRepo,
    s0: Skill,
    trajectories: list[Trajectory],
    *,
    resume: bool,
    progress: bool,
    llm_config: LLMConfig | None,
    executor: Executor | None,
    sandbox_config: SandboxConfig | None,
    suite: Suite | None,
    wall0: float,
    batch: AnalysisBatch | None = None,
) -> AnalyseSummary:
    llm = llm_config or LLMConfig.from_env()
    # The agent's own model, unless an import did not name one: then the configured default
    # ($TRACE2SKILL_MODEL or the embedded model), never a call to a model named "imported".
    agent_model = trajectories[0].model
    model = config.model or (llm.model if agent_model == IMPORTED_MODEL else agent_model)
    concurrency = config.concurrency or default_concurrency(model)
    config = config.model_copy(
        update={
            "model": model,
            "concurrency": concurrency,
            "executor": (executor or LocalExecutor()).name,
        }
    )
    pairs, skipped = select_pairs(trajectories, config)
    if batch is not None:  # one step of a sequential consolidation: its batch, in its order
        position = {tid: k for k, tid in enumerate(batch.trajectory_ids)}
        pairs = sorted((p for p in pairs if p[0].id in position), key=lambda p: position[p[0].id])
        skipped = 0
    # The skill analysed: S0, or for a batch the skill the steps before made (its analyses
    # are other analyses than S0's of the same trajectories: other ids).
    analysed_skill = skill_commit(s0) if batch is not None else config.skill_commit
    by_id = {t.id: t for t, _ in pairs}
    units = [
        AnalysisUnit(
            id=analysis_id(t.id, kind, model, analysed_skill or "", config.seed),
            trajectory_id=t.id,
            analyst=kind,  # type: ignore[arg-type]
        )
        for t, kind in pairs
    ]
    analyses_path = run_path / ANALYSES_FILE
    if resume and batch is None:  # a sequential run's merges come step by step
        _refuse_new_after_consolidation(run_path, analyses_path, units)
    if resume and repair_jsonl(analyses_path):
        warnings.warn(
            f"cut an incomplete last line off {analyses_path}", ToolkitNotice, stacklevel=2
        )
    if resume:
        # A batch retries its own failed analyses only: a finished step's stay as they were.
        retried = drop_model_errors(
            analyses_path, {u.id for u in units} if batch is not None else None
        )
        if retried:
            warnings.warn(
                f"analysing {retried} trajectories again whose model call failed last time",
                ToolkitNotice,
                stacklevel=2,
            )
    previous = {r.id: r for r in read_jsonl(analyses_path, AnalysisRecord).records}
    wanted = {u.id for u in units}
    finished = [previous[i] for i in wanted if i in previous]

    llm = llm.model_copy(
        update={
            "model": model,
            "calls_log": run_path / CALLS_FILE,
            "concurrency": max(llm.concurrency, concurrency),
        }
    )
    # The agent's model (or an author model an earlier stage used) on the server the run
    # recorded for it, unless --api-base names another.
    llm = with_recorded_server(llm, read_manifest(run_path), model, "author")
    gateway = Gateway(llm)
    pools: list[SandboxPool] = []
    tasks: dict[tuple[str, str], Task] = {}
    # The suite given, else the one the run recorded (a jsonl run's own task file: its name
    # alone finds no tasks), else each trajectory's suite by name.
    suites = [suite] if suite is not None else []
    try:
        recorded = recorded_suite(run_path)
    except TaskError as exc:
        warnings.warn(
            f"{exc}; analyses that need the task will be dropped", ToolkitNotice, stacklevel=2
        )
        recorded = None
    if recorded is not None:
        suites.append(recorded)
    suiteless = sum(
        u.analyst == "error-agentic" and u.id not in previous and not by_id[u.trajectory_id].suite
        for u in units
    )
    if suiteless and suite is None:
        # Each would be dropped as task-unknown after the run had started.
        raise AnalyseError(
            f"{suiteless} failed trajectories name no task suite (imported without --suite): "
            "the agentic error analyst re-runs each task, so give --suite (and --data for "
            "your own tasks), or choose --analyst error-single (one call per failure, no task)"
        )

    def task_of(trajectory: Trajectory) -> tuple[Suite, Task]:
        suite_obj = next((s for s in suites if s.name == trajectory.suite), None)
        if suite_obj is None and not trajectory.suite and suite is not None:
            suite_obj = suite  # imported without a suite: the one given now
        suite_obj = suite_obj or get_suite(trajectory.suite)
        key = (suite_obj.name, trajectory.task_id)
        if key not in tasks:
            tasks[key] = suite_obj.load_ids([trajectory.task_id])[0]
        return suite_obj, tasks[key]

    @contextlib.asynccontextmanager
    async def resources() -> AsyncIterator[None]:
        agentic = sum(u.analyst == "error-agentic" and u.id not in previous for u in units)
        if not agentic:
            yield
            return
        size = min(concurrency, agentic)
        async with SandboxPool(size=size, config=sandbox_config) as pool:
            pools.append(pool)
            yield

    # Model calls of this call, and how many the response cache answered: a rerun replayed
    # from the cache spends 0 tokens, which the summary says rather than leave unexplained.
    calls = Counter[str]()

    async def work(unit: AnalysisUnit) -> tuple[AnalysisRecord, Patch | None]:
        trajectory = by_id[unit.trajectory_id]
        started = time.time()
        seed = task_seed(config.seed, trajectory.id)
        task: Task | None = None
        try:
            suite_obj, task = task_of(trajectory)
        except ToolkitError as exc:
            task_error = str(exc)
        if unit.analyst == "error-agentic":
            if task is None:
                out = AnalystOutput(fix_passed=False, failure=f"task-unknown: {task_error}")
            else:
                out = await analyse_error_agentic(
                    gateway, config, s0, trajectory, suite_obj, task, pools[0], seed
                )
        elif unit.analyst == "error-single":
            out = await analyse_error_single(gateway, config, s0, trajectory, seed)
        else:
            out = await analyse_success(gateway, config, s0, trajectory, seed)
        calls.update(made=out.calls, cached=out.cached)
        # A single-call analyst needs no task; without one the task-specific check is skipped.
        # The checks read the task's files and run the patch engine: off the event loop.
        record, patch = await asyncio.to_thread(
            _record, unit, trajectory, out, s0, config, started, task
        )
        if batch is not None:
            record = record.model_copy(update={"step": batch.step})
        return record, patch

    def save(result: tuple[AnalysisRecord, Patch | None]) -> None:
        record, patch = result
        if patch is not None:  # the file first: a record's patch_id always has its file
            save_patch(run_path, patch)
        append_jsonl(analyses_path, record)

    spec: StageSpec[AnalysisUnit, tuple[AnalysisRecord, Patch | None]] = StageSpec(
        run_dir=run_path,
        name=STAGE,
        label=f"analyse {config.analyst}"
        + (f" step {batch.step}/{batch.steps}" if batch is not None else ""),
        unit="analysis",
        config={**config.model_dump(mode="json"), "api_base": stored_api_base(llm.api_base)},
        units=units,
        finished=previous.keys(),
        work=work,
        save=save,
        passed=lambda result: result[0].status == "kept",
        already_passed=sum(r.status == "kept" for r in finished),
        resources=resources,
        executor=executor,
        concurrency=concurrency,
        progress=progress,
    )
    try:
        new = await run_stage(spec, lambda results: {"ran": len(results)})
    finally:
        gateway.close()
    records = finished + [record for record, _ in new]
    order = {u.id: k for k, u in enumerate(units)}
    records.sort(key=lambda r: order[r.id])
    assert config.run_id is not None and config.skill_path is not None
    branches = commit_patches(
        store,
        config.run_id,
        config.skill_path,
        s0,
        records,
        run_path,
        timestamp=run_epoch(run_path),
        parent=batch.parent if batch is not None else None,
    )
    kept = [r for r in records if r.status == "kept"]
    tokens = TokenTally.of((r.tokens_in, r.tokens_out) for r in records)
    summary = AnalyseSummary(
        run_dir=run_path,
        run_id=config.run_id,
        analyst=config.analyst,
        model=model,
        trajectories=len(units),
        ran=len(new),
        resumed=len(finished),
        kept=len(kept),
        dropped=len(records) - len(kept),
        reasons=dict(Counter((r.reason or "").split(":")[0] for r in records if r.reason)),
        patch_ids=[r.patch_id for r in kept if r.patch_id],
        branches={r.patch_id: branches[r.patch_id] for r in kept if r.patch_id},
        skipped=skipped,
        tokens_in=tokens.tokens_in,
        tokens_out=tokens.tokens_out,
        tokens_unreported=tokens.unreported,
        calls=calls["made"],
        cache_hits=calls["cached"],
        wall_s=time.perf_counter() - wall0,
    )
    if batch is None:  # a sequential consolidation records its steps' totals itself
        update_stage(
            run_path,
            STAGE,
            counts=summary.model_dump(
                mode="json",
                include={"trajectories", "ran", "resumed", "kept", "dropped", "reasons", "skipped"},
            ),
        )
    failed = [r for r, _ in new if str(r.reason or "").startswith("model-error")]
    if new and len(failed) == len(new):
        raise AnalyseError(
            f"the model failed on every one of the {len(new)} analyses, so none was kept; "
            f"first error: {str(failed[0].reason).removeprefix('model-error: ')}. Fix the "
            "model settings (--author-model, --api-base, the provider's API key) and run "
            "`trace2skill analyse --resume` (evolve --resume goes on by itself): the failed "
            "analyses run again"
        )
    return summary


async def analyse_batch(
    run_dir: Path,
    config: AnalyseConfig,
    store: SkillRepo,
    skill: Skill,
    trajectories: list[Trajectory],
    batch: AnalysisBatch,
    *,
    progress: bool = True,
    llm_config: LLMConfig | None = None,
    executor: Executor | None = None,
    sandbox_config: SandboxConfig | None = None,
    suite: Suite | None = None,
) -> AnalyseSummary:
    """Analyse one step's batch of a sequential consolidation against ``skill`` (the skill the
    steps before made, committed at ``batch.parent``) instead of S0: the same analysts,
    checks and records as the stage (each record names its step), the kept patches committed
    on ``t2s/<run>/patch/<id>`` with parent ``batch.parent``. Resumable as the stage is
    (finished analyses of the batch are kept; those dropped on a model error are done again).

    ``config`` is resolved as :func:`frozen_s0` returns it (S0's tree selects the
    trajectories made with S0); ``trajectories`` are the run's. The summary is the batch's.
    """
    return await _analyse(
        Path(run_dir),
        config,
        store,
        skill,
        trajectories,
        resume=True,
        progress=progress,
        llm_config=llm_config,
        executor=executor,
        sandbox_config=sandbox_config,
        suite=suite,
        wall0=time.perf_counter(),
        batch=batch,
    )


def run_analyses(
    run_dir: str | Path,
    config: AnalyseConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    llm_config: LLMConfig | None = None,
    executor: Executor | None = None,
    sandbox_config: SandboxConfig | None = None,
    suite: Suite | None = None,
) -> AnalyseSummary:
    """Analyse the trajectories of a run into leaf patches; see the module docstring.

    Args:
        run_dir: the run folder (holds ``trajectories.jsonl``; gets ``analyses.jsonl``,
            ``patches/``, the ``analyse`` stage in ``manifest.json`` and model calls in
            ``llm_calls.jsonl``).
        config: the stage's settings (:class:`AnalyseConfig`: analyst, author model, seed,
            limit, skill folder and repository...); unset fields are resolved from the run.
        resume: continue an earlier call (finished analyses are kept, not redone).
        progress: draw a progress bar on stderr.
        llm_config: gateway settings (cache, retries, API base); its model is replaced by the
            author model and its calls log by the run's.
        executor: runs the analyses (default: :class:`~toolkit.executor.LocalExecutor`).
        sandbox_config: the agentic analyst's sandbox pool settings.
        suite: the suite object to use for the trajectories' suite (e.g. one with a custom
            data folder); others are loaded by name.

    Returns:
        An :class:`AnalyseSummary` over every analysis of the run.

    Raises:
        ToolkitError: no trajectories, no skill, no trajectory for the chosen analyst, an
            earlier analyse stage without ``resume``, a repository problem.
    """
    return run_sync(
        arun_analyses(
            run_dir,
            config,
            resume=resume,
            progress=progress,
            llm_config=llm_config,
            executor=executor,
            sandbox_config=sandbox_config,
            suite=suite,
        )
    )
