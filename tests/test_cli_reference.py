"""The command reference in docs/cli.md must match the CLI's --help texts."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    module = runpy.run_path(str(ROOT / "scripts" / "cli_reference.py"))
    expected = module["render"]()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "stale docs/cli.md: run .venv/bin/python scripts/cli_reference.py"


def test_every_command_help_has_an_example() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    blocks = text.split("\n#")[1:]
    missing = [b.splitlines()[0] for b in blocks if "Example" not in b.split("```text", 1)[1]]
    assert not missing, f"help without an example: {missing}"
