"""Consolidation: LLM rounds on the critical path and the toolkit's share of wall time.

The wikitq-table-qa skill is committed in a scratch repository and snapshotted as a run's
base. One simulated analyst round sends N analyst calls at once through the gateway (the
fake model at 200 ms; each reply is one leaf patch: a lesson appended to one of the skill's
sections, drawn from 32 distinct lessons so recurring lessons pool); the leaves are checked,
saved and committed as the analysts stage would. Then the consolidation stage merges them
with B=8 through the same fake model (a merge operator that keeps each unique lesson once,
citing it), so every group has git conflicts and goes to the model.

From ``llm_calls.jsonl``: ``llm_rounds`` is the longest chain of calls where each starts
after the previous one ended (the sequential model rounds on the critical path), which must
equal ``expected_rounds`` = 1 analyst round + ceil(log_B N) merge levels; ``toolkit_share``
is the part of the wall time (from the first analyst call to S*) when no model call was in
flight: git, guardrails, records, scheduling. The phases are shown too: the analyst round,
checking and committing the 256 leaves (the analysts stage's share), and the consolidation
alone with its own toolkit share.

Usage:
    .venv/bin/python benchmarks/consolidation.py [--leaves 256] [--batch 8] [--latency 0.2]

Last line: one JSON object with ``llm_rounds``, ``expected_rounds``, ``wall_s``,
``toolkit_share`` and details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from toolkit.consolidate import (  # noqa: E402
    ConsolidateConfig,
    LeafInput,
    MergeReply,
    arun_consolidation,
    parse_pool_from_prompt,
    write_leaf_patches,
)
from toolkit.llm import Gateway, LLMConfig, fake_model, read_calls  # noqa: E402
from toolkit.patch import Patch  # noqa: E402
from toolkit.repo import SkillRepo  # noqa: E402
from toolkit.rollout import update_stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SKILL = "skills/wikitq-table-qa"
SECTIONS = ["Workflow", "Loading the table", "Turning cells into numbers", "Pitfalls"]
LESSONS = 32
TS = 1_767_225_600


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _analyst(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The fake analyst: trajectory k -> one lesson (k mod 32) in one of four sections."""
    k = int(str(messages[-1]["content"]).rsplit(" ", 1)[1])
    n = k % LESSONS
    edit = {
        "file": "SKILL.md",
        "op": "append_to_section",
        "target_section": SECTIONS[n % len(SECTIONS)],
        "content": f"- Lesson {n}: check the case that tripped trajectory family {n}.",
    }
    return {"reasoning": f"trajectory {k}", "edits": [edit], "changelog_entries": [f"lesson {n}"]}


def _merger(messages: list[dict[str, Any]]) -> MergeReply:
    pool = parse_pool_from_prompt(messages)
    edits = [
        {**{k: v for k, v in e.items() if k not in ("id", "support")}, "cited": [e["id"]]}
        for e in pool
    ]
    return MergeReply.model_validate(
        {"reasoning": "each lesson once", "edits": edits, "changelog_entries": ["Merge lessons"]}
    )


def _critical_path(intervals: list[tuple[float, float]]) -> int:
    """Longest chain of calls each starting after the previous one ended."""
    ordered = sorted(intervals, key=lambda iv: iv[1])
    best: list[int] = []
    for i, (start, _) in enumerate(ordered):
        before = [best[j] for j in range(i) if ordered[j][1] <= start]
        best.append(1 + max(before, default=0))
    return max(best, default=0)


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Total time covered by at least one call."""
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


async def _run(work: Path, leaves: int, batch: int, latency: float) -> dict[str, Any]:
    root = work / "user"
    (root / "skills").mkdir(parents=True)
    shutil.copytree(ROOT / SKILL, root / SKILL)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "-c", "user.name=b", "-c", "user.email=b@x", "add", ".")
    _git(root, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "skill")
    repo = SkillRepo.open(root)
    run_dir = work / "runs" / "bench"
    repo.snapshot_base("bench", root / SKILL, timestamp=TS)
    update_stage(run_dir, "analyse", status="done", config={"repo": str(root), "skill_path": SKILL})
    calls = run_dir / "llm_calls.jsonl"
    config = LLMConfig(cache=False, concurrency=max(leaves, 8), calls_log=calls, retry_base_delay=0)
    with (
        fake_model(_analyst, latency=latency) as analyst,
        fake_model(_merger, latency=latency) as merger,
    ):
        gateway = Gateway(config.model_copy(update={"model": str(analyst)}))
        started = time.time()
        # the analyst round: every trajectory at once through the gateway
        replies = await asyncio.gather(
            *(
                gateway.acomplete(f"Analyse trajectory {k}", model=analyst, response_model=Patch)
                for k in range(leaves)
            )
        )
        inputs = [
            LeafInput(patch=p, trajectory=f"traj-{k}", outcome="fail", analyst="error-single")
            for k, p in enumerate(replies)
        ]
        analysed = time.time()
        write_leaf_patches(repo, "bench", SKILL, run_dir, inputs, timestamp=TS)
        committed = time.time()
        summary = await arun_consolidation(
            run_dir,
            ConsolidateConfig(merge_batch=batch, author_model=str(merger), progress=False),
            gateway=gateway,
        )
        wall = time.time() - started
        gateway.close()
    intervals = [(r.started_at, r.ended_at) for r in read_calls(calls)]
    busy = _busy(intervals)
    merge_busy = _busy([iv for iv in intervals if iv[0] >= committed])
    n = len(inputs)
    return {
        "llm_rounds": _critical_path(intervals),
        "expected_rounds": 1 + math.ceil(math.log(n, batch) - 1e-9),
        "wall_s": round(wall, 3),
        "toolkit_share": round(1 - busy / wall, 4),
        "leaves": n,
        "analyst_calls": leaves,
        "merge_calls": summary.llm_calls,
        "levels": summary.levels,
        "groups": summary.groups,
        "final_edits": summary.final_edits,
        "final_support": summary.final_support,
        "analyst_round_s": round(analysed - started, 3),
        "leaf_commits_s": round(committed - analysed, 3),
        "consolidate_wall_s": round(wall - (committed - started), 3),
        "consolidate_toolkit_share": round(1 - merge_busy / (wall - (committed - started)), 4),
        "latency_s": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--leaves", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="t2s-consolidation-") as tmp:
        result = asyncio.run(_run(Path(tmp), args.leaves, args.batch, args.latency))
    for key, value in result.items():
        print(f"{key:>20}: {value}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
