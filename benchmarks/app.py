"""Benchmark the app: server-side time of each page's first render on a large index.

Workload: a synthetic index of N trajectories (default 100,000) over 10 runs, 4 steps and 2
section uses each, one LLM call per step, 3 skill versions, written straight to the index's
Parquet layout with DuckDB (what ``build_index`` would produce; its state file marks every run
as up to date, so the app reads them as they are). One synthetic run also holds 256 leaf
patches consolidated in groups of 8 (merges.jsonl) and 256 ablations; the git-backed skill page
runs on the test suite's example run (a real skill repository), added to the same folder.

Each page is run fresh with Streamlit's AppTest (a new session, URL parameters set as a shared
link would), so the time covers the page's queries, frames and plotly figures; the browser's
drawing is not included. The slowest page must stay under 2 s.

Usage: ``python benchmarks/app.py [--trajectories N] [--runs R]``.
The last line of output is one JSON object: ``{"trajectories": N, "max_page_s": ...,
"pages": {page: seconds}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.app_fixtures import RUN, make_runs  # noqa: E402
from toolkit.app import data  # noqa: E402
from toolkit.index import INDEX_DIR, SCHEMAS, STATE_FILE, IndexState, RunState  # noqa: E402
from toolkit.rollout import Manifest  # noqa: E402

VERSIONS = ["'" + c * 40 + "'" for c in "abc"]
#: Expressions per column, over ``i`` (trajectory number within the run) and ``r`` (run).
TRAJECTORY = {
    "run_id": "run_id",
    "origin": "CASE WHEN i % 3 = 0 THEN 'rollout' ELSE 'eval' END",
    "id": "md5(run_id || i::VARCHAR)[:16]",
    "task_id": "'t' || (i % 1000)::VARCHAR",
    "suite": "'gsm8k'",
    "split": "'test'",
    "skill_name": "'demo'",
    "skill_commit": f"[{', '.join(VERSIONS)}][1 + (i // 1000) % 3]",
    "model": "CASE WHEN i % 2 = 0 THEN 'fake/small' ELSE 'fake/large' END",
    "seed": "(i // 3000)",
    "delivery": "'system'",
    # Two protocols, a run each: the conditions page has agents to set side by side.
    "protocol": "CASE WHEN hash(run_id) % 2 = 0 THEN 'code' ELSE 'plain' END",
    "passed": "hash(run_id, i) % 100 < 40 + 10 * ((i // 1000) % 3)",
    "score": "0.0",
    "final_answer": "'42'",
    "n_steps": "4",
    "tokens_in": "1200",
    "tokens_out": "200",
    "cost_usd": "0.001",
    "latency_s": "2.0",
    "started_at": "1767225600.0 + i",
    "ended_at": "1767225602.0 + i",
    "stop_reason": "'submitted'",
    "error": "NULL",
    "source": "'rollout'",
}


def _select(columns: dict[str, str], table: str) -> str:
    types = SCHEMAS[table]
    return ", ".join(f'CAST({columns[c]} AS {types[c]}) AS "{c}"' for c in types)


def write_index(runs: Path, n: int, n_runs: int) -> None:
    """Write ``n`` synthetic trajectories over ``n_runs`` runs straight into the index layout."""
    index = runs / INDEX_DIR
    index.mkdir(parents=True, exist_ok=True)
    state = IndexState()
    con = duckdb.connect(":memory:")
    per_run = n // n_runs
    for r in range(n_runs):
        run_id = f"synth{r:02d}"
        run = runs / run_id
        run.mkdir()
        manifest = Manifest(
            run_id=run_id,
            created_at=f"2026-11-{r + 1:02d}T00:00:00+00:00",
            toolkit_version="0",
        )
        (run / "manifest.json").write_text(manifest.model_dump_json())
        out = index / run_id
        out.mkdir()
        base = f"SELECT '{run_id}' AS run_id, i FROM range({per_run}) t(i)"
        con.execute(
            f"CREATE OR REPLACE TABLE t AS SELECT {_select(TRAJECTORY, 'trajectories')} "
            f"FROM ({base})"
        )
        con.execute(f"COPY t TO '{out / 'trajectories.parquet'}' (FORMAT parquet)")
        steps = {
            "run_id": "run_id",
            "origin": "origin",
            "trajectory_id": "id",
            "step": "s",
            "tool": "CASE WHEN s = 3 THEN 'submit' ELSE 'python' END",
            "args": '\'{"code": "print(6 * 7)"}\'',
            "thought": "'think'",
            "observation": "'42'",
            "observation_truncated": "false",
            "tokens_in": "300",
            "tokens_out": "50",
            "latency_s": "0.5",
            "tool_s": "0.01",
            "cache_hit": "s = 0",
            "call_id": "id || '-' || s::VARCHAR",
            "error": "NULL",
        }
        con.execute(
            f"COPY (SELECT {_select(steps, 'steps')} FROM t, range(4) r(s)) "
            f"TO '{out / 'steps.parquet'}' (FORMAT parquet)"
        )
        uses = {
            "run_id": "run_id",
            "origin": "origin",
            "trajectory_id": "id",
            "skill_commit": "skill_commit",
            "step": "0",
            "kind": "CASE WHEN u = 0 THEN 'cited' ELSE 'read' END",
            "file": "'SKILL.md'",
            "section_id": "'demo/s' || ((hash(id) + u) % 12)::VARCHAR",
            "ref": "'SKILL.md#demo/s' || ((hash(id) + u) % 12)::VARCHAR",
        }
        con.execute(
            f"COPY (SELECT {_select(uses, 'section_uses')} FROM t, range(2) r(u)) "
            f"TO '{out / 'section_uses.parquet'}' (FORMAT parquet)"
        )
        evals = {
            "run_id": "run_id",
            "suite": "suite",
            "split": "split",
            "skill_commit": "skill_commit",
            "model": "model",
            "seed": "seed",
            "delivery": "delivery",
            "protocol": "protocol",
            "task_id": "task_id",
            "passed": "passed",
            "score": "score",
            "trajectory_id": "id",
            "tokens": "1400",
            "seconds": "2.0",
            "error": "NULL",
            "steps": "4",
        }
        con.execute(
            f"COPY (SELECT {_select(evals, 'evals')} FROM t WHERE origin = 'eval') "
            f"TO '{out / 'evals.parquet'}' (FORMAT parquet)"
        )
        calls = {
            "run_id": "run_id",
            "call_id": "call_id",
            "model": "'fake/small'",
            "tokens_in": "tokens_in",
            "tokens_out": "tokens_out",
            "cost_usd": "0.0002",
            "latency_s": "0.1 + (hash(call_id) % 1000) / 500.0",
            "started_at": "0.0",
            "ended_at": "1.0",
            "cache_hit": "cache_hit",
            "retries": "0",
            "repair_rounds": "0",
            "model_requests": "1",
            "structured": "true",
            "error": "NULL",
        }
        con.execute(
            f"COPY (SELECT {_select(calls, 'llm_calls')} FROM read_parquet("
            f"'{out / 'steps.parquet'}')) TO '{out / 'llm_calls.parquet'}' "
            "(FORMAT parquet)"
        )
        runs_row = {
            "run_id": f"'{run_id}'",
            "created_at": f"'{manifest.created_at}'",
            "toolkit_version": "'0'",
            "schema_version": "1",
            "stages": "'{}'",
            "trajectories": f"{per_run // 3}",
            "eval_trajectories": f"{per_run - per_run // 3}",
            "evals": "0",
            "llm_calls": f"{per_run * 4}",
            # The counts of the evolve-stage tables the index gained (schema 4).
            "analyses": "0",
            "patches": "0",
            "merges": "0",
            "ablations": "0",
            "skill_lines": "0",
            "result_commit": "NULL",
            "skipped_lines": "0",
        }
        con.execute(
            f"COPY (SELECT {_select(runs_row, 'runs')}) "
            f"TO '{out / 'runs.parquet'}' (FORMAT parquet)"
        )
        st = (run / "manifest.json").stat()
        state.runs[run_id] = RunState(files={"manifest.json": [st.st_size, st.st_mtime_ns]})
    existing = IndexState.model_validate_json((index / STATE_FILE).read_bytes())
    state.runs.update(existing.runs)
    (index / STATE_FILE).write_text(state.model_dump_json())


def write_consolidation(run: Path, leaves: int = 256, group: int = 8) -> None:
    """``leaves`` leaf patches merged in groups of ``group`` up to one, and their ablations."""
    lines, level, children = [], 1, [f"{i:012x}" for i in range(leaves)]
    while len(children) > 1 or level == 1:
        parents = []
        for g in range(0, len(children), group):
            name = f"g{g // group + 1:04d}"
            patch_id = f"{level:02d}{g:010x}"
            lines.append(
                {
                    "schema_version": 1,
                    "level": level,
                    "group": name,
                    "children": children[g : g + group],
                    "patch_id": patch_id,
                    "status": "merged" if g % 5 else "union",
                    "reason": None,
                    "conflicts": [{"file": "SKILL.md", "hunks": g % 3}],
                    "edits": [
                        {"id": f"{patch_id}-e", "cited": [], "sources": [], "support": group}
                    ],
                    "dropped": [],
                    "tokens_in": 900,
                    "tokens_out": 100,
                }
            )
            parents.append(patch_id)
        children, level = parents, level + 1
    (run / "merges.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ablations = [
        {
            "schema_version": 1,
            "edit_id": f"e{i:03d}",
            "patch_id": "p",
            "kind": kind,
            "n": 100,
            "passed": 50,
            "pass_rate": 0.5,
            "delta": (i % 21 - 10) / 100,
            "ci_low": (i % 21 - 15) / 100,
            "ci_high": (i % 21 - 5) / 100,
            "tasks": [],
        }
        for i in range(leaves // 2)
        for kind in ("ablate", "only")
    ]
    (run / "ablations.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ablations))


def time_pages(runs: Path) -> dict[str, float]:
    """Seconds of each page's first render (fresh AppTest session, parameters in the URL)."""
    from streamlit.testing.v1 import AppTest

    os.environ["TRACE2SKILL_RUNS_DIR"] = str(runs)
    views = ROOT / "toolkit" / "app" / "views"
    every = ",".join(sorted(p.name for p in runs.iterdir() if (p / "manifest.json").exists()))
    params = {
        "runs": {"runs": every},
        "conditions": {"suite": "gsm8k"},
        "skill": {"run": RUN},
        "tree": {"run": "synth00"},
        "attribution": {"run": "synth00"},
        "usage": {"runs": every},
        "trajectories": {"runs": every, "outcome": "fail"},
        "cost": {"runs": every},
    }
    # Streamlit's first script run imports plotly and friends: warm that up once, untimed.
    AppTest.from_file(str(views / "cost.py"), default_timeout=120).run()
    out = {}
    for page, query in params.items():
        at = AppTest.from_file(str(views / f"{page}.py"), default_timeout=120)
        at.query_params.update(query)
        start = time.perf_counter()
        at.run()
        out[page] = round(time.perf_counter() - start, 3)
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].value}")
    return out


def main() -> None:
    """Build the workload, time every page, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp))
        data.refresh_index(runs)
        start = time.perf_counter()
        write_index(runs, args.trajectories, args.runs)
        write_consolidation(runs / "synth00")
        print(
            f"synthetic index: {args.trajectories:,} trajectories in "
            f"{time.perf_counter() - start:.1f} s"
        )
        pages = time_pages(runs)
    for page, seconds in pages.items():
        print(f"{page:>13}: {seconds:.3f} s")
    print(
        json.dumps(
            {"trajectories": args.trajectories, "max_page_s": max(pages.values()), "pages": pages}
        )
    )


if __name__ == "__main__":
    main()
