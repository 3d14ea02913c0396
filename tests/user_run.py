"""A user's own evolve run, as the README's "bring your own" path makes it: a repository
holding one skill, a JSONL task file with its own train/test split, and ``evolve --suite
jsonl --scoring numeric`` on the fake rehearsal model (every stage, in seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from tests.repo_helpers import git
from toolkit.cli import main

ROOT = Path(__file__).resolve().parent.parent
#: The skill folder, relative to the repository.
SKILL = "s/gsm8k-math"
#: The task file, relative to the repository.
TASKS = "t.jsonl"


def rehearsed_jsonl_run(tmp_path: Path, run_id: str = "u", *extra: str) -> Path:
    """The repository after evolve run ``run_id`` (in its ``runs/``); ``extra`` options go
    to ``evolve``."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "skills" / "gsm8k-math", root / SKILL)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "skill")
    rows = [{"id": f"q{i}", "question": f"{i} + 1?", "answer": i + 1,
             "split": "train" if i < 2 else "test"} for i in range(4)]  # fmt: skip
    (root / TASKS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = CliRunner().invoke(
        main,
        ["evolve", str(root / SKILL), "--suite", "jsonl", "--data", str(root / TASKS),
         "--scoring", "numeric", "--error-analyst", "single", "--run-id", run_id,
         "--runs-dir", str(root / "runs"), *rehearsal_options(tmp_path), *extra],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    return root


def rehearsal_options(tmp_path: Path) -> list[str]:
    """The fake rehearsal model, quiet, with the test's own response cache."""
    return ["--model", "fake/rehearsal", "--no-progress", "--cache-dir", str(tmp_path / "c")]
