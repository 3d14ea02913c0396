"""The run index: every run of ``runs/`` compacted into Parquet and queried with DuckDB.

:func:`build_index` reads each run folder (one holding ``manifest.json``) into six tables,
``runs``, ``trajectories``, ``steps``, ``section_uses``, ``evals`` and ``llm_calls``, and writes
them as ``<runs_dir>/.index/<run-id>/<table>.parquet``. A run is compacted into a temp folder
that is then renamed into place, so a reader never sees half a run. ``.index/state.json``
records the size and mtime of every file each run was built from: an unchanged run is not read
again, a changed one is rebuilt, a deleted one is dropped. A corrupt manifest skips the run (it
is reported and its previous compaction, if any, is kept); a corrupt or torn JSONL line is
skipped and counted. The index format carries :data:`INDEX_SCHEMA_VERSION`: a different
version rebuilds every run.

:func:`connect` opens an in-memory DuckDB with one view per table over all runs' Parquet, so
readers take no lock and a writer never blocks them. The ready-made queries are in
:mod:`toolkit.queries`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError
from toolkit.evaluate import EvalRecord, EvalSummary
from toolkit.llm.calls import LLMCallRecord
from toolkit.runs import CALLS_FILE, MANIFEST_FILE, TRAJECTORIES_FILE, Manifest
from toolkit.trajectory import Trajectory

INDEX_SCHEMA_VERSION = 1
INDEX_DIR = ".index"
STATE_FILE = "state.json"

#: Column types of each table (the Parquet of every run has exactly these columns).
SCHEMAS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "VARCHAR",
        "created_at": "VARCHAR",
        "toolkit_version": "VARCHAR",
        "schema_version": "INTEGER",
        "stages": "VARCHAR",
        "trajectories": "INTEGER",
        "eval_trajectories": "INTEGER",
        "evals": "INTEGER",
        "llm_calls": "INTEGER",
        "skipped_lines": "INTEGER",
    },
    "trajectories": {
        "run_id": "VARCHAR",
        "origin": "VARCHAR",
        "id": "VARCHAR",
        "task_id": "VARCHAR",
        "suite": "VARCHAR",
        "split": "VARCHAR",
        "skill_name": "VARCHAR",
        "skill_commit": "VARCHAR",
        "model": "VARCHAR",
        "seed": "BIGINT",
        "delivery": "VARCHAR",
        "passed": "BOOLEAN",
        "score": "DOUBLE",
        "final_answer": "VARCHAR",
        "n_steps": "INTEGER",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "cost_usd": "DOUBLE",
        "latency_s": "DOUBLE",
        "started_at": "DOUBLE",
        "ended_at": "DOUBLE",
        "stop_reason": "VARCHAR",
        "error": "VARCHAR",
        "source": "VARCHAR",
    },
    "steps": {
        "run_id": "VARCHAR",
        "origin": "VARCHAR",
        "trajectory_id": "VARCHAR",
        "step": "INTEGER",
        "tool": "VARCHAR",
        "args": "VARCHAR",
        "thought": "VARCHAR",
        "observation": "VARCHAR",
        "observation_truncated": "BOOLEAN",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "latency_s": "DOUBLE",
        "tool_s": "DOUBLE",
        "cache_hit": "BOOLEAN",
        "call_id": "VARCHAR",
        "error": "VARCHAR",
    },
    "section_uses": {
        "run_id": "VARCHAR",
        "origin": "VARCHAR",
        "trajectory_id": "VARCHAR",
        "skill_commit": "VARCHAR",
        "step": "INTEGER",
        "kind": "VARCHAR",
        "file": "VARCHAR",
        "section_id": "VARCHAR",
        "ref": "VARCHAR",
    },
    "evals": {
        "run_id": "VARCHAR",
        "suite": "VARCHAR",
        "split": "VARCHAR",
        "skill_commit": "VARCHAR",
        "model": "VARCHAR",
        "seed": "BIGINT",
        "delivery": "VARCHAR",
        "task_id": "VARCHAR",
        "passed": "BOOLEAN",
        "score": "DOUBLE",
        "trajectory_id": "VARCHAR",
        "tokens": "BIGINT",
        "seconds": "DOUBLE",
        "error": "VARCHAR",
        "steps": "INTEGER",
    },
    "llm_calls": {
        "run_id": "VARCHAR",
        "call_id": "VARCHAR",
        "model": "VARCHAR",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "cost_usd": "DOUBLE",
        "latency_s": "DOUBLE",
        "started_at": "DOUBLE",
        "ended_at": "DOUBLE",
        "cache_hit": "BOOLEAN",
        "retries": "INTEGER",
        "repair_rounds": "INTEGER",
        "model_requests": "INTEGER",
        "structured": "BOOLEAN",
        "error": "VARCHAR",
    },
}
TABLES: tuple[str, ...] = tuple(SCHEMAS)

M = TypeVar("M", bound=BaseModel)


class RunIndexError(ToolkitError):
    """The index cannot be built or read as asked (no runs folder, no index yet, bad SQL)."""


class RunState(BaseModel):
    """What one run was compacted from: ``{relative path: [size, mtime_ns]}``."""

    files: dict[str, list[int]]
    skipped_lines: int = 0


class IndexState(BaseModel):
    """``.index/state.json``: the index format version and every compacted run."""

    schema_version: int = INDEX_SCHEMA_VERSION
    runs: dict[str, RunState] = Field(default_factory=dict)


class IndexReport(BaseModel):
    """What one :func:`build_index` call did."""

    runs: int = Field(default=0, description="Runs in the index after the call.")
    read: list[str] = Field(default_factory=list, description="Runs (re)compacted this call.")
    unchanged: int = Field(default=0, description="Runs left as they were.")
    removed: list[str] = Field(default_factory=list, description="Runs dropped (folder gone).")
    skipped: list[str] = Field(
        default_factory=list, description="Runs not indexed this call, each with why."
    )
    skipped_lines: int = Field(default=0, description="Corrupt JSONL lines skipped this call.")
    problems: list[str] = Field(default_factory=list, description="One line per problem.")


# ---------------------------------------------------------------------------------------------
# Reading a run (pure apart from file reads)
# ---------------------------------------------------------------------------------------------


def _source_files(run_dir: Path) -> list[Path]:
    """The files a run's index rows come from (those that exist)."""
    candidates = [run_dir / MANIFEST_FILE, run_dir / TRAJECTORIES_FILE, run_dir / CALLS_FILE]
    evals = run_dir / "evals"
    if evals.is_dir():
        candidates += sorted(evals.glob("*.jsonl")) + sorted(evals.glob("*/*.jsonl"))
    return [p for p in candidates if p.is_file()]


