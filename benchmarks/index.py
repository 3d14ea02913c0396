"""Benchmark the run index against DuckDB's own read of the same JSONL files.

Workload: N synthetic trajectories of 10 steps each (seeded RNG, 3 section uses each), spread
over 10 run folders with one LLM call record per step, written with the toolkit's own models.

Figures:
- ``build_s``: a cold ``build_index`` (parse with pydantic, write Parquet per run).
- ``duckdb_read_s``: DuckDB alone materialising the same files (``read_json`` of every
  ``trajectories.jsonl`` and ``llm_calls.jsonl`` into tables, steps unnested): the physical
  limit DESIGN section 8 names.
- ``ratio``: build_s / duckdb_read_s.
- ``reindex_s``: ``build_index`` again with nothing changed (reads no run).
- ``max_query_ms``: the slowest of the ready-made queries (plus a join over steps) on
  ``connect()`` views.

Usage: ``python benchmarks/index.py [--trajectories N] [--runs R] [--seed S]``.
The last line of output is one JSON object:
``{"trajectories": N, "build_s": ..., "duckdb_read_s": ..., "ratio": ..., "reindex_s": ...,
"max_query_ms": ...}``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import duckdb

from toolkit.index import build_index, connect
from toolkit.llm.calls import LLMCallRecord
from toolkit.queries import cost_by_model, flipped_tasks, pass_rate_by_skill, section_usage
from toolkit.rollout import Manifest
from toolkit.trajectory import Action, SectionUse, Step, Trajectory, Verdict

STEPS = 10
COMMITS = ["a" * 40, "b" * 40, "none"]
MODELS = ["fake/small", "fake/large"]


def write_runs(runs: Path, n: int, n_runs: int, seed: int) -> None:
    """Write ``n`` trajectories over ``n_runs`` run folders (one JSONL write per file)."""
    rng = random.Random(seed)
    for r in range(n_runs):
        run = runs / f"run{r:03d}"
        run.mkdir(parents=True)
        (run / "manifest.json").write_text(
            Manifest(
                run_id=run.name, created_at="2026-12-05T00:00:00+00:00", toolkit_version="0"
            ).model_dump_json()
        )
        lines, calls = [], []
        for i in range(r, n, n_runs):
            model = MODELS[i % 2]
            steps = []
            for s in range(STEPS):
                call_id = f"{r}-{i}-{s}"
                latency = rng.uniform(0.1, 3.0)
                steps.append(
                    Step(
                        index=s,
                        thought="think " * 20,
                        action=Action(tool="python", args={"code": f"print({i} * {s})"}),
                        observation=str(i * s) * 10,
                        tokens_in=rng.randint(200, 2000),
                        tokens_out=rng.randint(10, 200),
                        latency_s=latency,
                        call_id=call_id,
                    )
                )
                calls.append(
                    LLMCallRecord(
                        call_id=call_id,
                        model=model,
                        tokens_in=steps[-1].tokens_in,
                        tokens_out=steps[-1].tokens_out,
                        latency_s=latency,
                        started_at=0.0,
                        ended_at=latency,
                        cache_hit=rng.random() < 0.1,
                    ).model_dump_json()
                )
            commit = COMMITS[i % 3]
            uses = [
                SectionUse(
                    step=rng.randrange(STEPS),
                    kind="read",
                    file="SKILL.md",
                    section_id=f"s{rng.randrange(12)}",
                )
                for _ in range(3)
            ]
            lines.append(
                Trajectory(
                    id=f"{i:016x}",
                    task_id=f"t{i // 3}",
                    suite="bench",
                    split="test",
                    skill_commit=commit,
                    model=model,
                    seed=0,
                    delivery="system",
                    steps=steps,
                    verdict=Verdict(passed=rng.random() < 0.5),
                    section_uses=uses,
                    stop_reason="max_turns",
                ).model_dump_json()
            )
        (run / "trajectories.jsonl").write_text("\n".join(lines) + "\n")
        (run / "llm_calls.jsonl").write_text("\n".join(calls) + "\n")


def duckdb_read(runs: Path) -> float:
    """Seconds DuckDB takes to load the same JSONL into tables (steps unnested)."""
    con = duckdb.connect(":memory:")
    trajectories = str(runs / "*" / "trajectories.jsonl")
    calls = str(runs / "*" / "llm_calls.jsonl")
    start = time.perf_counter()
    con.execute(
        f"CREATE TABLE tr AS SELECT * FROM read_json('{trajectories}', "
        "format = 'newline_delimited', maximum_object_size = 100000000)"
    )
    con.execute("CREATE TABLE st AS SELECT id, unnest(steps, recursive := true) FROM tr")
    con.execute("CREATE TABLE su AS SELECT id, unnest(section_uses, recursive := true) FROM tr")
    con.execute(
        f"CREATE TABLE ca AS SELECT * FROM read_json('{calls}', format = 'newline_delimited')"
    )
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def query_ms(runs: Path) -> dict[str, float]:
    """Milliseconds of each ready-made query on fresh ``connect()`` views."""
    queries = {
        "pass_rate_by_skill": lambda con: pass_rate_by_skill(con),
        "flipped_tasks": lambda con: flipped_tasks(con, COMMITS[0], COMMITS[1]),
        "section_usage": section_usage,
        "cost_by_model": cost_by_model,
        "steps_join": lambda con: con.execute(
            "SELECT t.skill_commit, avg(s.latency_s) FROM steps s JOIN trajectories t "
            "ON s.run_id = t.run_id AND s.trajectory_id = t.id GROUP BY 1"
        ).fetchall(),
    }
    out = {}
    with connect(runs) as con:
        for name, query in queries.items():
            start = time.perf_counter()
            query(con)
            out[name] = round((time.perf_counter() - start) * 1000, 1)
    return out


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        write_runs(runs, args.trajectories, args.runs, args.seed)
        size = sum(p.stat().st_size for p in runs.rglob("*.jsonl"))
        print(
            f"{args.trajectories} trajectories x {STEPS} steps in {args.runs} runs, "
            f"{size / 1e6:.1f} MB of JSONL"
        )
        duckdb_s = duckdb_read(runs)
        start = time.perf_counter()
        report = build_index(runs)
        build_s = time.perf_counter() - start
        assert len(report.read) == args.runs and not report.problems
        start = time.perf_counter()
        again = build_index(runs)
        reindex_s = time.perf_counter() - start
        assert again.read == [] and again.unchanged == args.runs
        queries = query_ms(runs)
    print(
        f"build_index (cold): {build_s:.2f} s; DuckDB read_json of the same files: "
        f"{duckdb_s:.2f} s; ratio {build_s / duckdb_s:.1f}"
    )
    print(f"re-index, nothing changed: {reindex_s * 1000:.1f} ms")
    for name, ms in queries.items():
        print(f"query {name}: {ms} ms")
    print(
        json.dumps(
            {
                "trajectories": args.trajectories,
                "build_s": round(build_s, 3),
                "duckdb_read_s": round(duckdb_s, 3),
                "ratio": round(build_s / duckdb_s, 2),
                "reindex_s": round(reindex_s, 4),
                "max_query_ms": max(queries.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
