"""The consolidation stage: leaf patches -> level-by-level group merges -> ``t2s/<run>/result``.

:func:`run_consolidation` (sync) / :func:`arun_consolidation` (async) read the run's leaf
patches (refs ``t2s/<run>/patch/<id>`` and ``patches/<id>.json``), then per level: plan
groups of at most ``merge_batch`` children (balanced: near-equal sizes), let
git analyse every group in a few processes, let the :class:`MergeOperator` resolve all groups
concurrently, write the merge commits in one batch, save the consolidated patches and append
the level's ``merges.jsonl`` lines. At ``max_levels``, or as soon as one group can hold
everything left, a final forced merge makes one patch; ``t2s/<run>/result`` points at it.

Resuming: a finished group is a ref plus a ``merges.jsonl`` line; with ``resume`` such groups
are reused as they are and only the rest is redone (the gateway's cache makes redone model
calls free as well).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolkit.consolidate.nodes import Node, leaf_node, merged_node
from toolkit.consolidate.operator import GroupOutcome, MergeOperator, OperatorSettings, Strategy
from toolkit.consolidate.records import (
    MergeRecord,
    append_merges,
    read_merges,
    read_patch,
    save_patch,
)
from toolkit.errors import ToolkitError
from toolkit.llm.config import LLMConfig, stored_api_base
from toolkit.llm.gateway import Gateway
from toolkit.progress import Progress
from toolkit.repo import (
    SkillRepo,
    analyse_groups,
    base_of,
    open_run_repo,
    sanitize_run_id,
    write_group_commits,
)
from toolkit.runs import (
    CALLS_FILE,
    MANIFEST_FILE,
    read_manifest,
    update_stage,
    with_recorded_server,
)
from toolkit.skill import Budgets
from toolkit.sync import run_sync
from toolkit.tokens import TokenTally

STAGE = "consolidate"


class ConsolidateConfig(BaseModel):
    """Settings of the consolidation stage (the CLI options, one to one)."""

    model_config = ConfigDict(extra="forbid")

    merge_batch: int = Field(default=5, ge=2)
    """B: most children per group."""
    max_levels: int = Field(default=5, ge=1)
    """L_max: the level at which everything left is merged at once."""
    min_support: int = Field(default=1, ge=1)
    """Edits of S* backed by fewer leaf patches are dropped (applied on the final merge)."""
    strategy: Strategy = "llm"
    """``llm``: every group goes to the merge operator; ``git``: conflict-free groups take
    git's textual union without a model call."""
    author_model: str | None = None
    """Model of the merge operator (default: the gateway's model)."""
    max_tokens: int = Field(default=2048, ge=64)
    temperature: float | None = 0.0
    allow_protected: bool = False
    """Let merges edit scripts/ and assets/."""
    budgets: Budgets = Field(default_factory=Budgets)
    repo: Path | None = None
    """Skill repository (default: the run manifest's ``repo``, else the current directory)."""
    skill_path: str | None = None
    """Skill folder, relative to the repository root (default: from the manifest)."""
    run: str | None = None
    """Ref namespace ``t2s/<run>/`` (default: from the manifest, else the run folder's name)."""
    resume: bool = False
    progress: bool = True


class ConsolidationSummary(BaseModel):
    """What a consolidation did."""

    run_dir: str
    run: str
    model: str | None
    strategy: Strategy
    leaves: int
    levels: int
    groups: int
    merged: int = 0
    union: int = 0
    passed_up: int = 0
    failed: int = 0
    resumed: int = 0
    """Groups reused from an earlier (interrupted) consolidation."""
    model_unused: int = 0
    """Groups the merge model was asked to merge whose reply was not used (invalid, cut off,
    failing the guardrails): they fell back to the union or were passed up."""
    model_unused_reason: str | None = None
    """The first such group's reason, as ``merges.jsonl`` records it."""
    llm_calls: int = 0
    cached_calls: int = 0
    """Of ``llm_calls``, those the response cache answered (replayed: no model time)."""
    tokens_in: int = 0
    """Prompt tokens of the groups whose calls reported them."""
    tokens_out: int = 0
    """Completion tokens of the groups whose calls reported them."""
    tokens_unreported: int = 0
    """Groups with a model call whose token counts were not reported (left out of the sums)."""
    result_commit: str
    final_patch_id: str
    final_edits: int
    final_support: int
    """Leaf patches behind S*."""
    wall_s: float


