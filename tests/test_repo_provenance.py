from __future__ import annotations

from pathlib import Path

import pytest

from tests.repo_helpers import BASE_TEXT, SKILL, TS, edit_line, git, make_user_repo, user_state
from toolkit.errors import RepoError
from toolkit.repo import (
    GroupMerge,
    PatchCommit,
    Resolution,
    SkillRepo,
    blame_file,
    blame_line,
    consolidate,
    write_patches,
)


@pytest.fixture
def run_repo(tmp_path: Path) -> SkillRepo:
    """A run with 3 patches; the merge operator rewrites line 10 itself."""
    root = make_user_repo(tmp_path / "user")
    store = SkillRepo.open(root)
    store.snapshot_base("r1", root / "skills" / "demo", timestamp=TS)
    patches = [
        PatchCommit(
            patch_id=f"p{i}",
            changes={SKILL: edit_line(BASE_TEXT, line, f"lesson {i}")},
            subject=f"lesson {i}",
            trajectory=f"traj-{i}",
            outcome="fail",
        )
        for i, line in enumerate((3, 10, 10))
    ]
    ids = write_patches(store, "r1", patches, timestamp=TS)

    def operator(merges: list[GroupMerge]) -> list[Resolution]:
        out = []
        for _ in merges:
            text = edit_line(BASE_TEXT, 3, "lesson 0")
            text = edit_line(text.decode(), 10, "generalised lesson 1+2")
            out.append(Resolution(changes={SKILL: text}, sources=["p0", "p1", "p2"], subject="op"))
        return out

    consolidate(store, "r1", [ids[p] for p in ("p0", "p1", "p2")], timestamp=TS, resolve=operator)
    return store


def test_provenance_through_merge(run_repo: SkillRepo) -> None:
    before = user_state(run_repo.root)
    records = blame_file(run_repo, SKILL, "t2s/r1/result")
    assert len(records) == 20
    # a line the union kept from a child is blamed on that patch commit
    kept = records[2]
    assert (kept.text, kept.kind, kept.patches, kept.trajectories, kept.support) == (
        "lesson 0",
        "patch",
        ["p0"],
        ["traj-0"],
        1,
    )
    assert kept.commit == git(run_repo.root, "rev-parse", "t2s/r1/patch/p0").strip()
    # a line the merge operator wrote is blamed on the merge, and leads to all its leaves
    written = blame_line(run_repo, SKILL, 10, "t2s/r1/result")
    assert written.text == "generalised lesson 1+2"
    assert written.commit == git(run_repo.root, "rev-parse", "t2s/r1/result").strip()
    assert (written.kind, written.level, written.support) == ("merge", 1, 3)
    assert written.patches == ["p0", "p1", "p2"]
    assert written.trajectories == ["traj-0", "traj-1", "traj-2"]
    # untouched lines come from the user's history: no run
    assert records[0].run is None and records[0].text == "line 1"
    assert user_state(run_repo.root) == before


def test_provenance_errors(run_repo: SkillRepo) -> None:
    with pytest.raises(RepoError, match="out of range"):
        blame_line(run_repo, SKILL, 99, "t2s/r1/result")
    with pytest.raises(RepoError, match="does not exist"):
        blame_file(run_repo, "skills/demo/missing.md", "t2s/r1/result")
    with pytest.raises(RepoError, match="unknown revision"):
        blame_file(run_repo, SKILL, "t2s/nope/result")
