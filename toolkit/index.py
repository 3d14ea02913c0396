"""The run index: every run of ``runs/`` compacted into Parquet and queried with DuckDB.

:func:`build_index` reads each run folder (one holding ``manifest.json``) into the tables of
:data:`SCHEMAS`: ``runs``, ``trajectories``, ``steps``, ``section_uses``, ``evals`` and
``llm_calls`` from the rollout and evaluation files; ``analyses``, ``patches``, ``edits``,
``merges`` and ``ablations`` from the evolve stages' files (:mod:`toolkit.runfiles`); and
``skill_lines``, every line of the run's final skill S* with the commit, merge and support
behind it, from ``git blame`` in the run's skill repository (:mod:`toolkit.skill_lines`). A
file a run does not have yet is an empty table. Each run is written as
``<runs_dir>/.index/<run-id>/<table>.parquet``: compacted into a temp folder that is then
renamed into place, so a reader never sees half a run. ``.index/state.json`` records the size
and mtime of every file each run was built from: an unchanged run is not read again, a changed
one is rebuilt, a deleted one is dropped. A corrupt manifest, or one from a newer schema
version, skips the run (it is reported and its previous compaction, if any, is kept); a corrupt
or torn JSONL line, or one from a newer schema version, is skipped and counted. The index
format carries :data:`INDEX_SCHEMA_VERSION`: a different version rebuilds every run from its
files (the run files are the source of truth, so rebuilding is the migration).

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
from shlex import quote
from typing import Any, TypeVar

import duckdb
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from toolkit import index_bulk as bulk
from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError
from toolkit.evaluate import EvalRecord, EvalSummary
from toolkit.llm.calls import LLMCallRecord
from toolkit.patch import Patch
from toolkit.runfiles import (
    AblationLine,
    AnalysisLine,
    MergeLine,
)
from toolkit.runs import (
    ABLATIONS_FILE,
    ANALYSES_FILE,
    CALLS_FILE,
    MANIFEST_FILE,
    MANIFEST_SCHEMA_VERSION,
    MERGES_FILE,
    PATCHES_DIR,
    TRAJECTORIES_FILE,
    Manifest,
)
from toolkit.skill_lines import BUNDLE_FILE, read_skill_lines
from toolkit.trajectory import Trajectory

INDEX_SCHEMA_VERSION = 7
"""6: ``runs`` has a column per setting that tells runs apart (kind, suite, model, protocol,
analysts, merge settings...: :func:`run_settings`), read from the manifest (5 had them only in
the ``stages`` JSON); 5: a token count the provider did not report is NULL (4 held 0).
Rebuilding every run from its files, the source of truth, is the migration."""
INDEX_DIR = ".index"
STATE_FILE = "state.json"

#: Column types of each table (the Parquet of every run has exactly these columns).
SCHEMAS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "VARCHAR",
        "created_at": "VARCHAR",
        "toolkit_version": "VARCHAR",
        "schema_version": "INTEGER",
        # The run's settings (run_settings): NULL where the run has no such setting.
        "kind": "VARCHAR",
        "suite": "VARCHAR",
        "model": "VARCHAR",
        "author_model": "VARCHAR",
        "protocol": "VARCHAR",
        "delivery": "VARCHAR",
        "seed": "BIGINT",
        "skill_name": "VARCHAR",
        "analysts": "VARCHAR",
        "error_analyst": "VARCHAR",
        "merge_batch": "INTEGER",
        "max_levels": "INTEGER",
        "merge_strategy": "VARCHAR",
        "consolidation": "VARCHAR",
        "seq_batch": "INTEGER",
        "s0_drafted": "BOOLEAN",
        "memory_baseline": "BOOLEAN",
        "evolve_limit": "INTEGER",
        "test_limit": "INTEGER",
        "stages": "VARCHAR",
        "trajectories": "INTEGER",
        "eval_trajectories": "INTEGER",
        "evals": "INTEGER",
        "llm_calls": "INTEGER",
        "analyses": "INTEGER",
        "patches": "INTEGER",
        "merges": "INTEGER",
        "ablations": "INTEGER",
        "skill_lines": "INTEGER",
        "result_commit": "VARCHAR",
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
        "protocol": "VARCHAR",
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
        "protocol": "VARCHAR",
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
    "analyses": {
        "run_id": "VARCHAR",
        "id": "VARCHAR",
        "trajectory_id": "VARCHAR",
        "task_id": "VARCHAR",
        "outcome": "VARCHAR",
        "analyst": "VARCHAR",
        "model": "VARCHAR",
        "status": "VARCHAR",
        "reason": "VARCHAR",
        "patch_id": "VARCHAR",
        "fix_passed": "BOOLEAN",
        "turns": "INTEGER",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "started_at": "DOUBLE",
        "ended_at": "DOUBLE",
        "report": "VARCHAR",
    },
    "patches": {
        "run_id": "VARCHAR",
        "id": "VARCHAR",
        "kind": "VARCHAR",
        "level": "INTEGER",
        "group": "VARCHAR",
        "commit": "VARCHAR",
        "reasoning": "VARCHAR",
        "changelog": "VARCHAR",
        "n_edits": "INTEGER",
        "sources": "VARCHAR[]",
        "support": "INTEGER",
    },
    "edits": {
        "run_id": "VARCHAR",
        "patch_id": "VARCHAR",
        "edit_id": "VARCHAR",
        "position": "INTEGER",
        "file": "VARCHAR",
        "op": "VARCHAR",
        "target_section": "VARCHAR",
        "target_text": "VARCHAR",
        "old_text": "VARCHAR",
        "after_section": "VARCHAR",
        "content": "VARCHAR",
        "cited": "VARCHAR[]",
        "sources": "VARCHAR[]",
        "support": "INTEGER",
    },
    "merges": {
        "run_id": "VARCHAR",
        "level": "INTEGER",
        "group": "VARCHAR",
        "children": "VARCHAR[]",
        "child_commits": "VARCHAR[]",
        "commit": "VARCHAR",
        "patch_id": "VARCHAR",
        "status": "VARCHAR",
        "reason": "VARCHAR",
        "conflict_files": "INTEGER",
        "conflict_hunks": "INTEGER",
        "conflicts": "VARCHAR",
        "n_edits": "INTEGER",
        "n_dropped": "INTEGER",
        "dropped": "VARCHAR",
        "model": "VARCHAR",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "started_at": "DOUBLE",
        "ended_at": "DOUBLE",
    },
    "skill_lines": {
        "run_id": "VARCHAR",
        "result_commit": "VARCHAR",
        "file": "VARCHAR",
        "line": "INTEGER",
        "text": "VARCHAR",
        "commit": "VARCHAR",
        "kind": "VARCHAR",
        "merge_commit": "VARCHAR",
        "patch_id": "VARCHAR",
        "level": "INTEGER",
        "group": "VARCHAR",
        "sources": "VARCHAR[]",
        "trajectories": "VARCHAR[]",
        "support": "INTEGER",
        "edit_id": "VARCHAR",
    },
    "ablations": {
        "run_id": "VARCHAR",
        "edit_id": "VARCHAR",
        "patch_id": "VARCHAR",
        "kind": "VARCHAR",
        "commit": "VARCHAR",
        "skill_commit": "VARCHAR",
        "reference_commit": "VARCHAR",
        "reference_skill_commit": "VARCHAR",
        "suite": "VARCHAR",
        "model": "VARCHAR",
        "split": "VARCHAR",
        "seed": "BIGINT",
        "n": "INTEGER",
        "passed": "INTEGER",
        "pass_rate": "DOUBLE",
        "reference_passed": "INTEGER",
        "reference_pass_rate": "DOUBLE",
        "delta": "DOUBLE",
        "ci_low": "DOUBLE",
        "ci_high": "DOUBLE",
        "p_value": "DOUBLE",
        "effect": "DOUBLE",
        "effect_ci_low": "DOUBLE",
        "effect_ci_high": "DOUBLE",
        "support": "INTEGER",
        "gained": "VARCHAR[]",
        "lost": "VARCHAR[]",
        "tasks": "VARCHAR[]",
        "file": "VARCHAR",
        "op": "VARCHAR",
        "target_section": "VARCHAR",
        "also_removed": "VARCHAR[]",
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
    candidates = [
        run_dir / name
        for name in (
            MANIFEST_FILE,
            TRAJECTORIES_FILE,
            CALLS_FILE,
            ANALYSES_FILE,
            MERGES_FILE,
            ABLATIONS_FILE,
            BUNDLE_FILE,
        )
    ]
    evals = run_dir / "evals"
    if evals.is_dir():
        candidates += sorted(evals.glob("*.jsonl")) + sorted(evals.glob("*/*.jsonl"))
    patches = run_dir / PATCHES_DIR
    if patches.is_dir():
        candidates += sorted(patches.glob("*.json"))
    return [p for p in candidates if p.is_file()]


def _fingerprint(run_dir: Path) -> dict[str, list[int]]:
    out = {}
    for path in _source_files(run_dir):
        st = path.stat()
        out[path.relative_to(run_dir).as_posix()] = [st.st_size, st.st_mtime_ns]
    # Stages still running: when their process dies no file changes, but the run must be
    # read again to show them interrupted (StageRecord.settle).
    try:
        manifest = Manifest.model_validate_json((run_dir / MANIFEST_FILE).read_bytes())
    except (OSError, ValidationError):
        return out
    running = [s for s in manifest.stages.values() if s.status == "running"]
    if running:
        out[RUNNING_KEY] = [sum(s.settle().status == "running" for s in running), 0]
    return out


#: The fingerprint entry that counts a run's live stages (no file has this name).
RUNNING_KEY = f"{MANIFEST_FILE}#running"


def _why(exc: Exception) -> str:
    """One line saying why a record was refused (pydantic: the first field and message)."""
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        return f"{where}: {err['msg']}" if where else err["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
            first = _why(exc)
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
                        "protocol",
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
                    # Compact, in the file's key order: what DuckDB's bulk path writes too.
                    "args": json.dumps(s.action.args, ensure_ascii=False, separators=(",", ":")),
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


def _read_patch(path: Path, problems: list[str]) -> Patch | None:
    try:
        return Patch.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        first = _why(exc)
        problems.append(f"{path}: skipped a corrupt patch ({first})")
        return None


def _evolve_rows(
    run_id: str, run_dir: Path, tables: dict[str, list[dict]], problems: list[str]
) -> list[MergeLine]:
    """Rows of analyses, patches, edits, merges and ablations; returns the merges read."""
    for a in _read_lines(run_dir / ANALYSES_FILE, AnalysisLine.model_validate_json, problems):
        tables["analyses"].append({"run_id": run_id, **a.model_dump(exclude={"schema_version"})})
    merges = _read_lines(run_dir / MERGES_FILE, MergeLine.model_validate_json, problems)
    by_patch = {m.patch_id: m for m in merges if m.patch_id}
    for m in merges:
        tables["merges"].append(
            {
                "run_id": run_id,
                **m.model_dump(
                    include={
                        "level",
                        "group",
                        "children",
                        "child_commits",
                        "commit",
                        "patch_id",
                        "status",
                        "reason",
                        "model",
                        "tokens_in",
                        "tokens_out",
                        "started_at",
                        "ended_at",
                    }
                ),
                "conflict_files": len(m.conflicts),
                "conflict_hunks": sum(c.hunks for c in m.conflicts),
                "conflicts": json.dumps([c.model_dump() for c in m.conflicts]),
                "n_edits": len(m.edits),
                "n_dropped": len(m.dropped),
                "dropped": json.dumps([d.model_dump() for d in m.dropped]),
            }
        )
    patch_dir = run_dir / PATCHES_DIR
    for path in sorted(patch_dir.glob("*.json")) if patch_dir.is_dir() else []:
        patch = _read_patch(path, problems)
        if patch is None:
            continue
        merge = by_patch.get(patch.id)
        # A leaf's sources are its own id (contract); a consolidated patch is named by a merge.
        leaf = merge is None and set(patch.sources) <= {patch.id}
        tables["patches"].append(
            {
                "run_id": run_id,
                "id": patch.id,
                "kind": "leaf" if leaf else "merged",
                "level": merge.level if merge else None,
                "group": merge.group if merge else None,
                "commit": merge.commit if merge else None,
                "reasoning": patch.reasoning,
                "changelog": "\n".join(patch.changelog_entries),
                "n_edits": len(patch.edits),
                "sources": patch.sources or [patch.id],
                "support": patch.support,
            }
        )
        cited = {e.id: e for e in merge.edits} if merge else {}
        for position, edit in enumerate(patch.edits):
            origin = cited.get(edit.id)
            tables["edits"].append(
                {
                    "run_id": run_id,
                    "patch_id": patch.id,
                    "edit_id": edit.id,
                    "position": position,
                    **edit.model_dump(exclude={"id"}),
                    "cited": origin.cited if origin else [],
                    "sources": origin.sources if origin else ([patch.id] if leaf else None),
                    "support": origin.support if origin else (1 if leaf else None),
                }
            )
    for a in _read_lines(run_dir / ABLATIONS_FILE, AblationLine.model_validate_json, problems):
        tables["ablations"].append({"run_id": run_id, **a.model_dump(exclude={"schema_version"})})
    return merges


#: An analyse stage's ``analyst`` (:data:`toolkit.analysts.records.AnalystChoice`) as the
#: run settings ``analysts`` and ``error_analyst`` (evolve's ``--analysts``/``--error-analyst``).
ANALYST_SETTINGS: dict[str, tuple[str, str | None]] = {
    "error": ("error", "agentic"),
    "error-single": ("error", "single"),
    "success": ("success", None),
    "combined": ("combined", "agentic"),
}
#: The ``evolve`` stage config's fields that are ``runs`` columns of the same name.
_EVOLVE_SETTINGS = (
    "suite",
    "model",
    "author_model",
    "protocol",
    "delivery",
    "seed",
    "analysts",
    "error_analyst",
    "merge_batch",
    "max_levels",
    "merge_strategy",
    "consolidation",
    "seq_batch",
    "evolve_limit",
    "test_limit",
)
_INT_BITS = {"INTEGER": 31, "BIGINT": 63}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any, column: str) -> int | None:
    """``value`` when it is an integer that fits ``column``'s type (a hand-edited manifest
    must not make the run's compaction fail), else None."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    bits = _INT_BITS[SCHEMAS["runs"][column]]
    return value if -(2**bits) <= value < 2**bits else None


