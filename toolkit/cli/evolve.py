"""CLI command: ``trace2skill evolve`` (the whole method, resumable, with a budget)."""

from __future__ import annotations

import sys
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from toolkit.cli.evaluate import reuse_option
from toolkit.cli.interrupt import interrupted
from toolkit.cli.llm import llm_options
from toolkit.cli.suites import suite_options
from toolkit.cost import UNPRICED, UNPRICED_WHY, CostTally, format_cost
from toolkit.known import unreported_note, unreported_text

if TYPE_CHECKING:
    from toolkit.evolve import Estimate, EvolveConfig, EvolveSummary, PairedScore
    from toolkit.llm.config import LLMConfig
    from toolkit.tasks import Suite

#: Exit code of a run stopped by its budget (resumable; not an error).
BUDGET_EXIT = 3


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def estimate_lines(est: Estimate) -> list[str]:
    """The estimate as printed before a run starts."""
    r = est.rates
    analyse = next((s for s in est.stages if s.stage == "analyse" and s.units), None)
    # With every analysis done there is no per-analysis figure to show.
    per_analysis = f"{analyse.calls / analyse.units:.3g} calls per analysis, " if analyse else ""
    basis = "assumes"
    if r.measured:
        basis = "measured on this run"
    elif r.from_reuse:
        basis = "measured on the S0 tasks --reuse holds"
    lines = [
        f"estimate{' of what is left' if est.left else ''}: about {est.calls:,} model calls, "
        f"{est.tokens:,} tokens, {est.minutes:.0f} minutes",
        f"  {basis}: "
        f"{r.steps_per_task:g} calls per task, {r.fail_rate:.0%} of evolve tasks "
        f"failing, {per_analysis}"
        f"{r.tokens_per_call:,} tokens and {r.seconds_per_call:g} s per call"
        + "".join(f"; {s:g} s per {kind}" for kind, s in r.unit_seconds.items()),
    ]
    for s in est.stages:
        lines.append(
            f"  {s.stage:<12} {s.units:>4} units {s.calls:>6,} calls {s.minutes:>7.1f} min"
        )
    if est.reused:
        found = ", ".join(f"{stage} {n}" for stage, n in est.reused.items())
        lines.append(f"  --reuse holds finished tasks (not counted above): {found}")
    return lines


def _diff(p: PairedScore) -> str:
    if p.difference is None or p.ci_low is None or p.ci_high is None:
        return "n/a"
    text = f"{p.difference:+.2f} [{p.ci_low:+.2f}, {p.ci_high:+.2f}]"
    return text + (f", p={p.p_value:.3g}" if p.p_value is not None else "")


