"""Benchmark the run index against DuckDB's own read of the same files.

Workload: ``trace2skill synth`` runs (:mod:`toolkit.synth`) totalling N trajectories of 10
steps (observations of about 200 bytes, one LLM call record per step), over R run folders, each
with its analyses, patches, merges (real git commits), evals and ablations.

Figures:
- ``build_s``: a cold ``build_index`` of every run (parse with pydantic, git blame of each S*,
  write Parquet per run).
- ``duckdb_read_s``: DuckDB alone materialising the same JSON files into tables (``read_json``
  of trajectories, eval records, LLM calls, analyses, merges, ablations and patches, with steps,
  section uses and edits unnested): the physical limit DESIGN section 8 names. It has no
  counterpart of ``skill_lines`` (that comes from git, not from a file).
- ``ratio``: build_s / duckdb_read_s.
- ``reindex_s``: ``build_index`` after adding one more run of N/R trajectories (reads that run
  only); ``noop_reindex_s``: again with nothing changed.
- ``max_query_ms``: the slowest ready-made query (every function of :mod:`toolkit.queries`,
  plus a join over steps) on fresh ``connect()`` views.

Usage: ``python benchmarks/index.py [--trajectories N] [--runs R] [--seed S]``.
The last line of output is one JSON object:
``{"trajectories": N, "build_s": ..., "duckdb_read_s": ..., "ratio": ..., "reindex_s": ...,
"max_query_ms": ...}`` (plus ``noop_reindex_s``, ``synth_s``, ``jsonl_mb``, ``queries_ms``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb

from toolkit.index import build_index, connect
from toolkit.queries import (
    ablation_effects,
    cost_by_model,
    cost_by_stage,
    find_trajectories,
    flipped_tasks,
    line_support,
    pass_rate_by_skill,
    section_usage,
    usage_vs_pass_rate,
)
from toolkit.synth import synth_runs

STEPS = 10


def duckdb_read(runs: Path) -> float:
    """Seconds DuckDB takes to load the same JSON files into tables (lists unnested)."""
    con = duckdb.connect(":memory:")

    def read(glob: str) -> str:
        return f"read_json('{runs}/{glob}', union_by_name = true)"

    start = time.perf_counter()
    con.execute(
        f"CREATE TABLE tr AS SELECT * FROM {read('*/trajectories.jsonl')} "
        f"UNION ALL BY NAME SELECT * FROM {read('*/evals/trajectories.jsonl')}"
    )
    con.execute("CREATE TABLE st AS SELECT id, unnest(steps, recursive := true) FROM tr")
    con.execute("CREATE TABLE su AS SELECT id, unnest(section_uses, recursive := true) FROM tr")
    con.execute(f"CREATE TABLE ev AS SELECT * FROM {read('*/evals/*/*.jsonl')}")
    for name in ("llm_calls", "analyses", "merges", "ablations"):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {read(f'*/{name}.jsonl')}")
    con.execute(f"CREATE TABLE pa AS SELECT * FROM {read('*/patches/*.json')}")
    con.execute("CREATE TABLE ed AS SELECT id, unnest(edits, recursive := true) FROM pa")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def query_ms(runs: Path) -> dict[str, float]:
    """Milliseconds of each ready-made query on fresh ``connect()`` views."""
    with connect(runs) as con:
        commits = [c for (c,) in con.execute("SELECT DISTINCT skill_commit FROM evals").fetchall()]
    queries = {
        "pass_rate_by_skill": lambda con: pass_rate_by_skill(con),
        "flipped_tasks": lambda con: flipped_tasks(con, commits[0], commits[-1]),
        "section_usage": section_usage,
        "usage_vs_pass_rate": usage_vs_pass_rate,
        "ablation_effects": lambda con: ablation_effects(con),
        "line_support": lambda con: line_support(con),
        "cost_by_model": cost_by_model,
        "cost_by_stage": cost_by_stage,
        "find_trajectories": lambda con: find_trajectories(
            con, passed=False, uses="SKILL.md#synth/rule-01", limit=1000
        ),
        "steps_join": lambda con: con.execute(
            "SELECT t.skill_commit, avg(s.latency_s) FROM steps s JOIN trajectories t "
            "ON s.run_id = t.run_id AND s.origin = t.origin AND s.trajectory_id = t.id "
            "GROUP BY 1"
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
        start = time.perf_counter()
        synth = synth_runs(runs, trajectories=args.trajectories, runs=args.runs, seed=args.seed)
        synth_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in runs.glob("*/**/*.json*"))
        print(
            f"{synth.trajectories} trajectories x {STEPS} steps in {args.runs} runs "
            f"({synth.patches} patches, {synth.merges} merges, {synth.ablations} ablations), "
            f"{size / 1e6:.1f} MB of JSON, written in {synth_s:.1f} s"
        )
        duckdb_s = duckdb_read(runs)
        start = time.perf_counter()
        report = build_index(runs)
        build_s = time.perf_counter() - start
        assert len(report.read) == args.runs and not report.problems, report.problems
        start = time.perf_counter()
        noop = build_index(runs)
        noop_s = time.perf_counter() - start
        assert noop.read == [] and noop.unchanged == args.runs
        synth_runs(runs, trajectories=args.trajectories // args.runs, seed=args.seed + 1)
        start = time.perf_counter()
        again = build_index(runs)
        reindex_s = time.perf_counter() - start
        assert len(again.read) == 1 and again.unchanged == args.runs
        queries = query_ms(runs)
    print(
        f"build_index (cold): {build_s:.2f} s; DuckDB read_json of the same files: "
        f"{duckdb_s:.2f} s; ratio {build_s / duckdb_s:.2f}"
    )
    print(f"re-index after adding one run: {reindex_s:.2f} s; nothing changed: {noop_s:.3f} s")
    for name, ms in queries.items():
        print(f"query {name}: {ms} ms")
    print(
        json.dumps(
            {
                "trajectories": args.trajectories,
                "build_s": round(build_s, 3),
                "duckdb_read_s": round(duckdb_s, 3),
                "ratio": round(build_s / duckdb_s, 2),
                "reindex_s": round(reindex_s, 3),
                "max_query_ms": max(queries.values()),
                "noop_reindex_s": round(noop_s, 4),
                "synth_s": round(synth_s, 1),
                "jsonl_mb": round(size / 1e6, 1),
                "queries_ms": queries,
            }
        )
    )


if __name__ == "__main__":
    main()
