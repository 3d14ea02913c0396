"""CLI commands: ``trace2skill eval`` (pass rate with a CI) and ``trace2skill compare`` (paired)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from toolkit.cli.interrupt import interrupted
from toolkit.cli.llm import llm_options
from toolkit.cli.suites import suite_options
from toolkit.errors import ToolkitNotice
from toolkit.tokens import describe_tokens

if TYPE_CHECKING:
    from toolkit.evaluate import Comparison, EvalResult
    from toolkit.llm.config import LLMConfig
    from toolkit.memory import Memory
    from toolkit.tasks import Suite


def _data_tag(suite: Suite) -> str:
    """``-<name>-<hash>`` for a suite on data other than the default (a jsonl file, a --data
    folder): the file's stem and 6 hex digits of the sha256 of its absolute path."""
    from toolkit.tasks import TaskError, resolve_data_dir, suite_source

    source = suite_source(suite)
    where = source.get("path") or source.get("data_dir")
    if where is None:
        return ""
    if "data_dir" in source:
        try:
            if Path(where) == resolve_data_dir().resolve():
                return ""
        except TaskError:  # a broken $TRACE2SKILL_DATA_DIR: this folder is not the default
            pass
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(where).stem).strip("-.")[:40] or "data"
    return f"-{stem}-{hashlib.sha256(str(where).encode()).hexdigest()[:6]}"


def _scoring_tag(suite: Suite) -> str:
    """``-numeric``, ``-regex`` or ``-tol<x>`` for a jsonl suite scored other than by the
    default (exact, default tolerance); empty otherwise, so default names stay as they were."""
    from toolkit.tasks.jsonl import JsonlSuite

    if not isinstance(suite, JsonlSuite):
        return ""
    tag = "" if suite.scoring == "exact" else f"-{suite.scoring}"
    if suite.tolerance != JsonlSuite.DEFAULT_TOLERANCE:
        tag += f"-tol{suite.tolerance:g}"
    return tag


def _run_dir(run_dir: Path | None, suite: Suite, split: str, limit: int | None, seed: int) -> Path:
    # A run directory fixes its task subset (splits.json), so the default name carries what
    # draws it, the data included (two task files would otherwise share one folder), and
    # how answers are scored (a finished task keeps its verdict: `eval --scoring numeric`
    # after an exact one would meet the exact verdicts); repeating a command reuses the
    # finished rollouts.
    if run_dir is not None:
        return run_dir
    name = (
        f"eval-{suite.name}{_data_tag(suite)}{_scoring_tag(suite)}-{split}-n{limit or 'all'}"
        f"-s{seed}"
    )
    return Path("runs") / name


#: How an interrupted ``eval`` or ``compare`` goes on.
_GO_ON = (
    "Finished tasks are saved; the same command again goes on from them (they are reused, "
    "not re-run)"
)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _skill_label(skill: str, commit: str) -> str:
    if commit.startswith("memory-"):  # a skill with a memory bank (toolkit.memory)
        return f"{skill} + {commit[:15]}"
    return "no skill" if commit == "none" else f"{skill}@{commit[:10]}"


def _eval_lines(result: EvalResult) -> list[str]:
    s = result.summary
    rate = s.pass_rate
    mde = "none (n < 4)" if s.mde is None else _fmt(s.mde)
    if rate.rate is None:
        head = f"pass rate n/a (n=0), MDE at this n: {mde}"
    else:
        # Named by its method: at 0/n or n/n the bootstrap collapses to a point, so the
        # interval is Wilson's there (toolkit.stats).
        method = "bootstrap" if rate.ci.method == "bootstrap-percentile" else rate.ci.method
        head = (
            f"pass rate {_fmt(rate.rate)}, {method} 95% [{_fmt(rate.ci.low)}, "
            f"{_fmt(rate.ci.high)}] (n={s.n}), MDE at this n: {mde}"
        )
    return [
        f"{s.suite}/{s.split}  {_skill_label(s.skill, s.skill_commit)}  model {s.model}  "
        f"seed {s.seed}  delivery {s.delivery}  protocol {s.protocol or '?'}",
        head,
        f"passed {s.passed}/{s.n}; Wilson 95% [{_fmt(rate.wilson.low)}, "
        f"{_fmt(rate.wilson.high)}]; {s.seconds_per_task:.1f} s/task "
        f"(median {_fmt(s.seconds_median, 1)}), "
        f"{describe_tokens(s.tokens_per_task, s.tokens_unreported, s.n, 'tasks')} "
        f"tokens/task; model errors {s.errors}"
        + (
            " (counted as failures: run the same command again to retry those tasks)"
            if s.errors
            else ""
        ),
        *(
            [
                f"{s.cached_tasks} of {s.n} tasks replayed from the response cache; "
                + (
                    f"model time {_fmt(s.seconds_per_fresh_task, 1)} s per uncached task"
                    if s.seconds_per_fresh_task is not None
                    else "no task was run afresh"
                )
            ]
            if s.cached_tasks
            else []
        ),
        f"results: {result.path}",
    ]