def summary_lines(s: EvolveSummary, run_dir: Path) -> list[str]:
    """The summary printed when an evolution finishes."""
    diff = (
        "n/a"
        if s.difference is None
        else f"{s.difference:+.2f} [{s.ci_low:+.2f}, {s.ci_high:+.2f}], p={s.p_value:.3g}"
    )
    lines = [
        f"run {s.run_id}: {s.suite}, agent {s.model}, analysts/merges {s.author_model}",
        *(
            [
                f"Creation: S0 is {s.author_model}'s draft of {s.skill} (no skill written by "
                f"hand; {run_dir / 'draft' / 'SKILL.md'})"
            ]
            if s.created
            else []
        ),
        f"evolve split: S0 {s.evolve.passed}/{s.evolve.n} = {_pct(s.evolve.rate)} "
        f"[{_pct(s.evolve.ci_low)}, {_pct(s.evolve.ci_high)}]",
        f"analyses: {s.analyses.get('kept', 0)} kept, {s.analyses.get('dropped', 0)} dropped"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(s.dropped_reasons.items())) + ")"
            if s.dropped_reasons
            else ""
        ),
        f"consolidation: {s.consolidation}",
        "merges: " + ", ".join(f"{k} {v}" for k, v in sorted(s.merges.items())),
        *(
            [
                f"no skill  {s.no_skill.passed}/{s.no_skill.n} = {_pct(s.no_skill.rate)} "
                f"[{_pct(s.no_skill.ci_low)}, {_pct(s.no_skill.ci_high)}]"
            ]
            if s.no_skill
            else []
        ),
        f"S0  {s.s0.passed}/{s.s0.n} = {_pct(s.s0.rate)} [{_pct(s.s0.ci_low)}, "
        f"{_pct(s.s0.ci_high)}]",
        f"S*  {s.result.passed}/{s.result.n} = {_pct(s.result.rate)} "
        f"[{_pct(s.result.ci_low)}, {_pct(s.result.ci_high)}]",
        *(
            [
                f"memory  {s.memory.passed}/{s.memory.n} = {_pct(s.memory.rate)} "
                f"[{_pct(s.memory.ci_low)}, {_pct(s.memory.ci_high)}] (S0 + the top-1 of "
                f"{s.memory_items or '?'} lessons by BM25)"
            ]
            if s.memory
            else []
        ),
        *([f"S0 - no skill (paired): {_diff(s.s0_vs_no_skill)}"] if s.s0_vs_no_skill else []),
        *([f"memory - S0 (paired): {_diff(s.memory_vs_s0)}"] if s.memory_vs_s0 else []),
        *([f"S* - memory (paired): {_diff(s.result_vs_memory)}"] if s.result_vs_memory else []),
        f"S* - S0 (paired): {diff}; MDE at this n: {_pct(s.mde)}",
        f"flipped: {len(s.gained)} gained ({', '.join(s.gained) or '-'}), "
        f"{len(s.lost)} lost ({', '.join(s.lost) or '-'})",
    ]
    if s.top_edits:
        lines.append("top edits by support:")
        for e in s.top_edits[:5]:
            where = f"{e.file}" + (f" > {e.target_section}" if e.target_section else "")
            step = f"step {e.step}: " if e.step is not None else ""
            lines.append(f"  support {e.support:>3}  {e.op:<18} {step}{where}: {e.text}")
    lines.append("stage         status       wall s   calls  cached   tokens")
    for name, st in s.stages.items():
        # A stage whose calls reported no counts shows "unknown", not 0; one where some did
        # not says how many calls its figure leaves out.
        silent = st.tokens_unreported >= st.calls > 0
        tokens = "unknown" if silent else f"{st.tokens_in + st.tokens_out:,}"
        note = "" if silent else unreported_note(st.tokens_unreported, st.calls, "calls")
        lines.append(
            f"  {name:<12} {st.status:<11} {st.wall_s:>7.1f} {st.calls:>7} {st.cached:>7} "
            f"{tokens:>8}{note}"
        )
    silent_calls = sum(st.tokens_unreported for st in s.stages.values())
    if silent_calls:
        lines.append(
            f"  tokens: {silent_calls} model calls came without token counts (the provider "
            "sent no usage) and are left out"
        )
    lines.append(_cost_line(s))
    lines += [
        f"result branch: {s.result_branch} ({(s.result_commit or '')[:12]})",
        f"  git log --graph --oneline {s.result_branch}",
        f"  git diff {s.base_commit[:12]} {s.result_branch} -- {quote(s.skill)}",
        f"files: {run_dir} (summary.json, refs.bundle)",
    ]
    return lines


def _cost_line(s: EvolveSummary) -> str:
    """The run's model cost over its stages; calls without a known cost are left out and
    said to be, never counted as $0."""
    stages = s.stages.values()
    cost = CostTally.from_sum(
        sum(st.cost_usd for st in stages),
        sum(st.calls for st in stages),
        sum(st.cost_unpriced for st in stages),
    )
    unpriced = unreported_text(cost.unpriced, cost.units, "calls", UNPRICED)
    return f"cost: {format_cost(cost.total)}" + (
        f" ({unpriced}: {UNPRICED_WHY})" if unpriced else ""
    )