def _agreed(values: list[Any], *, nulls: bool = False) -> Any:
    """The one value ``values`` agree on; several texts are listed (sorted, comma-separated:
    an evaluation of two protocols is ``code, plain``); several numbers are None. None is
    left out unless ``nulls`` (a limit of None is the whole split, a value of its own)."""
    distinct = list(dict.fromkeys(v for v in values if nulls or v is not None))
    if len(distinct) == 1:
        return distinct[0]
    if distinct and all(isinstance(v, str) for v in distinct):
        return ", ".join(sorted(distinct))
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def run_settings(manifest: Manifest) -> dict[str, Any]:
    """The ``runs`` columns that tell a run's settings apart, from its manifest's stages.

    ``kind`` is ``evolve`` for a run with an ``evolve`` stage, else the kind of its first
    stage (``rollout``, ``eval``, ``import``...). An evolve run's settings are its
    ``EvolveConfig`` (the ``evolve`` stage's config); a model left to the default is the one its
    rollout used, an author model left to the default is the agent's model. Other runs take
    them from their stages: suite, model, protocol, delivery, seed and skill name from the
    ``rollout`` and ``eval:...`` stages (several different texts listed, sorted and
    comma-separated, as a comparison of two protocols has; numbers that differ are NULL),
    ``test_limit`` from the evaluations of the ``test`` split, ``analysts`` and
    ``error_analyst`` from the ``analyse`` stage, the merge settings and the author model
    from ``consolidate`` (the author also from ``analyse``). A setting the run does not have
    is None (``error_analyst`` with the success analysts only; ``evolve_limit`` outside an
    evolve run; a limit of None is the whole split). A value of the wrong type is None.
    ``s0_drafted`` (Creation) and ``memory_baseline`` are an evolve run's only.
    """
    stages = manifest.stages
    agent = [
        _dict(record.config)
        for name, record in stages.items()
        if name == "rollout" or name.startswith("eval:")
    ]
    analyse = _dict(stages["analyse"].config) if "analyse" in stages else {}
    consolidate = _dict(stages["consolidate"].config) if "consolidate" in stages else {}
    imported = _dict(stages["import"].config) if "import" in stages else {}
    analyst = _text(analyse.get("analyst"))
    analysts, error_analyst = ANALYST_SETTINGS.get(analyst or "", (analyst, None))
    seeds = [_int(_dict(c.get("seeds")).get("run", c.get("seed")), "seed") for c in agent]
    settings: dict[str, Any] = {
        "kind": "evolve" if "evolve" in stages else next(iter(stages), "").split(":")[0] or None,
        "suite": _agreed([_text(c.get("suite")) for c in agent] + [_text(imported.get("suite"))]),
        "model": _agreed([_text(c.get("model")) for c in agent]),
        "author_model": _agreed(
            [_text(consolidate.get("author_model")), _text(analyse.get("model"))]
        ),
        "protocol": _agreed([_text(_dict(c.get("agent")).get("protocol")) for c in agent]),
        "delivery": _agreed([_text(c.get("delivery")) for c in agent]),
        "seed": _agreed(seeds),
        "skill_name": _agreed([_text(c.get("skill_name")) for c in agent]),
        "analysts": analysts,
        "error_analyst": error_analyst,
        "merge_batch": _int(consolidate.get("merge_batch"), "merge_batch"),
        "max_levels": _int(consolidate.get("max_levels"), "max_levels"),
        "merge_strategy": _text(consolidate.get("strategy")),
        # A consolidate stage on its own (the `consolidate` command) is the parallel tree.
        "consolidation": "parallel" if consolidate else None,
        "seq_batch": None,
        "s0_drafted": None,
        "memory_baseline": None,
        "evolve_limit": None,
        "test_limit": _agreed(
            [_int(c.get("limit"), "test_limit") for c in agent if c.get("split") == "test"],
            nulls=True,
        ),
    }
    evolve = _dict(stages["evolve"].config) if "evolve" in stages else None
    if evolve is not None:
        for column in _EVOLVE_SETTINGS:
            if column not in evolve:
                continue  # a field an older EvolveConfig did not have: the stages' value
            value = evolve[column]
            value = _int(value, column) if "INT" in SCHEMAS["runs"][column] else _text(value)
            if value is not None or column in ("evolve_limit", "test_limit"):
                settings[column] = value
        settings["author_model"] = settings["author_model"] or settings["model"]
        # Creation (S0 drafted by the author model) and the retrieval-memory baseline: false
        # for runs from before they existed, as for any run that did not ask for them.
        settings["s0_drafted"] = evolve.get("create") is True
        settings["memory_baseline"] = evolve.get("memory_baseline") is True
        # Before the sequential baseline every evolve was parallel; B and L_max are the
        # parallel tree's, Seq-B the sequential chain's: NULL where they do not apply.
        settings["consolidation"] = settings["consolidation"] or "parallel"
        if settings["consolidation"] == "sequential":
            settings["merge_batch"] = settings["max_levels"] = None
        else:
            settings["seq_batch"] = None
    if settings["analysts"] == "success":
        settings["error_analyst"] = None  # the success analysts only: no error analyst ran
    return settings


