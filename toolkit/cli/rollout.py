"""CLI commands: ``trace2skill rollout`` and ``trace2skill trajectories import|show``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import click

from toolkit.cli.evaluate import protocol_option
from toolkit.cli.interrupt import interrupted
from toolkit.cli.llm import llm_options
from toolkit.cli.suites import suite_options
from toolkit.cost import CostTally
from toolkit.errors import ToolkitError
from toolkit.tasks import Suite
from toolkit.tokens import describe_in_out, format_count


@click.command("rollout")
@suite_options(required=True, help_suite="Task suite to draw the tasks from.")
@click.option(
    "--split", default="test", show_default=True, help="Split of the suite (train, test, all)."
)
@click.option(
    "--skill", "skill_path", metavar="PATH|REV:PATH",
    help="Skill the agent uses: a folder, or a folder as committed in git (REV:PATH, e.g. "
    "t2s/run1/base:skills/gsm8k-math); leave out for the no-skill baseline.",
)  # fmt: skip
@click.option(
    "--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (trajectories.jsonl, manifest.json, splits.json, llm_calls.jsonl).",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), help="Seeded subset of at most N tasks.")
@click.option(
    "--parallel", type=click.IntRange(min=1),
    help="Tasks rolled out at once (default: 1 with the embedded local/ model, which serves one "
    "request at a time; 4 with any other model).",
)  # fmt: skip
@click.option(
    "--delivery", type=click.Choice(["system", "progressive", "none"]),
    help="How the skill reaches the agent: whole SKILL.md in the system prompt, headings "
    "with sections read on demand, or no skill (default: system with --skill, else none).",
)  # fmt: skip
@protocol_option
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed.")
@click.option("--resume", is_flag=True, help="Continue a killed run: finished tasks are kept.")
@click.option(
    "--max-turns", type=click.IntRange(min=1, max=50), default=6, show_default=True,
    help="Most steps (model calls) per task.",
)  # fmt: skip
@click.option(
    "--temperature", type=click.FloatRange(min=0), default=0.7, show_default=True,
    help="Sampling temperature of the agent.",
)  # fmt: skip
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@llm_options(model_default="$TRACE2SKILL_MODEL or the embedded model; on --resume the run's")
def rollout_command(
    suite: Suite,
    split: str,
    skill_path: str | None,
    run_dir: Path,
    limit: int | None,
    parallel: int | None,
    delivery: str | None,
    protocol: str,
    seed: int,
    resume: bool,
    max_turns: int,
    temperature: float,
    no_progress: bool,
    as_json: bool,
    llm_config: Any,
) -> None:
    """Run the agent with a skill on a split of a task suite and record its trajectories.

    Each task gets a fresh sandbox with its files; the agent works in steps, one model call
    each (with the default code protocol: a reply whose python block runs in the sandbox,
    until a FINAL ANSWER line; see --protocol), and the suite scores its answer.
    Trajectories are appended to RUN_DIR/trajectories.jsonl as they finish; --resume after
    a kill skips the finished tasks. --parallel sets the tasks run at once.

    \b
    Examples:
      trace2skill rollout --suite gsm8k --split test --skill skills/gsm8k-math \\
          --limit 20 --run-dir runs/gsm8k-s0
      trace2skill rollout --suite wikitq --split train --skill skills/wikitq-table-qa \\
          --delivery progressive --parallel 8 --run-dir runs/wtq-prog
      trace2skill rollout --suite gsm8k --limit 20 --run-dir runs/gsm8k-noskill
      trace2skill rollout --suite gsm8k --skill skills/gsm8k-math --limit 20 \\
          --run-dir runs/gsm8k-s0 --resume
      trace2skill rollout --suite gsm8k --skill HEAD~1:skills/gsm8k-math --limit 20 \\
          --run-dir runs/gsm8k-previous
    """
    from toolkit.agent import AgentConfig
    from toolkit.rollout import default_concurrency, run_rollouts

    ctx = click.get_current_context()
    if resume and ctx.get_parameter_source("model") != click.core.ParameterSource.COMMANDLINE:
        llm_config = _with_run_model(llm_config, run_dir)
    given = ctx.get_parameter_source("concurrency") not in (
        click.core.ParameterSource.DEFAULT,
        None,
    )
    # --parallel is the tasks at once, as on eval and evolve; --concurrency set it before
    # --parallel existed and still does when --parallel is left out.
    concurrency = parallel or (
        llm_config.concurrency if given else default_concurrency(llm_config.model)
    )
    try:
        summary = run_rollouts(
            suite,
            split,
            skill_path,
            run_dir=run_dir,
            seed=seed,
            concurrency=concurrency,
            limit=limit,
            delivery=delivery,
            resume=resume,
            progress=not no_progress,
            agent_config=AgentConfig(
                max_turns=max_turns, temperature=temperature, protocol=protocol
            ),
            llm_config=llm_config,
        )
    except KeyboardInterrupt:
        interrupted(
            f"Finished tasks are saved in {run_dir}; run the same command with --resume to continue"
        )
    if as_json:
        click.echo(summary.model_dump_json())
        return
    stops = ", ".join(f"{k} {v}" for k, v in sorted(summary.stop_reasons.items())) or "-"
    # A replay from the response cache takes no model time: its seconds say nothing of cost.
    cached = f"; {summary.cached_tasks} replayed from the response cache" * bool(
        summary.cached_tasks
    )
    seconds = f"{summary.seconds_per_task:.1f} per task"
    if summary.cached_tasks:
        fresh = summary.seconds_per_fresh_task
        seconds += f" ({'no task' if fresh is None else f'{fresh:.1f} per task'} without the cache)"
    seconds += f" (wall {summary.wall_s:.1f})"
    rows = [
        ("run", str(summary.run_dir)),
        ("model", summary.model),
        ("skill", f"{summary.skill_name or '(none)'} @ {summary.skill_commit[:12]}"),
        ("delivery", summary.delivery),
        ("tasks", f"{summary.tasks} (ran {summary.ran}, resumed {summary.resumed})" + cached),
        ("passed", f"{summary.passed}/{summary.tasks} ({summary.pass_rate:.1%})"),
        ("stopped", stops),
        (
            "tokens",
            describe_in_out(
                summary.tokens_in,
                summary.tokens_out,
                summary.tokens_unreported,
                len(summary.trajectory_ids),
                "trajectories",
            ),
        ),
        ("seconds", seconds),
        (
            "cost",
            CostTally.from_sum(
                summary.cost_usd, len(summary.trajectory_ids), summary.cost_unpriced
            ).describe("trajectories"),
        ),
        ("trajectories", str(summary.trajectories_path)),
    ]
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _with_run_model(llm_config: Any, run_dir: Path) -> Any:
    """``llm_config`` with the model the run's rollout stage recorded, if it recorded one:
    a resume continues with the run's model, as ``evolve --resume`` does (the default, or
    $TRACE2SKILL_MODEL, was refused as mixing two models' trajectories). A --model given on
    the command line is kept, so a different one is still refused."""
    from toolkit.runs import read_manifest

    manifest = read_manifest(run_dir) if run_dir.is_dir() else None
    stage = manifest.stages.get("rollout") if manifest else None
    model = stage.config.get("model") if stage else None
    return llm_config.model_copy(update={"model": model}) if model else llm_config


@click.group("trajectories")
def trajectories_group() -> None:
    """Import trajectories from other harnesses and inspect a run's trajectories.

    \b
    Examples:
      trace2skill trajectories import their_runs.jsonl --run-dir runs/imported --suite gsm8k
      trace2skill trajectories show runs/gsm8k-s0
      trace2skill trajectories list runs/gsm8k-s0 --outcome fail --protocol code
      trace2skill trajectories show runs/gsm8k-s0 --id 3f2a
    """


@trajectories_group.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Run directory to add the trajectories to (created if needed).",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "chat", "official"]), default="auto",
    show_default=True,
    help="chat: one OpenAI-style chat per line; official: the official Trace2Skill agent "
    "logs (one file per task, or a folder of them); auto: tell by the first record.",
)  # fmt: skip
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Official logs: a JSON/JSONL file of verdicts by task id (e.g. from the official "
    "evaluate_outputs.py) that overrides each log's own 'success' flag.",
)
@suite_options(
    required=False,
    help_suite="Check task ids against this suite and score outcomes that give only an answer.",
)
def import_command(
    path: Path, run_dir: Path, fmt: str, results: Path | None, suite: Suite | None
) -> None:
    """Import trajectories from another harness (docs/trajectory-import.md).

    PATH is a JSONL file of OpenAI-style chats (each line: task_id, messages, outcome
    {passed, score?, answer?}), or the official Trace2Skill agent logs
    (<agent>_<task id>.jsonl with session_start / message / result records; a file or a
    folder). Every message is kept: the system prompt and the messages before the first
    reply become the trajectory's prompt (shown to the analysts), and ReAct observations
    sent back as user messages become the observation of the step before them. An answer
    after a FINAL ANSWER label is read without it. Good lines (or files) are imported, bad ones
    are all listed with what is wrong; the exit code is 1 if any was bad. Importing the
    same input again adds nothing.

    \b
    Examples:
      trace2skill trajectories import exported.jsonl --run-dir runs/imported --suite gsm8k
      trace2skill trajectories import official_logs/ --run-dir runs/official \\
          --results eval_results.json
    """
    from toolkit.trajectory import import_trajectories

    report = import_trajectories(path, run_dir, suite=suite, format=fmt, results=results)
    # An official log file can have several problems; the count is of files (or lines).
    official = report.format == "official"
    places = {(e.file, None) if official else (e.file, e.line) for e in report.errors}
    bad = f"{len(places)} bad {'files' if official else 'lines'}"
    if report.imported:
        click.echo(
            f"imported {report.imported} trajectories ({report.format} format) into"
            f" {report.trajectories_path} ({report.already_present} already there, {bad})"
        )
    else:
        click.echo(
            f"imported nothing ({report.format} format): {report.already_present} already"
            f" there, {bad}; {report.trajectories_path} was not written"
        )
    verbose = bool(click.get_current_context().find_root().params.get("verbose"))
    for error in report.errors:
        line = f"{path}:{error.line}: {error.message}" if error.file is None else str(error)
        click.echo(line, err=True)
        for detail in error.details if verbose else []:
            click.echo(f"    {detail}", err=True)
    if report.errors:
        raise click.exceptions.Exit(1)


@trajectories_group.command("show")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--id", "traj_id", help="Show one trajectory's steps (an id or its prefix).")
@click.option("--task", "task_id", help="Show the trajectories of this task id.")
@click.option(
    "--outcome", type=click.Choice(["pass", "fail"]), help="Only passing or failing ones."
)
@click.option(
    "--protocol",
    type=click.Choice(["json", "code", "tools", "plain", "imported"]),
    help="Only those of this protocol (a run folder's evaluations may hold several).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N trajectories.")
@click.option(
    "--evals",
    "from_evals",
    is_flag=True,
    help="A run's evaluation trajectories (RUN_DIR/evals/trajectories.jsonl: S0, S* and no "
    "skill on the held-out split) instead of its evolve-split rollouts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
def show_command(
    path: Path,
    traj_id: str | None,
    task_id: str | None,
    outcome: str | None,
    protocol: str | None,
    limit: int | None,
    from_evals: bool,
    as_json: bool,
) -> None:
    """List the trajectories of a run (PATH: a run directory or a trajectories.jsonl).

    A run directory with no trajectories.jsonl of its own (one only evaluated) shows its
    evaluation trajectories, RUN_DIR/evals/trajectories.jsonl; --evals shows those of any
    run (e.g. the tasks a report says S* broke). The skill column tells the versions apart.

    With --id, print that trajectory: its answer beside the gold, then step by step: thought,
    tool call, observation and the skill sections read, cited or echoed.

    \b
    Examples:
      trace2skill trajectories show runs/gsm8k-s0 --outcome fail
      trace2skill trajectories show runs/eval-gsm8k-test-n50-s0 --protocol plain
      trace2skill trajectories show runs/gsm8k-s0 --id 3f2a
      trace2skill trajectories show runs/gsm8k-s0/trajectories.jsonl --json --limit 1
      trace2skill trajectories show runs/example-wikitq --evals --task nu-3155
    """
    from toolkit.trajectory import read_trajectories

    source = _trajectories_file(path, from_evals)
    read = read_trajectories(source)
    if read.torn:
        click.echo(f"warning: {read.torn}", err=True)
    records = read.records
    if traj_id:
        records = [t for t in records if t.id.startswith(traj_id)]
        if not records:
            raise ToolkitError(
                f"no trajectory id starts with {traj_id!r} in {source}" + _evals_hint(path, source)
            )
        if len(records) > 1 and not as_json:
            raise ToolkitError(
                f"{len(records)} trajectory ids start with {traj_id!r}; give more characters"
            )
    if task_id:
        mine = [t for t in records if t.task_id == task_id]
        if records and not mine:
            raise ToolkitError(
                f"no trajectory of task {task_id!r} in {source}" + _evals_hint(path, source)
            )
        records = mine
    if outcome:
        records = [t for t in records if t.passed == (outcome == "pass")]
    if protocol:
        records = [t for t in records if t.protocol == protocol]
    if limit:
        records = records[:limit]
    if as_json:
        for record in records:
            click.echo(record.model_dump_json())
        return
    if traj_id:
        _show_one(records[0])
        return
    from toolkit.evaluate import eval_trajectories_path

    names = _version_names(path) if source == eval_trajectories_path(path) else {}
    click.echo(
        f"{'id':<16}  {'task':<22} {'skill':<19} {'protocol':<8} {'ok':<4} {'steps':>5}  "
        f"{'stop':<12} answer"
    )
    for t in records:
        answer = (t.final_answer or "").replace("\n", " | ")[:40]
        skill = names.get(t.skill_commit, t.skill_commit[:12])
        click.echo(
            f"{t.id:<16}  {t.task_id[:22]:<22} {skill[:19]:<19} {t.protocol[:8]:<8} "
            f"{'pass' if t.passed else 'FAIL':<4} {len(t.steps):>5}  {t.stop_reason:<12} "
            f"{answer}"
        )
    passed = sum(t.passed for t in records)
    noun = "trajectory" if len(records) == 1 else "trajectories"
    click.echo(f"{len(records)} {noun}, {passed} passed" + _evals_hint(path, source))


# `trajectories list`: the list mode of `show` under the name people type first (no --id).
list_command = click.Command(
    "list",
    params=[p for p in show_command.params if p.name != "traj_id"],
    callback=functools.partial(show_command.callback, traj_id=None),  # type: ignore[arg-type]
    help="List the trajectories of a run: `trajectories show` without --id (see its --help)."
    "\n\n\b\nExamples:\n"
    "  trace2skill trajectories list runs/gsm8k-s0 --outcome fail\n"
    "  trace2skill trajectories list runs/eval-gsm8k-test-n50-s0 --protocol plain",
)
trajectories_group.add_command(list_command)


def _version_names(run_dir: Path) -> dict[str, str]:
    """Skill version id -> S0, S*, ablate/<edit>, only/<edit>, none: the names of a run's
    evaluated versions (empty when the run's refs cannot be read: ids are shown instead)."""
    from toolkit.attribution.run import open_run, version_labels
    from toolkit.trajectory import NO_SKILL_COMMIT

    try:
        context, store = open_run(run_dir)
        try:
            labels = version_labels(store, context)
        finally:
            store.close()
    except ToolkitError:
        return {}
    return {NO_SKILL_COMMIT: "none", **{commit: label for commit, (label, _) in labels.items()}}


def _trajectories_file(path: Path, from_evals: bool = False) -> Path:
    """The trajectories.jsonl that ``trajectories show PATH`` reads.

    Raises:
        ToolkitError: a folder with no trajectories file (or none of evaluations, asked for).
    """
    from toolkit.evaluate import eval_trajectories_path
    from toolkit.runs import TRAJECTORIES_FILE

    if not path.is_dir():
        return path
    evals = eval_trajectories_path(path)
    if from_evals:
        if not evals.exists():
            raise ToolkitError(f"{path} has no evaluation trajectories ({evals})")
        return evals
    own = path / TRAJECTORIES_FILE
    if own.exists():
        return own
    if evals.exists():
        # `eval` keeps its trajectories apart from the run's training ones; say where they are.
        click.echo(f"{path} has no trajectories.jsonl; showing {evals}", err=True)
        return evals
    raise ToolkitError(f"{path} holds no trajectories.jsonl (is it a run folder?)")


def _evals_hint(path: Path, source: Path) -> str:
    """A pointer to the run's evaluation trajectories when another file was shown."""
    from toolkit.evaluate import eval_trajectories_path

    evals = eval_trajectories_path(path) if path.is_dir() else None
    if evals is None or not evals.exists() or source == evals:
        return ""
    return " (evaluation trajectories: add --evals)"


def _cached_note(steps: list[Any]) -> str:
    # Replies from the response cache cost nothing and record 0 tokens: say so.
    hits = sum(step.cache_hit for step in steps)
    return f" ({hits} of {len(steps)} replies from the response cache)" if hits else ""


def _unreported_note(t: Any) -> str:
    # An unknown count is the provider's silence, not 0 tokens: say which steps it was.
    if t.tokens_in is not None and t.tokens_out is not None:
        return ""
    silent = sum(s.tokens_in is None or s.tokens_out is None for s in t.steps)
    return f" (the provider reported no usage for {silent} of {len(t.steps)} replies)"


def _show_one(t: Any) -> None:
    rows = [
        ("id", t.id),
        # An imported trajectory may name no suite or split: no "/uc-1 ()".
        (
            "task",
            "/".join(x for x in (t.suite, t.task_id) if x) + (f" ({t.split})" if t.split else ""),
        ),
        ("skill", f"{t.skill_name or '(none)'} @ {t.skill_commit[:12]} ({t.delivery})"),
        ("protocol", t.protocol),
        ("model", f"{t.model} (seed {t.seed})"),
        (
            "verdict",
            ("PASS" if t.passed else "FAIL")
            + (f": {t.verdict.details}" if t.verdict.details else ""),
        ),
        ("answer", _answer(t)),
        # The suite's gold, as its scorer compared it (empty for suites that check files).
        *([("gold", ", ".join(t.verdict.gold))] if t.verdict.gold else []),
        ("stop", t.stop_reason + (f": {t.error}" if t.error else "")),
        (
            "tokens",
            f"in {format_count(t.tokens_in)} / out {format_count(t.tokens_out)} "
            f"in {t.latency_s:.1f} s" + _cached_note(t.steps) + _unreported_note(t),
        ),
    ]
    _print_rows(rows)
    click.echo(f"\nquestion: {t.question}")
    for message in t.prompt:  # an import's system prompt and opening messages
        click.echo(f"\nprompt ({message.role}):\n" + _indent(_clip(message.content)))
    echoed: dict[int, list[str]] = {}
    for use in t.section_uses:
        if use.kind == "echoed":
            echoed.setdefault(use.step, []).append(use.ref)
    for step in t.steps:
        uses = []
        if step.cited_sections:
            uses.append("cited " + ", ".join(step.cited_sections))
        if step.read_sections or step.read_files:
            uses.append("read " + ", ".join(step.read_sections + step.read_files))
        if step.index in echoed:
            uses.append("echoed " + ", ".join(echoed[step.index]))
        click.echo(
            f"\n[{step.index}] {step.action.tool}" + (f"  ({'; '.join(uses)})" if uses else "")
        )
        if step.thought:
            click.echo(f"  thought: {step.thought}")
        for key, value in step.action.args.items():
            text = value if isinstance(value, str) else json.dumps(value)
            click.echo(f"  {key}:\n" + _indent(text) if "\n" in text else f"  {key}: {text}")
        if step.observation:
            click.echo("  observation:\n" + _indent(_clip(step.observation)))


def _answer(t: Any) -> str:
    """The final answer, and what the scorer read from it when that differs (a sentence read
    as its number): that, not the raw text, is what it compared with the gold."""
    raw = repr(t.final_answer)
    read = t.verdict.predicted
    if read and read != [(t.final_answer or "").strip()]:
        return f"{raw} (read as {', '.join(read)})"
    return raw


def _clip(text: str, limit: int = 800) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


COMMANDS: list[click.Command] = [rollout_command, trajectories_group]
