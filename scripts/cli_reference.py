"""Generate docs/cli.md from the CLI's own --help texts (the help is the source of truth).

Usage:
    .venv/bin/python scripts/cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HEADER = (
    "# Command reference\n\n"
    "Generated from `trace2skill --help` by `scripts/cli_reference.py`; a test fails when it is\n"
    "stale. Regenerate with `.venv/bin/python scripts/cli_reference.py`.\n"
)


def _walk(
    command: click.Command,
    path: list[str],
    out: list[str],
    parent: click.Context | None = None,
) -> None:
    # Chained to the parent context, as on the command line: subcommands inherit settings
    # such as ``-h`` for help (click also caches the help option on first use, so a context
    # without the chain would render differently depending on what ran before).
    settings = {"terminal_width": 100, **command.context_settings}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    level = "#" * min(len(path) + 1, 4)
    out.append(f"\n{level} `{' '.join(path)}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _walk(sub, [*path, name], out, ctx)


def render() -> str:
    """Return the whole reference as markdown."""
    out = [HEADER]
    _walk(main, ["trace2skill"], out)
    return "".join(out)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    text = render()
    if "--check" in sys.argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run .venv/bin/python scripts/cli_reference.py", file=sys.stderr)
            sys.exit(1)
    else:
        DOC.write_text(text, encoding="utf-8")
        print(f"wrote {DOC}")
