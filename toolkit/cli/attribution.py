"""CLI commands: ``trace2skill ablate``, ``usage``, ``support``, ``prune`` and ``report``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from toolkit.cli.llm import llm_options
from toolkit.cli.suites import suite_options
from toolkit.errors import ToolkitError

if TYPE_CHECKING:
    from toolkit.attribution import AblationPlan
    from toolkit.attribution.run import Origin
    from toolkit.llm.config import LLMConfig
    from toolkit.tasks import Suite

run_argument = click.argument("run", metavar="RUN")


def _run_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--repo",
                type=click.Path(file_okay=False, path_type=Path),
                help="The run's skill repository (default: the manifest's, else the current "
                "directory).",
            ),
            click.option(
                "--skill-path",
                metavar="PATH",
                help="The skill folder in that repository, e.g. skills/gsm8k-math "
                "(default: the manifest's, else the folder the run changed).",
            ),
        ]
    ):
        func = option(func)
    return func


def _model_given() -> bool:
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("model") == click.core.ParameterSource.COMMANDLINE
    return given or bool(os.environ.get("TRACE2SKILL_MODEL"))


def _evolve_split(run: str) -> str | None:
    """The split the run's rollouts (the analysed trajectories) came from, when recorded."""
    from toolkit.attribution.run import resolve_run_dir
    from toolkit.runs import read_manifest

    try:
        manifest = read_manifest(resolve_run_dir(run))
    except ToolkitError:
        return None
    record = manifest.stages.get("rollout") if manifest else None
    split = record.config.get("split") if record else None
    return str(split) if split else None


def _plan_lines(plan: AblationPlan) -> list[str]:
    lines = [
        f"run {plan.run}: final patch {plan.patch_id}, edits "
        + ", ".join(f"{e} (support {plan.support[e]})" for e in plan.edits),
        f"{len(plan.versions)} version(s) to evaluate + S* and S0 on {len(plan.tasks)} task(s) "
        f"of {plan.suite}/{plan.split} (seed {plan.seed}, model {plan.model})",
    ]
    left = plan.rollouts - plan.finished
    if plan.rollouts and not left:
        lines.append(
            f"cost: nothing to run: all {plan.rollouts} rollouts are in the run's evaluations "
            "(reused)"
        )
    else:
        cost = f"cost: at most {left} rollouts"
        if plan.finished:
            cost += f" ({plan.finished} of {plan.rollouts} are in the run's evaluations, reused)"
        if plan.seconds_per_task is not None:
            tokens = (
                "unknown tokens (not reported)"
                if plan.tokens_per_task is None
                else f"{plan.tokens_per_task:,.0f} tokens"
            )
            cost += (
                f", ~{plan.seconds_per_task:.1f} s and {tokens} "
                f"each (earlier evaluations of this run): ~{(plan.estimate_s or 0) / 60:.1f} min"
            )
        lines.append(cost + ("" if plan.finished else "; finished rollouts are reused"))
        if plan.other_agent:
            lines.append(
                f"note: {plan.other_agent} of them were evaluated before by another agent (its "
                "prompts or settings changed since): they run again"
            )
    lines += [f"skip {s.kind}/{s.edit_id}: {s.reason}" for s in plan.skipped]
    if plan.mismatch:
        lines.append(
            "note: S0 + the final patch differs from S* in " + ", ".join(plan.mismatch)
            + "; versions are built from S0 + the patch"
        )  # fmt: skip
    return lines


def _effect(value: float | None, low: float, high: float) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}]"


@click.command("ablate")
@run_argument
@suite_options(required=False, help_suite="Task suite (default: the manifest's).")
@click.option("--split", default="test", show_default=True, help="Held-out split to evaluate on.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Ablate the K edits with the most support (ignored with --edits).",
)
@click.option(
    "--edits",
    "edit_ids",
    multiple=True,
    metavar="ID[,ID...]",
    help="Edit ids (or unique prefixes) to ablate; repeat or separate with commas.",
)
@click.option(
    "--tasks",
    type=click.IntRange(min=1),
    help="Evaluate a seeded subsample of at most N of the split's tasks (cheaper, wider CIs).",
)
@click.option(
    "--kind",
    type=click.Choice(["both", "ablate", "only"]),
    default="both",
    show_default=True,
    help="ablate: S* without the edit; only: S0 with only the edit.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Split size if not recorded yet.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: sampling, bootstrap.")
