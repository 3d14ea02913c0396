"""Shared set-up for consolidation tests: a skills repo, a run folder and leaf patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.repo_helpers import TS, git
from toolkit.consolidate import LeafInput, MergeReply, parse_pool_from_prompt, write_leaf_patches
from toolkit.llm import LLMConfig
from toolkit.patch import Edit, Patch
from toolkit.repo import SkillRepo
from toolkit.rollout import update_stage

RUN = "r1"
SKILL_REL = "skills/demo"
SKILL_TEXT = """---
name: demo
description: Demo skill for consolidation tests.
---
# Demo

## Workflow
1. Read the table.
2. Compute the answer.

## Pitfalls
- Check units.

## Output
Answer with a number.
"""


def make_run(tmp_path: Path) -> tuple[SkillRepo, Path]:
    """A user repository with skills/demo committed, a run base, and an empty run folder."""
    root = tmp_path / "user"
    (root / SKILL_REL).mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    (root / SKILL_REL / "SKILL.md").write_text(SKILL_TEXT)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    repo = SkillRepo.open(root)
    repo.snapshot_base(RUN, root / SKILL_REL, timestamp=TS)
    run_dir = tmp_path / "runs" / RUN
    update_stage(
        run_dir,
        "analyse",
        status="done",
        config={"repo": str(root), "skill_path": SKILL_REL, "run": RUN},
    )
    return repo, run_dir


def lesson(text: str, section: str = "Pitfalls") -> Edit:
    return Edit(file="SKILL.md", op="append_to_section", target_section=section, content=text)


def leaf(*edits: Edit, why: str = "lesson") -> Patch:
    return Patch(reasoning=why, edits=list(edits), changelog_entries=[why])


def add_leaves(repo: SkillRepo, run_dir: Path, patches: list[Patch]) -> dict[str, str]:
    """Commit leaf patches, trajectory t<i> each."""
    leaves = [
        LeafInput(patch=p, trajectory=f"t{i}", outcome="fail", analyst="error-single")
        for i, p in enumerate(patches)
    ]
    return write_leaf_patches(repo, RUN, SKILL_REL, run_dir, leaves, timestamp=TS)


def llm(tmp_path: Path, model: str) -> LLMConfig:
    return LLMConfig(model=model, cache_dir=tmp_path / "cache", retry_base_delay=0)


def keep_all(messages: list[dict[str, Any]]) -> MergeReply:
    """A merge operator that keeps each unique input edit as is, citing it."""
    pool = parse_pool_from_prompt(messages)
    edits = [
        {**{k: v for k, v in e.items() if k not in ("id", "support")}, "cited": [e["id"]]}
        for e in pool
    ]
    return MergeReply.model_validate(
        {"reasoning": "kept every lesson", "edits": edits, "changelog_entries": ["Keep all"]}
    )
