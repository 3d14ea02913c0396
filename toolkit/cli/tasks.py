"""CLI commands: ``trace2skill tasks list|show|check`` (look at a suite's tasks, check its data)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import click

from toolkit.cli.suites import suite_options

if TYPE_CHECKING:
    from toolkit.tasks import Suite, Task

_SPLIT_HELP = "Split: train, test or all."


@click.group("tasks")
def tasks_group() -> None:
    """Look at a task suite's tasks and check its data before a run.

    Suites: wikitq (WikiTableQuestions), gsm8k (grade-school maths), spreadsheet
    (SpreadsheetBench, scored after LibreOffice recalculation) and jsonl (your own tasks).
    Without --data a suite reads $TRACE2SKILL_DATA_DIR, else a ../shared/data folder next to
    the checkout when there is one, else the small slice bundled with the package (README,
    "Data").

    \b
    Your own tasks (--suite jsonl --data FILE.jsonl), one JSON object per line:
      {"id": "q1", "question": "How many rows have sales over 100?",
       "answer": "17", "files": ["sales.csv"], "split": "test"}
    answer: a string or number (true/false: the text "true"/"false"), or a list of accepted
    alternatives; files (optional): paths relative to the JSONL file, copied into the
    agent's workspace; split (optional): train or test, else a stable hash of the id picks
    it. --scoring exact|numeric|regex says how answers are compared. A file saved with a
    UTF-8 byte-order mark reads as well.

    \b
    Examples:
      trace2skill tasks list --suite gsm8k --split test --limit 5
      trace2skill tasks show nu-3155 --suite wikitq
      trace2skill tasks check --suite jsonl --data my_tasks.jsonl --scoring numeric
      trace2skill tasks check --suite spreadsheet --data /path/to/full/data
    """


def _gold(task: Task) -> str:
    if task.answers:
        return " | ".join(task.answers)
    position = task.metadata.get("answer_position")
    return f"cells {position}" if position else "-"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


@tasks_group.command("list")
@suite_options(required=True, help_suite="Task suite to list.")
@click.option("--split", default="all", show_default=True, help=_SPLIT_HELP)
@click.option(
    "--limit", type=click.IntRange(min=1),
    help="A seeded subset of at most N tasks: the ones a new run with the same --split, "
    "--limit and --seed draws.",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset.")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON lines.")
def list_command(suite: Suite, split: str, limit: int | None, seed: int, as_json: bool) -> None:
    """List the tasks of a split: id, split, gold answer and question.

    Rows the loader skipped, and remarks on rows it kept, are listed on stderr with their
    line number.

    \b
    Examples:
      trace2skill tasks list --suite wikitq --split test --limit 10
      trace2skill tasks list --suite jsonl --data my_tasks.jsonl --json
    """
    loaded = suite.load(split, limit=limit, seed=seed)
    for row in loaded.bad_rows:
        click.echo(f"skipped {row}", err=True)
    for note in loaded.notes:
        click.echo(f"note {note}", err=True)
    if as_json:
        for task in loaded.tasks:
            click.echo(task.model_dump_json(exclude={"files"}))
        return
    if not loaded.tasks:
        from toolkit.tasks.check import empty_split_message

        # The splits the data has instead, as eval and evolve name them.
        click.echo(empty_split_message(suite, split, suite.load_all()))
        return
    id_w = max(len(t.id) for t in loaded.tasks)
    gold_w = min(max(len(_gold(t)) for t in loaded.tasks), 24)
    width = shutil.get_terminal_size((120, 20)).columns
    question_w = max(width - id_w - gold_w - 5 - 6, 20)
    for task in loaded.tasks:
        click.echo(
            f"{task.id:<{id_w}}  {task.split:<5}  {_clip(_gold(task), gold_w):<{gold_w}}  "
            f"{_clip(task.question, question_w)}"
        )
    n = len(loaded.tasks)
    click.echo(f"{n} task{'s' if n != 1 else ''}", err=True)


@tasks_group.command("show")
@click.argument("task_id")
@suite_options(required=True, help_suite="Task suite the task belongs to.")
def show_command(task_id: str, suite: Suite) -> None:
    """Show one task: what the agent is told, its workspace files and the gold answer.

    \b
    Example:
      trace2skill tasks show gsm8k-test-83 --suite gsm8k
    """
    task = suite.load_ids([task_id])[0]
    click.echo(f"task {task.id} ({suite.name}, split {task.split})")
    click.echo(f"gold: {_gold(task)}")
    if task.files:
        click.echo("files: " + ", ".join(f.path for f in task.files))
    click.echo("")
    click.echo("what the agent is told:")
    click.echo(suite.summarise(task))


@tasks_group.command("check")
@suite_options(required=True, help_suite="Task suite to check.")
@click.option("--split", default="all", show_default=True, help=_SPLIT_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="Check a seeded subset of N tasks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def check_command(
    suite: Suite, split: str, limit: int | None, seed: int, no_progress: bool, as_json: bool
) -> None:
    """Check a suite's data: malformed rows, and gold answers that fail their own scorer.

    Every row is loaded (a malformed one is reported and skipped, as in a run). Each task's
    gold answer is then scored as if an agent had given it; one that fails marks a task whose
    gold its own scorer rejects. For spreadsheet, the answer workbooks go through the same
    LibreOffice recalculation as an agent's output (a few seconds per task), so this finds
    tasks whose stored values LibreOffice computes differently (an agent writing the gold's
    formulas fails them too). Regex golds (jsonl) cannot be checked. Notes name what a kept
    row holds that is not used: unknown fields, answers --scoring numeric ignores.

    The exit code is 1 when a row was skipped or a gold answer failed (not for notes), so CI
    can run it.

    \b
    Examples:
      trace2skill tasks check --suite jsonl --data my_tasks.jsonl --scoring numeric
      trace2skill tasks check --suite spreadsheet --split test --json
    """
    from toolkit.progress import Progress
    from toolkit.tasks.check import check_suite

    bar = None if no_progress else Progress(f"check {suite.name}/{split}", 0)
    try:
        report = check_suite(suite, split, limit=limit, seed=seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(report.model_dump_json())
    else:
        splits = ", ".join(f"{name} {n}" for name, n in report.splits.items()) or "none"
        click.echo(f"{report.suite}: {sum(report.splits.values())} tasks ({splits})")
        click.echo(f"skipped rows: {len(report.bad_rows)}")
        for row in report.bad_rows:
            click.echo(f"  {row}")
        if report.notes:
            click.echo(f"notes on rows kept: {len(report.notes)}")
            for note in report.notes:
                click.echo(f"  {note}")
        failed = len(report.failures)
        click.echo(
            f"gold answers scored ({split}): {report.checked}, passed {report.checked - failed}, "
            f"failed {failed}"
            + (f"; {len(report.unchecked)} without a checkable gold" if report.unchecked else "")
        )
        for failure in report.failures:
            click.echo(f"  {failure.id} ({failure.split}): {failure.details}")
    if not report.ok:
        raise click.exceptions.Exit(1)


COMMANDS: list[click.Command] = [tasks_group]
