"""CLI commands: ``trace2skill memory build|show`` (the retrieval memory baseline's bank)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from toolkit.memory import MemoryBank


@click.group("memory")
def memory() -> None:
    """The retrieval memory baseline: a run's lessons as a bank of separate items.

    The paper's memory baseline (ReasoningBank-style): instead of consolidating the
    analysts' lessons into the skill, keep each as an item (title, description, content)
    and show the agent, beside S0, the item BM25 ranks first for each task's question
    (`trace2skill eval --memory RUN_DIR`, or `evolve --memory-baseline`). The bank is made
    from what the analysts already wrote (runs/<run>/analyses.jsonl and patches/): no
    model call.

    \b
    Examples:
      trace2skill memory build runs/r1
      trace2skill memory build runs/r1 --include valid
      trace2skill memory show runs/r1 --query "How many rows have a total above 10?"
      trace2skill eval --skill skills/wikitq-table-qa --suite wikitq --memory runs/r1
    """


def _bank_lines(bank: MemoryBank, run_dir: Path) -> list[str]:
    info = bank.info
    lines = [
        f"memory bank {info.id} of run {info.run_id}: {info.items} items from "
        f"{info.analyses} analyses (include {info.include}); suite {info.suite or '?'}, "
        f"split(s) {', '.join(info.splits) or '?'}",
        f"file: {run_dir / 'memory.jsonl'}",
    ]
    for item in bank.items:
        lines += [
            f"  {item.id}  {item.outcome:<4}  task {item.task_id}  ({item.analyst}, {item.status})",
            f"    {item.title}",
            f"    {item.description}",
            *(f"    | {line}" for line in item.content.splitlines()[:3]),
        ]
    return lines


@memory.command("build")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--include",
    type=click.Choice(["kept", "valid"]),
    default="kept",
    show_default=True,
    help="kept: one item per analysis whose patch passed the quality gate; valid: also one "
    "per analysis dropped after its analyst finished (a guardrail rejected the patch; not "
    "model failures, unverified agentic fixes or answer leaks).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the bank as JSON.")
def build(run_dir: Path, include: str, as_json: bool) -> None:
    """Build RUN_DIR/memory.jsonl from RUN_DIR's analyses (no model call).

    Each item: a title (the patch's first changelog line), a description (the analyst's
    diagnosis or solution path), the content (the lesson text of the patch's edits, or
    the analyst's report when it kept no patch), and its source: trajectory, task, question
    (the retrieval key, never shown), pass/fail. Building again from the same analyses
    writes the same file.

    \b
    Examples:
      trace2skill memory build runs/r1
      trace2skill memory build runs/r1 --include valid --json
    """
    from toolkit.memory import build_bank

    bank = build_bank(run_dir, include)  # type: ignore[arg-type]
    if as_json:
        click.echo(bank.model_dump_json())
        return
    for line in _bank_lines(bank, run_dir):
        click.echo(line)


@memory.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--query", metavar="TEXT", help="Show what this question retrieves (BM25), with scores."
)
@click.option(
    "--k", type=click.IntRange(1, 10), default=1, show_default=True, help="Items --query shows."
)
@click.option("--json", "as_json", is_flag=True, help="Print the bank (or the retrieval) as JSON.")
def show(run_dir: Path, query: str | None, k: int, as_json: bool) -> None:
    """Show RUN_DIR's memory bank, or the items a question retrieves from it.

    \b
    Examples:
      trace2skill memory show runs/r1
      trace2skill memory show runs/r1 --query "Which team scored the most goals?" --k 3
      trace2skill memory show runs/r1 --json
    """
    from toolkit.memory import Memory, read_bank

    bank = read_bank(run_dir)
    if query is None:
        if as_json:
            click.echo(bank.model_dump_json())
            return
        for line in _bank_lines(bank, run_dir):
            click.echo(line)
        return
    found = Memory(bank=bank, k=k).retrieve({"query": query})["query"]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in found]))
        return
    if not found:
        click.echo("no item shares a word with the query: none would be shown")
    for rank, r in enumerate(found, start=1):
        click.echo(f"{rank}. {r.item.id}  score {r.score:.3f}  task {r.item.task_id}")
        click.echo(f"   {r.item.title}")
        for line in r.item.content.splitlines()[:3]:
            click.echo(f"   | {line}")


COMMANDS: list[click.Command] = [memory]
