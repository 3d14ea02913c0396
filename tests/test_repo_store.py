from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.repo_helpers import BASE_TEXT, SKILL, TS, edit_line, git, make_user_repo, user_state
from toolkit.errors import RepoError
from toolkit.repo import (
    CommitSpec,
    DerivedCommit,
    PatchCommit,
    SkillRepo,
    Trailers,
    check_id,
    format_message,
    parse_trailers,
    sanitize_run_id,
    set_result,
    write_ablations,
    write_only,
    write_patches,
    write_sequence,
)


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    return make_user_repo(tmp_path / "user")


def _patches(n: int = 3) -> list[PatchCommit]:
    return [
        PatchCommit(
            patch_id=f"p{i}",
            changes={SKILL: edit_line(BASE_TEXT, 2 + 5 * i, f"lesson {i}")},
            subject=f"Add lesson {i}",
            body="Because the agent forgot.",
            trajectory=f"task-{i}",
            outcome="fail" if i % 2 else "pass",
            analyst="error-agentic",
            model="fake/model",
        )
        for i in range(n)
    ]


# ------------------------------------------------------------------ ids


def test_sanitize_run_id() -> None:
    assert sanitize_run_id("My run: 2026/01 (test)") == "My-run-2026-01-test"
    assert sanitize_run_id("../../etc") == "etc"
    assert sanitize_run_id("a..b.lock") == "a.b"
    assert len(sanitize_run_id("x" * 200)) == 64
    with pytest.raises(RepoError, match="cannot make a run id"):
        sanitize_run_id("///")


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "-x", "a..b", "x.lock", "é"])
def test_check_id_rejects_invalid(bad: str) -> None:
    with pytest.raises(RepoError, match="invalid run id"):
        check_id(bad)


# ------------------------------------------------------------------ open


def test_open_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not inside a git repository"):
        SkillRepo.open(tmp_path)


def test_open_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="does not exist"):
        SkillRepo.open(tmp_path / "nope")


def test_open_bare_repository(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(RepoError, match="bare repository"):
        SkillRepo.open(tmp_path / "bare.git")


def test_open_from_subdirectory(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo / "skills" / "demo")
    assert repo.root == user_repo.resolve()


# ------------------------------------------------------------------ base


def test_snapshot_base_keeps_user_state(user_repo: Path) -> None:
    before = user_state(user_repo)
    repo = SkillRepo.open(user_repo)
    base = repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    assert user_state(user_repo) == before
    assert git(user_repo, "rev-parse", "t2s/r1/base").strip() == base
    assert git(user_repo, "rev-parse", f"{base}^").strip() == before[2].strip()
    assert git(user_repo, "rev-parse", f"{base}^{{tree}}") == git(
        user_repo, "rev-parse", "HEAD^{tree}"
    )
    trailers = parse_trailers(git(user_repo, "log", "-1", "--format=%B", base))
    assert trailers is not None and trailers.kind == "base" and trailers.run == "r1"


def test_snapshot_refuses_dirty_skill_folder(user_repo: Path) -> None:
    (user_repo / SKILL).write_text(BASE_TEXT + "uncommitted\n")
    repo = SkillRepo.open(user_repo)
    with pytest.raises(RepoError, match="uncommitted changes"):
        repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    assert repo.run_refs("r1") == {}
    before = user_state(user_repo)
    base = repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS, allow_dirty=True)
    assert user_state(user_repo) == before
    assert git(user_repo, "show", f"{base}:{SKILL}").endswith("uncommitted\n")
    # dirty files elsewhere do not leak into the base
    (user_repo / "README.md").write_text("changed\n")
    other = repo.snapshot_base("r2", user_repo / "skills" / "demo", timestamp=TS, allow_dirty=True)
    assert git(user_repo, "show", f"{other}:README.md") == "readme\n"


def test_snapshot_refuses_untracked_file_in_skill(user_repo: Path) -> None:
    (user_repo / "skills" / "demo" / "new.md").write_text("x\n")
    with pytest.raises(RepoError, match="uncommitted changes"):
        SkillRepo.open(user_repo).snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)


def test_snapshot_refuses_detached_head(user_repo: Path) -> None:
    git(user_repo, "checkout", "-q", "--detach")
    with pytest.raises(RepoError, match="HEAD is detached"):
        SkillRepo.open(user_repo).snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)


