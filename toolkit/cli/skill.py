"""CLI commands: ``trace2skill skill validate|sections|draft``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toolkit.cli.llm import llm_options
from toolkit.cli.suites import suite_options
from toolkit.errors import SkillError
from toolkit.skill import (
    SKILL_MD,
    Budgets,
    file_not_folder,
    has_errors,
    load_skill,
    validate_dir,
)

if TYPE_CHECKING:
    from toolkit.llm.config import LLMConfig
    from toolkit.tasks import Suite


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
      trace2skill skill draft skills/table-qa --suite wikitq
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


@skill_group.command("draft")
@click.argument("path", type=click.Path(path_type=Path))
@suite_options(
    required=True,
    help_suite="The tasks the skill is for: the author model reads the suite's task "
    "description and a few of its questions.",
)
@click.option(
    "--split", default="train", show_default=True,
    help="Split the questions are drawn from: the one the skill will learn from (never the "
    "held-out test split).",
)  # fmt: skip
@click.option(
    "--examples", type=click.IntRange(1, 20), default=5, show_default=True,
    help="Questions shown to the author model (as the agent sees them; never their answers).",
)  # fmt: skip
@click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seed of the questions drawn and of the sampling.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace the SKILL.md of an existing folder.")
@llm_options(model_default="$TRACE2SKILL_MODEL or the embedded model: the author")
def draft_command(
    path: Path,
    suite: Suite,
    split: str,
    examples: int,
    seed: int,
    force: bool,
    llm_config: LLMConfig,
) -> None:
    """Draft a new skill: the author model writes PATH/SKILL.md (Creation's S0).

    The model (--model) reads the suite's task description and --examples seeded questions
    of --split as the agent sees them (never their answers) and replies with a bounded JSON
    object; the toolkit writes SKILL.md from it in the Agent Skills format (front matter
    name = the folder's name, description; a title, an overview and sections) and
    validates it. A draft that does not validate, or a reply cut off at its token limit,
    gets one repair try, then a one-line error and nothing is written. An existing folder
    is refused unless --force. The call is cached and logged like every model call
    ($TRACE2SKILL_CALLS_LOG).

    Read the draft, edit it, commit it, then evolve it (Deepening from your draft);
    `trace2skill evolve --create` drafts and evolves in one run instead, keeping the draft
    in the run's refs only.

    \b
    Examples:
      trace2skill skill draft skills/table-qa --suite wikitq
      trace2skill skill draft skills/my-qa --suite jsonl --data tasks.jsonl --examples 8 \\
          --model openai/gpt-4o-mini
    """
    from toolkit.draft import DraftError, check_target, draft_skill, folder_name, write_draft

    if split in ("test", "all"):
        raise DraftError(
            f"--split {split}: the draft would be written from the held-out questions S0 and "
            "S* are compared on; draw from the split the skill learns from (train)"
        )
    check_target(path, force=force)  # before the model call
    draft = draft_skill(
        folder_name(path), suite, llm_config=llm_config, split=split, examples=examples, seed=seed
    )
    written = write_draft(path, draft, force=force)
    sections = sum(1 for line in draft.text.splitlines() if line.startswith("## "))
    repaired = " after one repair try" if draft.repaired else ""
    click.echo(
        f"drafted {written} ({len(draft.text.splitlines())} lines, {sections} sections) with "
        f"{draft.model}{repaired} from {len(draft.examples)} {suite.name} {split} questions "
        "(answers not shown)"
    )
    for warning in draft.warnings:
        click.echo(f"warning: {warning}")
    click.echo(
        f"next: read and edit it, commit it, then: trace2skill evolve {path} --suite {suite.name}"
    )


COMMANDS: list[click.Command] = [skill_group]