def plan_balanced(children: list[str], size: int) -> dict[str, list[str]]:
    """ceil(n / size) consecutive groups of near-equal size (``g0001``...). A group of one
    child happens only with ``size`` 2 and n odd (3 children: 2 + 1); it is passed up."""
    count = max(1, math.ceil(len(children) / size))
    width = max(4, len(str(count)))
    out: dict[str, list[str]] = {}
    start = 0
    for n in range(count):
        take = len(children) // count + (1 if n < len(children) % count else 0)
        out[f"g{n + 1:0{width}d}"] = children[start : start + take]
        start += take
    return out


def _stage_config(run_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(run_dir)
    if manifest is None:
        return {}
    order = ["analyse", *[s for s in manifest.stages if s != "analyse"]]
    for name in order:
        stage = manifest.stages.get(name)
        if stage is not None and stage.config.get("skill_path"):
            return stage.config
    return {}


def locate(run_dir: Path, config: ConsolidateConfig) -> tuple[SkillRepo, str, str]:
    """The skill repository, the skill folder (repo-relative) and the run's ref namespace."""
    if not (run_dir / MANIFEST_FILE).is_file():
        raise ToolkitError(f"{run_dir} is not a run folder (no {MANIFEST_FILE})")
    recorded = _stage_config(run_dir)
    skill = config.skill_path or recorded.get("skill_path")
    # a rollout records the skill folder's absolute path: its repository is the one holding it
    default_repo = skill if skill and Path(skill).is_absolute() and Path(skill).is_dir() else "."
    run = config.run or recorded.get("run_ref") or recorded.get("run")
    run = sanitize_run_id(str(run or run_dir.resolve().name))
    repo = open_run_repo(config.repo, recorded.get("repo"), [run], here=default_repo)
    if not skill:
        raise ToolkitError(
            f"{run_dir}/manifest.json names no skill_path: pass --skill-path (the skill "
            "folder, relative to the repository root)"
        )
    rel = repo.relpath(skill) if Path(skill).is_absolute() else str(skill).strip("/")
    return repo, rel, run


#: Settings that decide a consolidation's merge tree and its edits, with their CLI options: a
#: resume goes on with the run's (other values would plan another tree and replace S*).
RESUME_SETTINGS = {
    "merge_batch": "--merge-batch",
    "max_levels": "--max-levels",
    "strategy": "--merge-strategy",
    "min_support": "--min-support",
}


def recorded_settings(run_dir: Path) -> dict[str, Any]:
    """The :data:`RESUME_SETTINGS` an earlier consolidate of the run recorded ({} if none)."""
    manifest = read_manifest(run_dir)
    record = manifest.stages.get(STAGE) if manifest else None
    if record is None:
        return {}
    return {k: record.config[k] for k in RESUME_SETTINGS if k in record.config}


def _consolidation_model(run_dir: Path) -> str | None:
    """The merge model an earlier consolidate of the run recorded, if any."""
    manifest = read_manifest(run_dir)
    record = manifest.stages.get(STAGE) if manifest else None
    value = record.config.get("author_model") if record else None
    return str(value) if value else None


def _recorded_model(run_dir: Path) -> str | None:
    """The analysts' author model, else the agent's model (the paper's default author)."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return None
    for stage, key in (("analyse", "model"), ("rollout", "model")):
        record = manifest.stages.get(stage)
        if record is not None and record.config.get(key):
            return str(record.config[key])
    return None


class _Bar:
    def __init__(self, enabled: bool, label: str, total: int, done: int) -> None:
        self.bar = (
            Progress(label, total, done=done, passed=done, unit="merge")
            if enabled and total
            else None
        )
        if self.bar is not None:
            self.bar.draw()

    def update(self, outcome: GroupOutcome) -> None:
        if self.bar is not None:
            self.bar.update(outcome.record.status in ("merged", "union"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def arun_consolidation(
    run_dir: str | Path,
    config: ConsolidateConfig | None = None,
    *,
    llm_config: LLMConfig | None = None,
    gateway: Gateway | None = None,
) -> ConsolidationSummary:
    """Consolidate a run's leaf patches into S* (see the module docstring).

    Args:
        run_dir: the run folder (``patches/``, ``manifest.json``; ``merges.jsonl`` is written).
        config: stage settings.
        llm_config: gateway settings when no ``gateway`` is given (its calls log defaults to
            ``run_dir/llm_calls.jsonl``).
        gateway: a gateway to share with other stages.

    Raises:
        ToolkitError: no leaf patches, no base, a finished consolidation without ``resume``,
            or every group of the final merge failed.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = config or ConsolidateConfig()
    repo, skill_rel, run = locate(run_dir, config)
    manifest = read_manifest(run_dir)
    recorded = manifest.stages.get(STAGE) if manifest else None
    if recorded is not None and recorded.config.get("consolidation") == "sequential":
        raise ToolkitError(
            f"run {run!r} is consolidated sequentially (t2s/{run}/seq/<step>): its patches fork "
            "from different steps, not one base, and cannot be merged as one tree; go on "
            "with `trace2skill evolve --resume` or start a new run"
        )
    prefix = f"{skill_rel}/" if skill_rel else ""
    base = base_of(repo, run)
    skill = repo.load_skill(base, skill_rel)
    timestamp = repo.commit_time(base)
    refs = repo.run_refs(run)
    patch_refs = {
        r.rsplit("/", 1)[1]: c for r, c in refs.items() if r.startswith(f"t2s/{run}/patch/")
    }
    if not patch_refs:
        from toolkit.runfiles import AnalysisLine
        from toolkit.trajectory import read_jsonl

        analyses = read_jsonl(run_dir / "analyses.jsonl", AnalysisLine).records
        if analyses:  # analysed, every analysis dropped: another analyse would not help
            reasons = Counter((a.reason or "unknown").split(":", 1)[0] for a in analyses)
            shown = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
            raise ToolkitError(
                f"run {run!r} has no patches to consolidate: none of its {len(analyses)} "
                f"analyses was kept ({shown}); `trace2skill analyse --resume` redoes those "
                "dropped on a model error"
            )
        raise ToolkitError(
            f"run {run!r} has no patches to consolidate (no refs t2s/{run}/patch/*): "
            "run `trace2skill analyse` first"
        )
    leaves = [leaf_node(read_patch(run_dir, pid), patch_refs[pid]) for pid in sorted(patch_refs)]
    earlier = read_merges(run_dir)
    if not config.resume and (earlier or any(f"t2s/{run}/L" in r for r in refs)):
        raise ToolkitError(
            f"run {run!r} was already consolidated (merges.jsonl or t2s/{run}/L* refs exist): "
            "pass --resume to finish it, or delete the run's merge refs and merges.jsonl"
        )
    if config.resume:
        stored = recorded_settings(run_dir)
        changed = [k for k, v in stored.items() if getattr(config, k) != v]
        if changed:
            had = ", ".join(f"{RESUME_SETTINGS[k]} {stored[k]}" for k in changed)
            raise ToolkitError(
                f"run {run!r} was consolidated with {had}; --resume goes on with the run's "
                "settings (another would plan another merge tree and replace S*): leave "
                "those options out or give the same"
            )
    merged_with = _consolidation_model(run_dir) if config.resume else None
    if merged_with is not None and config.author_model not in (None, merged_with):
        raise ToolkitError(
            f"run {run!r} was consolidated with {merged_with}; --resume goes on with it: leave "
            "--model/--author-model out"
        )
    own_gateway = gateway is None
    if gateway is None:
        cfg = llm_config or LLMConfig.from_env()
        if cfg.calls_log is None:
            cfg = cfg.model_copy(update={"calls_log": run_dir / CALLS_FILE})
        chosen = merged_with or config.author_model or _recorded_model(run_dir) or cfg.model
        # The merge model on the server the run recorded for it (unless --api-base is given).
        gateway = Gateway(with_recorded_server(cfg, read_manifest(run_dir), chosen, "author"))
    model = merged_with or config.author_model or _recorded_model(run_dir) or gateway.config.model
    settings = OperatorSettings(
        strategy=config.strategy,
        model=model,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        min_support=config.min_support,
        budgets=config.budgets,
        allow_protected=config.allow_protected,
    )
    operator = MergeOperator(skill, prefix, settings, gateway)
    operator.register(leaves)
    done = {(r.level, r.group): r for r in earlier}
    stage_config = {
        **config.model_dump(mode="json", exclude={"resume", "progress"}),
        "repo": str(repo.root),
        "skill_path": skill_rel,
        "run": run,
        "author_model": model,
        "api_base": stored_api_base(gateway.config.api_base),
    }
    update_stage(run_dir, STAGE, status="running", config=stage_config, counts={}, error=None)
    records: list[MergeRecord] = []
    resumed = 0
    try:
        with repo.run_lock(run):
            current: list[Node] = leaves
            level = 0
            while True:
                level += 1
                forced = level >= config.max_levels or len(current) <= config.merge_batch
                ids = [n.commit for n in current]
                groups = {"g0001": ids} if forced else plan_balanced(ids, config.merge_batch)
                reuse: dict[str, MergeRecord] = {}
                for name, kids in groups.items():
                    old = done.get((level, name))
                    ref = refs.get(f"t2s/{run}/L{level}/{name}")
                    if old is not None and old.child_commits == kids and old.commit == ref:
                        reuse[name] = old
                todo = {n: kids for n, kids in groups.items() if n not in reuse}
                # a commit written before a kill but never recorded is redone: drop its ref
                stale = [
                    f"t2s/{run}/L{level}/{n}" for n in todo if f"t2s/{run}/L{level}/{n}" in refs
                ]
                repo.git.update_refs([f"delete refs/heads/{r} {refs[r]}" for r in stale])
                resumed += len(reuse)
                operator.level, operator.forced = level, forced
                bar = _Bar(config.progress, f"consolidate L{level}", len(groups), len(reuse))
                merges = analyse_groups(repo, todo, timestamp=timestamp) if todo else []
                resolutions = await operator.aresolve(merges, on_done=bar.update)
                bar.close()
                commits = (
                    write_group_commits(repo, run, level, merges, resolutions, timestamp=timestamp)
                    if merges
                    else {}
                )
                fresh = []
                for merge in merges:
                    outcome = operator.outcomes[merge.group]
                    outcome.record.commit = commits.get(merge.group)
                    if outcome.patch is not None and outcome.record.commit:
                        save_patch(run_dir, outcome.patch)
                    fresh.append(outcome.record)
                append_merges(run_dir, fresh)
                nxt: list[Node] = []
                for name, kids in groups.items():
                    record = reuse.get(name) or operator.outcomes[name].record
                    records.append(record)
                    if record.commit and record.patch_id:
                        outcome = operator.outcomes.get(name)
                        patch = (
                            outcome.patch
                            if outcome is not None and name not in reuse and outcome.patch
                            else read_patch(run_dir, record.patch_id)
                        )
                        nxt.append(merged_node(record, patch))
                    elif record.status == "passed_up":
                        nxt.extend(operator.nodes[c] for c in kids)
                operator.register(nxt)
                current = nxt
                if forced:
                    break
                if not current:
                    raise ToolkitError(
                        f"level {level}: every group failed; see {run_dir}/merges.jsonl"
                    )
            if not current:
                last = records[-1]
                raise ToolkitError(
                    f"the final merge failed ({last.reason}); see {run_dir}/merges.jsonl"
                )
            final = current[0]
            repo.set_refs(run, {"result": final.commit}, replace=True)
    except BaseException as exc:
        status = (
            "interrupted"
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
            else "failed"
        )
        update_stage(run_dir, STAGE, status=status, error=str(exc)[:500])
        raise
    finally:
        if own_gateway:
            gateway.close()
    statuses = [r.status for r in records]
    unused = [r for r in records if r.attempts > 0 and r.status != "merged"]
    tokens = TokenTally.of((r.tokens_in, r.tokens_out) for r in records)
    summary = ConsolidationSummary(
        run_dir=str(run_dir),
        run=run,
        model=model,
        strategy=config.strategy,
        leaves=len(leaves),
        levels=level,
        groups=len(records),
        merged=statuses.count("merged"),
        union=statuses.count("union"),
        passed_up=statuses.count("passed_up"),
        failed=statuses.count("failed"),
        resumed=resumed,
        model_unused=len(unused),
        model_unused_reason=unused[0].reason if unused else None,
        llm_calls=sum(r.attempts for r in records),
        cached_calls=sum(r.cached for r in records),
        tokens_in=tokens.tokens_in,
        tokens_out=tokens.tokens_out,
        tokens_unreported=tokens.unreported,
        result_commit=final.commit,
        final_patch_id=final.id,
        final_edits=len(final.patch.edits),
        final_support=len(final.leaves),
        wall_s=round(time.perf_counter() - started, 3),
    )
    counts = summary.model_dump(exclude={"run_dir", "run", "model", "strategy", "wall_s"})
    update_stage(run_dir, STAGE, status="done", counts=counts, ended_at=_iso_now())
    return summary


def _iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def run_consolidation(
    run_dir: str | Path,
    config: ConsolidateConfig | None = None,
    *,
    llm_config: LLMConfig | None = None,
    gateway: Gateway | None = None,
) -> ConsolidationSummary:
    """Synchronous :func:`arun_consolidation` (not from inside a running event loop)."""
    return run_sync(arun_consolidation(run_dir, config, llm_config=llm_config, gateway=gateway))
