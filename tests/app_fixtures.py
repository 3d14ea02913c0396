"""A realistic runs/ folder for the app tests: an evolved run with every stage's files.

``demo-run`` has a real git skill repository (base, three patch branches, a consolidation
with a resolver-written line, result), rollout and eval trajectories of S0 and S*, model
calls, and contract-shaped analyses, patches, merges and ablations. ``baseline`` is an older
rollout-only run with the no-skill baseline (no repository, no later stages).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.repo_helpers import TS, git
from toolkit.evaluate import EvalResult, record_of, store, summarise
from toolkit.llm.calls import LLMCallRecord
from toolkit.patch import Edit, Patch
from toolkit.repo import GroupMerge, PatchCommit, Resolution, SkillRepo, consolidate, write_patches
from toolkit.rollout import update_stage
from toolkit.trajectory import (
    Action,
    SectionUse,
    Step,
    Trajectory,
    Verdict,
    append_jsonl,
    skill_commit,
    trajectory_id,
)

RUN = "demo-run"
BASELINE = "baseline"
SKILL_PATH = "skills/demo"
SKILL_FILE = f"{SKILL_PATH}/SKILL.md"
SKILL_TEXT = """---
name: demo
description: Solve grade-school word problems step by step.
---
# Demo

## Parse numbers
Read every number in the question.

## Units
Keep track of units.

