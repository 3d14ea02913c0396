from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.repo_helpers import BASE_TEXT, SKILL, TS, edit_line, git, make_user_repo, user_state
from toolkit.cli import main
from toolkit.repo import PatchCommit, SkillRepo, consolidate, write_patches

# BASE_TEXT with frontmatter in its first four lines: `repo snapshot` takes a valid skill only.
SKILL_TEXT = "---\nname: demo\ndescription: A demo skill.\n---\n" + "".join(
    BASE_TEXT.splitlines(keepends=True)[4:]
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo_root = make_user_repo(tmp_path / "user")
    (repo_root / SKILL).write_text(SKILL_TEXT)
    git(repo_root, "commit", "-qam", "a valid skill")
    monkeypatch.chdir(repo_root)
    return repo_root


def _invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _evolve(root: Path, run: str = "r1") -> None:
    store = SkillRepo.open(root)
    patches = [
        PatchCommit(
            patch_id=f"p{i}",
            changes={SKILL: edit_line(SKILL_TEXT, 3 + 6 * i, f"lesson {i}")},
            subject=f"lesson {i}",
            trajectory=f"traj-{i}",
        )
        for i in range(2)
    ]
    ids = write_patches(store, run, patches, timestamp=TS)
    consolidate(store, run, list(ids.values()), timestamp=TS)


def test_snapshot_refs_provenance_bundle(root: Path, tmp_path: Path) -> None:
    before = user_state(root)
    result = _invoke("repo", "snapshot", "skills/demo", "--run", "My Run!")
    assert result.exit_code == 0, result.output
    assert "run My-Run: base" in result.output
    head_date = git(root, "log", "-1", "--format=%ct", "HEAD").strip()
    assert git(root, "log", "-1", "--format=%ct", "t2s/My-Run/base").strip() == head_date
    _evolve(root, "My-Run")
    assert user_state(root) == before

    listing = _invoke("refs", "list")
    assert listing.output.strip() == "My-Run\t5 refs"
    detail = _invoke("refs", "list", "My-Run").output
    assert "t2s/My-Run/patch/p1  lesson 1" in detail and "t2s/My-Run/result" in detail

    prov = _invoke("provenance", f"{SKILL}:9", "--ref", "t2s/My-Run/result")
    assert prov.exit_code == 0, prov.output
    assert (
        "lesson 1" in prov.output and "patches  (1) p1" in prov.output and "traj-1" in prov.output
    )
    record = json.loads(
        _invoke("provenance", f"{SKILL}:3", "--ref", "t2s/My-Run/result", "--json").output
    )
    assert (record["line"], record["patches"], record["kind"]) == (3, ["p0"], "patch")
    every = json.loads(_invoke("provenance", SKILL, "--ref", "t2s/My-Run/result", "--json").output)
    assert len(every) == 20

    out = tmp_path / "r.bundle"
    exported = _invoke("bundle", "export", "My-Run", "-o", str(out))
    assert exported.exit_code == 0 and out.is_file()
    assert (
        _invoke("bundle", "export", "My-Run", "-o", str(out)).exit_code == 0
    )  # a bundle: replaced
    # Any other file is kept unless --force (`-o README.md` replaced a user's README).
    readme = tmp_path / "README.md"
    readme.write_text("keep me\n")
    refused = _invoke("bundle", "export", "My-Run", "-o", str(readme))
    assert refused.exit_code == 1 and "exists and is not a git bundle" in refused.output
    assert readme.read_text() == "keep me\n"
    assert _invoke("bundle", "export", "My-Run", "-o", str(readme), "--force").exit_code == 0
    assert readme.read_bytes().startswith(b"# v")
    other = make_user_repo(tmp_path / "other")
    imported = _invoke("bundle", "import", str(out), "--repo", str(other))
    assert imported.exit_code == 0, imported.output
    assert "imported 5 refs of run My-Run" in imported.output
    again = _invoke("bundle", "import", str(out), "--repo", str(other))
    assert again.exit_code == 1 and "already exists" in again.output
    assert _invoke("bundle", "import", str(out), "--repo", str(other), "--force").exit_code == 0

    refused = _invoke("refs", "delete", "My-Run")  # CliRunner stdin is not a tty
    assert refused.exit_code == 1 and "without --yes" in refused.output
    deleted = _invoke("refs", "delete", "My-Run", "--yes")
    assert deleted.exit_code == 0 and "deleted 5 refs" in deleted.output
    assert _invoke("refs", "list").output.strip() == "no trace2skill runs"
    assert user_state(root) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refs", "list", "nope"], "no run 'nope'"),
        (["refs", "list", "bad id"], "invalid run id"),
        (["refs", "delete", "nope", "--yes"], "no run 'nope'"),
        (["bundle", "export", "nope"], "no run 'nope'"),
        (["bundle", "import", "missing.bundle"], "does not exist"),
        (["provenance", f"{SKILL}:99"], "out of range"),
        (["provenance", "skills/demo/none.md:1"], "does not exist at HEAD"),
        (["repo", "snapshot", "skills/demo", "--run", "///"], "cannot make a run id"),
        (["repo", "snapshot", "skills", "--run", "r1"], "Missing required file: SKILL.md"),
    ],
)
def test_cli_errors_are_one_line(root: Path, args: list[str], message: str) -> None:
    result = _invoke(*args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1


def test_cli_not_a_repo_and_dirty(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    result = _invoke("refs", "list", "--repo", str(outside))
    assert result.exit_code == 1 and "not inside a git repository" in result.output
    (root / SKILL).write_text((root / SKILL).read_text() + "\nA line not committed.\n")
    result = _invoke("repo", "snapshot", "skills/demo", "--run", "r1")
    assert result.exit_code == 1 and "uncommitted changes" in result.output
    assert _invoke("repo", "snapshot", "skills/demo", "--run", "r1", "--allow-dirty").exit_code == 0
    again = _invoke("repo", "snapshot", "skills/demo", "--run", "r1", "--allow-dirty")
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.parametrize(
    "command",
    [
        ["provenance"],
        ["refs"],
        ["refs", "list"],
        ["refs", "delete"],
        ["bundle"],
        ["bundle", "export"],
        ["bundle", "import"],
        ["repo"],
        ["repo", "snapshot"],
    ],
)
def test_help_has_examples(command: list[str]) -> None:
    result = _invoke(*command, "--help")
    assert result.exit_code == 0 and "trace2skill " in result.output and "Example" in result.output


def test_a_path_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """``synth /dev/null/x`` printed a NotADirectoryError traceback (a new user's report)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["synth", str(blocker / "runs")])
    assert result.exit_code == 1
    assert result.output == f"Error: Not a directory: {blocker / 'runs'} (-v shows where)\n"
    port = CliRunner().invoke(main, ["app", str(tmp_path), "--port", "99999"])
    assert port.exit_code == 2 and "99999 is not in the range 1<=x<=65535" in port.output