def read_run(
    run_dir: Path, con: duckdb.DuckDBPyConnection | None = None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str]], list[str]]:
    """The rows of every table for one run folder, and the problems met (one line each).

    Returns ``(rows, inserts, problems)``. With a connection, the bulk files are loaded by
    DuckDB into temp tables (:mod:`toolkit.index_bulk`) and ``inserts`` holds, per table, the
    SELECTs that give their rows; without one (or for a file DuckDB alone cannot vouch for)
    every row is in ``rows``.

    Raises:
        ToolkitError: the manifest is missing or invalid (the run cannot be indexed).
    """
    path = run_dir / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        first = _why(exc)
        raise ToolkitError(f"{path}: not a valid run manifest ({first})") from None
    manifest = manifest.settled()  # a stage whose process died reads as interrupted
    if manifest.schema_version > MANIFEST_SCHEMA_VERSION:
        raise ToolkitError(
            f"{path}: schema_version {manifest.schema_version} is newer than this toolkit "
            f"reads ({MANIFEST_SCHEMA_VERSION}); upgrade trace2skill"
        )
    run_id = run_dir.name
    problems: list[str] = []
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    inserts: dict[str, list[str]] = {name: [] for name in TABLES}
    counts: dict[str, int] = {}
    for origin, path in (
        ("rollout", run_dir / TRAJECTORIES_FILE),
        ("eval", run_dir / "evals" / TRAJECTORIES_FILE),
    ):
        temp = f"src_{origin}"
        n = (
            bulk.load(con, temp, path, "trajectories")
            if con is not None and path.is_file()
            else None
        )
        if n is not None:
            for table, sql in bulk.trajectory_inserts(temp, run_id, origin).items():
                inserts[table].append(sql)
            counts[origin] = n
        else:
            records = _read_lines(path, Trajectory.model_validate_json, problems)
            _trajectory_rows(run_id, origin, records, tables)
            counts[origin] = len(records)
    evals_dir = run_dir / "evals"
    for eval_file in sorted(evals_dir.glob("*/*.jsonl")) if evals_dir.is_dir() else []:
        for r in _read_lines(eval_file, _eval_line, problems):
            tables["evals"].append(
                {"run_id": run_id, **r.model_dump(exclude={"schema_version", "kind"})}
            )
    path = run_dir / CALLS_FILE
    n = (
        bulk.load(con, "src_calls", path, "llm_calls")
        if con is not None and path.is_file()
        else None
    )
    if n is not None:
        inserts["llm_calls"].append(bulk.call_insert("src_calls", run_id))
        counts["calls"] = n
    else:
        for c in _read_lines(path, LLMCallRecord.model_validate_json, problems):
            tables["llm_calls"].append(
                {
                    "run_id": run_id,
                    **c.model_dump(include=set(SCHEMAS["llm_calls"]) - {"run_id"}),
                }
            )
        counts["calls"] = len(tables["llm_calls"])
    merges = _evolve_rows(run_id, run_dir, tables, problems)
    result_commit = None
    try:
        lines, patch_commits, result_commit = read_skill_lines(run_dir, manifest, merges)
    except ToolkitError as exc:
        problems.append(f"{run_dir}: skill lines not read ({exc})")
    else:
        tables["skill_lines"] = lines
        for row in tables["patches"]:
            if row["kind"] == "leaf":
                row["commit"] = patch_commits.get(row["id"])
    tables["runs"].append(
        {
            "run_id": run_id,
            "created_at": manifest.created_at,
            "toolkit_version": manifest.toolkit_version,
            "schema_version": manifest.schema_version,
            **run_settings(manifest),
            "stages": json.dumps(
                {k: v.model_dump(mode="json") for k, v in manifest.stages.items()}, sort_keys=True
            ),
            "trajectories": counts["rollout"],
            "eval_trajectories": counts["eval"],
            "llm_calls": counts["calls"],
            **{
                name: len(tables[name])
                for name in ("evals", "analyses", "patches", "merges", "ablations")
            },
            "skill_lines": len(tables["skill_lines"]),
            "result_commit": result_commit,
            "skipped_lines": len(problems),
        }
    )
    return tables, inserts, problems


