"""CLI command: ``trace2skill consolidate RUN_DIR`` (stage 3, hierarchical merging)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from toolkit.cli.llm import llm_options
from toolkit.known import unreported_text
from toolkit.skill import Budgets


@click.command("consolidate")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--merge-batch", type=click.IntRange(min=2), default=5, show_default=True,
    help="B: most patches (or merges) per group.",
)  # fmt: skip
@click.option(
    "--max-levels", type=click.IntRange(min=1), default=5, show_default=True,
    help="L_max: at this level everything left is merged at once (the final forced merge).",
)  # fmt: skip
@click.option(
    "--min-support", type=click.IntRange(min=1), default=1, show_default=True,
    help="Drop edits of the final skill backed by fewer analysed trajectories.",
)  # fmt: skip
@click.option(
    "--merge-strategy", type=click.Choice(["llm", "git"]), default="llm", show_default=True,
    help="llm: the merge operator merges every group; git: groups without a textual "
    "conflict take git's union without a model call.",
)  # fmt: skip
@click.option(
    "--author-model", metavar="MODEL",
    help="Model of the merge operator (default: --model if given, else the analysts' author "
    "model or the agent's model from the run manifest).",
)  # fmt: skip
@click.option(
    "--max-tokens", type=click.IntRange(min=64), default=2048, show_default=True,
    help="Most tokens one merge reply may use.",
)  # fmt: skip
@click.option(
    "--repo", "repo_path", type=click.Path(file_okay=False, path_type=Path),
    help="The skills repository (default: as recorded in the run manifest).",
)  # fmt: skip
@click.option(
    "--skill-path", metavar="PATH",
    help="Skill folder relative to the repository root (default: from the run manifest).",
)  # fmt: skip
@click.option(
    "--run", "run_ref", metavar="RUN",
    help="Ref namespace t2s/<RUN>/ (default: from the manifest, else the folder's name).",
)  # fmt: skip
@click.option("--allow-protected", is_flag=True, help="Let merges edit scripts/ and assets/.")
@click.option(
    "--max-skill-lines", type=click.IntRange(min=1), default=Budgets().skill_md_lines,
    show_default=True,
    help="Most lines SKILL.md may have after a merge (the patch engine's budget, as on "
    "patch apply).",
)  # fmt: skip
@click.option(
    "--max-reference-lines", type=click.IntRange(min=1), default=Budgets().reference_lines,
    show_default=True,
    help="Most lines a references/*.md file may have after a merge.",
)  # fmt: skip
@click.option(
    "--resume", is_flag=True,
    help="Finish an interrupted consolidation, with the run's --merge-batch, --max-levels, "
    "--merge-strategy, --min-support and merge model (another value is refused).",
)  # fmt: skip
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@llm_options
def consolidate_command(
    run_dir: Path,
    merge_batch: int,
    max_levels: int,
    min_support: int,
    merge_strategy: str,
    author_model: str | None,
    max_tokens: int,
    repo_path: Path | None,
    skill_path: str | None,
    run_ref: str | None,
    allow_protected: bool,
    max_skill_lines: int,
    max_reference_lines: int,
    resume: bool,
    no_progress: bool,
    as_json: bool,
    llm_config: Any,
) -> None:
    """Merge a run's patches into one evolved skill S*, level by level, in git.

    The analysts' leaf patches (RUN_DIR/patches/, refs t2s/<run>/patch/*) are merged in
    groups of at most --merge-batch, level by level, until one patch is left (a final
    forced merge at --max-levels). Per group git finds the conflicts between the children;
    the merge operator (a model) dedupes, generalises recurring lessons, resolves
    contradictions and cites the child edits it used; the toolkit computes each edit's
    support (how many trajectories back it), re-checks every edit with the guardrails and
    writes an octopus merge commit t2s/<run>/L<k>/<group>. A merge that fails (bad reply,
    unknown edit ids, over the size budget after one retry) passes its children up
    unchanged. S* is t2s/<run>/result; every group is a line of RUN_DIR/merges.jsonl.

    \b
    Examples:
      trace2skill consolidate runs/wtq-evolve
      trace2skill consolidate runs/wtq-evolve --merge-batch 8 --min-support 2
      trace2skill consolidate runs/wtq-evolve --merge-strategy git --author-model openai/gpt-4o
      trace2skill consolidate runs/wtq-evolve --resume
      git log --graph --oneline t2s/wtq-evolve/result
      trace2skill provenance skills/wikitq-table-qa/SKILL.md --ref t2s/wtq-evolve/result \\
          --run-dir runs/wtq-evolve
    """
    from toolkit.consolidate import ConsolidateConfig, run_consolidation
    from toolkit.consolidate.run import RESUME_SETTINGS, recorded_settings

    ctx = click.get_current_context()

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)

    settings = {
        "merge_batch": merge_batch,
        "max_levels": max_levels,
        "min_support": min_support,
        "strategy": merge_strategy,
    }
    if resume:  # the run's own settings, unless given (a different one is refused)
        for key, value in recorded_settings(run_dir).items():
            if not given(RESUME_SETTINGS[key].removeprefix("--").replace("-", "_")):
                settings[key] = value
    config = ConsolidateConfig(
        **settings,
        author_model=author_model or (llm_config.model if given("model") else None),
        max_tokens=max_tokens,
        allow_protected=allow_protected,
        budgets=Budgets(skill_md_lines=max_skill_lines, reference_lines=max_reference_lines),
        repo=repo_path,
        skill_path=skill_path,
        run=run_ref,
        resume=resume,
        progress=not no_progress,
    )
    summary = run_consolidation(run_dir, config, llm_config=llm_config)
    if as_json:
        click.echo(json.dumps(summary.model_dump()))
        return
    rows = [
        ("run", f"{summary.run} ({summary.run_dir})"),
        ("merge model", f"{summary.model} ({summary.strategy} strategy)"),
        ("leaf patches", str(summary.leaves)),
        ("levels", str(summary.levels)),
        (
            "groups",
            f"{summary.groups}: merged {summary.merged}, union {summary.union}, passed up "
            f"{summary.passed_up}, failed {summary.failed}, resumed {summary.resumed}",
        ),
        (
            "model calls",
            f"{summary.llm_calls} ({_tokens(summary)})"
            # Replayed replies cost no model time and record 0 tokens: say why.
            + f"; {summary.cached_calls} from the response cache" * bool(summary.cached_calls),
        ),
        (
            "result",
            f"t2s/{summary.run}/result = {summary.result_commit[:12]}; patch "
            f"{summary.final_patch_id}: {summary.final_edits} edits from "
            f"{summary.final_support} leaf patches",
        ),
        ("wall", f"{summary.wall_s:.1f} s"),
    ]
    if summary.model_unused:
        rows.append(
            (
                "note",
                f"the merge model's reply was not used in {summary.model_unused} group(s) "
                f"(first: {summary.model_unused_reason}); see {summary.run_dir}/merges.jsonl",
            )
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _tokens(summary: Any) -> str:
    """``in/out tokens`` over the groups whose calls reported them, and the groups left out:
    ``1200/80 tokens``, ``1200/80 tokens; 1 of 3 groups unreported``."""
    silent = summary.tokens_unreported >= summary.groups > 0
    shown = ("unknown", "unknown") if silent else (summary.tokens_in, summary.tokens_out)
    note = unreported_text(summary.tokens_unreported, summary.groups, "groups")
    return f"{shown[0]}/{shown[1]} tokens" + (f"; {note}" if note else "")


COMMANDS: list[click.Command] = [consolidate_command]
