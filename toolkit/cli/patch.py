"""CLI commands: ``trace2skill patch apply|check``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.errors import PatchRejected
from toolkit.patch import PatchResult, apply_patch, load_patch, write_result
from toolkit.skill import load_skill


@click.group("patch")
def patch_group() -> None:
    """Apply Trace2Skill patches (JSON edit lists) to skill folders, with guardrails.

    \b
    Examples:
      trace2skill patch check fix.json skills/gsm8k-math
      trace2skill patch apply fix.json skills/gsm8k-math --dry-run
    """


def _report(result: PatchResult) -> None:
    for report in result.edits:
        tag = "applied " if report.status == "applied" else "REJECTED"
        line = f"  [{tag}] edit {report.index} {report.op} {report.file}"
        if report.reason:
            line += f": {report.reason}: {report.message}"
        click.echo(line)
    for issue in result.issues:
        click.echo(f"  [{issue.severity}] result {issue.file}: {issue.code}: {issue.message}")
    click.echo(result.summary())


def _run(patch_file: Path, skill_dir: Path, allow_protected: bool) -> PatchResult:
    patch = load_patch(patch_file)
    skill = load_skill(skill_dir)
    return apply_patch(skill, patch, allow_protected=allow_protected)


@patch_group.command("apply")
@click.argument("patch_file", metavar="PATCH.json", type=click.Path(path_type=Path))
@click.argument("skill_dir", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show the report and diff; write nothing.")
@click.option(
    "--allow-protected", is_flag=True,
    help="Let edits touch scripts/, assets/ and other files besides SKILL.md and references/.",
)  # fmt: skip
def apply_command(patch_file: Path, skill_dir: Path, dry_run: bool, allow_protected: bool) -> None:
    """Apply PATCH.json to SKILL_DIR: print the per-edit report and the unified diff.

    Files are written (atomically, file by file) only when every edit applied and the
    result passes validation; otherwise nothing is written and the exit code is 1.

    \b
    Example:
      trace2skill patch apply fix.json skills/gsm8k-math --dry-run
      trace2skill patch apply fix.json skills/gsm8k-math
    """
    result = _run(patch_file, skill_dir, allow_protected)
    _report(result)
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
def check_command(patch_file: Path, skill_dir: Path, allow_protected: bool, as_json: bool) -> None:
    """Report, edit by edit, whether PATCH.json applies to SKILL_DIR; write nothing.

    Exits 1 if any edit is rejected or the result would be withheld.

    \b
    Example:
      trace2skill patch check fix.json skills/gsm8k-math --json
    """
    result = _run(patch_file, skill_dir, allow_protected)
    if as_json:
        payload = {
            "patch_id": result.patch_id,
            "clean": result.clean,
            "edits": [report.model_dump() for report in result.edits],
            "issues": [issue.model_dump() for issue in result.issues],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _report(result)
    if not result.clean:
        raise click.exceptions.Exit(1)


COMMANDS: list[click.Command] = [patch_group]
