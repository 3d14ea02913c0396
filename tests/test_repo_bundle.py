from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.repo_helpers import BASE_TEXT, SKILL, TS, edit_line, git, make_user_repo, user_state
from toolkit.errors import RepoError
from toolkit.repo import (
    PatchCommit,
    SkillRepo,
    blame_line,
    consolidate,
    export_bundle,
    import_bundle,
    write_patches,
)


def _run(root: Path, run: str = "r1") -> SkillRepo:
    store = SkillRepo.open(root)
    store.snapshot_base(run, root / "skills" / "demo", timestamp=TS)
    patches = [
        PatchCommit(
            patch_id=f"p{i}",
            changes={SKILL: edit_line(BASE_TEXT, 2 + 4 * i, f"lesson {i}")},
            subject=f"lesson {i}",
            trajectory=f"traj-{i}",
        )
        for i in range(3)
    ]
    ids = write_patches(store, run, patches, timestamp=TS)
    consolidate(store, run, list(ids.values()), timestamp=TS)
    return store


def test_bundle_round_trip_into_second_repo(tmp_path: Path) -> None:
    source = _run(make_user_repo(tmp_path / "a"))
    before = user_state(source.root)
    info = export_bundle(source, "r1", tmp_path / "out" / "refs.bundle")
    assert user_state(source.root) == before
    assert Path(info.path).is_file() and not list((tmp_path / "out").glob(".*tmp"))
    assert len(info.refs) == 6  # base, 3 patches, L1/g0001, result

    other_root = tmp_path / "b"
    other_root.mkdir()
    git(other_root, "init", "-q", "-b", "main")
    git(other_root, "config", "user.name", "Other")
    git(other_root, "config", "user.email", "o@example.com")
    (other_root / "x.txt").write_text("x\n")
    git(other_root, "add", ".")
    git(other_root, "commit", "-q", "-m", "other")
    other = SkillRepo.open(other_root)
    other_before = user_state(other_root)
    imported = import_bundle(other, info.path)
    assert imported.run == "r1"
    assert other.run_refs("r1") == source.run_refs("r1")
    assert user_state(other_root) == other_before
    # provenance works in the second repository too
    record = blame_line(other, SKILL, 6, "t2s/r1/result")
    assert (record.text, record.patches, record.trajectories) == ("lesson 1", ["p1"], ["traj-1"])
    # a second import is refused unless forced
    with pytest.raises(RepoError, match="already exists"):
        import_bundle(other, info.path)
    other.set_refs("r1", {"extra": other.run_refs("r1")["t2s/r1/base"]})
    import_bundle(other, info.path, force=True)
    assert other.run_refs("r1") == source.run_refs("r1")  # stale refs removed too


def test_default_bundle_path(tmp_path: Path) -> None:
    source = _run(make_user_repo(tmp_path / "a"))
    info = export_bundle(source, "r1")
    assert Path(info.path) == source.root / "runs" / "r1" / "refs.bundle"


def test_corrupt_and_foreign_bundles(tmp_path: Path) -> None:
    source = _run(make_user_repo(tmp_path / "a"))
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(b"# v2 git bundle\ngarbage\n")
    with pytest.raises(RepoError, match="not a valid bundle"):
        import_bundle(source, bad)
    good = Path(export_bundle(source, "r1", tmp_path / "good.bundle").path)
    truncated = tmp_path / "truncated.bundle"
    truncated.write_bytes(good.read_bytes()[:-40])
    target = SkillRepo.open(make_user_repo(tmp_path / "c"))
    with pytest.raises(RepoError, match="corrupt or truncated"):
        import_bundle(target, truncated)
    assert target.runs() == []
    with pytest.raises(RepoError, match="does not exist"):
        import_bundle(target, tmp_path / "missing.bundle")
    git(source.root, "bundle", "create", str(tmp_path / "main.bundle"), "main")
    with pytest.raises(RepoError, match="not a trace2skill run bundle"):
        import_bundle(target, tmp_path / "main.bundle")
    with pytest.raises(RepoError, match="no run"):
        export_bundle(source, "nope")


def test_thin_bundle_holds_only_the_runs_own_commits(tmp_path: Path) -> None:
    """A run kept in the project's repository bundled its whole history (7 MB for the real
    WikiTQ run); thin, it imports into any clone of the project."""
    root = make_user_repo(tmp_path / "a")
    for i in range(3):  # project history the run's base descends from
        text = "".join(hashlib.sha256(f"{i}.{j}".encode()).hexdigest() for j in range(200))
        (root / f"doc{i}.txt").write_text(text)  # incompressible: it shows in the size
        git(root, "add", ".")
        git(root, "commit", "-q", "-m", f"doc {i}")
    source = _run(root)
    full = export_bundle(source, "r1", tmp_path / "full.bundle")
    thin = export_bundle(source, "r1", tmp_path / "thin.bundle", thin_from="HEAD")
    assert thin.refs == full.refs
    assert Path(thin.path).stat().st_size < Path(full.path).stat().st_size / 2
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(source.root), str(clone))
    import_bundle(SkillRepo.open(clone), thin.path)
    assert SkillRepo.open(clone).run_refs("r1") == source.run_refs("r1")

    other_root = tmp_path / "b"
    other_root.mkdir()
    git(other_root, "init", "-q", "-b", "main")
    other = SkillRepo.open(other_root)
    with pytest.raises(RepoError, match="not a valid bundle for this repository"):
        import_bundle(other, thin.path)
    assert other.run_refs("r1") == {}
    with pytest.raises(RepoError, match="is no commit"):
        export_bundle(source, "r1", tmp_path / "x.bundle", thin_from="no-such-branch")
    with pytest.raises(RepoError, match="would be empty"):
        export_bundle(source, "r1", tmp_path / "x.bundle", thin_from="t2s/r1/result")