## Rounding
Round only at the end.
"""
TASKS = ["t1", "t2", "t3", "t4", "t5", "t6"]
#: Eval outcomes: S* fixes t3, t4 and t6 and breaks t2.
S0_PASS = [True, True, False, False, True, False]
STAR_PASS = [True, False, True, True, True, True]
MODEL = "fake/agent"


def _replace(text: str, old: str, new: str) -> bytes:
    assert old in text
    return text.replace(old, new).encode()


def _trajectory(task: str, passed: bool, commit: str, uses: list[tuple[str, str]]) -> Trajectory:
    steps = [
        Step(
            index=0,
            thought=f"Read the numbers of {task}.",
            action=Action(tool="python", args={"code": "print(6 * 7)"}),
            observation="42",
            tokens_in=120,
            tokens_out=30,
            latency_s=0.4,
            call_id=f"{task}-{commit[:4]}-0",
        ),
        Step(
            index=1,
            thought="Submit.",
            action=Action(tool="submit", args={"answer": "42"}),
            observation="submitted",
            tokens_in=160,
            tokens_out=10,
            latency_s=0.2,
            cache_hit=True,
            call_id=f"{task}-{commit[:4]}-1",
        ),
    ]
    return Trajectory(
        id=trajectory_id("gsm8k", task, commit, MODEL, 0, "system"),
        task_id=task,
        suite="gsm8k",
        split="test",
        question=f"question {task}",
        skill_name="demo" if commit != "none" else None,
        skill_commit=commit,
        model=MODEL,
        delivery="system" if commit != "none" else "none",
        steps=steps,
        final_answer="42",
        verdict=Verdict(passed=passed, score=float(passed)),
        section_uses=[SectionUse(step=0, kind=k, file="SKILL.md", section_id=s) for k, s in uses],
        tokens_in=280,
        tokens_out=40,
        cost_usd=0.002,
        latency_s=1.0,
        started_at=1_767_225_600.0,
        ended_at=1_767_225_601.0,
        stop_reason="submitted",
    )


def _uses(i: int) -> list[tuple[str, str]]:
    # All cite "units"; even tasks read "parse-numbers"; none uses "rounding" (ids: heading paths).
    return [("cited", "demo/units")] + ([("read", "demo/parse-numbers")] if i % 2 == 0 else [])


def _eval(run_dir: Path, trajectories: list[Trajectory]) -> None:
    append_jsonl(run_dir / "evals" / "trajectories.jsonl", trajectories)
    records = [record_of(t, "test") for t in trajectories]
    commit = trajectories[0].skill_commit
    summary = summarise(
        records,
        suite="gsm8k",
        split="test",
        skill="demo",
        skill_commit=commit,
        model=MODEL,
        seed=0,
        delivery="system",
        limit=None,
        resamples=200,
    )
    store(EvalResult(summary=summary, records=records), run_dir / "evals" / commit / "test.jsonl")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps({"schema_version": 1, **r}) + "\n" for r in rows))


def make_runs(root: Path) -> Path:
    """Build ``root/repo`` (the skill repository) and ``root/runs``; returns the runs folder."""
    repo_dir = root / "repo"
    (repo_dir / SKILL_PATH).mkdir(parents=True)
    git(repo_dir, "init", "-q", "-b", "main")
    git(repo_dir, "config", "user.name", "Test User")
    git(repo_dir, "config", "user.email", "test@example.com")
    (repo_dir / SKILL_FILE).write_text(SKILL_TEXT)
    git(repo_dir, "add", ".")
    git(repo_dir, "commit", "-q", "-m", "initial skill")
    store_ = SkillRepo.open(repo_dir)
    store_.snapshot_base(RUN, repo_dir / SKILL_PATH, timestamp=TS)

    # Three leaf patches from three failed trajectories; p2 and p3 touch the same line.
    runs = root / "runs"
    run_dir = runs / RUN
    s0 = skill_commit(store_.load_skill(f"t2s/{RUN}/base", SKILL_PATH))
    rollout = [
        _trajectory(t, p, s0, _uses(i)) for i, (t, p) in enumerate(zip(TASKS, S0_PASS, strict=True))
    ]
    failed = [t for t in rollout if not t.verdict.passed]
    texts = [
        ("Keep track of units.", "Keep track of units; convert before adding."),
        ("Round only at the end.", "Round only at the end, to whole cents."),
        ("Round only at the end.", "Round only at the end, never in between."),
    ]
    patches = [
        Patch(
            reasoning=f"Lesson from {t.task_id}.",
            edits=[
                Edit(
                    id=f"e{i + 1}",
                    file="SKILL.md",
                    op="replace_in_section",
                    target_section="Units" if "units" in old else "Rounding",
                    old_text=old,
                    content=new,
                )
            ],
            changelog_entries=[f"lesson {i + 1}"],
        )
        for i, (t, (old, new)) in enumerate(zip(failed, texts, strict=True))
    ]
    patches = [p.model_copy(update={"sources": [p.id], "support": 1}) for p in patches]
    ids = write_patches(
        store_,
        RUN,
        [
            PatchCommit(
                patch_id=p.id,
                changes={SKILL_FILE: _replace(SKILL_TEXT, old, new)},
                subject=p.changelog_entries[0],
                trajectory=t.id,
                outcome="fail",
                analyst="error-agentic",
            )
            for p, t, (old, new) in zip(patches, failed, texts, strict=True)
        ],
        timestamp=TS,
    )
    merged_text = SKILL_TEXT.replace(texts[0][0], texts[0][1]).replace(
        texts[1][0], "Round only at the end, to whole cents, never in between."
    )

    def resolver(merges: list[GroupMerge]) -> list[Resolution]:
        return [
            Resolution(changes={SKILL_FILE: merged_text.encode()}, subject="merge lessons")
            for _ in merges
        ]

    result = consolidate(store_, RUN, [ids[p.id] for p in patches], timestamp=TS, resolve=resolver)
    s_star = skill_commit(store_.load_skill(f"t2s/{RUN}/result", SKILL_PATH))
    store_.close()

    update_stage(
        run_dir,
        "rollout",
        status="done",
        started_at="2026-12-05T10:00:00+00:00",
        ended_at="2026-12-05T10:02:00+00:00",
        config={"suite": "gsm8k", "model": MODEL, "repo": str(repo_dir), "skill_path": SKILL_PATH},
        counts={"trajectories": len(rollout)},
    )
    update_stage(
        run_dir,
        "consolidate",
        status="done",
        started_at="2026-12-05T10:03:00+00:00",
        ended_at="2026-12-05T10:03:30+00:00",
        counts={"result_commit": result, "final_patch_id": "f" * 12},
    )
    append_jsonl(run_dir / "trajectories.jsonl", rollout)
    _eval(
        run_dir,
        [
            _trajectory(t, p, s0, _uses(i))
            for i, (t, p) in enumerate(zip(TASKS, S0_PASS, strict=True))
        ],
    )
    _eval(
        run_dir,
        [
            _trajectory(t, p, s_star, _uses(i))
            for i, (t, p) in enumerate(zip(TASKS, STAR_PASS, strict=True))
        ],
    )
    append_jsonl(
        run_dir / "llm_calls.jsonl",
        [
            LLMCallRecord(
                call_id=f"c{i}",
                model=MODEL if i < 8 else "fake/analyst",
                tokens_in=100,
                tokens_out=20,
                cost_usd=0.001,
                latency_s=0.1 * (i + 1),
                started_at=1.0,
                ended_at=1.0 + 0.1 * (i + 1),
                cache_hit=i % 4 == 0,
            )
            for i in range(10)
        ],
    )
    (run_dir / "patches").mkdir()
    final = Patch(
        reasoning="Units and rounding lessons, generalised.",
        edits=[
            Edit(
                id="m1",
                file="SKILL.md",
                op="replace_in_section",
                target_section="Units",
                old_text=texts[0][0],
                content=texts[0][1],
            ),
            Edit(
                id="m2",
                file="SKILL.md",
                op="replace_in_section",
                target_section="Rounding",
                old_text=texts[1][0],
                content="Round only at the end, to whole cents, never in between.",
            ),
        ],
        sources=[p.id for p in patches],
    )
    for p in [*patches, final]:
        (run_dir / "patches" / f"{p.id}.json").write_text(p.model_dump_json())
    _jsonl(
        run_dir / "analyses.jsonl",
        [
            {
                "id": f"a{i}",
                "trajectory_id": t.id,
                "task_id": t.task_id,
                "outcome": "fail",
                "analyst": "error-agentic",
                "model": "fake/analyst",
                "status": "kept",
                "reason": None,
                "patch_id": p.id,
                "fix_passed": True,
                "turns": 3,
                "tokens_in": 500,
                "tokens_out": 100,
                "started_at": 10.0,
                "ended_at": 12.0,
                "report": f"The agent ignored units in {t.task_id}.",
            }
            for i, (t, p) in enumerate(zip(failed, patches, strict=True))
        ],
    )
    p1, p2, p3 = (p.id for p in patches)
    merge_common = {
        "model": "fake/merger",
        "tokens_in": 900,
        "tokens_out": 150,
        "started_at": 20.0,
        "ended_at": 23.0,
    }
    _jsonl(
        run_dir / "merges.jsonl",
        [
            {
                "level": 1,
                "group": "g0001",
                "children": [p1, p2],
                "child_commits": [ids[p1], ids[p2]],
                "commit": None,
                "patch_id": "a" * 12,
                "status": "union",
                "reason": None,
                "conflicts": [],
                "edits": [
                    {"id": "u1", "cited": ["e1"], "sources": [p1], "support": 1},
                    {"id": "u2", "cited": ["e2"], "sources": [p2], "support": 1},
                ],
                "dropped": [],
                **merge_common,
            },
            {
                "level": 1,
                "group": "g0002",
                "children": [p3],
                "child_commits": [ids[p3]],
                "commit": None,
                "patch_id": p3,
                "status": "passed_up",
                "reason": "a group of one",
                "conflicts": [],
                "edits": [{"id": "e3", "cited": ["e3"], "sources": [p3], "support": 1}],
                "dropped": [],
                **merge_common,
            },
            {
                "level": 2,
                "group": "g0001",
                "children": ["a" * 12, p3],
                "child_commits": [],
                "commit": result,
                "patch_id": final.id,
                "status": "merged",
                "reason": None,
                "conflicts": [{"file": "SKILL.md", "hunks": 1}],
                "edits": [
                    {"id": "m1", "cited": ["u1"], "sources": [p1], "support": 1},
                    {"id": "m2", "cited": ["u2", "e3"], "sources": [p2, p3], "support": 2},
                ],
                "dropped": [{"edit_id": "u9", "reason": "duplicate of m2"}],
                **merge_common,
            },
        ],
    )
    ablation = {"commit": result, "split": "test", "seed": 0, "n": 6, "tasks": TASKS}
    _jsonl(
        run_dir / "ablations.jsonl",
        [
            # Without m1, S* loses 0.33: m1 helps. Without m2 it gains 0.17: m2 hurts a little.
            {
                **ablation,
                "edit_id": "m1",
                "patch_id": final.id,
                "kind": "ablate",
                "passed": 3,
                "pass_rate": 0.5,
                "delta": -0.33,
                "ci_low": -0.5,
                "ci_high": -0.17,
            },
            {
                **ablation,
                "edit_id": "m2",
                "patch_id": final.id,
                "kind": "ablate",
                "passed": 6,
                "pass_rate": 1.0,
                "delta": 0.17,
                "ci_low": 0.0,
                "ci_high": 0.33,
            },
            {
                **ablation,
                "edit_id": "m1",
                "patch_id": final.id,
                "kind": "only",
                "passed": 5,
                "pass_rate": 0.83,
                "delta": 0.33,
                "ci_low": 0.17,
                "ci_high": 0.5,
            },
        ],
    )

    baseline_dir = runs / BASELINE
    update_stage(
        baseline_dir,
        "rollout",
        status="done",
        started_at="2026-12-01T09:00:00+00:00",
        ended_at="2026-12-01T09:01:00+00:00",
        config={"suite": "gsm8k", "model": MODEL},
    )
    # An older run: its manifest is back-dated so "newest first" puts demo-run first.
    manifest = json.loads((baseline_dir / "manifest.json").read_text())
    manifest["created_at"] = "2026-12-01T09:00:00+00:00"
    (baseline_dir / "manifest.json").write_text(json.dumps(manifest))
    append_jsonl(
        baseline_dir / "trajectories.jsonl",
        [_trajectory(t, i < 2, "none", []) for i, t in enumerate(TASKS[:3])],
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["created_at"] = "2026-12-05T10:00:00+00:00"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return runs
