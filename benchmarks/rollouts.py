"""Rollout throughput: our agent + sandbox + gateway vs bare litellm calls, same fake model.

256 rollouts of 4 steps (3 python steps, each running a snippet in the sandbox, then submit)
with the fake model at 200 ms per call, 32 at once. The baseline, in the same process, replays
every litellm request our stack made (same messages, same parameters) as bare
``litellm.acompletion`` calls: 4 per rollout, sequential within a rollout, 32 rollouts at once,
through the same fake provider. So the ratio prices what the agent loop, the sandbox and the
gateway add on top of the model calls themselves.

Two workloads: ``small`` (the issue's "small snippet": read the task's table file and count
its lines) gives ``throughput_ratio`` and ``parallel_efficiency``; ``pandas`` (read_csv, filter
and groupby on the 100-row table, ~1.5 ms of CPU per call) gives ``throughput_ratio_pandas``
and ``parallel_efficiency_pandas``. With 32 snippets landing at once on few cores the pandas
run is bound by CPU, not by our overhead. Also the median wall time of one pandas tool call
(100-row table, after warm-up): ``python_tool_median_ms``.

Usage:
    .venv/bin/python benchmarks/rollouts.py [--rollouts 256] [--concurrency 32] [--latency 0.2]
        [--repeat 5]

The last line is one JSON object, medians over the repeats: ``throughput_ratio`` (ours /
bare, target >= 0.9), ``parallel_efficiency`` (ours / the ideal concurrency / (4 * latency)
rollouts/s), ``python_tool_median_ms`` (target < 100), and the two ``_pandas`` figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from toolkit.agent import AgentConfig  # noqa: E402
from toolkit.llm import LLMConfig, fake_model, get_litellm  # noqa: E402
from toolkit.rollout import arun_rollouts  # noqa: E402
from toolkit.sandbox import SandboxConfig, SandboxDegradedWarning, SandboxPool  # noqa: E402
from toolkit.tasks import Score, Suite, Task, TaskFile  # noqa: E402
from toolkit.trajectory import read_trajectories  # noqa: E402

STEPS = 4
ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = {
    "small": "rows = open('table.csv').read().splitlines()\nprint(len(rows))",
    "pandas": (
        "import pandas as pd\n"
        "df = pd.read_csv('table.csv')\n"
        "print(df[df.value > 50].groupby('group').value.sum().to_dict())"
    ),
}


def table(seed: int, rows: int = 100) -> str:
    lines = ["id,group,value"]
    lines += [f"{i},{'abcd'[(i * 7 + seed) % 4]},{(i * 37 + seed) % 100}" for i in range(rows)]
    return "\n".join(lines) + "\n"


class BenchSuite(Suite):
    """N synthetic tasks, each with a 100-row table.csv."""

    name = "bench"
    splits = ("all",)

    def __init__(self, n: int) -> None:
        self.n = n

    def iter_rows(self) -> Iterator[tuple[str, int, Any]]:
        for i in range(self.n):
            yield "bench", i + 1, {"id": f"bench-{i}"}

    def parse_row(self, raw: Any) -> Task:
        seed = int(raw["id"].split("-")[1])
        return Task(
            id=raw["id"],
            suite=self.name,
            split="all",
            question=f"Task {raw['id']}: sum of values over 50 per group?",
            answers=["ok"],
            files=[TaskFile(path="table.csv", text=table(seed))],
        )

    def source_files(self) -> list[Path]:
        return []

    def score(self, task: Task, answer: object) -> Score:
        ok = answer == "ok"
        return Score(passed=ok, value=float(ok), details="bench")

    def summarise(self, task: Task) -> str:
        return task.question + "\nThe table is in table.csv (100 rows)."


def make_script(snippet: str) -> Any:
    """The fake model's script: STEPS - 1 python steps running ``snippet``, then submit."""

    def script(messages: list[dict[str, Any]]) -> dict[str, Any]:
        step = sum(m["role"] == "assistant" for m in messages)
        if step < STEPS - 1:
            # A different comment per step: the agent forces submit after a repeated step.
            code = f"{snippet}  # step {step}"
            return {"thought": "look", "tool": "python", "args": {"code": code}}
        return {"thought": "done", "tool": "submit", "args": {"answer": "ok"}}

    return script


async def ours(args: argparse.Namespace, pool: SandboxPool, model: str, run_dir: Path) -> float:
    t0 = time.perf_counter()
    summary = await arun_rollouts(
        BenchSuite(args.rollouts),
        "all",
        None,
        model,
        run_dir=run_dir,
        concurrency=args.concurrency,
        progress=False,
        agent_config=AgentConfig(max_turns=STEPS),
        llm_config=LLMConfig(model=model, cache=False, concurrency=args.concurrency),
        sandbox_pool=pool,
    )
    wall = time.perf_counter() - t0
    assert summary.passed == args.rollouts, summary
    steps = {len(t.steps) for t in read_trajectories(run_dir).records}
    assert steps == {STEPS}, steps
    return wall