def _compare_lines(comparison: Comparison) -> list[str]:
    p = comparison.paired
    a, b = comparison.a, comparison.b
    only_a = sum(d.reason == "only-in-a" for d in comparison.dropped)
    only_b = len(comparison.dropped) - only_a
    if p.difference is None:
        head = "B - A: n/a (no task was evaluated in both)"
    else:
        head = (
            f"B - A: {p.difference:+.2f} [{p.ci.low:+.2f}, {p.ci.high:+.2f}] (n={p.n} pairs), "
            f"p={p.p_value:.4g} (exact McNemar)"
        )
    if p.mde is None and p.mde_conservative is None:
        mde_line = "MDE at this n: none (too few pairs to detect any difference)"
    else:
        mde = "none" if p.mde is None else _fmt(p.mde)
        mde_cons = "none" if p.mde_conservative is None else _fmt(p.mde_conservative)
        mde_line = f"MDE at this n: {mde} (observed discordance), {mde_cons} (discordance 0.5)"
    return [
        f"{comparison.suite}/{comparison.split}",
        *(
            f"{name}: {_skill_label(c.skill, c.skill_commit)} ({c.model}, seed {c.seed}, "
            f"delivery {c.delivery}, protocol {c.protocol or '?'}) pass rate {_fmt(rate)}"
            for name, c, rate in (("A", a, p.rate_a), ("B", b, p.rate_b))
        ),
        head,
        f"discordant: only A passed {p.only_a}, only B passed {p.only_b}; "
        f"both passed {p.both_pass}, both failed {p.both_fail}",
        *(
            f"  only {side} passed: {_first(ids)}"
            for side, ids in (("A", comparison.only_a_passed), ("B", comparison.only_b_passed))
            if ids
        ),
        mde_line,
        f"dropped: {len(comparison.dropped)} ({only_a} only in A, {only_b} only in B)",
    ]


#: Flipped task ids listed per direction; --json holds every pair's outcome.
_FLIPS_SHOWN = 20


def _first(ids: list[str]) -> str:
    more = len(ids) - _FLIPS_SHOWN
    return ", ".join(ids[:_FLIPS_SHOWN]) + (f" (and {more} more: --json)" if more > 0 else "")


def _evaluate(
    skill: str,
    *,
    suite: Suite,
    split: str,
    limit: int | None,
    seed: int,
    run_dir: Path | None,
    delivery: str | None,
    protocol: str,
    parallel: int | None,
    resamples: int,
    llm_config: LLMConfig,
    no_progress: bool = False,
    reuse: tuple[Path, ...] = (),
    memory: Memory | None = None,
) -> EvalResult:
    from toolkit.agent import AgentConfig
    from toolkit.evaluate import NO_SKILL, evaluate
    from toolkit.rollout import default_concurrency

    return evaluate(
        None if skill.strip().lower() == NO_SKILL else skill,
        suite,
        split,
        llm_config.model,
        run_dir=_run_dir(run_dir, suite, split, limit, seed),
        seed=seed,
        limit=limit,
        delivery=None if skill.strip().lower() == NO_SKILL else delivery,
        concurrency=parallel or default_concurrency(llm_config.model),
        resamples=resamples,
        progress=not no_progress,
        llm_config=llm_config,
        agent_config=AgentConfig(protocol=protocol),
        reuse=reuse,
        memory=memory,
    )


def reuse_option(help: str) -> Any:
    """The ``--reuse RUN_DIR`` option (eval, compare, evolve) with the command's ``help``."""
    return click.option(
        "--reuse",
        multiple=True,
        # A folder only: a bare trajectory file has no splits.json to check its data files
        # against, so another data file's tasks of the same ids were taken.
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        metavar="RUN_DIR",
        help=help,
    )


