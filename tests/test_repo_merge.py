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
    analyse_groups,
    consolidate,
    consolidate_level,
    parse_conflict_markers,
    parse_trailers,
    plan_groups,
    write_patches,
)


@pytest.fixture
def repo(tmp_path: Path) -> SkillRepo:
    root = make_user_repo(tmp_path / "user")
    store = SkillRepo.open(root)
    store.snapshot_base("r1", root / "skills" / "demo", timestamp=TS)
    return store


def _write(repo: SkillRepo, edits: dict[str, tuple[int, str]]) -> dict[str, str]:
    patches = [
        PatchCommit(
            patch_id=pid,
            changes={SKILL: edit_line(BASE_TEXT, line, text)},
            subject=f"patch {pid}",
            trajectory=f"traj-{pid}",
            outcome="fail",
        )
        for pid, (line, text) in edits.items()
    ]
    return write_patches(repo, "r1", patches, timestamp=TS)


def test_plan_groups() -> None:
    groups = plan_groups([str(i) for i in range(19)], 8)
    assert list(groups) == ["g0001", "g0002", "g0003"]
    assert [len(g) for g in groups.values()] == [8, 8, 3]
    with pytest.raises(ValueError):
        plan_groups(["a"], 0)


def test_parse_conflict_markers() -> None:
    text = "a\n<<<<<<< x\nours\n||||||| b\nbase\n=======\ntheirs\n>>>>>>> y\nz\n"
    (hunk,) = parse_conflict_markers(text)
    assert (hunk.line, hunk.base, hunk.ours, hunk.theirs) == (2, "base", "ours", "theirs")
    assert parse_conflict_markers("no conflicts\n") == []


def test_clean_group_union(repo: SkillRepo) -> None:
    ids = _write(repo, {"a": (2, "A"), "b": (8, "B"), "c": (14, "C")})
    (merge,) = analyse_groups(repo, {"g1": [ids["a"], ids["b"], ids["c"]]})
    assert merge.clean and merge.conflicts == []
    union = git(repo.root, "cat-file", "-p", f"{merge.union_tree}:{SKILL}").splitlines()
    assert (union[1], union[7], union[13]) == ("A", "B", "C")


def test_conflicts_are_reported_pairwise(repo: SkillRepo) -> None:
    ids = _write(repo, {"a": (5, "A"), "b": (5, "B"), "c": (15, "C")})
    (merge,) = analyse_groups(repo, {"g1": [ids["a"], ids["b"], ids["c"]]})
    assert not merge.clean
    assert merge.conflicted_files == [SKILL]
    (conflict,) = merge.conflicts
    assert (conflict.file, conflict.ours, conflict.theirs) == (SKILL, ids["a"], ids["b"])
    (hunk,) = conflict.hunks
    assert (hunk.base, hunk.ours, hunk.theirs) == ("line 5", "A", "B")
    with pytest.raises(RepoError, match="has conflicts"):
        consolidate_level(repo, "r1", 1, {"g1": list(ids.values())}, timestamp=TS)
    assert "L1" not in " ".join(repo.run_refs("r1"))


def test_group_commit_with_resolver_and_trailers(repo: SkillRepo) -> None:
    before = user_state(repo.root)
    ids = _write(repo, {"a": (5, "A"), "b": (5, "B"), "c": (15, "C")})

    def resolve(merges: list[GroupMerge]) -> list[Resolution]:
        out = []
        for m in merges:
            text = git(repo.root, "cat-file", "-p", f"{m.union_tree}:{SKILL}")
            lines = [
                ln
                for ln in text.splitlines()
                if not ln.startswith(("<<<<<<<", "|||||||", "=======", ">>>>>>>"))
            ]
            lines = [ln for ln in lines if ln not in ("line 5", "B")]
            out.append(
                Resolution(
                    changes={SKILL: ("\n".join(lines) + "\n").encode()},
                    subject="merged A/B/C",
                    sources=["a", "c"],
                    model="fake",
                )
            )
        return out

    commits, merges = consolidate_level(
        repo, "r1", 1, {"g1": list(ids.values())}, timestamp=TS, resolve=resolve
    )
    merge_commit = commits["g1"]
    assert git(repo.root, "rev-parse", "t2s/r1/L1/g1").strip() == merge_commit
    parents = git(repo.root, "log", "-1", "--format=%P", merge_commit).split()
    assert parents == [ids["a"], ids["b"], ids["c"]]
    t = parse_trailers(git(repo.root, "log", "-1", "--format=%B", merge_commit))
    assert t is not None and (t.kind, t.level, t.group, t.sources, t.support, t.model) == (
        "merge",
        1,
        "g1",
        ["a", "c"],
        2,
        "fake",
    )
    text = git(repo.root, "show", f"{merge_commit}:{SKILL}").splitlines()
    assert text[4] == "A" and text[14] == "C" and "B" not in text
    assert user_state(repo.root) == before
    assert merges[0].conflicts


def test_unresolved_conflict_refused(repo: SkillRepo) -> None:
    ids = _write(repo, {"a": (5, "A"), "b": (5, "B")})
    with pytest.raises(RepoError, match="unresolved"):
        consolidate_level(
            repo,
            "r1",
            1,
            {"g1": list(ids.values())},
            timestamp=TS,
            resolve=lambda ms: [Resolution() for _ in ms],
        )


def test_consolidate_tree_log_graph_and_determinism(tmp_path: Path) -> None:
    results = []
    for name in ("x", "y"):
        root = make_user_repo(tmp_path / name)
        store = SkillRepo.open(root)
        before = user_state(root)
        store.snapshot_base("r1", root / "skills" / "demo", timestamp=TS)
        edits = {f"p{i}": (1 + 2 * i, f"lesson {i}") for i in range(10)}
        ids = [
            oid
            for _, oid in sorted(
                write_patches(
                    store,
                    "r1",
                    [
                        PatchCommit(
                            patch_id=p, changes={SKILL: edit_line(BASE_TEXT, ln, t)}, subject=p
                        )
                        for p, (ln, t) in edits.items()
                    ],
                    timestamp=TS,
                ).items()
            )
        ]
        final = consolidate(store, "r1", ids, timestamp=TS, group_size=4)
        assert user_state(root) == before
        results.append((final, store.run_refs("r1")))
        refs = store.run_refs("r1")
        assert sorted(r for r in refs if "/L" in r) == [
            "t2s/r1/L1/g0001",
            "t2s/r1/L1/g0002",
            "t2s/r1/L1/g0003",
            "t2s/r1/L2/g0001",
        ]
        assert refs["t2s/r1/result"] == final == refs["t2s/r1/L2/g0001"]
        text = git(root, "show", f"{final}:{SKILL}").splitlines()
        assert [text[2 * i] for i in range(10)] == [f"lesson {i}" for i in range(10)]
        t = parse_trailers(git(root, "log", "-1", "--format=%B", final))
        assert t is not None and t.support == 10 and t.sources == sorted(edits)
        graph = git(root, "log", "--graph", "--format=%s", "t2s/r1/result")
        assert "trace2skill: L2 g0001: merge 3 children" in graph
        assert graph.count("trace2skill: L1") == 3 and graph.count("\n") > 14
        assert "|\\" in graph or "|-" in graph  # merges are drawn as such
    assert results[0] == results[1]