class Recorder:
    """Records the litellm requests our stack makes, so the baseline can replay them."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._litellm = get_litellm()
        self._original = self._litellm.acompletion

    async def _spy(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        return await self._original(**kwargs)

    def __enter__(self) -> Recorder:
        self._litellm.acompletion = self._spy
        return self

    def __exit__(self, *exc: object) -> None:
        self._litellm.acompletion = self._original


async def bare(
    args: argparse.Namespace, model: str, requests: list[dict[str, Any]] | None = None
) -> float:
    """Bare ``litellm.acompletion`` calls, STEPS per rollout, ``concurrency`` rollouts at once.

    With ``requests`` (recorded from our run) each call replays one of our requests, same
    messages and parameters; without, each sends a two-message minimal request.
    """
    litellm = get_litellm()
    sem = asyncio.Semaphore(args.concurrency)
    minimal = {
        "model": model,
        "messages": [{"role": "system", "content": "bench"}, {"role": "user", "content": "go"}],
    }
    calls = requests or [minimal] * (args.rollouts * STEPS)

    async def rollout(index: int) -> None:
        async with sem:
            for step in range(STEPS):
                await litellm.acompletion(**calls[(index * STEPS + step) % len(calls)])

    t0 = time.perf_counter()
    await asyncio.gather(*(rollout(i) for i in range(args.rollouts)))
    return time.perf_counter() - t0


async def python_tool_ms(pool: SandboxPool, repeats: int = 60) -> float:
    async with pool.session({"table.csv": table(1)}) as session:
        for _ in range(5):  # warm-up: pandas' first read_csv and groupby
            await session.run(SNIPPETS["pandas"])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = await session.run(SNIPPETS["pandas"])
            times.append((time.perf_counter() - t0) * 1000)
            assert result.ok, result.render()
    return statistics.median(times)


async def workload(
    args: argparse.Namespace, pool: SandboxPool, name: str
) -> list[tuple[float, float]]:
    """``--repeat`` pairs of (our rollouts, the bare replay of their requests) wall times."""
    walls = []
    with (
        fake_model(make_script(SNIPPETS[name]), latency=args.latency) as model,
        tempfile.TemporaryDirectory() as tmp,
    ):
        # Warm-up: litellm's first call and the agent's code paths.
        warm = argparse.Namespace(**{**vars(args), "rollouts": args.concurrency})
        await ours(warm, pool, model, Path(tmp) / "warm")
        await bare(warm, model)
        for attempt in range(args.repeat):
            # Each side starts with no garbage left by the other: a full collection walks the
            # whole heap (litellm's included) and stalls the loop for ~250 ms.
            gc.collect()
            with Recorder() as recorder:
                ours_s = await ours(args, pool, model, Path(tmp) / f"run-{attempt}")
            gc.collect()
            bare_s = await bare(args, model, recorder.requests)
            walls.append((ours_s, bare_s))
            print(
                f"{name} #{attempt + 1}: ours {args.rollouts} rollouts in {ours_s:.2f} s"
                f" = {args.rollouts / ours_s:.1f}/s; bare litellm replay of the same"
                f" {len(recorder.requests)} requests {bare_s:.2f} s"
                f" = {args.rollouts / bare_s:.1f}/s; ratio {bare_s / ours_s:.3f}"
            )
    return walls


async def main(args: argparse.Namespace) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)
        pool = SandboxPool(size=args.concurrency, config=SandboxConfig())
        t0 = time.perf_counter()
        await pool.start()
    print(f"sandbox pool of {args.concurrency} started in {time.perf_counter() - t0:.1f} s")
    try:
        tool_ms = await python_tool_ms(pool)
        walls = {name: await workload(args, pool, name) for name in SNIPPETS}
    finally:
        await pool.close()
    ideal = args.concurrency / (STEPS * args.latency)
    print(f"ideal: {ideal:.1f} rollouts/s; pandas python tool median {tool_ms:.1f} ms")
    figures = {}
    for name, pairs in walls.items():
        # Medians over the repeats: on shared cores a single run swings by +-0.05.
        suffix = "" if name == "small" else f"_{name}"
        ratio = statistics.median(bare_s / ours_s for ours_s, bare_s in pairs)
        efficiency = statistics.median(args.rollouts / ours_s / ideal for ours_s, _ in pairs)
        figures[f"throughput_ratio{suffix}"] = round(ratio, 3)
        figures[f"parallel_efficiency{suffix}"] = round(efficiency, 3)
    figures["python_tool_median_ms"] = round(tool_ms, 2)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument(
        "--repeat", type=int, default=5, help="measured runs per workload (medians reported)"
    )
    figures = asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    print(json.dumps(figures))