def _fingerprint(run_dir: Path) -> dict[str, list[int]]:
    out = {}
    for path in _source_files(run_dir):
        st = path.stat()
        out[path.relative_to(run_dir).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _read_lines(path: Path, parse: Callable[[bytes], M | None], problems: list[str]) -> list[M]:
    """Parse every line of ``path``; a line that fails is skipped and reported."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        problems.append(f"{path}: unreadable, skipped ({exc.strerror or exc})")
        return []
    records: list[M] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = parse(line)
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            problems.append(f"{path}:{number}: skipped a corrupt line ({first})")
            continue
        if record is not None:
            records.append(record)
    return records


def _eval_line(line: bytes) -> EvalRecord | None:
    data = json.loads(line)
    if isinstance(data, dict) and data.get("kind") == "summary":
        EvalSummary.model_validate(data)
        return None
    return EvalRecord.model_validate(data)


def _trajectory_rows(
    run_id: str, origin: str, trajectories: list[Trajectory], tables: dict[str, list[dict]]
) -> None:
    for t in trajectories:
        tables["trajectories"].append(
            {
                "run_id": run_id,
                "origin": origin,
                **t.model_dump(
                    include={
                        "id",
                        "task_id",
                        "suite",
                        "split",
                        "skill_name",
                        "skill_commit",
                        "model",
                        "seed",
                        "delivery",
                        "final_answer",
                        "tokens_in",
                        "tokens_out",
                        "cost_usd",
                        "latency_s",
                        "started_at",
                        "ended_at",
                        "stop_reason",
                        "error",
                        "source",
                    }
                ),
                "passed": t.verdict.passed,
                "score": t.verdict.score,
                "n_steps": len(t.steps),
            }
        )
        for s in t.steps:
            tables["steps"].append(
                {
                    "run_id": run_id,
                    "origin": origin,
                    "trajectory_id": t.id,
                    "step": s.index,
                    "tool": s.action.tool,
                    "args": json.dumps(s.action.args, ensure_ascii=False, sort_keys=True),
                    **s.model_dump(
                        include={
                            "thought",
                            "observation",
                            "observation_truncated",
                            "tokens_in",
                            "tokens_out",
                            "latency_s",
                            "tool_s",
                            "cache_hit",
                            "call_id",
                            "error",
                        }
                    ),
                }
            )
        for u in t.section_uses:
            tables["section_uses"].append(
                {
                    "run_id": run_id,
                    "origin": origin,
                    "trajectory_id": t.id,
                    "skill_commit": t.skill_commit,
                    "step": u.step,
                    "kind": u.kind,
                    "file": u.file,
                    "section_id": u.section_id,
                    "ref": u.ref,
                }
            )


def read_run(run_dir: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The rows of every table for one run folder, and the problems met (one line each).

    Raises:
        ToolkitError: the manifest is missing or invalid (the run cannot be indexed).
    """
    path = run_dir / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ToolkitError(f"{path}: not a valid run manifest ({first})") from None
    run_id = run_dir.name
    problems: list[str] = []
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    rollout = _read_lines(run_dir / TRAJECTORIES_FILE, Trajectory.model_validate_json, problems)
    evaluated = _read_lines(
        run_dir / "evals" / TRAJECTORIES_FILE, Trajectory.model_validate_json, problems
    )
    _trajectory_rows(run_id, "rollout", rollout, tables)
    _trajectory_rows(run_id, "eval", evaluated, tables)
    evals_dir = run_dir / "evals"
    for eval_file in sorted(evals_dir.glob("*/*.jsonl")) if evals_dir.is_dir() else []:
        for r in _read_lines(eval_file, _eval_line, problems):
            tables["evals"].append(
                {"run_id": run_id, **r.model_dump(exclude={"schema_version", "kind"})}
            )
    for c in _read_lines(run_dir / CALLS_FILE, LLMCallRecord.model_validate_json, problems):
        tables["llm_calls"].append(
            {
                "run_id": run_id,
                **c.model_dump(include=set(SCHEMAS["llm_calls"]) - {"run_id"}),
            }
        )
    tables["runs"].append(
        {
            "run_id": run_id,
            "created_at": manifest.created_at,
            "toolkit_version": manifest.toolkit_version,
            "schema_version": manifest.schema_version,
            "stages": json.dumps(
                {k: v.model_dump(mode="json") for k, v in manifest.stages.items()}, sort_keys=True
            ),
            "trajectories": len(rollout),
            "eval_trajectories": len(evaluated),
            "evals": len(tables["evals"]),
            "llm_calls": len(tables["llm_calls"]),
            "skipped_lines": len(problems),
        }
    )
    return tables, problems


# ---------------------------------------------------------------------------------------------
# Writing (the I/O edge)
# ---------------------------------------------------------------------------------------------


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _columns_sql(table: str) -> str:
    return ", ".join(f'"{c}" {t}' for c, t in SCHEMAS[table].items())


def _write_parquet(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict], target: Path
) -> None:
    con.execute(f'CREATE OR REPLACE TEMP TABLE "t_{table}" ({_columns_sql(table)})')
    if rows:
        # Columns in schema order; DuckDB casts each to its declared type on insert.
        columns = {c: [row.get(c) for row in rows] for c in SCHEMAS[table]}
        con.register("rows_frame", pd.DataFrame(columns))
        con.execute(f'INSERT INTO "t_{table}" SELECT * FROM rows_frame')
        con.unregister("rows_frame")
    con.execute(f'COPY "t_{table}" TO {_sql_path(target)} (FORMAT parquet)')


