"""A finished fixture run for the attribution tests: git refs, patches, merges, analyses.

The skill ``demo`` evolves by three edits; a scripted fake agent passes a task according to
the text the skill holds, so every edit has a known effect:

* ``tip-a`` (support 3) adds a section with ``MULTIPLY-EVEN``: even tasks pass (cited);
* ``check`` (support 1) appends ``CHECK-THREE`` to Workflow: multiples of 3 pass (cited);
* ``harm`` (support 1) adds ``HARMFUL`` inside Tip A (needs its text): multiples of 4 fail.

S0 passes the multiples of 4 (silently helped by "Old tips"), so S* fixes 5 tasks and
breaks 3: the report must warn.

The section "Old tips" is never used, so pruning proposes it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.repo_helpers import TS, git
from tests.test_tasks_jsonl import write_jsonl
from toolkit.patch import Edit, Patch, apply_patch
from toolkit.repo import GroupMerge, PatchCommit, Resolution, SkillRepo, consolidate, write_patches
from toolkit.rollout import update_stage
from toolkit.skill import load_skill

SKILL_PATH = "skills/demo"
S0_TEXT = """---
name: demo
description: Demo skill for attribution tests.
---
# Demo

## Workflow
Read the question and compute.

## Old tips
Nothing useful here.
Still nothing.
"""
TIP_A = Edit(file="SKILL.md", op="add_section", content="## Tip A\nMULTIPLY-EVEN numbers.")
CHECK = Edit(
    file="SKILL.md", op="append_to_section", target_section="workflow", content="CHECK-THREE."
)
HARM = Edit(file="SKILL.md", op="insert_after", target_text="MULTIPLY-EVEN numbers.",
            content="HARMFUL advice.")  # fmt: skip
N_TASKS = 12


def make_skill_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository holding the skill ``demo`` (S0), with ``files`` replacing or adding."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    (root / SKILL_PATH).mkdir(parents=True)
    for name, text in {"SKILL.md": S0_TEXT, **(files or {})}.items():
        (root / SKILL_PATH / name).parent.mkdir(parents=True, exist_ok=True)
        (root / SKILL_PATH / name).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def make_tasks(path: Path) -> Path:
    rows = [
        {"id": f"q{i}", "question": f"What is {i} times 3?", "answer": 3 * i}
        for i in range(N_TASKS)
    ]
    return write_jsonl(path, rows)


def agent_reply(messages):
    """Pass by the skill text in the system prompt (see the module docstring)."""
    system = messages[0]["content"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    i = int(re.search(r"What is (\d+) times 3", user).group(1))
    right, cited = "Nothing useful here" in system and i % 4 == 0, []
    if "MULTIPLY-EVEN" in system and i % 2 == 0:
        right, cited = True, ["demo/tip-a"]
    if "CHECK-THREE" in system and i % 3 == 0:
        right, cited = True, cited + ["demo/workflow"]
    if "HARMFUL" in system and i % 4 == 0:
        right = False
    answer = str(3 * i) if right else "-1"
    return {"thought": "", "cited_sections": cited, "tool": "submit", "args": {"answer": answer}}


def make_run(tmp: Path, files: dict[str, str] | None = None) -> dict:
    """The repository, run folder and task file of a consolidated run ``r1``.

    ``files`` replace or add files of S0 (the patches edit SKILL.md's own sections).
    """
    repo_root = make_skill_repo(tmp / "repo", files)
    run_dir = tmp / "runs" / "r1"
    (run_dir / "patches").mkdir(parents=True)
    tasks = make_tasks(tmp / "tasks.jsonl")
    s0 = load_skill(repo_root / SKILL_PATH)
    leaves = [
        Patch(reasoning="even numbers", edits=[TIP_A]),
        Patch(reasoning="even numbers again", edits=[TIP_A]),
        Patch(reasoning="multiples of three", edits=[CHECK]),
        Patch(reasoning="a bad idea", edits=[TIP_A, HARM]),
    ]
    store = SkillRepo.open(repo_root)
    try:
        store.snapshot_base("r1", repo_root / SKILL_PATH, timestamp=TS)
        commits = []
        for k, leaf in enumerate(leaves):
            files = apply_patch(s0, leaf, strict=True).files
            commits.append(
                PatchCommit(
                    patch_id=leaf.id,
                    changes={f"{SKILL_PATH}/SKILL.md": files["SKILL.md"].encode()},
                    subject=leaf.reasoning,
                    trajectory=f"traj-{k}",
                    outcome="fail" if k % 2 else "pass",
                    analyst="success",
                    model="fake/m",
                )
            )
            (run_dir / "patches" / f"{leaf.id}.json").write_text(leaf.model_dump_json())
        oids = write_patches(store, "r1", commits, timestamp=TS)
        ids = [p.id for p in leaves]
        final = Patch(reasoning="consolidated", edits=[TIP_A, CHECK, HARM], sources=ids)
        star = apply_patch(s0, final, strict=True).files["SKILL.md"].encode()

        def operator(merges: list[GroupMerge]) -> list[Resolution]:
            # The merge operator's answer: S0 + the final patch (as an LLM operator writes).
            return [Resolution(changes={f"{SKILL_PATH}/SKILL.md": star}) for _ in merges]

        result = consolidate(store, "r1", list(oids.values()), timestamp=TS, resolve=operator)
    finally:
        store.close()
    (run_dir / "patches" / f"{final.id}.json").write_text(final.model_dump_json())
    edits = [
        {"id": TIP_A.id, "cited": [], "sources": [ids[0], ids[1], ids[3]], "support": 3},
        {"id": CHECK.id, "cited": [], "sources": [ids[2]], "support": 1},
        {"id": HARM.id, "cited": [], "sources": [ids[3]], "support": 1},
    ]
    merge = {
        "schema_version": 1, "level": 1, "group": "g0", "children": ids, "child_commits": [],
        "commit": result, "patch_id": final.id, "status": "union", "reason": None,
        "conflicts": [], "edits": edits, "dropped": [], "model": None, "tokens_in": 0,
        "tokens_out": 0, "started_at": 0.0, "ended_at": 0.0,
    }  # fmt: skip
    (run_dir / "merges.jsonl").write_text(json.dumps(merge) + "\n")
    analyses = [
        {"schema_version": 1, "id": f"a{k}", "trajectory_id": f"traj-{k}", "task_id": f"q{k}",
         "outcome": "fail" if k % 2 else "pass", "patch_id": pid, "status": "kept"}
        for k, pid in enumerate(ids)
    ]  # fmt: skip
    (run_dir / "analyses.jsonl").write_text("".join(json.dumps(a) + "\n" for a in analyses))
    update_stage(
        run_dir,
        "consolidate",
        status="done",
        config={"repo": str(repo_root), "skill_path": SKILL_PATH, "protocol": "json"},
        counts={"result_commit": result, "final_patch_id": final.id},
    )
    return {
        "repo": repo_root,
        "run_dir": run_dir,
        "tasks": tasks,
        "final": final,
        "leaves": leaves,
        "result": result,
    }
