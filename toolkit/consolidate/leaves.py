"""Leaf patches as the consolidation reads them: ``patches/<id>.json`` plus a patch commit.

The analysts stage produces these; :func:`write_leaf_patches` is the same contract written
from Patch objects, for imported patches (e.g. the official pipeline's), tests and benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from toolkit.consolidate.records import save_patch
from toolkit.errors import PatchRejected
from toolkit.patch import Patch, apply_patch
from toolkit.repo import PatchCommit, SkillRepo, base_of, write_patches
from toolkit.skill import Budgets


class LeafInput(BaseModel):
    """One analysed trajectory's patch and where it came from."""

    patch: Patch
    trajectory: str | None = None
    outcome: Literal["pass", "fail"] | None = None
    analyst: str | None = None
    model: str | None = None


def write_leaf_patches(
    repo: SkillRepo,
    run: str,
    skill_rel: str,
    run_dir: Path,
    leaves: list[LeafInput],
    *,
    timestamp: int,
    budgets: Budgets | None = None,
) -> dict[str, str]:
    """Check each patch on the base skill, save it and commit it; return patch id -> commit.

    Raises:
        PatchRejected: a patch does not apply cleanly to the base skill.
    """
    base = base_of(repo, run)
    skill = repo.load_skill(base, skill_rel)
    prefix = f"{skill_rel}/" if skill_rel else ""
    commits = []
    for leaf in leaves:
        result = apply_patch(skill, leaf.patch, budgets=budgets)
        if not result.clean:
            raise PatchRejected(f"leaf patch {leaf.patch.id}: {result.summary()}")
        patch = leaf.patch.model_copy(update={"sources": [leaf.patch.id], "support": 1})
        save_patch(run_dir, patch)
        changes = {}
        for path in result.changed_files:
            content = result.files.get(path)
            changes[prefix + path] = content.encode() if isinstance(content, str) else content
        subject = (patch.changelog_entries or [f"patch {patch.id}"])[0]
        commits.append(
            PatchCommit(
                patch_id=str(patch.id),
                changes=changes,
                subject=subject,
                body="\n".join(patch.changelog_entries[1:]),
                trajectory=leaf.trajectory,
                outcome=leaf.outcome,
                analyst=leaf.analyst,
                model=leaf.model,
                sources=[str(patch.id)],
                support=1,
            )
        )
    return write_patches(repo, run, commits, timestamp=timestamp, base=base)
