"""evolve end to end with the fake model: wall time per stage and the toolkit's share of it.

64 WikiTQ evolve tasks and 64 test tasks (the full data in ../shared/data, or
$TRACE2SKILL_DATA_DIR), the fake model answering every call after 200 ms and playing every
role (tests/evolve_helpers.py): the agent runs one python step on the table in the sandbox,
then submits (half the tasks wrongly with S0, so 32 failures reach the agentic error
analyst; rightly once the skill holds a lesson, so S* gains them on the test split),
the analyst checks a fix with the verifier and writes a one-edit patch, the merge operator
keeps every input edit. Everything else is the real toolkit: sandbox, gateway, git store,
patch engine, consolidation, evaluation, bundle.

The toolkit's share of a stage is the part of its wall time during which no model call was
in flight (the union of the call intervals in llm_calls.jsonl, clipped to the stage), so it is
what the toolkit alone costs on the critical path.

Usage:
    .venv/bin/python benchmarks/evolve.py [--evolve 64] [--test 64] [--latency 0.2]
        [--parallel 16]

The last line is one JSON object: ``wall_s``, ``stage_s`` (wall seconds per stage),
``toolkit_share`` (whole run) and ``stage_toolkit_share``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.evolve_helpers: the fake model's script

from tests.evolve_helpers import method_script  # noqa: E402
from toolkit.evolve import STAGES, EvolveConfig, evolve  # noqa: E402
from toolkit.llm import LLMConfig, fake_model, read_calls  # noqa: E402
from toolkit.tasks import get_suite  # noqa: E402


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi]."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0.0, lo
    for a, b in clipped:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evolve", type=int, default=64)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--parallel", type=int, default=16)
    args = parser.parse_args()

    data = Path(os.environ.get("TRACE2SKILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (data / "wikitablequestions").is_dir():
        data = Path("/work/shared/data")
    suite = get_suite("wikitq", data_dir=data)
    train = suite.load("train", limit=args.evolve, seed=0).tasks
    test = suite.load("test", limit=args.test, seed=0).tasks
    gold = {t.id: t for t in [*train, *test]}
    # Half the tasks fail with S0; the agent gets them right once its skill holds a lesson.
    wrong = {t.id for t in [*train[::2], *test[::2]]}

    with tempfile.TemporaryDirectory(prefix="t2s-bench-evolve-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(ROOT / "skills" / "wikitq-table-qa", repo / "skills" / "wikitq-table-qa")
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "add", ".")
        _git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "skill")
        marks: list[tuple[str, float]] = []
        script = method_script(gold, wrong, python_step=True)
        with fake_model(script, latency=args.latency, name="bench-evolve") as model:
            config = EvolveConfig(
                run_id="bench",
                runs_dir=Path(tmp) / "runs",
                skill=repo / "skills" / "wikitq-table-qa",
                suite="wikitq",
                data=data,
                model=model,
                evolve_limit=args.evolve,
                test_limit=args.test,
                parallel=args.parallel,
            )
            llm = LLMConfig(model=model, cache=False, cache_dir=Path(tmp) / "cache",
                            concurrency=args.parallel)  # fmt: skip

            def mark(line: str) -> None:
                # "[k/n] stage" lines only: the first line is "run <id> in <folder>"
                if line.startswith("["):
                    marks.append((line.split()[-1], time.time()))

            t0 = time.time()
            summary = evolve(config, llm_config=llm, progress=False, echo=mark)
            t_end = time.time()
        calls = read_calls(config.run_dir / "llm_calls.jsonl")
        intervals = [(c.started_at, c.ended_at) for c in calls]
        bounds = [*marks, ("end", t_end)]
        stage_s, stage_share = {}, {}
        for (name, start), (_next, stop) in zip(bounds, bounds[1:], strict=False):
            wall = stop - start
            stage_s[name] = round(wall, 3)
            stage_share[name] = round(1 - _union(intervals, start, stop) / wall, 3) if wall else 0
        wall_s = t_end - t0
        share = 1 - _union(intervals, t0, t_end) / wall_s
        print(f"evolve {args.evolve} + test {args.test} tasks, fake model at {args.latency}s, "
              f"parallel {args.parallel}: {wall_s:.1f} s, {len(calls)} model calls")  # fmt: skip
        print(f"  analyses kept {summary.analyses}, merges {summary.merges}, "
              f"S0 {summary.s0.passed}/{summary.s0.n}, S* {summary.result.passed}/"
              f"{summary.result.n}")  # fmt: skip
        for name in STAGES:
            if name in stage_s:
                print(f"  {name:<12} {stage_s[name]:>8.2f} s  toolkit share "
                      f"{stage_share[name]:.2f}")  # fmt: skip
        print(json.dumps({
            "wall_s": round(wall_s, 3),
            "stage_s": stage_s,
            "toolkit_share": round(share, 3),
            "stage_toolkit_share": stage_share,
            "calls": len(calls),
            "evolve_tasks": args.evolve,
            "test_tasks": args.test,
            "latency_s": args.latency,
            "parallel": args.parallel,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