def _compact(
    con: duckdb.DuckDBPyConnection, index_dir: Path, run_id: str, tables: dict[str, list[dict]]
) -> None:
    """Write one run's Parquet files into a temp folder, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=index_dir))
    try:
        for table in TABLES:
            _write_parquet(con, table, tables[table], tmp / f"{table}.parquet")
        _replace_dir(tmp, index_dir / run_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    # Two renames: a reader sees the old run, then briefly no run, then the new one; never a mix.
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        os.rename(target, old / "run")
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_state(index_dir: Path) -> IndexState:
    path = index_dir / STATE_FILE
    try:
        state = IndexState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return IndexState()
    return state if state.schema_version == INDEX_SCHEMA_VERSION else IndexState()


def _run_dirs(runs_dir: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in sorted(runs_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
    }


def build_index(runs_dir: str | Path = "runs", *, progress: bool = False) -> IndexReport:
    """Bring ``<runs_dir>/.index`` up to date: compact new and changed runs, drop removed ones.

    Raises:
        RunIndexError: ``runs_dir`` is not a folder.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunIndexError(f"runs folder not found: {runs_dir}")
    index_dir = runs_dir / INDEX_DIR
    index_dir.mkdir(exist_ok=True)
    state = _load_state(index_dir)
    report = IndexReport()
    runs = _run_dirs(runs_dir)
    todo = []
    for run_id, run_dir in runs.items():
        prints = _fingerprint(run_dir)
        known = state.runs.get(run_id)
        if known is not None and known.files == prints and (index_dir / run_id).is_dir():
            report.unchanged += 1
        else:
            todo.append((run_id, run_dir, prints))
    bar = None
    if progress and todo:
        from toolkit.progress import Progress

        bar = Progress("index", len(todo))
    with duckdb.connect(":memory:") as con:
        for run_id, run_dir, prints in todo:
            try:
                tables, problems = read_run(run_dir)
            except ToolkitError as exc:
                report.skipped.append(run_id)
                report.problems.append(f"skipped run {run_id}: {exc}")
            else:
                _compact(con, index_dir, run_id, tables)
                state.runs[run_id] = RunState(files=prints, skipped_lines=len(problems))
                report.read.append(run_id)
                report.skipped_lines += len(problems)
                report.problems += problems
            if bar is not None:
                bar.update(run_id in report.read)
    if bar is not None:
        bar.close()
    for run_id in sorted(set(state.runs) - set(runs)):
        state.runs.pop(run_id)
        shutil.rmtree(index_dir / run_id, ignore_errors=True)
        report.removed.append(run_id)
    # Folders the state does not know: temp folders of a killed build, stale compactions.
    for leftover in index_dir.iterdir():
        if leftover.is_dir() and leftover.name not in state.runs:
            shutil.rmtree(leftover, ignore_errors=True)
    write_atomic(index_dir / STATE_FILE, state.model_dump_json(indent=1))
    report.runs = sum(1 for r in runs if (index_dir / r).is_dir())
    return report