protocol_option = click.option(
    "--protocol",
    type=click.Choice(["json", "code", "tools", "plain"]),
    default="code",
    show_default=True,
    help="How the agent talks to the model: code (plain text with fenced python blocks and a "
    "FINAL ANSWER line, as models are trained to write; the default, measured best on the "
    "embedded model: docs/protocols.md), json (one grammar-constrained JSON action per "
    "step; any structured-output model), tools (native function calling: "
    "tools=[...] for providers that support it, the model's own tool-call template for the "
    "embedded models), or plain (one answer, no tools, "
    "the task's text files in the prompt: the model's own level, to show the harness's "
    "value beside it; refused on spreadsheet, whose tasks are scored on the workbooks the "
    "agent writes).",
)


def _common(func: Any) -> Any:
    options = [
        suite_options(required=False, help_suite="Task suite to evaluate on."),
        click.option("--split", default="test", show_default=True, help="Split to evaluate on."),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            help="Evaluate a seeded subset of at most this many tasks.",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Run seed: task subset, sampling seeds, bootstrap seed.",
        ),
        click.option(
            "--run-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Run directory (default: runs/eval-<suite>-<split>-n<limit>-s<seed>, with "
            "the --data file's or folder's name and a hash of its path after <suite>, then "
            "a --scoring or --tolerance other than the default); finished tasks in it are "
            "reused. It keeps the task subset and scoring it was created with.",
        ),
        click.option(
            "--delivery",
            type=click.Choice(["system", "progressive"]),
            default="system",
            show_default=True,
            help="Skill in the system prompt, or loaded section by section on demand.",
        ),
        protocol_option,
        click.option(
            "--parallel",
            type=click.IntRange(min=1),
            help="Tasks rolled out at once (default: 1 with the embedded local/ model, which "
            "serves one request at a time; 4 with any other model).",
        ),
        click.option(
            "--resamples",
            type=click.IntRange(min=1),
            default=10_000,
            show_default=True,
            help="Bootstrap resamples.",
        ),
        reuse_option(
            "Another run folder (repeatable) whose finished tasks of the same condition (same "
            "task, skill version, model, seed, delivery and agent settings: the trajectory id) "
            "are copied into this run instead of run again, e.g. an earlier evaluation with "
            "another --limit or in another --run-dir. Its splits.json must record the same "
            "data files."
        ),
        click.option("--no-progress", is_flag=True, help="No progress bar on stderr."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("eval")
@click.option(
    "--skill",
    required=True,
    metavar="PATH|REV:PATH|none",
    help="Skill folder, a folder as committed in git (REV:PATH, e.g. "
    "t2s/run1/base:skills/gsm8k-math), or none (no skill).",
)
@click.option(
    "--memory",
    "memory_run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="RUN_DIR",
    help="The retrieval memory baseline: add to the agent's prompt, per task, the lessons "
    "of RUN_DIR's memory bank (trace2skill memory build RUN_DIR) that rank first for the "
    "task's question. Its own condition (evals/memory-<hash>/), never mixed with the "
    "skill's; refused on another suite or data, or on tasks the bank learned from.",
)
@click.option(
    "--memory-k",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="With --memory: lessons shown per task (top-k).",
)
@click.option(
    "--embedding-model",
    metavar="MODEL",
    help="With --memory: retrieve by cosine similarity of this litellm embedding model's "
    "vectors instead of BM25 (e.g. openai/text-embedding-3-small; its calls are not cached "
    "or logged).",
)
@_common
@llm_options
def eval_cmd(
    skill: str,
    memory_run: Path | None,
    memory_k: int,
    embedding_model: str | None,
    suite: Suite | None,
    split: str,
    limit: int | None,
    seed: int,
    run_dir: Path | None,
    delivery: str,
    protocol: str,
    parallel: int | None,
    resamples: int,
    reuse: tuple[Path, ...],
    no_progress: bool,
    as_json: bool,
    llm_config: LLMConfig,
) -> None:
    """Evaluate a skill (or no skill) on a split: pass rate with a bootstrap 95% CI.

    Rolls the agent out on each task (tasks already done in the run directory with the same
    skill version, model, seed, delivery and agent settings are reused) and stores per-task
    records and a summary in RUN_DIR/evals/<skill-commit>/<split>.jsonl. The MDE is the
    smallest paired difference a comparison at this n detects (alpha 0.05, power 0.8). To
    grow n, run again with a larger --limit (a new run directory): with the response cache
    on, tasks already run come back from the cache.

    \b
    Examples:
      trace2skill eval --skill skills/gsm8k-math --suite gsm8k --split test --limit 50
      trace2skill eval --skill none --suite gsm8k --limit 50 --run-dir runs/base
      trace2skill eval --skill skills/wikitq-table-qa --suite wikitq --delivery progressive
      trace2skill eval --skill t2s/run1/base:skills/gsm8k-math --suite gsm8k --limit 50
      trace2skill eval --skill none --suite gsm8k --limit 100 --reuse runs/base
      trace2skill eval --skill none --suite gsm8k --limit 3 --model fake/echo --json
      trace2skill eval --skill skills/wikitq-table-qa --suite wikitq --limit 50 \\
          --memory runs/r1                                   # S0 + the top-1 lesson (BM25)
    """
    from toolkit.evaluate import EvalError
    from toolkit.memory import Memory, read_bank

    if not suite:
        raise EvalError("--suite is required (gsm8k, wikitq, spreadsheet or jsonl)")
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("memory_k", "embedding_model")
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if memory_run is None and given:
        raise EvalError(f"{' and '.join(given)} choose how --memory RUN_DIR retrieves: add it")
    memory = None
    if memory_run is not None:
        memory = Memory(bank=read_bank(memory_run), k=memory_k, embedding_model=embedding_model)
    try:
        result = _evaluate(
            skill,
            suite=suite,
            split=split,
            limit=limit,
            seed=seed,
            run_dir=run_dir,
            delivery=delivery,
            protocol=protocol,
            parallel=parallel,
            resamples=resamples,
            llm_config=llm_config,
            no_progress=no_progress,
            reuse=reuse,
            memory=memory,
        )
    except KeyboardInterrupt:
        interrupted(_GO_ON)
    if as_json:
        click.echo(
            json.dumps(
                {"summary": result.summary.model_dump(mode="json"), "path": str(result.path)}
            )
        )
        return
    for line in _eval_lines(result):
        click.echo(line)


def _side(
    spec: str,
    *,
    suite: Suite | None,
    split: str,
    seed: int,
    common: dict[str, Any],
    llm_config: LLMConfig,
    given: dict[str, Any],
) -> EvalResult:
    """One side of a comparison: a stored eval file read back, or a skill evaluated.

    ``given`` holds the filters the user chose (seed, protocol, model, delivery, split: None
    when not given): a stored file is narrowed by those only, so an error names no filter the
    user never gave. Seed, protocol and split must match (each side has its own protocol);
    model and delivery pick within a file of several, and a file's one evaluation of another
    is compared as stored, with a note: one --model or --delivery is given for both sides,
    which may differ by design (two models, system against progressive).
    """
    from toolkit.evaluate import AmbiguousEvalError, EvalError, load_eval

    if spec.endswith(".jsonl") and not Path(spec).is_file():
        raise EvalError(f"{spec}: no such file (a stored evaluation: evals/<skill>/<split>.jsonl)")
    if spec.endswith(".jsonl"):
        filters = {
            "suite": suite.name if suite else None,
            "seed": given["seed"],
            "protocol": given["protocol"],
        }
        try:
            result = load_eval(spec, **filters)
        except AmbiguousEvalError as exc:
            narrowed = dict(filters)
            if given["model"] is not None:  # several models evaluated into one file
                narrowed["model"] = given["model"]
            # Only where the file's evaluations differ in it: a no-skill file's delivery is
            # 'none' whatever --delivery says (it chooses the other side's).
            if given["delivery"] is not None and len({e.delivery for e in exc.summaries}) > 1:
                narrowed["delivery"] = given["delivery"]
            if narrowed == filters:
                raise  # the message lists the evaluations the file holds
            result = load_eval(spec, **narrowed)
        wanted = given["split"]
        if wanted is not None and result.summary.split != wanted:
            # A stored file is one split's evaluation: --split cannot narrow it, only check.
            raise EvalError(
                f"{spec} holds the {result.summary.split!r} split, not {wanted!r}: "
                f"give evals/<skill>/{wanted}.jsonl, or leave --split out"
            )
        if given["model"] is not None and result.summary.model != given["model"]:
            # The file holds one evaluation: it is compared as stored (--model only picks
            # within a file of several), but these figures are not the asked model's.
            warnings.warn(
                f"{spec} holds an evaluation of {result.summary.model}, not of "
                f"{given['model']} (--model): compared as stored",
                ToolkitNotice,
                stacklevel=2,
            )
        stored, wanted_delivery = result.summary.delivery, given["delivery"]
        if wanted_delivery is not None and stored not in (wanted_delivery, "none"):
            # As with --model; no skill has no delivery to differ in.
            warnings.warn(
                f"{spec} holds an evaluation with delivery {stored}, not {wanted_delivery} "
                "(--delivery): compared as stored",
                ToolkitNotice,
                stacklevel=2,
            )
        return result
    if not suite:
        raise EvalError(f"--suite is required to evaluate {spec!r} (or give stored .jsonl files)")
    return _evaluate(spec, suite=suite, split=split, seed=seed, llm_config=llm_config, **common)


def _protocol_side_option(side: str) -> Any:
    return click.option(
        f"--protocol-{side.lower()}",
        type=click.Choice(["json", "code", "tools", "plain"]),
        help=f"Protocol of side {side} alone (default: --protocol): the one to evaluate it with, "
        "or the one to read from a stored file that holds several.",
    )


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@_common
@_protocol_side_option("A")
@_protocol_side_option("B")
@llm_options
def compare(
    a: str,
    b: str,
    suite: Suite | None,
    split: str,
    limit: int | None,
    seed: int,
    run_dir: Path | None,
    delivery: str,
    protocol: str,
    parallel: int | None,
    resamples: int,
    reuse: tuple[Path, ...],
    no_progress: bool,
    as_json: bool,
    protocol_a: str | None,
    protocol_b: str | None,
    llm_config: LLMConfig,
) -> None:
    """Compare condition B with condition A on the same tasks and seeds (paired).

    A and B are skill folders, folders as committed in git (REV:PATH), none (no skill), or
    stored eval files (RUN_DIR/evals/<commit>/<split>.jsonl). Skills are evaluated first
    (finished tasks reused). Tasks are paired by (task id, seed); tasks in only one side are
    dropped and counted. Prints B - A with a paired bootstrap 95% CI, the exact McNemar
    p-value (the exact paired permutation test for pass/fail outcomes), the discordant
    counts and the tasks that flipped (the first 20 each way; --json has every pair's
    outcome). A stored file holding several evaluations is narrowed by --seed, --protocol
    (or --protocol-a/--protocol-b, one per side), --model and --delivery (a file of one
    evaluation of another model or delivery is compared as stored, with a note saying so;
    a no-skill evaluation has no delivery to check).

    \b
    Examples:
      trace2skill compare none skills/gsm8k-math --suite gsm8k --split test --limit 50
      trace2skill compare skills/v1 skills/v2 --suite wikitq --limit 20 --run-dir runs/ab
      trace2skill compare HEAD~1:skills/gsm8k-math skills/gsm8k-math --suite gsm8k --limit 50
      trace2skill compare runs/ab/evals/none/test.jsonl runs/ab/evals/4b1c.../test.jsonl
      trace2skill compare runs/p/evals/none/test.jsonl runs/p/evals/none/test.jsonl \\
        --protocol-a plain --protocol-b code
    """
    from toolkit.evaluate import pair_results

    ctx = click.get_current_context()

    def chosen(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)

    for spec, own in ((a, protocol_a), (b, protocol_b)):
        if suite and not spec.endswith(".jsonl"):  # refused before A's evaluation, not after
            suite.check_protocol(own or protocol)
    # A stored file may hold several evaluations: only what the user chose narrows it (the
    # defaults, seed 0 and the embedded model, would pick one the user never asked for).
    model = ctx.params.get("model") or os.environ.get("TRACE2SKILL_MODEL")
    results = []
    for spec, own in ((a, protocol_a), (b, protocol_b)):
        side_protocol = own or protocol
        common = {
            "limit": limit,
            "run_dir": run_dir,
            "delivery": delivery,
            "protocol": side_protocol,
            "parallel": parallel,
            "resamples": resamples,
            "no_progress": no_progress,
            "reuse": reuse,
        }
        given = {
            "seed": seed if chosen("seed") else None,
            "protocol": side_protocol if own or chosen("protocol") else None,
            "model": llm_config.model if model else None,
            "delivery": delivery if chosen("delivery") else None,
            "split": split if chosen("split") else None,
        }
        try:
            side = _side(
                spec,
                suite=suite,
                split=split,
                seed=seed,
                common=common,
                llm_config=llm_config,
                given=given,
            )
        except KeyboardInterrupt:
            # compare said a bare "Interrupted." where eval said how to go on.
            interrupted(_GO_ON)
        results.append(side)
    result_a, result_b = results
    comparison = pair_results(result_a, result_b, resamples=resamples, seed=seed)
    if as_json:
        click.echo(comparison.model_dump_json())
        return
    for line in _compare_lines(comparison):
        click.echo(line)


COMMANDS: list[click.Command] = [eval_cmd, compare]