@click.command()
@click.argument("skill", required=False, type=click.Path(path_type=Path))
@suite_options(required=False, help_suite="Task suite to evolve on (not needed with --resume).")
@click.option("--run-id", help="Run id (default: evolve-<skill>-<UTC time>); needed to resume.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder holding the run folders.",
)
@click.option("--resume", is_flag=True, help="Continue the run --run-id where it stopped.")
@click.option(
    "--create",
    is_flag=True,
    help="Creation: SKILL is a new folder (it must not exist); the author model drafts S0 "
    "from the suite's task description and a few evolve-split questions (no answers). The "
    "draft is committed only as t2s/<run>/base (your branch and files untouched), with a "
    "copy in runs/<run>/draft/.",
)
@click.option(
    "--draft-examples",
    type=click.IntRange(1, 20),
    default=5,
    show_default=True,
    help="With --create: evolve-split questions the author model reads.",
)
@click.option(
    "--budget",
    metavar="calls=N,tokens=N,minutes=N",
    help="Stop cleanly (resumable, exit code 3) once this call spent this many model calls "
    "(cache hits free), tokens or minutes; e.g. calls=500,tokens=2M,minutes=30. Checked "
    "before each task, analysis and stage: work already started finishes, so the spend can "
    "pass the limit by what was in flight (up to --parallel tasks). Calls whose server "
    "reports no token usage count against tokens=N at an estimate from their text.",
)
@click.option("--estimate", "estimate_only", is_flag=True, help="Print the estimate and stop.")
@click.option("--evolve-split", default="train", show_default=True, help="Split to learn from.")
@click.option("--evolve-limit", type=click.IntRange(min=1), help="Seeded subset of it.")
@click.option("--test-split", default="test", show_default=True, help="Held-out split.")
@click.option("--test-limit", type=click.IntRange(min=1), help="Seeded subset of it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed.")
@click.option(
    "--analysts",
    type=click.Choice(["error", "success", "combined"]),
    default="error",
    show_default=True,
    help="Which trajectories are analysed: failures (+Error), successes (+Success) or both.",
)
@click.option(
    "--error-analyst",
    type=click.Choice(["agentic", "single"]),
    default="agentic",
    show_default=True,
    help="agentic: re-checks its fix with the verifier (kept only at PASS); single: one call "
    "(`trace2skill analyse --analyst error` / `error-single`). With a small author model "
    "use single: the embedded 1.5B's agentic fixes reached PASS on 0 of 22 WikiTQ failures.",
)
@click.option(
    "--author-model", metavar="MODEL", help="Model of analysts and merges (default: --model)."
)
@click.option(
    "--author-api-base",
    metavar="URL|default",
    help="Server of the --author-model when it is not the agent's --api-base: a URL, or "
    "'default' for the provider's own endpoint (a hosted author beside an agent on a local "
    "server). Default: --api-base. May be given again on --resume (the server moved).",
)
@click.option(
    "--consolidation",
    type=click.Choice(["parallel", "sequential"]),
    default="parallel",
    show_default=True,
    help="parallel (the paper's method): every trajectory is analysed against S0 and all "
    "patches are merged at once, level by level (--merge-batch, --max-levels). sequential "
    "(the paper's Seq-B baseline): the skill is edited online: the trajectories, in an order "
    "drawn from --seed, in batches of --seq-batch; each batch is analysed against the skill "
    "the batches before made and its patches merged into it, a chain of refs "
    "t2s/<run>/seq/<step> whose last step is S*.",
)
@click.option(
    "--seq-batch",
    type=click.IntRange(min=1),
    metavar="B",
    help="Seq-B: trajectories per step of --consolidation sequential (default 4; the paper "
    "compares Seq-B=1 and Seq-B=4). N analysed trajectories make ceil(N/B) steps, run one "
    "after another, so a small B costs time, not calls.",
)
@click.option(
    "--merge-batch", type=click.IntRange(min=2), default=5, show_default=True,
    help="B: most patches merged per group (parallel consolidation).",
)  # fmt: skip
@click.option(
    "--max-levels", type=click.IntRange(min=1), default=5, show_default=True,
    help="L_max: at this level everything left is merged at once (the final forced merge; "
    "parallel consolidation).",
)  # fmt: skip
@click.option(
    "--merge-strategy",
    type=click.Choice(["llm", "git"]),
    default="llm",
    show_default=True,
    help="llm: the merge operator for every group (sequential: every batch of two or more "
    "patches); git: textual union when no conflict.",
)
@click.option(
    "--protocol", type=click.Choice(["json", "code", "tools", "plain"]), default="code",
    show_default=True, help="How the agent talks to the model (see trace2skill eval --help).",
)  # fmt: skip
@click.option(
    "--delivery", type=click.Choice(["system", "progressive"]), default="system",
    show_default=True, help="Skill in the system prompt, or read section by section.",
)  # fmt: skip
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    help="Units of work at once (default: 1 with the embedded local/ model, else 4).",
)
@click.option(
    "--allow-dirty", is_flag=True, help="Take S0 from a skill folder with uncommitted changes."
)
@click.option(
    "--no-skill-baseline",
    is_flag=True,
    help="Also evaluate the agent with no skill on the test tasks (stage eval-none), so the "
    "summary shows S0 - no skill beside S* - S0. May be added on --resume.",
)
@click.option(
    "--memory-baseline",
    is_flag=True,
    help="Also evaluate the retrieval memory baseline (stage eval-memory): S0 plus, per test "
    "task, the one lesson of the run's kept analyses that BM25 ranks first for its question "
    "(the bank: runs/<run>/memory.jsonl, see trace2skill memory), so the summary shows it "
    "beside S0 and S*. May be added on --resume.",
)
@reuse_option(
    "Another run folder (repeatable) whose finished tasks of the same condition are "
    "copied in instead of run again: an `eval` of S0 or of no skill on the same test tasks "
    "(same --seed, --protocol and model), or another evolve's S0 rollouts. Matched by "
    "trajectory id (task, skill version, model, seed, delivery, agent settings); its "
    "splits.json must record the same data files. The run records these folders: a "
    "--resume reuses them without naming them again (and any given then too); their S0 "
    "tasks also set the estimate's calls, failing share and seconds per task."
)
@click.option("--no-progress", is_flag=True, help="No progress bars on stderr (stage lines stay).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@llm_options(model_default="$TRACE2SKILL_MODEL or the embedded model; on --resume the run's")
def evolve(
    skill: Path | None,
    suite: Suite | None,
    run_id: str | None,
    runs_dir: Path,
    resume: bool,
    create: bool,
    draft_examples: int,
    budget: str | None,
    estimate_only: bool,
    evolve_split: str,
    evolve_limit: int | None,
    test_split: str,
    test_limit: int | None,
    seed: int,
    analysts: str,
    error_analyst: str,
    author_model: str | None,
    author_api_base: str | None,
    consolidation: str,
    seq_batch: int | None,
    merge_batch: int,
    max_levels: int,
    merge_strategy: str,
    protocol: str,
    delivery: str,
    parallel: int | None,
    allow_dirty: bool,
    no_skill_baseline: bool,
    memory_baseline: bool,
    reuse: tuple[Path, ...],
    no_progress: bool,
    as_json: bool,
    llm_config: LLMConfig,
) -> None:
    """Evolve SKILL end to end: rollouts, analyses, consolidation, then S0 vs S* on a test split.

    \b
    Stages (each resumable; finished work is never redone):
      base         S0 committed as t2s/<run>/base (your branch and working tree untouched;
                   with --create, drafted by the author model first)
      rollout      the agent with S0 on the evolve split
      analyse      one analyst per trajectory (+Error: failures), each a patch on its branch
      consolidate  patches merged in groups of B, level by level, into t2s/<run>/result (S*)
      sequential   with --consolidation sequential, instead of analyse and consolidate:
                   step by step, a batch of --seq-batch trajectories analysed against the
                   current skill and merged into it (t2s/<run>/seq/<step>; the last is S*)
      eval-s0      S0 on the test split
      eval-result  S* on the same tasks and seeds
      eval-none    with --no-skill-baseline: the agent with no skill on the same tasks
      eval-memory  with --memory-baseline: S0 plus the top-1 lesson (BM25) of a memory bank
                   of the run's kept analyses per task, on the same tasks
      summary      paired S* - S0 with a 95% CI, flipped tasks, patches kept and dropped,
                   support of the top edits, time and model use per stage
      bundle       the run's refs as runs/<run>/refs.bundle

    With --create (the paper's Creation setting) there is no written S0: SKILL names a new
    folder, and the base stage first asks the author model (--author-model, else --model) for
    a draft, validated like any skill (one repair try); a resume never drafts again.
    `trace2skill skill draft` writes such a draft into a folder instead, to read and edit.

    Prints an estimate of calls, tokens and minutes first (on --resume, of the work left, at
    the rates the run has shown so far; on a new run with --reuse, at those of the S0 tasks
    it reuses). Defaults are the paper's main setting: Deepening from SKILL, +Error with the
    agentic analyst, parallel consolidation. A run stopped by Ctrl-C, a kill or --budget
    continues with --resume --run-id RUN (settings come from the run, its model server,
    --no-cache and --reuse folders included; a new --budget, --parallel,
    --no-skill-baseline, --memory-baseline, --reuse (more folders), --api-base or
    --author-api-base (the server moved), --suite with --data (where the same data is now),
    --no-cache, and --concurrency or --cache-dir (which change no result) may be given, an
    option that would change a setting is refused; the skill folder and the data are found
    from another directory).
    A resume with agent work left is refused when this toolkit's agent is not the one the
    run started with (a finished run only rebuilds its summary from its files).
    Exit code 3: budget spent; 5: nothing learned (no trajectory for the analysts, or no
    analysis passed the quality gate: no result, and a resume cannot change it); 130 or 143:
    stopped by Ctrl-C or a kill (resumable).

    \b
    Examples:
      trace2skill evolve skills/wikitq-table-qa --suite wikitq --evolve-limit 60 --test-limit 100
      trace2skill evolve skills/gsm8k-math --suite gsm8k --estimate
      trace2skill evolve --create skills/table-qa --suite wikitq --evolve-limit 60 \\
          --test-limit 100
      trace2skill evolve skills/wikitq-table-qa --suite wikitq --test-limit 100 \\
          --no-skill-baseline --reuse runs/eval-s0 --reuse runs/eval-none
      trace2skill evolve skills/gsm8k-math --suite gsm8k --run-id r1 --budget minutes=30
      trace2skill evolve --resume --run-id r1 --budget calls=2000
      trace2skill evolve --resume --run-id r1 --no-skill-baseline
      trace2skill evolve --resume --run-id r1 --memory-baseline   # S0 + retrieved lessons
      trace2skill evolve skills/gsm8k-math --suite gsm8k --analysts combined \\
          --model openai/gpt-4o-mini
      trace2skill evolve skills/wikitq-table-qa --suite wikitq --evolve-limit 60 \\
          --consolidation sequential --seq-batch 1 --reuse runs/r1   # Seq-B=1 on r1's rollouts
    """
    from toolkit.evolve import (
        BudgetExceeded,
        EvolveConfig,
        EvolveError,
        check_author_server,
        check_not_running,
        check_request,
        check_resumable,
        default_run_id,
        load_config,
        locate_data,
        locate_skill,
        parse_budget,
        plan,
    )
    from toolkit.evolve import evolve as run_evolve

    limits = parse_budget(budget)
    if run_id is not None:
        from toolkit.repo.store import check_id

        check_id(run_id)  # before the estimate and before any folder is made
    if resume:
        if not run_id:
            raise EvolveError("--resume needs --run-id (the run folder's name under --runs-dir)")
        config = load_config(runs_dir / run_id)
        if config is None:
            raise EvolveError(f"no evolve run {run_id!r} in {runs_dir} to resume")
        # The run is where it was found now (--runs-dir as given here, from this directory).
        config = locate_skill(config.model_copy(update={"runs_dir": runs_dir}))
        check_not_running(config.run_dir)  # before the estimate
        check_resumable(config)
        _refuse_changed_settings(config, suite)
        ctx = click.get_current_context()
        if suite is not None and ctx.get_parameter_source("data") == ParameterSource.COMMANDLINE:
            # The data moved (another clone, another directory): the same data there, as
            # its splits.json hashes make sure.
            config = config.model_copy(update={"data": _jsonl_options(suite)["data"]})
        config = locate_data(config)
        if no_skill_baseline:  # adding the baseline changes no finished work
            config = config.model_copy(update={"no_skill_baseline": True})
        if memory_baseline:  # nor does the memory baseline
            config = config.model_copy(update={"memory_baseline": True})
        if parallel is not None:  # how wide this machine runs it changes no result
            config = config.model_copy(update={"parallel": parallel})
        if author_api_base is not None:  # the author's server moved: the same model there
            config = config.model_copy(update={"author_api_base": author_api_base})
        check_author_server(config)  # its password, if still needed: before the estimate
    else:
        if skill is None or suite is None:
            raise EvolveError("give the skill folder and --suite (or --resume --run-id RUN)")
        _check_consolidation(consolidation, seq_batch)
        source = click.get_current_context().get_parameter_source("draft_examples")
        if source == ParameterSource.COMMANDLINE and not create:
            raise EvolveError("--draft-examples goes with --create (a drafted S0)")
        config = EvolveConfig(
            run_id=run_id or default_run_id(skill),
            runs_dir=runs_dir,
            skill=skill,
            suite=suite.name,
            model=llm_config.model,
            author_model=author_model,
            author_api_base=author_api_base,
            evolve_split=evolve_split,
            evolve_limit=evolve_limit,
            test_split=test_split,
            test_limit=test_limit,
            seed=seed,
            analysts=analysts,  # type: ignore[arg-type]
            error_analyst=error_analyst,  # type: ignore[arg-type]
            merge_batch=merge_batch,
            max_levels=max_levels,
            merge_strategy=merge_strategy,  # type: ignore[arg-type]
            consolidation=consolidation,  # type: ignore[arg-type]
            **({"seq_batch": seq_batch} if seq_batch else {}),
            protocol=protocol,  # type: ignore[arg-type]
            delivery=delivery,  # type: ignore[arg-type]
            parallel=parallel,
            allow_dirty=allow_dirty,
            no_skill_baseline=no_skill_baseline,
            create=create,
            draft_examples=draft_examples,
            memory_baseline=memory_baseline,
            **_jsonl_options(suite),
        )
    if not resume:
        check_request(config)  # --estimate included: a request evolve would refuse is refused
    # The run names a gone --reuse folder itself: said here too, it was said twice.
    estimated = plan(config, llm_config, resume=resume, reuse=reuse, notify=estimate_only)
    for line in estimate_lines(estimated):
        click.echo(line, err=True)
    if estimate_only:
        return
    try:
        summary = run_evolve(
            config,
            llm_config=llm_config,
            resume=resume,
            budget=limits,
            progress=not no_progress,
            echo=lambda line: click.echo(line, err=True),
            reuse=reuse,
        )
    except BudgetExceeded as exc:
        click.echo(
            f"Stopped: {exc}. Finished work is saved; continue with: trace2skill evolve "
            f"--resume --run-id {config.run_id} --runs-dir {quote(str(config.runs_dir))} "
            "[--budget ...]",
            err=True,
        )
        sys.exit(BUDGET_EXIT)
    except KeyboardInterrupt:
        if load_config(config.run_dir) is None:  # stopped before its base: nothing kept
            interrupted("The run had not started (nothing was kept): run the same command again.")
        interrupted(
            f"Continue with: trace2skill evolve --resume --run-id {config.run_id} "
            f"--runs-dir {quote(str(config.runs_dir))}"
        )
    if as_json:
        click.echo(summary.model_dump_json())
        return
    for line in summary_lines(summary, config.run_dir):
        click.echo(line)


#: Options that are settings of a run (fixed once it started), named as the config fields
#: (the suite and its scoring: :func:`_refuse_changed_settings`).
_SETTINGS = (
    "skill", "evolve_split", "evolve_limit", "test_split", "test_limit", "seed",
    "analysts", "error_analyst", "author_model", "merge_batch", "max_levels",
    "merge_strategy", "consolidation", "seq_batch", "protocol", "delivery", "allow_dirty",
    "create", "draft_examples",
)  # fmt: skip


def _check_consolidation(consolidation: str, seq_batch: int | None) -> None:
    """Refuse options that do not fit the chosen consolidation (they would be ignored)."""
    from toolkit.evolve import EvolveError

    ctx = click.get_current_context()
    if consolidation == "parallel" and seq_batch is not None:
        raise EvolveError(
            "--seq-batch is the batch of the sequential baseline: add --consolidation "
            "sequential, or leave --seq-batch out (parallel consolidation merges in groups of "
            "--merge-batch)"
        )
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("merge_batch", "max_levels")
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if consolidation == "sequential" and given:
        raise EvolveError(
            f"{' and '.join(given)} {'shape' if len(given) > 1 else 'shapes'} the parallel "
            "merge tree; --consolidation sequential "
            "merges each batch of --seq-batch patches into the skill at once: leave "
            f"{'them' if len(given) > 1 else 'it'} out"
        )


def _refuse_changed_settings(config: EvolveConfig, suite: Suite | None) -> None:
    """A resume runs with the run's own settings: an option given on the command line that
    would change one is refused (it used to be ignored in silence), naming what the run has.
    --budget, --parallel, --no-skill-baseline, --memory-baseline, --reuse, --api-base,
    --no-cache and --data
    (where the same data is now) may be given; --model must match the run's."""
    from toolkit.evolve import EvolveError

    ctx = click.get_current_context()
    changed = []
    for name in _SETTINGS:
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value, stored = ctx.params[name], getattr(config, name)
        if name == "skill":
            value, stored = Path(value).resolve(), Path(stored).resolve()
        if value != stored:
            changed.append(f"--{name.replace('_', '-')} (the run has {stored})")
    # --suite and its options reach the command as one Suite (cli.suites): the click
    # parameters are suite_name, scoring and tolerance, so the loop above never saw them.
    given = {
        "suite": suite.name if suite is not None else None,
        **{k: v for k, v in (_jsonl_options(suite) if suite else {}).items() if k != "data"},
    }
    for name in given:
        stored = getattr(config, name)
        source = ctx.get_parameter_source("suite_name" if name == "suite" else name)
        if source == ParameterSource.COMMANDLINE and given[name] != stored:
            changed.append(f"--{name} (the run has {stored})")
    model = ctx.params.get("model")
    if ctx.get_parameter_source("model") == ParameterSource.COMMANDLINE and (
        config.model and model != config.model
    ):
        changed.append(f"--model (the run has {config.model})")
    if changed:
        raise EvolveError(
            f"run {config.run_id!r} keeps the settings it started with; on --resume these "
            f"would change them: {'; '.join(changed)}. Leave them out, or start a new run "
            "with another --run-id"
        )


def _jsonl_options(suite: Suite) -> dict[str, object]:
    # A jsonl suite is its task file plus its scoring rule; other suites are a data folder.
    if suite.name != "jsonl":
        return {"data": getattr(suite, "data_dir", None)}
    return {
        "data": getattr(suite, "path", None),
        "scoring": getattr(suite, "scoring", None),
        "tolerance": getattr(suite, "tolerance", None),
    }


COMMANDS: list[click.Command] = [evolve]