# ---------------------------------------------------------------------------------------------
# Writing (the I/O edge)
# ---------------------------------------------------------------------------------------------


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _columns_sql(table: str) -> str:
    return ", ".join(f'"{c}" {t}' for c, t in SCHEMAS[table].items())


def _write_parquet(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict],
    selects: list[str],
    target: Path,
) -> None:
    if selects and not rows:
        # Straight from DuckDB's temp tables to Parquet, cast to the schema: no copy between.
        columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in SCHEMAS[table].items())
        source = " UNION ALL BY NAME ".join(f"({select})" for select in selects)
        con.execute(
            f"COPY (SELECT {columns} FROM ({source})) TO {_sql_path(target)} (FORMAT parquet)"
        )
        return
    con.execute(f'CREATE OR REPLACE TEMP TABLE "t_{table}" ({_columns_sql(table)})')
    if rows:
        # Columns in schema order; DuckDB casts each to its declared type on insert.
        columns = {c: [row.get(c) for row in rows] for c in SCHEMAS[table]}
        con.register("rows_frame", pd.DataFrame(columns))
        con.execute(f'INSERT INTO "t_{table}" SELECT * FROM rows_frame')
        con.unregister("rows_frame")
    for select in selects:
        con.execute(f'INSERT INTO "t_{table}" BY NAME {select}')
    con.execute(f'COPY "t_{table}" TO {_sql_path(target)} (FORMAT parquet)')
    con.execute(f'DROP TABLE "t_{table}"')