# ---------------------------------------------------------------------------------------------
# Reading the index
# ---------------------------------------------------------------------------------------------


def connect(runs_dir: str | Path = "runs") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table over every indexed run's Parquet.

    A table with no Parquet yet is an empty view with the right columns.

    Raises:
        RunIndexError: there is no index under ``runs_dir`` (run ``trace2skill index`` first).
    """
    index_dir = Path(runs_dir) / INDEX_DIR
    if not index_dir.is_dir():
        raise RunIndexError(f"no index at {index_dir}; build it with: trace2skill index {runs_dir}")
    con = duckdb.connect(":memory:")
    for table in TABLES:
        # A glob resolved at each query, not a file list fixed now: a run re-compacted after
        # connect() is still found. "[!.]*" leaves out the temp folders of a build under way.
        if any(index_dir.glob(f"[!.]*/{table}.parquet")):
            pattern = _sql_path(index_dir / "[!.]*" / f"{table}.parquet")
            con.execute(
                f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet({pattern}, '
                "union_by_name = true)"
            )
        else:
            con.execute(f'CREATE TABLE "{table}" ({_columns_sql(table)})')
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """Run ad-hoc SQL; a DuckDB error becomes one clear line.

    Raises:
        RunIndexError: the SQL is invalid or fails.
    """
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunIndexError(f"query failed: {first}") from None