@click.option(
    "--delivery",
    type=click.Choice(["system", "progressive"]),
    help="Skill in the system prompt, or loaded section by section (exact section reads) "
    "(default: the run's).",
)
@click.option(
    "--protocol",
    type=click.Choice(["json", "code", "tools", "plain"]),
    help="How the agent talks to the model (default: the run's; see trace2skill eval --help).",
)
@click.option("--parallel", type=click.IntRange(min=1), help="Tasks rolled out at once.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its cost, run nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bars on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@_run_options
@llm_options(model_default="$TRACE2SKILL_MODEL, else the run's own model")
def ablate_cmd(
    run: str,
    suite: Suite | None,
    split: str,
    top: int,
    edit_ids: tuple[str, ...],
    tasks: int | None,
    kind: str,
    limit: int | None,
    seed: int,
    delivery: str | None,
    protocol: str | None,
    parallel: int | None,
    dry_run: bool,
    no_progress: bool,
    as_json: bool,
    repo: Path | None,
    skill_path: str | None,
    llm_config: LLMConfig,
) -> None:
    """Measure what each edit of a run's final patch does, with paired 95% CIs.

    For each selected edit, S* without it (branch t2s/<run>/ablate/<edit>) is compared with S*
    and S0 with only it (t2s/<run>/only/<edit>) with S0, on the same tasks and seeds. The
    effect is the edit's contribution in pass-rate points (> 0 helps). When the two effects
    disagree, the edit interacts with the others. The plan and its cost are printed before
    anything runs; finished rollouts are reused, so a re-run only adds what is missing.
    Results: RUN/ablations.jsonl, the evaluations in RUN/evals/, manifest stage 'attribute'.

    \b
    Examples:
      trace2skill ablate runs/demo --dry-run
      trace2skill ablate runs/demo --suite gsm8k --top 3 --tasks 30
      trace2skill ablate runs/demo --suite gsm8k --edits 3f2a9c,81bd02 --kind ablate
      trace2skill ablate runs/demo --suite jsonl --data tasks.jsonl --split all
    """
    from toolkit.agent import AgentConfig
    from toolkit.attribution import ablate

    edits = [e for item in edit_ids for e in item.split(",") if e.strip()]
    kinds = ("ablate", "only") if kind == "both" else (kind,)
    learned = _evolve_split(run)
    if learned is not None and learned == split:
        click.echo(
            f"Note: the run's analyses learned from its {split!r} tasks; effects measured on "
            "them are not held out (a split the run did not learn from, e.g. --split "
            f"{'train' if split == 'test' else 'test'}, measures the edits on unseen tasks)",
            err=True,
        )

    def show(plan: AblationPlan) -> None:
        for line in _plan_lines(plan):
            click.echo(line, err=as_json)

    outcome = ablate(
        run,
        suite=suite,
        split=split,
        # --model or $TRACE2SKILL_MODEL if given, else the run's own model
        model=llm_config.model if _model_given() else None,
        seed=seed,
        limit=limit,
        tasks=tasks,
        top=top,
        edits=edits or None,
        kinds=kinds,  # type: ignore[arg-type]
        repo=repo,
        skill_path=skill_path,
        delivery=delivery,
        concurrency=parallel,
        llm_config=llm_config,
        agent_config=AgentConfig(protocol=protocol) if protocol else None,
        progress=not no_progress,
        dry_run=dry_run,
        on_plan=show,
    )
    if as_json:
        for record in outcome.records:
            click.echo(record.model_dump_json())
        return
    for record in outcome.records:
        click.echo(
            f"{record.kind:6} {record.edit_id}  effect "
            f"{_effect(record.effect, record.effect_ci_low, record.effect_ci_high)}  "
            f"({record.passed}/{record.n} vs {record.reference_passed}/{record.n}, "
            f"p={record.p_value:.3g})"
        )
    if outcome.path is not None:
        click.echo(f"results: {outcome.path}")


@click.command("usage")
@run_argument
@click.option("--all-versions", is_flag=True, help="Also ablate/only versions, not just S0/S*.")
@click.option(
    "--origin",
    type=click.Choice(["eval", "rollout", "all"]),
    default="eval",
    show_default=True,
    help="Which trajectories: the evaluations (S0 and S* on the same tasks), the rollouts "
    "the run learned from (S0 only), or both.",
)
@click.option(
    "--split",
    metavar="NAME",
    help="Only trajectories of this split (default with --origin eval: the run's held-out "
    "split, e.g. test; otherwise every split).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON lines.")
@_run_options
def usage_cmd(
    run: str,
    all_versions: bool,
    origin: Origin,
    split: str | None,
    as_json: bool,
    repo: Path | None,
    skill_path: str | None,
) -> None:
    """Which sections the agent read, cited or echoed, per skill version; pass rate with/without.

    By default reads the evaluations on the run's held-out split, where S0 and S* ran the
    same tasks (as the report does); S0's rollouts on the evolve split have no S*
    counterpart (--origin rollout or all shows them). With the run's system delivery use is
    seen as citations (a section named by id) and echoes (a section's distinctive lines
    copied into a reply); progressive delivery makes reads exact. A section used by nobody
    is a pruning candidate (trace2skill prune).

    \b
    Examples:
      trace2skill usage runs/demo
      trace2skill usage runs/demo --origin rollout
      trace2skill usage runs/demo --all-versions --json
    """
    from toolkit.attribution import open_run, section_usage
    from toolkit.attribution.run import held_out_split, read_run_trajectories, version_labels

    context, store = open_run(run, repo=repo, skill_path=skill_path)
    try:
        versions = version_labels(store, context)
    finally:
        store.close()
    if not all_versions:
        versions = {c: v for c, v in versions.items() if v[0] in ("S0", "S*")}
    if split is None and origin == "eval":
        split = held_out_split(context.run_dir)
    trajectories = [
        t
        for t in read_run_trajectories(context.run_dir, origin)
        if t.skill_commit in versions and (split is None or t.split == split)
    ]
    rows = section_usage(trajectories, versions)
    # Which trajectories each version's figures count: the shares are only comparable when
    # the versions ran the same tasks.
    kind = {"eval": "evaluation", "rollout": "rollout", "all": "rollout and evaluation"}[origin]
    where = f"split {split!r}" if split is not None else "every split"
    notes = []
    for commit, (label, _) in versions.items():
        mine = [t for t in trajectories if t.skill_commit == commit]
        if mine or label in ("S0", "S*"):
            tasks = len({t.task_id for t in mine})
            notes.append(f"{label}: {len(mine)} {kind} trajectories on {tasks} task(s)")
    header = f"trajectories ({where}): " + "; ".join(notes)
    if as_json:
        click.echo(header, err=True)
        for row in rows:
            click.echo(row.model_dump_json())
        return
    click.echo(header)
    if not rows:
        click.echo("no trajectories of these skill versions yet")
    version_width = max((len(row.version) for row in rows), default=0)
    ref_width = min(60, max((len(row.ref) for row in rows), default=0))  # longer ones overflow
    for row in rows:
        rate = ""
        if row.rate_with is not None or row.rate_without is not None:
            rate = f"  pass with {_pct0(row.rate_with)} / without {_pct0(row.rate_without)}"
        click.echo(
            f"{row.version:{version_width}}  {row.ref:{ref_width}}  used "
            f"{row.used}/{row.trajectories} "
            f"(read {row.reads}, cited {row.citations}, echoed {row.echoes}){rate}"
        )


def _pct0(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


@click.command("support")
@run_argument
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@_run_options
def support_cmd(run: str, as_json: bool, repo: Path | None, skill_path: str | None) -> None:
    """The leaf patches and trajectories behind each line of S*, with their outcomes.

    From git blame of S* and the commits' provenance trailers; a line that is the text of an
    edit of the final patch takes that edit's support from the consolidation (every leaf
    patch behind it). fail/pass count the analysed trajectories behind the line.

    \b
    Examples:
      trace2skill support runs/demo
      trace2skill support runs/demo --json | jq 'select(.support > 1)'
    """
    from toolkit.attribution import open_run
    from toolkit.attribution.support import line_support

    context, store = open_run(run, repo=repo, skill_path=skill_path)
    try:
        rows = line_support(store, context)
    finally:
        store.close()
    for row in rows:
        if as_json:
            click.echo(row.model_dump_json())
            continue
        backing = (  # a blank line inside an added block carries no lesson of its own
            f"support {row.support:>2} fail {row.failed} pass {row.passed}"
            if row.support and row.text.strip()
            else " " * 22
        )
        click.echo(f"{row.file}:{row.line:<4} {backing}  {row.text}")


@click.command("prune")
@run_argument
@click.option(
    "--min-trajectories",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Refuse to prune on fewer trajectories of S* than this.",
)
@click.option("--dry-run", is_flag=True, help="Show the proposal; commit and save nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
@_run_options
def prune_cmd(
    run: str,
    min_trajectories: int,
    dry_run: bool,
    as_json: bool,
    repo: Path | None,
    skill_path: str | None,
) -> None:
    """Propose removing the sections of S* that no trajectory used and no ablation found useful.

    The proposal is a patch of delete_section edits, applied with the patch guardrails and
    committed on t2s/<run>/prune (parent: S*) with the evidence in the commit message; it is
    also saved as RUN/prune.json. Nothing is merged: review it with
    `git show t2s/<run>/prune`. Evaluate S* first (trace2skill ablate) so there is evidence.

    \b
    Examples:
      trace2skill prune runs/demo --dry-run
      trace2skill prune runs/demo --min-trajectories 30
    """
    from toolkit.attribution.prune import propose_prune

    proposal = propose_prune(
        run,
        repo=repo,
        skill_path=skill_path,
        min_trajectories=min_trajectories,
        write=not dry_run,
    )
    if as_json:
        click.echo(json.dumps(proposal.model_dump(mode="json")))
        return
    click.echo(
        f"evidence: {proposal.trajectories} trajectories of S* on {proposal.tasks} tasks "
        f"(delivery {', '.join(proposal.deliveries)})"
    )
    if not proposal.candidates:
        click.echo("nothing to prune: every section of S* was used or helped")
        return
    for c in proposal.candidates:
        click.echo(f"remove {c.ref} (lines {c.start_line}-{c.end_line}): {c.evidence}")
    if "system" in proposal.deliveries:
        click.echo(
            "caution: with system delivery every section is in every prompt, so use is seen "
            "only where the model cited or echoed a section; one that guided it silently looks "
            "unused. Evaluate the pruned skill (trace2skill compare) before taking it, or "
            "gather evidence with --delivery progressive, where reads are exact.",
            err=True,
        )
    for line in proposal.rejected:
        click.echo(f"refused: {line}")
    if proposal.commit:
        click.echo(
            f"proposed on {proposal.ref} ({proposal.commit[:10]}), -{proposal.removed_lines} lines"
        )


@click.command("report")
@run_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Where to write the markdown (default RUN/report.md; '-' prints it).",
)
@_run_options
def report_cmd(run: str, output: Path | None, repo: Path | None, skill_path: str | None) -> None:
    """Write the run's markdown report: scores, fixed and broken tasks, edits, usage, cost.

    S0 and S* pass rates with 95% CIs and the paired difference; the tasks S* fixed and the
    ones it broke (a warning at the top when an average gain hides broken tasks); each
    ablated edit with its support and effects; section usage of S0 vs S*; the pruning
    proposal; the model cost. Reads only what is stored: run ablate and prune first.

    \b
    Examples:
      trace2skill report runs/demo
      trace2skill report runs/demo -o - | less
    """
    from toolkit.attribution.report import render_report, write_report

    if output is not None and str(output) == "-":
        # The text ends with its newline: the same bytes as report.md.
        click.echo(render_report(run, repo=repo, skill_path=skill_path), nl=False)
        return
    path = write_report(run, repo=repo, skill_path=skill_path, output=output)
    click.echo(f"report: {path}")


COMMANDS = [ablate_cmd, usage_cmd, support_cmd, prune_cmd, report_cmd]