def _compact(
    con: duckdb.DuckDBPyConnection,
    index_dir: Path,
    run_id: str,
    tables: dict[str, list[dict]],
    inserts: dict[str, list[str]],
) -> None:
    """Write one run's Parquet files into a temp folder, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=index_dir))
    try:
        for table in TABLES:
            _write_parquet(con, table, tables[table], inserts[table], tmp / f"{table}.parquet")
        _replace_dir(tmp, index_dir / run_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for temp in bulk.TEMP_TABLES:
            con.execute(f'DROP TABLE IF EXISTS "{temp}"')


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
    if (runs_dir / MANIFEST_FILE).is_file():
        parent = runs_dir.resolve().parent
        raise RunIndexError(
            f"{runs_dir} is a run folder; the index covers a folder of runs: "
            f"trace2skill index {quote(os.path.relpath(parent))}"
        )
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

        bar = Progress("index", len(todo), unit="run", counts_passes=False)
    with duckdb.connect(":memory:") as con:
        for run_id, run_dir, prints in todo:
            try:
                tables, inserts, problems = read_run(run_dir, con)
            except ToolkitError as exc:
                report.skipped.append(run_id)
                report.problems.append(f"skipped run {run_id}: {exc}")
            else:
                _compact(con, index_dir, run_id, tables, inserts)
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
        raise RunIndexError(
            f"no index at {index_dir}; build it with: trace2skill index "
            f"{quote(str(runs_dir))} (for runs in another folder, give that folder: --runs-dir DIR)"
        )
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


#: Statements ``query`` runs: reads only (COPY ... TO, CREATE or ATTACH would write files).
_READ_STATEMENTS = ("SELECT", "EXPLAIN", "PRAGMA")


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """Run one ad-hoc read-only SQL statement; a DuckDB error becomes one clear line.

    Raises:
        RunIndexError: the SQL is empty, holds several statements or one that is not a read
            (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, PRAGMA), is invalid or fails.
    """
    try:
        statements = con.extract_statements(sql)
        if not statements:
            raise RunIndexError("empty query: give one SQL statement, e.g. SELECT * FROM runs")
        if len(statements) > 1:
            raise RunIndexError(f"{len(statements)} statements: give one at a time")
        kind = statements[0].type.name
        if kind not in _READ_STATEMENTS:
            raise RunIndexError(
                f"only reads are run (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN); this is {kind}"
            )
        relation = con.sql(sql)
        if relation is None:  # a read that returns no relation (never seen): run it plainly
            return con.execute(sql).df()
        return _frame(relation)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunIndexError(f"query failed: {first}") from None


_HUGE_INTEGERS = frozenset({"HUGEINT", "UHUGEINT"})


def _frame(relation: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """The relation as a DataFrame, with 128-bit integers as integers.

    ``sum`` of an integer column is a HUGEINT, which pandas receives as a float (a count of
    13 printed as 13.0); such columns are cast to BIGINT, unless a value does not fit.
    """
    huge = [str(t) in _HUGE_INTEGERS for t in relation.types]
    if not any(huge):
        return relation.df()
    names = ['"' + name.replace('"', '""') + '"' for name in relation.columns]
    narrowed = relation.project(
        ", ".join(
            f"CAST({n} AS BIGINT) AS {n}" if wide else n
            for n, wide in zip(names, huge, strict=True)
        )
    )
    try:
        return narrowed.df()
    except (duckdb.ConversionException, duckdb.OutOfRangeException):  # beyond 64 bits: a float
        return relation.df()
