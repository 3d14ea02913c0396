"""Synthetic runs: realistic run folders of any size, deterministic by seed.

For benchmarks (``benchmarks/index.py``) and for tests of the index and the app. Every file of
the run-file contract is written, and the git side is real: one skill repository (by default
``<runs_dir>/.synth-repo``, a dot folder the index does not take for a run) holds a
``synth`` skill whose sections ``Rule 00``, ``Rule 01``... give each leaf patch its own place,
so the consolidation merges cleanly with git; each run snapshots its base, commits its leaf
patches, consolidates them level by level with an operator that writes one line of its own
into each group (so ``git blame`` of S* finds both patch and merge commits), points
``t2s/<run>/result`` at S*, writes the ablate/only commits of every final edit and exports
``refs.bundle``.

Per run of ``T`` trajectories: ``T // 4`` test tasks are evaluated under S0 and under S*
(``evals/``), the rest are rollouts of S0 on train tasks; the first ``patches + patches // 4``
rollouts are analysed (the extra ones dropped). Steps carry observations of about
``observation_bytes``; each step has its LLM call record. Same arguments, same bytes.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from toolkit.atomic import write_atomic
from toolkit.attribution.ablation import AblationRecord, paired_fields
from toolkit.errors import ToolkitError
from toolkit.evaluate import EvalRecord, summarise
from toolkit.llm.calls import LLMCallRecord
from toolkit.patch import Edit, Patch
from toolkit.repo import (
    DerivedCommit,
    GroupMerge,
    PatchCommit,
    Resolution,
    SkillRepo,
    consolidate_level,
    export_bundle,
    plan_groups,
    set_result,
    write_ablations,
    write_only,
    write_patches,
)
from toolkit.rollout import Manifest, StageRecord
from toolkit.stats import paired_comparison
from toolkit.tasks.splits import SplitsFile
from toolkit.trajectory import Action, SectionUse, Step, Trajectory, Verdict

SKILL_DIR = "skills/synth"
SKILL_FILE = f"{SKILL_DIR}/SKILL.md"
EPOCH = 1_767_225_600  # 2026-01-01: every date of a synthetic run counts from here
AGENTS = ("synth/agent-small", "synth/agent-large")
EVAL_MODEL = AGENTS[0]
"""The agent of the S0 and S* evaluations (one model, so they pair)."""
ANALYST_MODEL = "synth/analyst"
OPERATOR_MODEL = "synth/operator"
_PHRASES = (
    "check units before dividing",
    "re-read the question",
    "verify the table header",
    "prefer exact arithmetic",
    "cite the cell",
    "keep intermediate totals",
    "stop when the answer is verified",
    "handle empty rows",
    "normalise dates",
    "round only at the end",
)


class SynthReport(BaseModel):
    """What :func:`synth_runs` wrote."""

    runs: list[str]
    repo: str
    trajectories: int
    steps: int
    analyses: int
    patches: int
    merges: int
    ablations: int
    llm_calls: int
    bytes: int


def _git(root: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": f"@{EPOCH} +0000",
        "GIT_COMMITTER_DATE": f"@{EPOCH} +0000",
    }
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=env)


def base_skill(sections: int) -> str:
    """The synthetic skill S0: one ``Rule NN`` section per leaf patch."""
    head = (
        "---\nname: synth\ndescription: Synthetic skill for index benchmarks and tests.\n---\n"
        "# Synth\n\nRules for solving synthetic tasks.\n\n"
    )
    body = "".join(
        f"## Rule {i:02d}\n\n" + "".join(f"- base rule {i:02d}.{x}\n" for x in "abc") + "\n"
        for i in range(sections)
    )
    return head + body


def _insert_after(text: str, anchor: str, line: str) -> str:
    return text.replace(anchor + "\n", f"{anchor}\n{line}\n", 1)


def _remove_line(text: str, line: str) -> str:
    return text.replace(line + "\n", "", 1)


def _ensure_repo(root: Path, sections: int) -> SkillRepo:
    """The shared skill repository, created with S0 on first use (S0 must match)."""
    skill = root / SKILL_FILE
    if not (root / ".git").is_dir():
        skill.parent.mkdir(parents=True, exist_ok=True)
        _git(root, "init", "-q", "-b", "main")
        _git(root, "config", "user.name", "trace2skill synth")
        _git(root, "config", "user.email", "synth@example.invalid")
        skill.write_text(base_skill(sections))
        _git(root, "add", ".")
        _git(root, "commit", "-q", "-m", "synthetic skill")
    elif not skill.is_file() or skill.read_text() != base_skill(sections):
        raise ToolkitError(
            f"{root} holds a synthetic skill with another number of sections: "
            "use the same --patches or another --repo"
        )
    return SkillRepo.open(root)


def _sentence(rng: random.Random, words: int) -> str:
    """About ``words`` words of advice-like text."""
    return "; ".join(rng.choice(_PHRASES) for _ in range(max(1, words // 3)))


class _Leaf(BaseModel):
    patch: Patch
    section: int
    trajectory: Trajectory


def _trajectory(
    rng: random.Random,
    run_id: str,
    number: int,
    task: str,
    split: str,
    tree: str,
    p_pass: float,
    steps: int,
    observation_bytes: int,
    sections: int,
    calls: list[str],
    model: str | None = None,
) -> Trajectory:
    model = model or AGENTS[number % len(AGENTS)]
    started = float(EPOCH + number * 30)
    out, clock = [], started
    for s in range(steps):
        call_id = f"{run_id}-{number}-{s}"
        tokens_in, tokens_out = rng.randint(300, 3000), rng.randint(10, 300)
        latency, tool_s = rng.uniform(0.2, 4.0), rng.uniform(0.0, 0.5)
        last = s == steps - 1
        phrase = _sentence(rng, 4) + ". "
        obs = "" if last else phrase * (observation_bytes // len(phrase) + 1)
        out.append(
            Step(
                index=s,
                thought=_sentence(rng, 12),
                action=Action(
                    tool="submit" if last else "python",
                    args={"answer": str(number)} if last else {"code": f"print({number} * {s})"},
                ),
                observation=obs[:observation_bytes],
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                latency_s=latency,
                tool_s=tool_s,
                call_id=call_id,
            )
        )
        calls.append(
            LLMCallRecord(
                call_id=call_id,
                model=model,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=(tokens_in * 0.1 + tokens_out * 0.4) / 1e6,
                latency_s=latency,
                started_at=clock,
                ended_at=clock + latency,
                cache_hit=rng.random() < 0.05,
                model_requests=1,
            ).model_dump_json()
        )
        clock += latency + tool_s
    uses = sorted(
        {
            SectionUse(
                step=rng.randrange(steps),
                kind=rng.choice(("read", "cited")),
                file="SKILL.md",
                section_id=f"synth/rule-{rng.randrange(sections):02d}",
            )
            for _ in range(rng.randint(0, 4))
        },
        key=lambda u: (u.step, u.kind, u.section_id or ""),
    )
    passed = rng.random() < p_pass
    return Trajectory(
        id=f"{run_id}-t{number:07d}",
        task_id=task,
        suite="synth",
        split=split,
        question=f"Synthetic task {task}?",
        skill_name="synth",
        skill_commit=tree,
        model=model,
        seed=0,
        delivery="system",
        steps=out,
        final_answer=str(number),
        verdict=Verdict(passed=passed, score=float(passed)),
        section_uses=uses,
        tokens_in=sum(s.tokens_in for s in out),
        tokens_out=sum(s.tokens_out for s in out),
        cost_usd=sum((s.tokens_in * 0.1 + s.tokens_out * 0.4) / 1e6 for s in out),
        latency_s=clock - started,
        started_at=started,
        ended_at=clock,
        stop_reason="submitted",
    )


def _jsonl(path: Path, lines: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines)
    write_atomic(path, data)
    return len(data)


def _operator(
    repo: SkillRepo, level: int, leaves_of: dict[str, list[_Leaf]], notes: dict[str, str]
) -> Callable[[list[GroupMerge]], list[Resolution]]:
    """A merge operator that adds one consolidated line to the section of its first leaf."""

    def resolve(merges: list[GroupMerge]) -> list[Resolution]:
        texts = repo.git.read_objects([f"{m.union_tree}:{SKILL_FILE}" for m in merges])
        out = []
        for merge, raw in zip(merges, texts, strict=True):
            leaves = [leaf for child in merge.children for leaf in leaves_of[child]]
            first = leaves[0].section
            note = f"- consolidated L{level} {merge.group}: {len(leaves)} lessons agree"
            notes[merge.group] = note
            text = _insert_after((raw or b"").decode(), f"- base rule {first:02d}.b", note)
            out.append(
                Resolution(
                    changes={SKILL_FILE: text.encode()},
                    subject=f"consolidate L{level} {merge.group}",
                    model=OPERATOR_MODEL,
                )
            )
        return out

    return resolve


def synth_run(
    runs_dir: Path,
    repo: SkillRepo,
    run_id: str,
    *,
    trajectories: int,
    steps: int,
    patches: int,
    group_size: int,
    observation_bytes: int,
    seed: int,
) -> SynthReport:
    """Write one synthetic run folder ``runs_dir/run_id`` and its refs in ``repo``."""
    rng = random.Random(f"{seed}-{run_id}")
    run_dir = runs_dir / run_id
    if run_dir.exists():
        raise ToolkitError(f"{run_dir} already exists: pick another seed or folder")
    ts = EPOCH + 3600
    base = repo.snapshot_base(run_id, repo.root / SKILL_DIR, timestamp=ts)
    # The manifest is written last: until then the index does not take the folder for a run.
    run_dir.mkdir(parents=True)
    s0_text = base_skill(patches)
    s0_tree = repo.git.resolve([f"{base}:{SKILL_DIR}"])[0] or "none"

    # Rollouts of S0 on train tasks; the first ones are analysed.
    n_eval_tasks = trajectories // 4
    n_rollout = trajectories - 2 * n_eval_tasks
    calls: list[str] = []
    rollout = [
        _trajectory(
            rng,
            run_id,
            i,
            f"train-{i // 2:05d}",
            "train",
            s0_tree,
            0.45,
            steps,
            observation_bytes,
            patches,
            calls,
        )
        for i in range(n_rollout)
    ]
    leaves: list[_Leaf] = []
    edit_sources: dict[str, list[str]] = {}  # edit id -> leaf patches behind it
    analyses: list[str] = []
    n_analysed = min(n_rollout, patches + patches // 4)
    for i, t in enumerate(rollout[:n_analysed]):
        kept = len(leaves) < patches and (i % 5 != 4 or n_analysed - i <= patches - len(leaves))
        outcome = "pass" if t.verdict.passed else "fail"
        patch_id = None
        if kept:
            section = len(leaves)
            edit = Edit(
                file="SKILL.md",
                op="insert_after",
                target_section=f"Rule {section:02d}",
                target_text=f"- base rule {section:02d}.a",
                content=f"- lesson {section:02d}: {_sentence(rng, 8)}",
            )
            patch = Patch(
                reasoning=f"Trajectory {t.id} {outcome}ed: {_sentence(rng, 10)}.",
                edits=[edit],
                changelog_entries=[f"Rule {section:02d}: add a lesson from {t.task_id}"],
            )
            patch = patch.model_copy(update={"sources": [patch.id], "support": 1})
            leaves.append(_Leaf(patch=patch, section=section, trajectory=t))
            edit_sources[edit.id or ""] = [patch.id or ""]
            patch_id = patch.id
        start = float(EPOCH + 2000 + i * 60)
        analyses.append(
            _line(
                id=f"a{seed:x}{i:06d}",
                trajectory_id=t.id,
                task_id=t.task_id,
                outcome=outcome,
                analyst="success" if t.verdict.passed else "error-agentic",
                model=ANALYST_MODEL,
                status="kept" if kept else "dropped",
                reason=None if kept else "the analysis found no generalisable lesson",
                patch_id=patch_id,
                fix_passed=None if t.verdict.passed else kept,
                turns=rng.randint(1, 8),
                tokens_in=rng.randint(2000, 20000),
                tokens_out=rng.randint(200, 2000),
                started_at=start,
                ended_at=start + rng.uniform(5, 50),
                report=f"Analysis of {t.id}: {_sentence(rng, 30)}",
            )
        )
    if not leaves:
        raise ToolkitError("too few trajectories to analyse: ask for more trajectories")
    commits = write_patches(
        repo,
        run_id,
        [
            PatchCommit(
                patch_id=leaf.patch.id or "",
                changes={
                    SKILL_FILE: _insert_after(
                        s0_text, f"- base rule {leaf.section:02d}.a", leaf.patch.edits[0].content
                    ).encode()
                },
                subject=leaf.patch.changelog_entries[0],
                trajectory=leaf.trajectory.id,
                outcome="pass" if leaf.trajectory.verdict.passed else "fail",
                analyst="success" if leaf.trajectory.verdict.passed else "error-agentic",
                model=ANALYST_MODEL,
                sources=[leaf.patch.id or ""],
                support=1,
            )
            for leaf in leaves
        ],
        timestamp=ts,
        base=base,
    )
    patch_files = {leaf.patch.id: leaf.patch for leaf in leaves}

    # Consolidation, level by level; merges.jsonl names each group's children and edits.
    merges: list[str] = []
    node_leaves = {commits[leaf.patch.id or ""]: [leaf] for leaf in leaves}
    node_patch = {commits[leaf.patch.id or ""]: leaf.patch for leaf in leaves}
    current = [commits[leaf.patch.id or ""] for leaf in leaves]
    level = 0
    while len(current) > 1 or level == 0:
        level += 1
        groups = plan_groups(current, group_size)
        notes: dict[str, str] = {}
        made, _ = consolidate_level(
            repo,
            run_id,
            level,
            groups,
            timestamp=ts,
            resolve=_operator(repo, level, node_leaves, notes),
        )
        for group, children in groups.items():
            commit = made[group]
            group_leaves = [leaf for c in children for leaf in node_leaves[c]]
            sources = sorted(leaf.patch.id or "" for leaf in group_leaves)
            first = group_leaves[0].section
            carried = [e for c in children for e in node_patch[c].edits]
            operator = Edit(
                file="SKILL.md",
                op="insert_after",
                target_section=f"Rule {first:02d}",
                target_text=f"- base rule {first:02d}.b",
                content=notes[group],
            )
            merged = Patch(
                reasoning=f"Level {level} group {group}: {_sentence(rng, 12)}.",
                edits=[*carried, operator],
                changelog_entries=[f"consolidate {len(group_leaves)} lessons"],
                sources=sources,
            )
            edit_sources[operator.id or ""] = sources
            start = float(EPOCH + 5000 + level * 600)
            merges.append(
                _line(
                    level=level,
                    group=group,
                    children=[node_patch[c].id for c in children],
                    child_commits=list(children),
                    commit=commit,
                    patch_id=merged.id,
                    status="merged",
                    reason=None,
                    conflicts=[],
                    edits=[
                        *(
                            {
                                "id": e.id,
                                "cited": [e.id],
                                "sources": edit_sources[e.id or ""],
                                "support": len(edit_sources[e.id or ""]),
                            }
                            for e in carried
                        ),
                        {
                            "id": operator.id,
                            "cited": [e.id for e in carried],
                            "sources": sources,
                            "support": len(sources),
                        },
                    ],
                    dropped=[],
                    model=OPERATOR_MODEL,
                    tokens_in=rng.randint(5000, 50000),
                    tokens_out=rng.randint(500, 5000),
                    started_at=start,
                    ended_at=start + rng.uniform(10, 120),
                )
            )
            node_leaves[commit] = group_leaves
            node_patch[commit] = merged
            patch_files[merged.id] = merged
        current = list(made.values())
    result = set_result(repo, run_id, current[0], timestamp=ts)
    final = node_patch[result]
    s_star = (repo.read_files([(result, SKILL_FILE)])[0] or b"").decode()
    s_star_tree = repo.git.resolve([f"{result}:{SKILL_DIR}"])[0] or "none"

    # Evaluation of S0 and S* on the same test tasks.
    evaluated: list[Trajectory] = []
    evals: dict[str, list[str]] = {}
    records: dict[str, list[EvalRecord]] = {}
    tasks = [f"test-{i:05d}" for i in range(n_eval_tasks)]
    for tree, p_pass in ((s0_tree, 0.45), (s_star_tree, 0.6)):
        for task in tasks:
            t = _trajectory(
                rng,
                run_id,
                n_rollout + len(evaluated),
                task,
                "test",
                tree,
                p_pass,
                steps,
                observation_bytes,
                patches,
                calls,
                model=EVAL_MODEL,
            )
            evaluated.append(t)
            records.setdefault(tree, []).append(
                EvalRecord(
                    suite="synth",
                    split="test",
                    skill_commit=tree,
                    model=t.model,
                    seed=0,
                    delivery="system",
                    task_id=task,
                    passed=t.verdict.passed,
                    score=t.verdict.score,
                    trajectory_id=t.id,
                    tokens=t.tokens_in + t.tokens_out,
                    seconds=t.latency_s,
                    steps=len(t.steps),
                )
            )
    for tree, lines in records.items():
        summary = summarise(
            lines, suite="synth", split="test", skill="synth", skill_commit=tree,
            model=EVAL_MODEL, seed=0, delivery="system", limit=None,
        )  # fmt: skip
        evals[tree] = [r.model_dump_json() for r in lines] + [summary.model_dump_json()]

    # Attribution: S* without each final edit, S0 with only it.
    ablate = write_ablations(
        repo,
        run_id,
        [
            DerivedCommit(
                id=e.id or "",
                changes={SKILL_FILE: _remove_line(s_star, e.content or "").encode()},
                subject=f"ablate {e.id}",
                patch=final.id,
            )
            for e in final.edits
        ],
        timestamp=ts,
        result=result,
    )
    only = write_only(
        repo,
        run_id,
        [
            DerivedCommit(
                id=e.id or "",
                changes={
                    SKILL_FILE: _insert_after(
                        s0_text, e.target_text or "", e.content or ""
                    ).encode()
                },
                subject=f"only {e.id}",
                patch=final.id,
            )
            for e in final.edits
        ],
        timestamp=ts,
        base=base,
    )
    ablations = []
    picked = tasks[:50]
    n_tasks = len(picked)
    for e in final.edits:
        for kind, commit in (("ablate", ablate[e.id or ""]), ("only", only[e.id or ""])):
            # Simulated paired outcomes: the reference is S* for ablate and S0 for only.
            ref_p, new_p = (0.6, 0.55) if kind == "ablate" else (0.45, 0.5)
            reference = [rng.random() < ref_p for _ in range(n_tasks)]
            mine = [rng.random() < new_p for _ in range(n_tasks)]
            p = paired_comparison(reference, mine, seed=0)
            ablations.append(
                AblationRecord(
                    edit_id=e.id or "",
                    patch_id=final.id or "",
                    kind=kind,  # type: ignore[arg-type]
                    commit=commit,
                    skill_commit=repo.git.resolve([f"{commit}:{SKILL_DIR}"])[0] or "none",
                    ref=f"t2s/{run_id}/{kind}/{e.id}",
                    reference_commit=result if kind == "ablate" else base,
                    reference_skill_commit=s_star_tree if kind == "ablate" else s0_tree,
                    suite="synth",
                    split="test",
                    model=EVAL_MODEL,
                    seed=0,
                    **paired_fields(kind, p),  # type: ignore[arg-type]
                    gained=[
                        t for t, a, b in zip(picked, reference, mine, strict=True) if b and not a
                    ],
                    lost=[
                        t for t, a, b in zip(picked, reference, mine, strict=True) if a and not b
                    ],
                    tasks=picked,
                    file=e.file,
                    op=e.op,
                    target_section=e.target_section,
                    support=len(edit_sources.get(e.id or "", [])) or 1,
                    sources=edit_sources.get(e.id or "", []),
                ).model_dump_json()
            )

    size = 0
    size += _jsonl(run_dir / "trajectories.jsonl", [t.model_dump_json() for t in rollout])
    size += _jsonl(
        run_dir / "evals" / "trajectories.jsonl", [t.model_dump_json() for t in evaluated]
    )
    for tree, lines in evals.items():
        size += _jsonl(run_dir / "evals" / tree / "test.jsonl", lines)
    size += _jsonl(run_dir / "llm_calls.jsonl", calls)
    size += _jsonl(run_dir / "analyses.jsonl", analyses)
    size += _jsonl(run_dir / "merges.jsonl", merges)
    size += _jsonl(run_dir / "ablations.jsonl", ablations)
    (run_dir / "patches").mkdir()
    for pid, patch in sorted(patch_files.items()):
        write_atomic(run_dir / "patches" / f"{pid}.json", patch.model_dump_json(indent=1))
    splits = SplitsFile(
        suite="synth",
        seed=seed,
        limits={"train": None, "test": None},
        splits={"train": sorted({t.task_id for t in rollout}), "test": tasks},
        source_hashes={},
    )
    write_atomic(run_dir / "splits.json", splits.model_dump_json(indent=1))
    export_bundle(repo, run_id, run_dir / "refs.bundle")
    _write_manifest(
        run_dir,
        run_id,
        repo,
        {
            "rollout": ({"trajectories": n_rollout}, {"trajectories": len(rollout)}),
            "analyse": (
                {"repo": str(repo.root), "skill_path": SKILL_DIR},
                {"analyses": len(analyses), "patches": len(leaves)},
            ),
            "consolidate": (
                {"repo": str(repo.root), "skill_path": SKILL_DIR, "group_size": group_size},
                {
                    "merges": len(merges),
                    "levels": level,
                    "result_commit": result,
                    "final_patch_id": final.id,
                },
            ),
            "evaluate": ({"split": "test"}, {"trajectories": len(evaluated)}),
            "attribute": ({"split": "test"}, {"ablations": len(ablations)}),
        },
    )
    return SynthReport(
        runs=[run_id],
        repo=str(repo.root),
        trajectories=len(rollout) + len(evaluated),
        steps=steps * (len(rollout) + len(evaluated)),
        analyses=len(analyses),
        patches=len(patch_files),
        merges=len(merges),
        ablations=len(ablations),
        llm_calls=len(calls),
        bytes=size,
    )


def _line(**fields: object) -> str:
    """One contract JSONL line."""
    return json.dumps({"schema_version": 1, **fields}, sort_keys=True)


def _write_manifest(
    run_dir: Path,
    run_id: str,
    repo: SkillRepo,
    stages: dict[str, tuple[dict[str, object], dict[str, object]]],
) -> None:
    at = "2026-01-01T01:00:00+00:00"
    manifest = Manifest(
        run_id=run_id,
        created_at=at,
        toolkit_version="synthetic",
        stages={
            name: StageRecord(
                status="done", started_at=at, ended_at=at, config=config, counts=counts
            )
            for name, (config, counts) in stages.items()
        },
    )
    write_atomic(run_dir / "manifest.json", manifest.model_dump_json(indent=1))


def synth_runs(
    runs_dir: str | Path,
    *,
    trajectories: int = 1000,
    runs: int = 1,
    steps: int = 10,
    patches: int = 8,
    group_size: int = 4,
    observation_bytes: int = 200,
    seed: int = 0,
    repo_dir: str | Path | None = None,
    progress: bool = False,
) -> SynthReport:
    """Write ``runs`` synthetic runs totalling ``trajectories`` into ``runs_dir``.

    Run ids are ``synth-<seed>-<k>`` with ``k`` in three digits (``synth-0-000``); the skill
    repository is ``repo_dir`` (default
    ``runs_dir/.synth-repo``), created on first use and shared by later calls.

    Raises:
        ToolkitError: bad sizes, a run folder that already exists, or a repository made with
            another number of patches.
    """
    if runs < 1 or steps < 1 or patches < 1 or group_size < 2 or observation_bytes < 0:
        raise ToolkitError("runs, steps and patches must be >= 1 and group size >= 2")
    if trajectories < runs * (patches + 3):
        raise ToolkitError(
            f"{trajectories} trajectories are too few for {runs} runs of {patches} patches: "
            f"give at least {runs * (patches + 3)} (each run needs patches + 3 = {patches + 3}: "
            "rollouts to analyse into its patches and held-out tasks to evaluate them on), or "
            "fewer runs or patches"
        )
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    root = Path(repo_dir) if repo_dir is not None else runs_dir / ".synth-repo"
    root.mkdir(parents=True, exist_ok=True)
    repo = _ensure_repo(root.resolve(), patches)
    total = SynthReport(
        runs=[],
        repo=str(repo.root),
        trajectories=0,
        steps=0,
        analyses=0,
        patches=0,
        merges=0,
        ablations=0,
        llm_calls=0,
        bytes=0,
    )
    bar = None
    if progress:
        from toolkit.progress import Progress

        bar = Progress("synth", runs, unit="run", counts_passes=False)
    try:
        for k in range(runs):
            share = trajectories // runs + (1 if k < trajectories % runs else 0)
            one = synth_run(
                runs_dir,
                repo,
                f"synth-{seed}-{k:03d}",
                trajectories=share,
                steps=steps,
                patches=patches,
                group_size=group_size,
                observation_bytes=observation_bytes,
                seed=seed,
            )
            total = SynthReport(
                runs=total.runs + one.runs,
                repo=total.repo,
                **{
                    f: getattr(total, f) + getattr(one, f)
                    for f in SynthReport.model_fields
                    if f not in ("runs", "repo")
                },
            )
            if bar is not None:
                bar.update(True)
    finally:
        if bar is not None:
            bar.close()
        repo.close()
    return total
