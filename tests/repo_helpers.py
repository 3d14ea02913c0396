"""Shared helpers for the git store tests: a temp user repository with one skill."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TS = 1_767_225_600
SKILL = "skills/demo/SKILL.md"
BASE_TEXT = "".join(f"line {i}\n" for i in range(1, 21))


# Fixed dates make the user's commit, hence every run commit, identical across repos.
_ENV = {
    **os.environ,
    "GIT_AUTHOR_DATE": "@1700000000 +0000",
    "GIT_COMMITTER_DATE": "@1700000000 +0000",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True, env=_ENV
    ).stdout


def make_user_repo(root: Path) -> Path:
    """git init, local identity, a skill and a README committed on main."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    (root / "skills" / "demo" / "references").mkdir(parents=True)
    (root / SKILL).write_text(BASE_TEXT)
    (root / "skills" / "demo" / "references" / "notes.md").write_text("notes\n")
    (root / "README.md").write_text("readme\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def wikitq_repo(root: Path, readme: str | None = None) -> Path:
    """A user repository at ``root`` holding the bundled wikitq skill (and a README),
    committed on main."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    if readme is not None:
        (root / "README.md").write_text(readme)
    skill = Path("skills") / "wikitq-table-qa"
    shutil.copytree(Path(__file__).resolve().parents[1] / skill, root / skill)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "skill")
    return root


def user_state(root: Path) -> tuple[str, str, str, str, str]:
    """Everything a run must never change: status, staged diff, HEAD, branch, files."""
    files = "".join(
        f"{p.relative_to(root)}:{p.read_bytes()!r}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    )
    return (
        git(root, "status", "--porcelain", "--untracked-files=all"),
        git(root, "diff", "--cached"),
        git(root, "rev-parse", "HEAD"),
        git(root, "symbolic-ref", "HEAD"),
        files,
    )


def edit_line(text: str, number: int, new: str) -> bytes:
    """``text`` with 1-based line ``number`` replaced by ``new``."""
    lines = text.splitlines(keepends=True)
    lines[number - 1] = new + "\n"
    return "".join(lines).encode()
