"""Benchmark the agent protocols against the model's own level, and time per task against the
machine's limit.

Conditions, each an evaluation in its own run folder `RUNS/<suite>-<protocol>-<skill>`:
suites gsm8k and wikitq (test split), protocols json / code / tools and the `plain` condition
(one answer, no tools: the model's own level), with no skill and with S0 (the bundled skill of
the suite, `skills/gsm8k-math`, `skills/wikitq-table-qa`; plain runs without a skill only).
Pass rates come from the stored eval files, so the table prints in seconds once the
evaluations exist; `--run` runs the missing ones (finished tasks are reused: an interrupted
run resumes). Each suite's best protocol is compared with `plain` on the tasks both ran
(paired bootstrap CI, McNemar p).

Time per task against the limit (`--speed-tasks N`, default 8; 0 skips it): the best protocol
runs N fresh GSM8K tasks with the response cache off, with `--parallel 1` and `--parallel 4`.
The limit of one task is its new prompt tokens at prompt speed plus its generated tokens at
generation speed, both speeds measured in the same run (1,000-token prompt, 128 generated
tokens); a step's new prompt tokens are its prompt minus the previous step's prompt and reply
(the conversation so far), all of the first step's prompt. The ratio is the tasks' wall
seconds over the sum of their limits.

Last line: one JSON object with gsm8k_best, gsm8k_plain, wtq_best, wtq_plain (pass rates with
no skill), s_per_task_best, s_per_task_json (mean seconds per fresh task, GSM8K, no skill),
limit_ratio_p1, limit_ratio_p4, plus the whole table under "conditions".

    python benchmarks/agent_protocols.py --runs-dir runs/protocols            # the table
    python benchmarks/agent_protocols.py --runs-dir runs/protocols --run --limit 100
    python benchmarks/agent_protocols.py --runs-dir runs/protocols --protocols plain,code \\
        --skills none --limit 30 --run --speed-tasks 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toolkit.agent import AgentConfig  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402
from toolkit.evaluate import (  # noqa: E402
    EvalResult,
    eval_trajectories_path,
    evaluate,
    load_eval,
    pair_results,
)
from toolkit.llm import model_store  # noqa: E402
from toolkit.llm.config import LLMConfig  # noqa: E402
from toolkit.trajectory import read_trajectories  # noqa: E402

SUITES = {"gsm8k": "skills/gsm8k-math", "wikitq": "skills/wikitq-table-qa"}
PROTOCOLS = ("json", "code", "tools", "plain")
REPO = Path(__file__).resolve().parent.parent


def run_dir(runs: Path, suite: str, protocol: str, skill: str) -> Path:
    return runs / f"{suite}-{protocol}-{skill}"


def stored(folder: Path) -> EvalResult | None:
    """The evaluation stored in a condition's run folder, if any."""
    files = sorted((folder / "evals").glob("*/test.jsonl"))
    if not files:
        return None
    try:
        return load_eval(files[0])
    except ToolkitError as exc:
        print(f"  {folder}: {exc}", file=sys.stderr)
        return None


def run_condition(
    runs: Path, suite: str, protocol: str, skill: str, args: argparse.Namespace
) -> EvalResult:
    print(f"running {suite} {protocol} skill={skill} (limit {args.limit})", file=sys.stderr)
    return evaluate(
        "none" if skill == "none" else str(REPO / SUITES[suite]),
        suite,
        "test",
        args.model,
        run_dir=run_dir(runs, suite, protocol, skill),
        limit=args.limit,
        concurrency=1,
        data_dir=args.data_dir,
        progress=True,
        agent_config=AgentConfig(protocol=protocol),
    )


def task_seconds(result: EvalResult | None) -> float | None:
    """Mean wall seconds per task, over the tasks with no cached reply when there are any
    (a replayed reply costs nothing, so those tasks would flatter the protocol)."""
    if result is None:
        return None
    fresh = result.summary.seconds_per_fresh_task
    if fresh is None and result.summary.cached_tasks:
        return None  # every task replayed from the response cache: no time was measured
    return round(fresh if fresh is not None else result.seconds_per_task, 1)


def task_limit_s(steps: list[Any], prompt_tok_s: float, gen_tok_s: float) -> float:
    """New prompt tokens at prompt speed plus generated tokens at generation speed."""
    total = 0.0
    previous = 0
    for step in steps:
        if step.tokens_in is None or step.tokens_out is None:
            continue  # the server reported no counts: nothing to time them by
        if step.tokens_in == 0 and step.tokens_out == 0:
            continue  # no model call (a cached or a harness step)
        new = (
            step.tokens_in - previous if previous and step.tokens_in > previous else step.tokens_in
        )
        total += new / prompt_tok_s + step.tokens_out / gen_tok_s
        previous = step.tokens_in + step.tokens_out
    return total