def test_snapshot_refuses_existing_run_and_bad_id(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    with pytest.raises(RepoError, match="already exists"):
        repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    with pytest.raises(RepoError, match="invalid run id"):
        repo.snapshot_base("bad id", user_repo / "skills" / "demo", timestamp=TS)


def test_snapshot_refuses_folder_outside_repo(user_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="outside the repository"):
        SkillRepo.open(user_repo).snapshot_base("r1", tmp_path, timestamp=TS)


def test_snapshot_with_draft_changes(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    base = repo.snapshot_base(
        "r1", user_repo / "skills" / "demo", timestamp=TS, changes={SKILL: b"draft\n"}
    )
    assert git(user_repo, "show", f"{base}:{SKILL}") == "draft\n"


# ------------------------------------------------------------------ patches


def test_write_patches_commits_and_trailers(user_repo: Path) -> None:
    before = user_state(user_repo)
    repo = SkillRepo.open(user_repo)
    base = repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    ids = write_patches(repo, "r1", _patches(), timestamp=TS)
    assert user_state(user_repo) == before
    assert set(ids) == {"p0", "p1", "p2"}
    for pid, oid in ids.items():
        assert git(user_repo, "rev-parse", f"t2s/r1/patch/{pid}").strip() == oid
        assert git(user_repo, "rev-parse", f"{oid}^").strip() == base
    message = git(user_repo, "log", "-1", "--format=%B", ids["p1"])
    assert message.startswith("Add lesson 1\n\nBecause the agent forgot.\n")
    assert "Trace2Skill-Outcome: fail" in message
    t = parse_trailers(message)
    assert t is not None
    assert (t.run, t.patch, t.trajectory, t.analyst, t.model) == (
        "r1",
        "p1",
        "task-1",
        "error-agentic",
        "fake/model",
    )
    assert git(user_repo, "show", f"{ids['p1']}:{SKILL}").splitlines()[6] == "lesson 1"
    author = git(user_repo, "log", "-1", "--format=%an <%ae> %at %cn %ct", ids["p0"]).strip()
    assert author == f"trace2skill <trace2skill@localhost> {TS} trace2skill {TS}"
    # no scratch refs are left behind
    assert "scratch" not in git(user_repo, "for-each-ref")


def test_write_patches_is_deterministic(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        root = make_user_repo(tmp_path / name)
        repo = SkillRepo.open(root)
        repo.snapshot_base("r1", root / "skills" / "demo", timestamp=TS)
        ids.append(write_patches(repo, "r1", _patches(), timestamp=TS))
        # writing the same patches again is a no-op with the same ids
        assert write_patches(repo, "r1", _patches(), timestamp=TS) == ids[-1]
    assert ids[0] == ids[1]


def test_write_patch_conflicting_rewrite_refused(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    write_patches(repo, "r1", _patches(1), timestamp=TS)
    before = repo.run_refs("r1")
    other = _patches(1)[0].model_copy(update={"subject": "different"})
    with pytest.raises(RepoError, match="already exists"):
        write_patches(repo, "r1", [*_patches(2)[1:], other], timestamp=TS)
    assert repo.run_refs("r1") == before  # all-or-nothing: p1 was not written either


def test_write_patches_needs_base_and_valid_ids(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    with pytest.raises(RepoError, match="has no base"):
        write_patches(repo, "r1", _patches(), timestamp=TS)
    repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    bad = _patches(1)[0].model_copy(update={"patch_id": "bad/id"})
    with pytest.raises(RepoError, match="invalid patch id"):
        write_patches(repo, "r1", [bad], timestamp=TS)


def test_delete_file_and_odd_paths(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    patch = PatchCommit(
        patch_id="p",
        subject="odd",
        changes={
            "skills/demo/references/notes.md": None,
            'skills/demo/references/a "quoted" ñame.md': b"x\n",
        },
    )
    oid = write_patches(repo, "r1", [patch], timestamp=TS)["p"]
    files = git(user_repo, "ls-tree", "-r", "--name-only", "-z", oid).split("\0")
    assert "skills/demo/references/notes.md" not in files
    assert 'skills/demo/references/a "quoted" ñame.md' in files


def test_lock_blocks_second_process(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    lock = repo.common_dir / "trace2skill" / "r1.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire();"
            "print('held', flush=True); sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RepoError, match="being written by another process"):
            write_patches(repo, "r1", _patches(), timestamp=TS)
        assert list(repo.run_refs("r1")) == ["t2s/r1/base"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    write_patches(repo, "r1", _patches(), timestamp=TS)  # free again


# ------------------------------------------------------------------ derived branches


def test_derived_branches(user_repo: Path) -> None:
    before = user_state(user_repo)
    repo = SkillRepo.open(user_repo)
    base = repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    result = set_result(
        repo, "r1", base, timestamp=TS, changes={SKILL: b"final\n"}, sources=["p0", "p1"]
    )
    assert git(user_repo, "rev-parse", "t2s/r1/result").strip() == result
    abl = write_ablations(
        repo,
        "r1",
        [
            DerivedCommit(
                id="e1", changes={SKILL: b"without e1\n"}, subject="ablate e1", sources=["p0"]
            )
        ],
        timestamp=TS,
    )
    assert git(user_repo, "rev-parse", f"{abl['e1']}^").strip() == result
    only = write_only(
        repo,
        "r1",
        [DerivedCommit(id="e1", changes={SKILL: b"only e1\n"}, subject="only e1", patch="p0")],
        timestamp=TS,
    )
    assert git(user_repo, "rev-parse", f"{only['e1']}^").strip() == base
    seq = write_sequence(
        repo,
        "r1",
        [
            DerivedCommit(id=str(k), changes={SKILL: f"step {k}\n".encode()}, subject=f"step {k}")
            for k in (1, 2, 3)
        ],
        timestamp=TS,
    )
    assert git(user_repo, "rev-list", "--first-parent", "t2s/r1/seq/3").split() == [
        *seq[::-1],
        base,
        before[2].strip(),
    ]
    assert git(user_repo, "show", f"t2s/r1/seq/2:{SKILL}") == "step 2\n"
    t = parse_trailers(git(user_repo, "log", "-1", "--format=%B", "t2s/r1/seq/2"))
    assert t is not None and (t.kind, t.step) == ("seq", 2)
    t = parse_trailers(git(user_repo, "log", "-1", "--format=%B", "t2s/r1/ablate/e1"))
    assert t is not None and (t.kind, t.sources, t.support) == ("ablate", ["p0"], 1)
    assert sorted(repo.run_refs("r1")) == [
        "t2s/r1/ablate/e1",
        "t2s/r1/base",
        "t2s/r1/only/e1",
        "t2s/r1/result",
        "t2s/r1/seq/1",
        "t2s/r1/seq/2",
        "t2s/r1/seq/3",
    ]
    assert user_state(user_repo) == before
    assert repo.runs() == ["r1"]
    deleted = repo.delete_run("r1")
    assert len(deleted) == 7 and repo.runs() == []
    with pytest.raises(RepoError, match="no run"):
        repo.delete_run("r1")
    assert user_state(user_repo) == before


def test_snapshot_refuses_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "skills" / "demo").mkdir(parents=True)
    (root / SKILL).write_text(BASE_TEXT)
    with pytest.raises(RepoError, match="no commits yet"):
        SkillRepo.open(root).snapshot_base("r1", root / "skills" / "demo", timestamp=TS)


def test_trailers_round_trip_and_body_cannot_spoof() -> None:
    trailers = Trailers(
        run="r1",
        kind="merge",
        level=2,
        group="g0001",
        sources=["p1", "p2"],
        support=2,
        model="m",
    )
    message = format_message("Merge\nlessons", trailers, body="Trace2Skill-Run: evil\n\nmore")
    assert message.startswith("Merge lessons\n\n")
    assert parse_trailers(message) == trailers
    assert parse_trailers("plain commit\n\nTrace2Skill-Run: r1\n\nSigned-off-by: x\n") is None
    assert parse_trailers("no trailers") is None


def test_failed_batch_leaves_no_refs(user_repo: Path) -> None:
    repo = SkillRepo.open(user_repo)
    base = repo.snapshot_base("r1", user_repo / "skills" / "demo", timestamp=TS)
    before = git(user_repo, "for-each-ref")
    good = CommitSpec([base], "ok\n", TS, changes={SKILL: b"x\n"})
    broken = CommitSpec([base], "broken\n", TS, tree="1" * 40)  # no such tree
    with pytest.raises(RepoError, match="fast-import failed"):
        repo.write("r1", [("patch/a", good), ("patch/b", broken)])
    assert git(user_repo, "for-each-ref") == before
    assert not list((user_repo / ".git").glob("fast_import_crash_*"))


def test_load_skill_at_a_revision(user_repo: Path) -> None:
    """REV:PATH skills: the content and version id of the folder as committed."""
    from toolkit.skill import SkillError, load_skill
    from toolkit.trajectory import skill_commit

    script = user_repo / "skills" / "demo" / "scripts" / "check.py"
    script.parent.mkdir()
    script.write_text("print('ok')\n")
    script.chmod(0o755)
    (user_repo / "skills" / "demo" / "logo.bin").write_bytes(b"\x00\xff")
    git(user_repo, "add", ".")
    git(user_repo, "commit", "-q", "-m", "script")
    on_disk = load_skill(user_repo / "skills" / "demo")
    (user_repo / SKILL).write_text("changed on disk, not committed\n")

    repo = SkillRepo.open(user_repo)
    skill = repo.load_skill("main", "skills/demo/")
    assert skill.name == "demo" and skill.files == on_disk.files
    assert skill.executables == {"scripts/check.py"}
    assert skill.files["scripts/check.py"] == "print('ok')\n"  # text, readable by the agent
    committed = git(user_repo, "rev-parse", "main:skills/demo").strip()
    assert skill_commit(skill) == committed == skill_commit(on_disk)
    older = repo.load_skill("HEAD~1", "skills/demo")
    assert "scripts/check.py" not in older.files
    assert skill_commit(older) == git(user_repo, "rev-parse", "HEAD~1:skills/demo").strip()

    with pytest.raises(RepoError, match="unknown revision 'nope'"):
        repo.load_skill("nope", "skills/demo")
    # A run's ref that is not here: most often a run folder whose refs were not imported.
    with pytest.raises(RepoError, match=r"import its refs first: trace2skill bundle import "):
        repo.load_skill("t2s/example/result", "skills/demo")
    with pytest.raises(RepoError, match="main has no folder 'skills/other'"):
        repo.load_skill("main", "skills/other")
    with pytest.raises(RepoError, match=r"main:README.md is a file, not a skill folder \("):
        repo.load_skill("main", "README.md")
    # The skill's SKILL.md given for its folder: the folder is named.
    with pytest.raises(RepoError, match="pass the folder that holds SKILL.md, main:skills/demo$"):
        repo.load_skill("main", "skills/demo/SKILL.md")
    with pytest.raises(SkillError, match="main:skills has no SKILL.md"):
        repo.load_skill("main", "skills")
    repo.close()


def test_a_git_failure_keeps_what_went_wrong(tmp_path: Path) -> None:
    """git fetch's last stderr line is advice ("and the repository exists."): the message kept
    only that (a trial's "git fetch failed: and the repository exists.")."""
    from toolkit.repo.plumbing import Git

    git_ = Git(tmp_path, tmp_path)
    git_.run(["init", "--quiet", "--bare"])
    with pytest.raises(RepoError) as err:
        git_.run(["fetch", "--quiet", str(tmp_path / "nowhere"), "refs/heads/*:refs/heads/*"])
    message = str(err.value)
    assert message.startswith("git fetch failed: fatal: ") and "nowhere" in message
    assert "and the repository exists" not in message and "\n" not in message


def test_a_git_failure_names_the_command_not_a_config_option(tmp_path: Path) -> None:
    """merge-tree runs as ``git -c merge.conflictStyle=diff3 merge-tree ...``: its failure read
    "git merge.conflictStyle=diff3 failed", naming the -c value for the command."""
    from toolkit.repo.plumbing import Git

    git_ = Git(tmp_path, tmp_path)
    git_.run(["init", "--quiet", "--bare"])
    with pytest.raises(RepoError, match=r"^git merge-tree failed: "):
        git_.merge_pairs([("0" * 40, "1" * 40)])
