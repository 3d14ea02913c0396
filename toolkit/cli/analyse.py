"""CLI command ``trace2skill analyse``: stage 2, trajectories -> analyses -> leaf patches."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.analysts.records import ANALYST_CHOICES
from toolkit.cli.skill import skill_folder
from toolkit.cli.suites import suite_options
from toolkit.tasks import Suite
from toolkit.tokens import describe_in_out


@click.command("analyse")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--analyst", type=click.Choice(ANALYST_CHOICES), default="error", show_default=True,
    help="error: the agentic error analyst on failures (tools + the verifier; kept only if its "
    "fix reaches PASS). error-single: one call per failure (the paper's ablation). success: "
    "one call per pass (solution path, then at most 3 lessons). combined: error + success. "
    "(evolve spells these --analysts error|success|combined with --error-analyst "
    "agentic|single.)",
)  # fmt: skip
@click.option(
    "--skill", "skill_path", type=click.Path(path_type=Path), callback=skill_folder,
    metavar="DIRECTORY",
    help="The skill folder S0 the trajectories used (default: the one the rollout recorded). "
    "It must be in a git repository: the run's base t2s/<run>/base is snapshotted from it.",
)  # fmt: skip
@click.option(
    "--repo", type=click.Path(file_okay=False, path_type=Path),
    help="The skill repository (default: the git repository holding the skill).",
)  # fmt: skip
@click.option("--run-id", help="Run id in the repository's refs (default: the run's name).")
@click.option(
    "--author-model", "--model", "author_model", metavar="MODEL",
    help="Model that writes the analyses (default: the agent's model, from the trajectories, "
    "on the server the rollout recorded; for imports that name no model, $TRACE2SKILL_MODEL "
    "or the embedded model); a stronger one gives the paper's cross-model setting.",
)  # fmt: skip
@click.option(
    "--parallel", type=click.IntRange(min=1),
    help="Analyses at once (default: 1 with the embedded local/ model, else 4).",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), help="Analyse at most N trajectories.")
@suite_options(
    required=False,
    help_suite="The trajectories' task suite (default: the one the rollout or import recorded, "
    "on the data it read); the error analysts read each task's files and the agentic one "
    "re-runs it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option(
    "--max-turns", type=click.IntRange(min=2, max=30), default=8, show_default=True,
    help="Most tool steps of the agentic analyst.",
)  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue: finished analyses are kept, not redone.")
@click.option(
    "--api-base", metavar="URL",
    help="Base URL of an OpenAI-compatible server (default: the one the run recorded for the "
    "model, if any).",
)  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache.")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Response cache directory (default: $TRACE2SKILL_CACHE_DIR or the user cache).",
)  # fmt: skip
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def analyse_command(
    run_dir: Path,
    analyst: str,
    skill_path: Path | None,
    repo: Path | None,
    run_id: str | None,
    author_model: str | None,
    parallel: int | None,
    limit: int | None,
    suite: Suite | None,
    seed: int,
    max_turns: int,
    resume: bool,
    api_base: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Analyse each trajectory of RUN_DIR against the frozen skill S0 into one patch.

    Each analysis runs independently (concurrently with --parallel) and is written to
    RUN_DIR/analyses.jsonl, kept or dropped with the reason: a reply that does not parse,
    a fix that never reached PASS, edits that leak the gold answer or that the patch engine
    rejects (anchors must match the skill's real text; edits stay inside the skill and off
    protected files). Each kept analysis becomes RUN_DIR/patches/<id>.json and a commit on
    t2s/<run>/patch/<id> (parent t2s/<run>/base) whose trailers name the trajectory, its
    outcome, the analyst and the model. Your working tree is never touched. Next step:
    trace2skill consolidate RUN_DIR.

    \b
    Examples:
      trace2skill analyse runs/wtq-s0
      trace2skill analyse runs/wtq-s0 --analyst combined --limit 30
      trace2skill analyse runs/wtq-s0 --analyst error-single --author-model openai/gpt-4o-mini \\
          --parallel 8
      trace2skill analyse runs/imported --skill skills/wikitq-table-qa --analyst success
      trace2skill analyse runs/mine --suite jsonl --data my_tasks.jsonl --scoring numeric
      trace2skill analyse runs/wtq-s0 --resume
    """
    from toolkit.analysts import AnalyseConfig, run_analyses
    from toolkit.llm.config import LLMConfig

    config = AnalyseConfig(
        analyst=analyst,  # type: ignore[arg-type]
        model=author_model,
        seed=seed,
        max_turns=max_turns,
        concurrency=parallel,
        limit=limit,
        skill_path=str(skill_path) if skill_path else None,
        repo=str(repo) if repo else None,
        run_id=run_id,
    )
    llm_config = LLMConfig.from_env(
        api_base=api_base, cache=False if no_cache else None, cache_dir=cache_dir
    )
    summary = run_analyses(
        run_dir,
        config,
        resume=resume,
        progress=not no_progress,
        llm_config=llm_config,
        suite=suite,
    )
    if as_json:
        click.echo(summary.model_dump_json())
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.reasons.items())) or "-"
    rows = [
        ("run", f"{summary.run_dir} (refs t2s/{summary.run_id}/)"),
        ("analyst", f"{summary.analyst} by {summary.model}"),
        ("analysed", f"{summary.trajectories} (ran {summary.ran}, resumed {summary.resumed})"),
        ("kept", f"{summary.kept} -> patches/ and t2s/{summary.run_id}/patch/<id>"),
        ("dropped", f"{summary.dropped} ({reasons})"),
        (
            "skipped",
            f"{summary.skipped} trajectories (beyond --limit, or no selected analyst applies)",
        ),
        (
            "tokens",
            describe_in_out(
                summary.tokens_in,
                summary.tokens_out,
                summary.tokens_unreported,
                summary.kept + summary.dropped,
                "analyses",
            )
            + _replayed_note(summary.calls, summary.cache_hits),
        ),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _replayed_note(calls: int, hits: int) -> str:
    """Replies replayed from the response cache spend no tokens: say so, or a rerun's
    ``in 0 / out 0`` reads as a broken count."""
    if not hits:
        return ""
    if hits == calls:
        return f"; all {calls} model calls replayed from the response cache (no tokens spent)"
    return f"; {hits} of {calls} model calls replayed from the response cache (0 tokens each)"


COMMANDS = [analyse_command]
