"""CLI commands: ``trace2skill skill validate|sections``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.errors import SkillError
from toolkit.skill import (
    SKILL_MD,
    Budgets,
    file_not_folder,
    has_errors,
    load_skill,
    validate_dir,
)


def skill_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A click callback for a skill folder option or argument: a file given instead (often
    the SKILL.md itself) is refused with the folder to pass, as every skill command says it,
    rather than click's bare "Directory ... is a file"."""
    if value is not None and value.is_file():
        raise SkillError(file_not_folder(value))
    return value


@click.group("skill")
def skill_group() -> None:
    """Inspect and validate skill folders (SKILL.md + references/ + scripts/).

    \b
    Examples:
      trace2skill skill validate skills/gsm8k-math
      trace2skill skill sections skills/gsm8k-math --json
    """


@skill_group.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--max-skill-lines", type=click.IntRange(min=1), default=500, show_default=True,
    help="Line budget of SKILL.md.",
)  # fmt: skip
@click.option(
    "--max-reference-lines", type=click.IntRange(min=1), default=300, show_default=True,
    help="Line budget of each references/*.md file.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the issues as a JSON list.")
def validate_command(
    path: Path, max_skill_lines: int, max_reference_lines: int, as_json: bool
) -> None:
    """Check a skill folder against the Agent Skills spec and the size budgets.

    Lists every issue (errors and warnings); exits 1 if there is any error.
    Spec checks are those of the skills-ref reference validator; the toolkit adds
    frontmatter layout, line budgets, reference links, and markdown damage that
    changes which headings are sections (unclosed fences, fences glued to headings
    or text, '##Heading' with no space), each with its line number.

    \b
    Example:
      trace2skill skill validate skills/gsm8k-math --max-skill-lines 400
    """
    budgets = Budgets(skill_md_lines=max_skill_lines, reference_lines=max_reference_lines)
    issues = validate_dir(path, budgets)
    if as_json:
        click.echo(json.dumps([issue.model_dump() for issue in issues], indent=2))
    else:
        for issue in issues:
            where = f"{issue.file}:{issue.line}" if issue.line else issue.file
            click.echo(f"{issue.severity:<7} {where}: [{issue.code}] {issue.message}")
        errors = sum(issue.severity == "error" for issue in issues)
        warnings = len(issues) - errors
        verdict = "invalid" if errors else "valid"
        click.echo(f"{path}: {verdict} ({errors} errors, {warnings} warnings)")
    if has_errors(issues):
        raise click.exceptions.Exit(1)


@skill_group.command("sections")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--file", "file", default=SKILL_MD, show_default=True,
    help="Markdown file of the skill to list, e.g. references/problem-patterns.md.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the sections as JSON.")
def sections_command(path: Path, file: str, as_json: bool) -> None:
    """List the sections of a skill's SKILL.md (or another markdown file of it).

    Section ids are what patches use as target_section (headings work too).

    \b
    Example:
      trace2skill skill sections skills/gsm8k-math
      trace2skill skill sections skills/gsm8k-math --file references/problem-patterns.md --json
    """
    skill = load_skill(path)
    sections = skill.parsed(file).sections
    if as_json:
        click.echo(json.dumps([s.model_dump() for s in sections], indent=2, ensure_ascii=False))
        return
    rows = [("ID", "LEVEL", "LINES", "HEADING")]
    for s in sections:
        heading = ("#" * s.level + " " + s.heading) if s.level else "(preamble)"
        rows.append((s.id, str(s.level), f"{s.start_line}-{s.end_line}", heading))
    width_id = max(len(r[0]) for r in rows)
    width_lines = max(len(r[2]) for r in rows)
    for row in rows:
        click.echo(f"{row[0]:<{width_id}}  {row[1]:<5}  {row[2]:<{width_lines}}  {row[3]}")


COMMANDS: list[click.Command] = [skill_group]