def limit_ratio(
    protocol: str, parallel: int, tasks: int, speeds: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Run `tasks` fresh GSM8K tasks (no response cache); wall seconds over their limits."""
    with tempfile.TemporaryDirectory(prefix="t2s-limit-") as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        result = evaluate(
            "none",
            "gsm8k",
            "test",
            args.model,
            run_dir=run,
            seed=args.speed_seed,
            limit=tasks,
            concurrency=parallel,
            data_dir=args.data_dir,
            progress=True,
            llm_config=LLMConfig.from_env().model_copy(update={"cache": False}),
            agent_config=AgentConfig(protocol=protocol),
        )
        wall = time.perf_counter() - started
        by_id = {t.id: t for t in read_trajectories(eval_trajectories_path(run)).records}
    limits = [
        task_limit_s(by_id[r.trajectory_id].steps, speeds["prompt_tok_s"], speeds["gen_tok_s"])
        for r in result.records
    ]
    task_s = [r.seconds for r in result.records]
    return {
        "parallel": parallel,
        "tasks": len(task_s),
        "wall_s": round(wall, 1),
        "task_s_sum": round(sum(task_s), 1),
        "limit_s_sum": round(sum(limits), 1),
        # With --parallel > 1 tasks overlap: compare the run's wall time with the summed limit.
        "ratio": round((wall if parallel > 1 else sum(task_s)) / sum(limits), 3),
        "passed": sum(r.passed for r in result.records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/protocols"))
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--data-dir", default=None, help="Data root (default: the suite's).")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--skills", default="none,s0", help="none, s0 or both.")
    parser.add_argument("--limit", type=int, default=100, help="Tasks per condition (--run).")
    parser.add_argument("--run", action="store_true", help="Run the missing evaluations.")
    parser.add_argument(
        "--min-n", type=int, default=10, help="Fewest tasks for a protocol to rank as best."
    )
    parser.add_argument("--speed-tasks", type=int, default=8)
    parser.add_argument("--speed-seed", type=int, default=1, help="Task subset of the timing.")
    parser.add_argument("--speed-protocol", default=None, help="Default: the best protocol.")
    args = parser.parse_args()

    runs: Path = args.runs_dir
    table: list[dict[str, Any]] = []
    results: dict[tuple[str, str, str], EvalResult] = {}
    for suite in args.suites.split(","):
        for protocol in args.protocols.split(","):
            for skill in args.skills.split(","):
                if protocol == "plain" and skill != "none":
                    continue  # plain is the model alone: no tools, no skill
                folder = run_dir(runs, suite, protocol, skill)
                result = stored(folder)
                if args.run and (result is None or result.n < args.limit):
                    result = run_condition(runs, suite, protocol, skill, args)
                if result is None:
                    continue
                results[(suite, protocol, skill)] = result
                table.append(
                    {
                        "suite": suite,
                        "protocol": protocol,
                        "skill": skill,
                        "n": result.n,
                        "pass_rate": round(result.rate or 0.0, 3),
                        "ci": [round(x, 3) for x in result.ci],
                        "s_per_task": task_seconds(result),
                        "tokens_per_task": (
                            None
                            if result.tokens_per_task is None
                            else round(result.tokens_per_task)
                        ),
                    }
                )

    print(f"{'suite':8} {'protocol':8} {'skill':5} {'n':>4} {'pass':>6}  95% CI         s/task")
    for row in table:
        low, high = row["ci"]
        print(
            f"{row['suite']:8} {row['protocol']:8} {row['skill']:5} {row['n']:>4} "
            f"{row['pass_rate']:>6.3f}  [{low:.3f}, {high:.3f}]  "
            + (f"{row['s_per_task']:>6.1f}" if row["s_per_task"] is not None else "  (replayed)")
        )

    figures: dict[str, Any] = {}
    best_overall: dict[str, float] = {}
    for suite, key in (("gsm8k", "gsm8k"), ("wikitq", "wtq")):
        tools = {
            p: r
            for (s, p, k), r in results.items()
            if s == suite and k == "none" and p != "plain" and r.n >= args.min_n
        }
        plain = results.get((suite, "plain", "none"))
        figures[f"{key}_plain"] = plain.rate if plain else None
        if not tools:
            figures[f"{key}_best"] = None
            continue
        best = max(tools, key=lambda p: (tools[p].rate or 0.0, -tools[p].seconds_per_task))
        figures[f"{key}_best"] = tools[best].rate
        figures[f"{key}_best_protocol"] = best
        for protocol, result in tools.items():
            best_overall[protocol] = best_overall.get(protocol, 0.0) + (result.rate or 0.0)
        if plain is not None:
            paired = pair_results(plain, tools[best]).paired
            figures[f"{key}_best_minus_plain"] = {
                "n": paired.n,
                "difference": paired.difference,
                "ci": [paired.ci.low, paired.ci.high],
                "p_value": paired.p_value,
            }
            print(
                f"{suite}: best protocol {best} {tools[best].rate:.3f} vs plain {plain.rate:.3f} "
                f"on {paired.n} shared tasks: {paired.difference:+.3f} "
                f"[{paired.ci.low:+.3f}, {paired.ci.high:+.3f}], McNemar p {paired.p_value:.3f}"
            )
        for skill_key in ("s0",):
            with_skill = results.get((suite, best, skill_key))
            if with_skill is not None:
                s0_s, none_s = task_seconds(with_skill), task_seconds(tools[best])
                if s0_s is not None and none_s:
                    figures[f"{key}_s0_time_ratio"] = round(s0_s / none_s, 2)

    gsm = {p: r for (s, p, k), r in results.items() if s == "gsm8k" and k == "none"}
    best_protocol = args.speed_protocol or (
        max(best_overall, key=best_overall.__getitem__) if best_overall else "code"
    )
    figures["best_protocol"] = best_protocol
    figures["s_per_task_best"] = task_seconds(gsm.get(best_protocol))
    figures["s_per_task_json"] = task_seconds(gsm.get("json"))

    if args.speed_tasks > 0:
        from local_model import speed

        speeds = speed(model_store.resolve(args.model.split("/", 1)[1]), None)
        print(f"speeds: {speeds}", file=sys.stderr)
        figures["speeds"] = speeds
        for parallel in (1, 4):
            timing = limit_ratio(best_protocol, parallel, args.speed_tasks, speeds, args)
            print(f"limit --parallel {parallel}: {timing}", file=sys.stderr)
            figures[f"limit_ratio_p{parallel}"] = timing["ratio"]
            figures[f"limit_p{parallel}"] = timing
    else:
        figures["limit_ratio_p1"] = figures["limit_ratio_p4"] = None
    figures["conditions"] = table
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
