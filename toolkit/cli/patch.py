"""CLI commands: ``trace2skill patch apply|check``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.errors import PatchError, PatchRejected, ToolkitError
from toolkit.patch import (
    APPEND_MODES,
    AppendMode,
    PatchResult,
    apply_patch,
    load_patch,
    write_result,
)
from toolkit.settings import CONFIG_FILE, PATCH_KEYS, read_patch_table
from toolkit.skill import Budgets, load_skill


@click.group("patch")
def patch_group() -> None:
    """Apply Trace2Skill patches (JSON edit lists) to skill folders, with guardrails.

    \b
    Examples:
      trace2skill patch check fix.json skills/gsm8k-math
      trace2skill patch apply fix.json skills/gsm8k-math --dry-run
    """


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """Eager --config: the file's [patch] table becomes the defaults of the other options,
    so a flag given on the command line still wins."""
    path = value
    if path is None and Path(CONFIG_FILE).is_file():
        path = Path(CONFIG_FILE)
    if path is None:
        return None
    try:
        table = read_patch_table(path)
    except ToolkitError as exc:
        raise click.BadParameter(str(exc)) from None
    ctx.default_map = {
        **(ctx.default_map or {}),
        **table.model_dump(exclude_none=True),
    }
    return path


def _apply_options(command: click.Command) -> click.Command:
    """Options of every command that applies a patch: budgets, append placement, config."""
    defaults = Budgets()
    command = click.option(
        "--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
        is_eager=True, expose_value=False, callback=_load_config,
        help=f"TOML file whose [patch] table sets defaults for {', '.join(PATCH_KEYS)} "
        f"(default: ./{CONFIG_FILE} when present; flags still win).",
    )(command)  # fmt: skip
    command = click.option(
        "--append-mode", type=click.Choice(APPEND_MODES), default="own-text", show_default=True,
        help="Where append_to_section writes: 'own-text' ends the section's own text (before "
        "its first subsection); 'subtree' ends the whole subtree after a blank line, as the "
        "official Trace2Skill applicator does.",
    )(command)  # fmt: skip
    command = click.option(
        "--max-reference-lines", type=click.IntRange(min=1), default=defaults.reference_lines,
        show_default=True, help="Most lines a references/*.md file may have after the patch.",
    )(command)  # fmt: skip
    return click.option(
        "--max-skill-lines", type=click.IntRange(min=1), default=defaults.skill_md_lines,
        show_default=True,
        help="Most lines SKILL.md may have after the patch (raise it for a long official "
        "skill; a file already over budget may still shrink or keep its size).",
    )(command)  # fmt: skip


def _report(result: PatchResult, normalizations: list[str]) -> None:
    for note in normalizations:
        click.echo(f"  [normalized] {note}")
    for report in result.edits:
        tag = "applied " if report.status == "applied" else "REJECTED"
        line = f"  [{tag}] edit {report.index} {report.op} {report.file}"
        if report.reason:
            line += f": {report.reason}: {report.message}"
        click.echo(line)
    for issue in result.issues:
        click.echo(f"  [{issue.severity}] result {issue.file}: {issue.code}: {issue.message}")
    click.echo(result.summary())


def _run(
    patch_file: Path,
    skill_dir: Path,
    allow_protected: bool,
    max_skill_lines: int,
    max_reference_lines: int,
    append_mode: AppendMode,
) -> tuple[PatchResult, list[str]]:
    """Load and apply in memory; also return what loading normalized (official shapes)."""
    patch = load_patch(patch_file)
    if not patch.edits:
        raise PatchError(f"{patch_file}: the patch has no edits (its 'edits' list is empty)")
    skill = load_skill(skill_dir)
    budgets = Budgets(skill_md_lines=max_skill_lines, reference_lines=max_reference_lines)
    result = apply_patch(
        skill, patch, allow_protected=allow_protected, budgets=budgets, append_mode=append_mode
    )
    return result, patch.normalizations


@patch_group.command("apply")
@click.argument("patch_file", metavar="PATCH.json", type=click.Path(path_type=Path))
@click.argument("skill_dir", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show the report and diff; write nothing.")
@click.option(
    "--allow-protected", is_flag=True,
    help="Let edits touch scripts/, assets/ and other files besides SKILL.md and references/.",
)  # fmt: skip
@_apply_options
def apply_command(
    patch_file: Path,
    skill_dir: Path,
    dry_run: bool,
    allow_protected: bool,
    max_skill_lines: int,
    max_reference_lines: int,
    append_mode: AppendMode,
) -> None:
    """Apply PATCH.json to SKILL_DIR: print the per-edit report and the unified diff.

    Files are written (atomically, file by file) only when every edit applied and the
    result passes validation; otherwise nothing is written and the exit code is 1.

    PATCH.json may be in the official Trace2Skill shapes (op aliases such as createFile,
    unused fields given as "", a model reply with the JSON in a ```json fence); each
    such mapping is reported as a [normalized] line.

    \b
    Example:
      trace2skill patch apply fix.json skills/gsm8k-math --dry-run
      trace2skill patch apply fix.json skills/gsm8k-math
      trace2skill patch apply official.json skills/xlsx --max-skill-lines 1000 \\
        --append-mode subtree
    """
    result, notes = _run(
        patch_file, skill_dir, allow_protected, max_skill_lines, max_reference_lines, append_mode
    )
    _report(result, notes)
    diff = result.diff()
    if diff:
        click.echo(diff, nl=False)
    if not result.clean:
        raise PatchRejected(f"patch {result.patch_id} did not apply cleanly; nothing written")
    if dry_run:
        click.echo("dry run: nothing written")
        return
    written = write_result(skill_dir, result)
    if written:
        click.echo(f"wrote {len(written)} file(s): {', '.join(written)}")
    else:
        click.echo("no changes: nothing written")


@patch_group.command("check")
@click.argument("patch_file", metavar="PATCH.json", type=click.Path(path_type=Path))
@click.argument("skill_dir", type=click.Path(path_type=Path))
@click.option("--allow-protected", is_flag=True, help="Check as if protected files were editable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_apply_options
def check_command(
    patch_file: Path,
    skill_dir: Path,
    allow_protected: bool,
    as_json: bool,
    max_skill_lines: int,
    max_reference_lines: int,
    append_mode: AppendMode,
) -> None:
    """Report, edit by edit, whether PATCH.json applies to SKILL_DIR; write nothing.

    Exits 1 if any edit is rejected or the result would be withheld.

    \b
    Example:
      trace2skill patch check fix.json skills/gsm8k-math --json
      trace2skill patch check official.json skills/xlsx --max-skill-lines 1000
    """
    result, notes = _run(
        patch_file, skill_dir, allow_protected, max_skill_lines, max_reference_lines, append_mode
    )
    if as_json:
        payload = {
            "patch_id": result.patch_id,
            "clean": result.clean,
            "normalizations": notes,
            "edits": [report.model_dump() for report in result.edits],
            "issues": [issue.model_dump() for issue in result.issues],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _report(result, notes)
    if not result.clean:
        raise click.exceptions.Exit(1)


COMMANDS: list[click.Command] = [patch_group]
