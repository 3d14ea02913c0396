"""What the app's pages show, as DataFrames: index queries plus the run files beside them.

Pure of Streamlit: every function takes a DuckDB connection from :func:`open_index` (or a run
folder) and returns pandas frames or pydantic rows, so the pages only lay out and plot, and
the tests and the benchmark call the same code. Pass rates come from
:mod:`toolkit.queries`; a selection of runs is a DuckDB schema of filtered views placed first
on the search path, so those shared queries answer for the selection unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import Any

import duckdb
import pandas as pd

from toolkit import queries
from toolkit.app import contract
from toolkit.cost import CostTally
from toolkit.errors import ToolkitError
from toolkit.evaluate import Comparison, EvalRecord, EvalResult, pair_results, summarise
from toolkit.index import INDEX_DIR, TABLES, build_index, connect
from toolkit.runs import read_manifest
from toolkit.skill import Skill
from toolkit.stats import bootstrap_seed, pass_rate
from toolkit.tokens import TokenTally, describe_tokens
from toolkit.trajectory import skill_commit

PAGE_SIZE = 50
#: A group of rows' cost as :func:`cost_text` takes it: the priced rows' sum, the rows, and
#: the rows whose cost is unknown (NULL).
_COST_TALLY = "coalesce(sum(cost_usd), 0.0), count(*), count(*) FILTER (WHERE cost_usd IS NULL)"


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


def has_runs(runs_dir: Path) -> bool:
    """Whether ``runs_dir`` holds at least one run folder (one with ``manifest.json``)."""
    return runs_dir.is_dir() and any(runs_dir.glob("*/manifest.json"))


def refresh_index(runs_dir: Path) -> list[str]:
    """Bring the index up to date (incremental); returns the problems met, one line each.

    A runs folder the app may not write to keeps its existing index: the failure is reported.
    """
    try:
        return build_index(runs_dir).problems
    except (ToolkitError, OSError) as exc:
        return [f"could not update the index ({exc}); showing the last one built"]


def open_index(runs_dir: Path, run_ids: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB over the index; with ``run_ids``, every table sees only those runs."""
    con = connect(runs_dir)
    if run_ids is not None:
        con.execute("CREATE TEMP TABLE selected_runs (run_id VARCHAR)")
        if run_ids:
            con.executemany("INSERT INTO selected_runs VALUES (?)", [[r] for r in run_ids])
        con.execute("CREATE SCHEMA sel")
        for table in TABLES:
            con.execute(
                f'CREATE VIEW sel."{table}" AS SELECT * FROM main."{table}" '
                "WHERE run_id IN (SELECT run_id FROM selected_runs)"
            )
        con.execute("SET search_path = 'sel,main'")
    return con


def run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every indexed run id, newest first."""
    rows = con.execute("SELECT run_id FROM main.runs ORDER BY created_at DESC, run_id").fetchall()
    return [r for (r,) in rows]


def stages(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's manifest stages (name -> status, times, config, counts)."""
    row = con.execute("SELECT stages FROM main.runs WHERE run_id = ?", [run_id]).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


# ---------------------------------------------------------------------------------------------
# Skill versions: S0 and S* of a run, from its git refs when they exist
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSkills:
    """A run's skill repository, skill folder and its S0/S* (None where not produced yet)."""

    repo_path: Path
    skill_path: str
    base: Skill | None
    result: Skill | None

    @property
    def base_commit(self) -> str | None:
        """S0's version id (the folder's tree id, as trajectories record it)."""
        return skill_commit(self.base) if self.base else None

    @property
    def result_commit(self) -> str | None:
        """S*'s version id."""
        return skill_commit(self.result) if self.result else None


def _stage_setting(run_stages: dict[str, dict[str, Any]], key: str) -> Any:
    for stage in run_stages.values():
        value = (stage.get("config") or {}).get(key)
        if value:
            return value
    return None


def _has_run(path: Path, run_id: str) -> bool:
    from toolkit.repo import SkillRepo

    if not path.is_dir():
        return False
    try:
        repo = SkillRepo.open(path)
    except ToolkitError:
        return False
    try:
        return bool(repo.run_refs(run_id))
    finally:
        repo.close()


def _bundle_repo(runs_dir: Path, run_id: str) -> Path | None:
    """A repository of the app's own (under ``runs/.index/bundles/``) holding the refs of the
    run's ``refs.bundle``, made once per bundle; None when the run has no bundle."""
    from toolkit.repo import SkillRepo, import_bundle
    from toolkit.runs import REFS_BUNDLE

    bundle = runs_dir / run_id / REFS_BUNDLE
    if not bundle.is_file():
        return None
    stamp = f"{bundle.stat().st_size}-{bundle.stat().st_mtime_ns}"
    target = runs_dir / INDEX_DIR / "bundles" / run_id
    if (target / ".bundle-stamp").is_file() and (target / ".bundle-stamp").read_text() == stamp:
        return target
    # Built beside the target and renamed into place: two app sessions never see half a repo.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}-", dir=target.parent))
    try:
        subprocess.run(["git", "init", "-q", str(tmp)], check=True, capture_output=True)
        repo = SkillRepo.open(tmp)
        try:
            import_bundle(repo, bundle)
        finally:
            repo.close()
        (tmp / ".bundle-stamp").write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except (ToolkitError, OSError, subprocess.CalledProcessError):
        shutil.rmtree(tmp, ignore_errors=True)
        return target if (target / ".bundle-stamp").is_file() else None
    return target


def refs_run_id(runs_dir: Path, folder: str) -> str:
    """The run id the run's git refs are named by (``t2s/<id>/...``): its manifest's, which
    differs from the folder's name when the folder was renamed or copied (a downloaded
    artifact, a second copy beside the first)."""
    try:
        manifest = read_manifest(Path(runs_dir) / folder)
    except ToolkitError:
        return folder
    return manifest.run_id if manifest is not None and manifest.run_id else folder


def run_repo(runs_dir: Path, run_id: str, recorded: str | None) -> Path | None:
    """The repository holding the refs of the run in folder ``run_id``: the one the runs
    folder lives in (a clone that imported the bundle: the user's copy, as the CLI chooses
    it), else the one the run recorded, else the run's ``refs.bundle`` imported into a
    repository of the app's own (the run was made on another machine)."""
    runs_dir = Path(runs_dir).resolve()
    refs_id = refs_run_id(runs_dir, run_id)
    candidates = [runs_dir.parent]
    if recorded:
        path = Path(recorded)
        candidates.append(path if path.is_absolute() else runs_dir.parent / path)
    for path in candidates:
        if _has_run(path, refs_id):
            return path
    return _bundle_repo(runs_dir, run_id)


def run_skills(
    runs_dir: Path, run_id: str, run_stages: dict[str, dict[str, Any]]
) -> RunSkills | None:
    """The skill repository and S0/S* of the run in folder ``run_id``, or None when no
    repository holds its refs.

    The repository is found by :func:`run_repo`; ``skill_path`` (a stage's config) is the
    skill folder in it; the refs are named by the manifest's run id (:func:`refs_run_id`).
    """
    from toolkit.repo import SkillRepo

    repo_value, skill_path = (
        _stage_setting(run_stages, "repo"),
        _stage_setting(run_stages, "skill_path"),
    )
    if not skill_path:
        return None
    if Path(skill_path).is_absolute() and repo_value:
        skill_path = os.path.relpath(skill_path, repo_value)
    repo_path = run_repo(runs_dir, run_id, repo_value)
    if repo_path is None:
        return None
    try:
        repo = SkillRepo.open(repo_path)
    except ToolkitError:
        return None
    refs_id = refs_run_id(runs_dir, run_id)
    try:
        refs = repo.run_refs(refs_id)
        loaded = {}
        for name in ("base", "result"):
            ref = f"t2s/{refs_id}/{name}"
            loaded[name] = repo.load_skill(ref, skill_path) if ref in refs else None
    except ToolkitError:
        return None
    finally:
        repo.close()
    return RunSkills(repo_path, skill_path, loaded["base"], loaded["result"])


def next_step(runs_dir: Path, run: str, run_stages: dict[str, dict[str, Any]], want: str) -> str:
    """What produces the ``want`` (``consolidation`` or ``attribution``) a run lacks: the
    command that does, or why there is nothing to produce (markdown, one paragraph).

    An interrupted ``evolve`` is resumed, not restarted stage by stage; a run whose analyses
    were all dropped has nothing to consolidate; a run with no refs (an evaluation, a
    rollout, an import) has no S* to ablate.
    """
    from toolkit.trajectory import TRAJECTORIES_FILE

    run_dir = Path(runs_dir) / run
    refs_id = refs_run_id(runs_dir, run)
    evolve = run_stages.get("evolve")
    if evolve is not None and evolve.get("status") != "done":
        return (
            f"Run `{run}`'s `evolve` stopped ({evolve.get('status')}): continue it with "
            f"`trace2skill evolve --resume --run-id {refs_id} --runs-dir {quote(str(runs_dir))}`."
        )
    if want == "attribution":
        if run_skills(runs_dir, run, run_stages) is None:
            return (
                f"Run `{run}` has no S0 -> S* (an evaluation, rollout or import): attribution "
                "measures the edits of an evolved run (`trace2skill evolve`, then "
                "`trace2skill ablate RUN_DIR`)."
            )
        return (
            f"Run `{run}` has no attribution yet; run `trace2skill ablate {quote(str(run_dir))}`."
        )
    analyses = contract.read_analyses(run_dir)
    if not analyses and not (run_dir / TRAJECTORIES_FILE).is_file():
        return (
            f"Run `{run}` holds evaluations only: there is nothing to analyse or consolidate. "
            "A skill evolves from rollouts on an evolve split: `trace2skill evolve` (or "
            "`rollout`, `analyse` and `consolidate` one by one)."
        )
    if not analyses:
        return (
            f"Run `{run}` has no analyses yet; run "
            f"`trace2skill analyse {quote(str(run_dir))}` (with "
            "`--skill SKILL_DIR` for imported trajectories), then `trace2skill consolidate`."
        )
    if not any(a.status == "kept" for a in analyses):
        reasons = Counter(a.reason or "unknown" for a in analyses)
        shown = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        return (
            f"None of run `{run}`'s {len(analyses)} analyses was kept ({shown}), so there is "
            "no patch to consolidate and no S*."
        )
    return (
        f"Run `{run}` has no consolidation yet; run "
        f"`trace2skill consolidate {quote(str(run_dir))}`."
    )


def skill_lines(skills: RunSkills, run_dir: Path, file: str) -> pd.DataFrame:
    """S* lines of ``file`` with the commit that wrote each, its kind, level, group and support.

    Where a line is the text of an edit of the final patch, its support, leaf patches and
    trajectories are that edit's (as ``support``, the index and the PR read them; blame alone
    credits only the first child that wrote the line).

    Columns: line, text, kind, level, group, support, patches, trajectories, commit.
    """
    from toolkit.attribution.support import edit_line_support
    from toolkit.repo import SkillRepo, blame_file
    from toolkit.skill_lines import final_edits

    run_id = run_dir.name
    repo = SkillRepo.open(skills.repo_path)
    try:
        path = f"{skills.skill_path.strip('/')}/{file}"
        result = f"t2s/{run_id}/result"
        records = blame_file(repo, path, result)
        manifest = read_manifest(run_dir)
        commit = repo.git.resolve([result])[0]
        edits: dict[int, Any] = {}
        try:
            final = (
                final_edits(run_dir, manifest, repo, run_id, commit)
                if manifest is not None and commit is not None
                else None
            )
        except ToolkitError:
            final = None  # a torn merges.jsonl: blame's own figures, as git has them
        text = skills.result.files.get(file) if skills.result else None
        if final is not None and isinstance(text, str):
            edits = edit_line_support(text, file, *final)
    finally:
        repo.close()
    rows = []
    for r in records:
        edit = edits.get(r.line)
        rows.append(
            {
                "line": r.line,
                "text": r.text,
                "kind": r.kind or "user",
                "level": r.level,
                "group": r.group,
                "support": edit.support if edit else r.support,
                "patches": ", ".join(edit.sources if edit else r.patches),
                "trajectories": list(edit.trajectories if edit else r.trajectories),
                "commit": r.commit[:10],
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "line",
            "text",
            "kind",
            "level",
            "group",
            "support",
            "patches",
            "trajectories",
            "commit",
        ],
    ).astype({"level": "Int64", "support": "Int64"})


def file_diff(before: Skill | None, after: Skill | None) -> dict[str, list[str]]:
    """Unified diff lines per file between two skill versions (files that differ only)."""
    old = before.files if before else {}
    new = after.files if after else {}
    out = {}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, ""), new.get(name, "")
        if a == b or isinstance(a, bytes) or isinstance(b, bytes):
            continue
        out[name] = list(
            difflib.unified_diff(
                a.splitlines(), b.splitlines(), f"S0/{name}", f"S*/{name}", lineterm=""
            )
        )
    return out


def version_labels(
    con: duckdb.DuckDBPyConnection,
    skills: RunSkills | None = None,
    runs: dict[str, RunSkills | None] | None = None,
) -> dict[str, str]:
    """A readable label per skill version: ``S0 1a2b3c4d``, ``S* ...``, ``ablate/<edit>``,
    ``only/<edit>``, ``no skill``.

    ``skills``: one run's S0/S*. ``runs``: several runs' (run folder -> skills): each S0/S*
    label then names its run(s), ``S* 1a2b3c4d (run-a)``, so versions of different runs are
    told apart.
    """
    commits = [
        c for (c,) in con.execute("SELECT DISTINCT skill_commit FROM trajectories").fetchall()
    ]
    roles = {
        commit: f"{kind}/{edit_id[:12]}"
        for commit, kind, edit_id in con.execute(
            "SELECT DISTINCT skill_commit, kind, edit_id FROM ablations "
            "WHERE skill_commit IS NOT NULL"
        ).fetchall()
    }
    if skills is not None:
        roles |= {skills.base_commit: "S0", skills.result_commit: "S*"}
    owners: dict[str, list[str]] = {}
    for run, run_skills_ in (runs or {}).items():
        if run_skills_ is None:
            continue
        for commit, role in ((run_skills_.base_commit, "S0"), (run_skills_.result_commit, "S*")):
            if commit is not None:
                # A skill both S0 of one run and S* of another keeps the first role it got.
                roles.setdefault(commit, role)
                owners.setdefault(commit, []).append(run)
    labels = {}
    for commit in sorted(commits):
        if commit == "none":
            labels[commit] = "no skill"
        elif commit.startswith("memory-"):  # a skill with a memory bank (toolkit.memory)
            labels[commit] = f"skill + memory {commit[7:15]}"
        else:
            labels[commit] = f"{roles[commit]} {commit[:8]}" if commit in roles else commit[:8]
            if roles.get(commit, "").startswith(("ablate/", "only/")):
                labels[commit] = roles[commit]
            elif commit in owners:
                labels[commit] += f" ({', '.join(owners[commit])})"
    return labels


def selection_versions(
    con: duckdb.DuckDBPyConnection, runs_dir: Path, run_list: list[str]
) -> tuple[dict[str, RunSkills | None], dict[str, str]]:
    """The skills (S0/S*) of each selected run and a label per skill version they hold."""
    skills = {r: run_skills(runs_dir, r, stages(con, r)) for r in run_list}
    if len(skills) == 1:
        return skills, version_labels(con, next(iter(skills.values())))
    # Several runs: one pass over all of them (one run's labels overwrote the others').
    return skills, version_labels(con, runs=skills)


# ---------------------------------------------------------------------------------------------
# Runs page
# ---------------------------------------------------------------------------------------------


def _rate_text(outcomes: list[bool], seed: int = 0) -> tuple[float | None, str]:
    if not outcomes:
        return None, ""
    r = pass_rate(outcomes, seed=seed)  # the run's seed: the CI its summary.json shows
    return r.rate, f"{r.rate:.1%} [{r.ci.low:.1%}, {r.ci.high:.1%}] n={r.n}"


def _status_text(run_stages: dict[str, dict[str, Any]]) -> str:
    """``done`` when every stage is; else the stages that are not, with their status."""
    open_ = [
        f"{name.split(':', 1)[0]}: {stage.get('status')}"
        for name, stage in run_stages.items()
        if stage.get("status") != "done"
    ]
    return ", ".join(dict.fromkeys(open_)) or ("done" if run_stages else "")


def _wall_seconds(run_stages: dict[str, dict[str, Any]]) -> float | None:
    """The run's wall time: each piece of work once (nested stages are not added again)."""
    from toolkit.runs import StageRecord, stage_times

    records = {}
    for name, stage in run_stages.items():
        with contextlib.suppress(ValueError):
            records[name] = StageRecord.model_validate(stage)
    return sum(t.seconds or 0.0 for t in stage_times(records)) or None


def _analysts_text(analysts: str | None, error_analyst: str | None) -> str | None:
    return f"{analysts} ({error_analyst})" if analysts and error_analyst else analysts


def _merge_text(strategy: str | None, batch: int | None, levels: int | None) -> str | None:
    parts = [strategy, *(f"{k}={v}" for k, v in (("B", batch), ("L_max", levels)) if v)]
    return ", ".join(p for p in parts if p) or None


def runs_table(con: duckdb.DuckDBPyConnection, runs_dir: Path) -> pd.DataFrame:
    """One row per run: its kind, suite, models, modes, protocols, seeds, author model,
    analysts and merge settings, status, cost, wall time, S0 -> S*.

    Suite, models, modes, protocols and seeds are those of the run's trajectories (a run of
    several conditions lists each), the run's settings (the index's ``runs`` columns) while
    it has none yet; kind, author, analysts and merge are the run's settings.

    S0 and S* are read from the run's git refs when its manifest names the repository;
    otherwise S0 is the skill its rollout used and S* the last other skill it evaluated.
    Their pass rates come from the run's evaluations (the rollout's when S0 has none).
    """
    traj = con.execute(
        f"""SELECT run_id, string_agg(DISTINCT suite, ', ' ORDER BY suite),
                  string_agg(DISTINCT model, ', ' ORDER BY model),
                  string_agg(DISTINCT delivery, ', ' ORDER BY delivery),
                  string_agg(DISTINCT protocol, ', ' ORDER BY protocol),
                  string_agg(DISTINCT seed::VARCHAR, ', ' ORDER BY seed::VARCHAR),
                  {_COST_TALLY}
           FROM trajectories GROUP BY run_id"""
    ).fetchall()
    per_run = {r[0]: r[1:] for r in traj}
    calls = {
        run_id: cost
        for run_id, *cost in con.execute(
            f"SELECT run_id, {_COST_TALLY} FROM llm_calls GROUP BY run_id"
        ).fetchall()
    }
    rows = []
    for (
        run_id,
        created_at,
        stages_json,
        n_traj,
        n_eval,
        skipped,
        kind,
        author,
        analysts,
        error_analyst,
        strategy,
        batch,
        levels,
        *settings,  # as the trajectories' suite, models, modes, protocols and seeds
    ) in con.execute(
        """SELECT run_id, created_at, stages, trajectories, eval_trajectories, skipped_lines,
                  kind, author_model, analysts, error_analyst, merge_strategy, merge_batch,
                  max_levels, suite, model, delivery, protocol, seed::VARCHAR
           FROM runs ORDER BY created_at DESC, run_id"""
    ).fetchall():
        run_stages = json.loads(stages_json) if stages_json else {}
        traj_settings = per_run.get(run_id, (None,) * 8)
        traj_cost = traj_settings[5:]
        # What the trajectories show; the run's settings before it has any.
        suite, models, modes, protocols, seeds = (
            shown if shown is not None else setting
            for shown, setting in zip(traj_settings[:5], settings, strict=True)
        )
        s0, s_star = _run_versions(con, runs_dir, run_id, run_stages)
        r0, t0 = _rate_text(*_outcomes(con, run_id, s0))
        r1, t1 = _rate_text(*_outcomes(con, run_id, s_star))
        rows.append(
            {
                "run": run_id,
                "created": created_at,
                "kind": kind,
                "suite": suite,
                "models": models,
                "mode": modes,
                # Two evaluations of one skill under two protocols differ only here.
                "protocols": protocols,
                "seeds": seeds,
                "author": author,
                "analysts": _analysts_text(analysts, error_analyst),
                "merge": _merge_text(strategy, batch, levels),
                "status": _status_text(run_stages),
                "trajectories": n_traj + n_eval,
                # Damaged lines the index skipped: the rates below are without them.
                "skipped_lines": skipped or 0,
                # The calls log has every call; a run without one (an import) has its
                # trajectories' costs. Unknown costs are said to be, not shown as $0.
                "cost": (
                    cost_text(*calls[run_id], "calls")
                    if run_id in calls
                    else cost_text(*traj_cost, "trajectories")
                ),
                "wall_s": _wall_seconds(run_stages),
                "S0": t0,
                "S*": t1,
                "delta": (r1 - r0) if r0 is not None and r1 is not None else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "run",
            "created",
            "kind",
            "suite",
            "models",
            "mode",
            "protocols",
            "seeds",
            "author",
            "analysts",
            "merge",
            "status",
            "trajectories",
            "skipped_lines",
            "cost",
            "wall_s",
            "S0",
            "S*",
            "delta",
        ],
    )


def _run_versions(
    con: duckdb.DuckDBPyConnection, runs_dir: Path, run_id: str, run_stages: dict[str, Any]
) -> tuple[str | None, str | None]:
    skills = run_skills(runs_dir, run_id, run_stages)
    if skills is not None and skills.base is not None:
        return skills.base_commit, skills.result_commit
    row = con.execute(
        """SELECT skill_commit FROM trajectories WHERE run_id = ? AND origin = 'rollout'
           GROUP BY 1 ORDER BY count(*) DESC LIMIT 1""",
        [run_id],
    ).fetchone()
    s0 = row[0] if row else None
    if s0 is None:
        # An evaluation or compare run: its first skill is the baseline, the next the
        # change (an eval of one skill showed it as S* beside an empty S0).
        evaluated = [
            c
            for (c,) in con.execute(
                """SELECT skill_commit FROM trajectories
                   WHERE run_id = ? AND origin = 'eval' AND skill_commit != 'none'
                   GROUP BY 1 ORDER BY min(ended_at), 1""",
                [run_id],
            ).fetchall()
        ]
        return (evaluated[0] if evaluated else None), (evaluated[1] if len(evaluated) > 1 else None)
    row = con.execute(
        """SELECT skill_commit FROM trajectories
           WHERE run_id = ? AND origin = 'eval' AND skill_commit NOT IN ('none', ?)
           GROUP BY 1 ORDER BY max(ended_at) DESC LIMIT 1""",
        [run_id, s0],
    ).fetchone()
    return s0, row[0] if row else None


def _outcomes(
    con: duckdb.DuckDBPyConnection, run_id: str, commit: str | None
) -> tuple[list[bool], int]:
    """The outcomes of one condition of ``commit`` in the run: one origin, split, protocol,
    model, seed and delivery (a compare run of one skill under two protocols holds two
    agents' evaluations of the same tasks; pooled, n counted each task twice), and its seed.
    """
    if commit is None:
        return [], 0
    for origin in ("eval", "rollout"):
        rows = con.execute(
            """SELECT split, protocol, model, seed, delivery, passed, started_at
               FROM trajectories WHERE run_id = ? AND skill_commit = ? AND origin = ?
               ORDER BY id""",
            [run_id, commit, origin],
        ).fetchall()
        if rows:
            # One split, not a pool of several: the test split when evaluated there, else
            # the split with the most trajectories.
            counts = Counter(r[0] for r in rows)
            split = "test" if "test" in counts else counts.most_common(1)[0][0]
            rows = [r for r in rows if r[0] == split]
            # Then one condition: the one with the most trajectories, the first evaluated
            # of those that tie (min() of the negated count, then the earliest start).
            conditions: dict[tuple[Any, ...], list[Any]] = {}
            for r in rows:
                conditions.setdefault(r[1:5], []).append(r)
            chosen = min(
                conditions.values(),
                key=lambda rs: (-len(rs), min(r[6] or 0.0 for r in rs), str(rs[0][1:5])),
            )
            return [bool(r[5]) for r in chosen], int(chosen[0][3] or 0)
    return [], 0


def pass_rates(
    con: duckdb.DuckDBPyConnection, labels: dict[str, str], origin: str | None = None
) -> pd.DataFrame:
    """Pass rate with bootstrap 95% CI per (suite, skill version, model) of the selection,
    one row per run, origin and split (never pooled: see ``queries.pass_rate_by_skill``).

    ``origin``: ``eval`` or ``rollout`` to count only those trajectories; None: both.
    ``where`` names the run, origin and split of a row (and its protocol, where they differ).
    """
    rows = [r.model_dump() for r in queries.pass_rate_by_skill(con, origin=origin)]
    out = pd.DataFrame(
        rows,
        columns=["suite", "run_id", "origin", "split", "skill_commit", "model", "protocol",
                 "n", "passed", "rate", "ci_low", "ci_high"],
    )  # fmt: skip
    out["version"] = [labels.get(c, c[:8]) for c in out["skill_commit"]]
    out["where"] = out["run_id"] + " " + out["origin"] + "/" + out["split"]
    # Another protocol is another agent: named wherever a selection holds several.
    if out["protocol"].nunique() > 1:
        out["where"] += " " + out["protocol"]

    # No skill, S0, S*, then the variants: the order a reader compares them in.
    def rank(label: str) -> tuple[int, str]:
        first = 0 if label == "no skill" else {"S0": 1, "S*": 2}.get(label.split(" ")[0], 3)
        return first, label

    order = sorted(range(len(out)), key=lambda i: rank(out["version"].iloc[i]))
    return out.iloc[order].reset_index(drop=True)


def flips(con: duckdb.DuckDBPyConnection, commit_a: str, commit_b: str) -> pd.DataFrame:
    """Tasks that flipped between two versions, each with one trajectory under each version."""
    flipped = queries.flipped_tasks(con, commit_a, commit_b)
    rows = []
    for f in flipped:
        ids = {
            commit: (run, traj)
            for commit, run, traj in con.execute(
                """SELECT skill_commit, arg_min(run_id, id), min(id)
                   FROM trajectories
                   WHERE suite = ? AND task_id = ? AND model = ? AND skill_commit IN (?, ?)
                     AND protocol IS NOT DISTINCT FROM ? AND seed = ?
                   GROUP BY 1""",
                [f.suite, f.task_id, f.model, commit_a, commit_b, f.protocol, f.seed],
            ).fetchall()
        }
        rows.append(
            {
                "task": f.task_id,
                "suite": f.suite,
                "model": f.model,
                "direction": f.direction,
                "trajectory_a": ids.get(commit_a, (None, None))[1],
                "trajectory_b": ids.get(commit_b, (None, None))[1],
                "run_a": ids.get(commit_a, (None, None))[0],
                "run_b": ids.get(commit_b, (None, None))[0],
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "task",
            "suite",
            "model",
            "direction",
            "trajectory_a",
            "trajectory_b",
            "run_a",
            "run_b",
        ],
    )


# ---------------------------------------------------------------------------------------------
# Conditions page: protocols, skill versions, models and deliveries side by side
# ---------------------------------------------------------------------------------------------

#: The order a reader compares protocols in: the model alone first, then the harnesses.
PROTOCOL_ORDER = ["plain", "code", "json", "tools"]

CONDITION_FRAME_COLUMNS = [
    "condition", "run", "origin", "protocol", "skill", "model", "delivery", "n", "passed",
    "rate", "ci_low", "ci_high", "s_per_task", "s_median", "replayed", "tokens_per_task",
    "tokens_unreported", "replies_per_task", "stop_reasons", "superseded", "id",
]  # fmt: skip


def suites_and_splits(con: duckdb.DuckDBPyConnection, origin: str | None = None) -> list[tuple]:
    """Every (suite, split) the selection has trajectories of (of one origin, or any)."""
    return con.execute(
        "SELECT DISTINCT suite, split FROM trajectories WHERE ? IS NULL OR origin = ? ORDER BY ALL",
        [origin, origin],
    ).fetchall()


def _skill_text(c: queries.ConditionRate, labels: dict[str, str]) -> str:
    """The app's name of the condition's skill version (``no skill``, ``S0 1a2b3c4d``...),
    with the skill's name where the version has no role to name it by."""
    label = labels.get(c.skill_commit, c.skill_commit[:8])
    if label == c.skill_commit[:8] and c.skill_name:
        return f"{c.skill_name} {label}"
    return label


def condition_labels(rows: list[queries.ConditionRate], labels: dict[str, str]) -> dict[str, str]:
    """A short label per condition id: protocol and skill version, then what else tells the
    listed conditions apart (delivery, model, origin) and the run, e.g.
    ``code, no skill (wikitq-code-none)``."""
    varies = {
        field: len({getattr(r, field) for r in rows}) > 1
        for field in ("delivery", "model", "origin")
    }
    out = {}
    for r in rows:
        parts = [r.protocol, _skill_text(r, labels)]
        if varies["delivery"] and r.skill_commit != "none":
            parts.append(r.delivery)
        parts += [getattr(r, f) for f in ("model", "origin") if varies[f]]
        out[r.id] = f"{', '.join(parts)} ({r.run_id})"
    return out


def _order(
    rows: list[queries.ConditionRate], labels: dict[str, str]
) -> list[queries.ConditionRate]:
    """Protocols in :data:`PROTOCOL_ORDER`, then no skill, S0, S* and the other versions (the
    order of the runs page), then model, delivery, run and origin."""

    def rank(r: queries.ConditionRate) -> tuple:
        protocol = PROTOCOL_ORDER.index(r.protocol) if r.protocol in PROTOCOL_ORDER else 9
        skill = _skill_text(r, labels)
        version = 0 if skill == "no skill" else {"S0": 1, "S*": 2}.get(skill.split(" ")[0], 3)
        return (protocol, r.protocol, version, skill, r.model, r.delivery, r.run_id, r.origin)

    return sorted(rows, key=rank)


def conditions(
    con: duckdb.DuckDBPyConnection,
    labels: dict[str, str],
    *,
    suite: str,
    split: str,
    origin: str | None = None,
) -> tuple[list[queries.ConditionRate], pd.DataFrame]:
    """The conditions of one suite's split (protocol x skill version x model x delivery, per
    run): their rows in :func:`_order`'s order, and the table the page shows (one row each,
    ``id`` last)."""
    rows = _order(queries.condition_rates(con, origin=origin, suite=suite, split=split), labels)
    names = condition_labels(rows, labels)
    table = pd.DataFrame(
        [
            {
                "condition": names[r.id],
                "run": r.run_id,
                "origin": r.origin,
                "protocol": r.protocol,
                "skill": _skill_text(r, labels),
                "model": r.model,
                "delivery": r.delivery,
                "n": r.n,
                "passed": r.passed,
                "rate": r.rate,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "s_per_task": r.seconds_per_task,
                "s_median": r.seconds_median,
                "replayed": r.replayed,
                "tokens_per_task": r.tokens_per_task,
                "tokens_unreported": r.tokens_unreported,
                "replies_per_task": r.replies_per_task,
                "stop_reasons": ", ".join(f"{k} {v}" for k, v in r.stop_reasons.items()),
                "superseded": r.superseded,
                "id": r.id,
            }
            for r in rows
        ],
        columns=CONDITION_FRAME_COLUMNS,
    )
    return rows, table


def _eval_result(records: list[EvalRecord], c: queries.ConditionRate) -> EvalResult:
    summary = summarise(
        records,
        suite=c.suite,
        split=c.split,
        skill=c.skill_name or "none",
        skill_commit=c.skill_commit,
        model=c.model,
        seed=bootstrap_seed(r.seed for r in records),  # as the condition's eval file has it
        delivery=c.delivery,
        limit=None,
        protocol=c.protocol,
    )
    return EvalResult(summary=summary, records=records)


def condition_comparison(
    con: duckdb.DuckDBPyConnection, a: queries.ConditionRate, b: queries.ConditionRate
) -> tuple[Comparison, pd.DataFrame]:
    """B against A on the (task, seed) pairs both ran, as ``trace2skill compare`` pairs two
    eval files (:func:`toolkit.evaluate.pair_results`, bootstrap seed A's), and the discordant
    tasks: who passed, and each side's trajectory and run (for a link).

    Returns the :class:`toolkit.evaluate.Comparison` and the discordant tasks' frame
    (columns: task, seed, passed, trajectory_a, run_a, trajectory_b, run_b).
    """
    records_a, records_b = queries.condition_records(con, a), queries.condition_records(con, b)
    comparison = pair_results(_eval_result(records_a, a), _eval_result(records_b, b))
    ids_a = {(r.task_id, r.seed): r.trajectory_id for r in records_a}
    ids_b = {(r.task_id, r.seed): r.trajectory_id for r in records_b}
    rows = [
        {
            "task": o.task_id,
            "seed": o.seed,
            "passed": "only A" if o.passed_a else "only B",
            "trajectory_a": ids_a[o.task_id, o.seed],
            "run_a": a.run_id,
            "trajectory_b": ids_b[o.task_id, o.seed],
            "run_b": b.run_id,
        }
        for o in comparison.outcomes
        if o.passed_a != o.passed_b
    ]
    # Only A's first, then only B's: the two lists the comparison's counts name.
    rows.sort(key=lambda r: r["passed"] != "only A")
    columns = ["task", "seed", "passed", "trajectory_a", "run_a", "trajectory_b", "run_b"]
    return comparison, pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# Consolidation tree and attribution (run files of the contract)
# ---------------------------------------------------------------------------------------------


def merge_tree(run_dir: Path) -> pd.DataFrame:
    """The consolidation hierarchy as nodes (id, parent, label, kind, status, support).

    Leaves are the patches the first level merged; each merge is ``L<level>/<group>`` under
    the merge that took it as a child (by its node id, group, patch id or commit). The root
    is the top merge (S*). A sequential run's steps are a chain: each step under the step
    that merged into its skill, the last step (S*) the root. Suited to plotly's
    sunburst/treemap (``ids``/``parents``).
    """
    merges = contract.read_merges(run_dir)
    if not merges:
        return pd.DataFrame(columns=["id", "parent", "label", "kind", "status", "support"])
    # Names a merge goes by: (level, node id) per alias. A child of a level-L merge is the
    # highest lower-level merge of that name, else a leaf patch (a merge passed up with one
    # child keeps that child's patch id, so the alias alone cannot tell).
    aliases: dict[str, list[tuple[int, str]]] = {}
    for m in merges:
        for alias in {m.node_id, m.group, m.patch_id, m.commit} - {None}:
            aliases.setdefault(alias, []).append((m.level, m.node_id))

    def resolve(child: str, level: int) -> str | None:
        lower = [a for a in aliases.get(child, []) if a[0] < level]
        return max(lower)[1] if lower else None

    parent_of: dict[str, str] = {}
    leaves: set[str] = set()
    for m in merges:
        for child in m.children:
            node = resolve(child, m.level)
            if node is None:
                leaves.add(child)
            parent_of.setdefault(node or child, m.node_id)
    chain = sorted((m for m in merges if m.step is not None), key=lambda m: m.step or 0)
    for before, after in itertools.pairwise(chain):
        parent_of.setdefault(before.node_id, after.node_id)
    nodes: list[dict[str, Any]] = []
    patches = contract.read_patches(run_dir)
    for leaf in sorted(leaves):
        patch = patches.get(leaf)
        nodes.append(
            {
                "id": leaf,
                "parent": parent_of.get(leaf, ""),
                "label": f"patch {leaf[:8]}",
                "kind": "patch",
                "status": "leaf",
                "support": patch.support if patch else 1,
            }
        )
    for m in merges:
        support = max((e.support for e in m.edits), default=None)
        nodes.append(
            {
                "id": m.node_id,
                "parent": parent_of.get(m.node_id, ""),
                "label": f"step {m.step} ({m.status})"
                if m.step is not None
                else f"{m.node_id} ({m.status})",
                "kind": "merge",
                "status": m.status,
                "support": support,
            }
        )
    return pd.DataFrame(nodes)


def merge_details(run_dir: Path) -> pd.DataFrame:
    """One row per merge: level, group, status, reason, conflicts, edits kept and dropped."""
    rows = [
        {
            "merge": m.node_id,
            "level": m.level,
            "status": m.status,
            "reason": m.reason,
            "children": len(m.children),
            "conflicts": sum(c.hunks for c in m.conflicts),
            "conflicted_files": ", ".join(c.file for c in m.conflicts),
            "edits": len(m.edits),
            "dropped": len(m.dropped),
            "patch": m.patch_id,
            "commit": (m.commit or "")[:10],
        }
        for m in contract.read_merges(run_dir)
    ]
    columns = [
        "merge",
        "level",
        "status",
        "reason",
        "children",
        "conflicts",
        "conflicted_files",
        "edits",
        "dropped",
        "patch",
        "commit",
    ]
    return pd.DataFrame(rows, columns=columns)


def edit_support(run_dir: Path) -> dict[str, int]:
    """Support of every edit id the consolidation produced (the last merge that lists it)."""
    out: dict[str, int] = {}
    for m in sorted(contract.read_merges(run_dir), key=lambda m: m.level):
        for e in m.edits:
            out[e.id] = e.support
    for patch in contract.read_patches(run_dir).values():
        for edit in patch.edits:
            if edit.id and edit.id not in out:
                out[edit.id] = patch.support or 1
    return out


def attribution(run_dir: Path) -> pd.DataFrame:
    """Per-edit ablation effects with 95% CIs, joined with each edit's support."""
    columns = [
        "edit_id",
        "patch_id",
        "kind",
        "n",
        "pass_rate",
        "delta",
        "ci_low",
        "ci_high",
        "significant",
        "effect",
        "effect_low",
        "effect_high",
        "support",
    ]
    rows = contract.read_ablations(run_dir)
    if not rows:
        return pd.DataFrame(columns=columns)
    out = contract.frame(
        rows, ["edit_id", "patch_id", "kind", "n", "pass_rate", "delta", "ci_low", "ci_high"]
    )
    # An interval that excludes zero: the effect's sign is clear at 95%.
    out["significant"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    # The edit's own effect, positive when it helps: an ablation's delta is (S* without the
    # edit) - S*, so it is negated (and its interval flipped); an "only" delta is the edit's.
    ablate = out["kind"] == "ablate"
    # (+ 0.0: a negated zero showed as -0.0.)
    out["effect"] = out["delta"].where(~ablate, -out["delta"]) + 0.0
    out["effect_low"] = out["ci_low"].where(~ablate, -out["ci_high"]) + 0.0
    out["effect_high"] = out["ci_high"].where(~ablate, -out["ci_low"]) + 0.0
    support = edit_support(run_dir)
    out["support"] = [support.get(e) for e in out["edit_id"]]
    return out[columns]


def loo_vs_aoi(effects: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-out (ablate) against add-one-in (only) effect per edit measured both ways.

    An ablation's delta is S*-without-edit minus S*, so the edit's contribution is its
    negation: ``loo_effect = -delta(ablate)``; ``aoi_effect = delta(only)``.
    """
    ablate = effects[effects["kind"] == "ablate"].set_index("edit_id")["effect"]
    only = effects[effects["kind"] == "only"].set_index("edit_id")["effect"]
    both = sorted(set(ablate.index) & set(only.index))
    return pd.DataFrame(
        {
            "edit_id": both,
            "loo_effect": [float(ablate[e]) for e in both],
            "aoi_effect": [float(only[e]) for e in both],
        }
    )


# ---------------------------------------------------------------------------------------------
# Section usage, trajectories, cost
# ---------------------------------------------------------------------------------------------


def _version_totals(con: duckdb.DuckDBPyConnection, origin: str | None) -> dict[str, int]:
    return dict(
        con.execute(
            "SELECT skill_commit, count(*) FROM trajectories WHERE ? IS NULL OR origin = ? "
            "GROUP BY 1",
            [origin, origin],
        ).fetchall()
    )


def usage(
    con: duckdb.DuckDBPyConnection, labels: dict[str, str], origin: str | None = None
) -> pd.DataFrame:
    """Uses per (skill version, section, kind): uses, trajectories, share of the version's
    trajectories that used it that way, and those trajectories' pass rate.

    ``origin``: ``eval`` or ``rollout`` to count only those trajectories; None: both.
    """
    rows = [u.model_dump() for u in queries.section_usage(con, origin)]
    out = pd.DataFrame(
        rows, columns=["skill_commit", "ref", "kind", "uses", "trajectories", "pass_rate"]
    )
    totals = _version_totals(con, origin)
    out["share"] = [
        n / totals[c] if totals.get(c) else 0.0
        for c, n in zip(out["skill_commit"], out["trajectories"], strict=True)
    ]
    out["version"] = [labels.get(c, c[:8]) for c in out["skill_commit"]]
    return out


def section_shares(
    con: duckdb.DuckDBPyConnection, labels: dict[str, str], origin: str | None = None
) -> pd.DataFrame:
    """Per (skill version, section): the share of the version's trajectories that used the
    section in any way (read, cited or echoed; each trajectory once), as `trace2skill usage`
    counts it. The largest share of one kind undercounted (28% where 6 of 18 used it)."""
    rows = con.execute(
        """SELECT t.skill_commit, u.ref, count(DISTINCT (u.run_id, u.origin, u.trajectory_id))
           FROM section_uses u JOIN trajectories t
             ON t.run_id = u.run_id AND t.origin = u.origin AND t.id = u.trajectory_id
           WHERE ? IS NULL OR t.origin = ? GROUP BY ALL ORDER BY ALL""",
        [origin, origin],
    ).fetchall()
    totals = _version_totals(con, origin)
    out = pd.DataFrame(rows, columns=["skill_commit", "ref", "trajectories"])
    out["share"] = [
        n / totals[c] if totals.get(c) else 0.0
        for c, n in zip(out["skill_commit"], out["trajectories"], strict=True)
    ]
    out["version"] = [labels.get(c, c[:8]) for c in out["skill_commit"]]
    return out


def pruning_candidates(
    shares_: pd.DataFrame, commit: str, sections: list[str], max_share: float
) -> pd.DataFrame:
    """Sections of version ``commit`` used by at most ``max_share`` of its trajectories.

    ``shares_``: :func:`section_shares`. ``sections``: every ref the version has
    (``SKILL.md#id``, ``references/x.md``) so unused sections show with share 0; empty: only
    the sections seen in use are considered.
    """
    seen = shares_[shares_["skill_commit"] == commit]
    shares = dict(zip(seen["ref"], seen["share"], strict=True))
    refs = sorted(set(sections) | set(shares))
    out = pd.DataFrame({"ref": refs, "share": [float(shares.get(r, 0.0)) for r in refs]})
    return out[out["share"] <= max_share].sort_values(["share", "ref"]).reset_index(drop=True)


def skill_refs(skill: Skill) -> list[str]:
    """Every ref a trajectory can record for ``skill``: its SKILL.md sections and files."""
    refs = [f"SKILL.md#{s.id}" for s in skill.sections]
    refs += [name for name in skill.files if name.startswith("references/")]
    return sorted(refs)


@dataclass(frozen=True)
class TrajectoryFilter:
    """The trajectory explorer's filters (empty values filter nothing)."""

    task: str = ""
    outcome: str = "all"
    section: str = ""
    origin: str = "all"


def _filter_sql(f: TrajectoryFilter) -> tuple[str, list[Any]]:
    where, params = ["TRUE"], []
    if f.task:
        where.append("contains(t.task_id, ?)")
        params.append(f.task)
    if f.outcome in ("pass", "fail"):
        where.append("t.passed = ?")
        params.append(f.outcome == "pass")
    if f.origin in ("rollout", "eval"):
        where.append("t.origin = ?")
        params.append(f.origin)
    if f.section:
        where.append(
            """EXISTS (SELECT 1 FROM section_uses u WHERE u.run_id = t.run_id
               AND u.origin = t.origin AND u.trajectory_id = t.id AND u.ref = ?)"""
        )
        params.append(f.section)
    return " AND ".join(where), params


def count_trajectories(con: duckdb.DuckDBPyConnection, f: TrajectoryFilter) -> int:
    """How many trajectories match ``f``."""
    where, params = _filter_sql(f)
    return int(
        con.execute(f"SELECT count(*) FROM trajectories t WHERE {where}", params).fetchone()[0]
    )


def trajectories_page(
    con: duckdb.DuckDBPyConnection, f: TrajectoryFilter, page: int, size: int = PAGE_SIZE
) -> pd.DataFrame:
    """One page (0-based) of the trajectories matching ``f``; ``tokens`` is text as the
    detail shows it (:func:`tokens_text`: ``unknown`` where the provider reported none, not
    an empty cell)."""
    where, params = _filter_sql(f)
    frame = con.execute(
        f"""SELECT t.run_id AS run, t.origin, t.id, t.task_id AS task, t.skill_commit,
                   t.model, t.passed, t.n_steps AS steps, t.tokens_in, t.tokens_out,
                   t.stop_reason
            FROM trajectories t WHERE {where}
            ORDER BY t.run_id, t.task_id, t.id LIMIT ? OFFSET ?""",
        [*params, size, page * size],
    ).df()
    tokens = [
        tokens_text(i, o)
        for i, o in zip(frame.pop("tokens_in"), frame.pop("tokens_out"), strict=True)
    ]
    frame.insert(list(frame.columns).index("steps") + 1, "tokens", tokens)
    return frame


def trajectory(
    con: duckdb.DuckDBPyConnection, trajectory_id: str, run_id: str | None = None
) -> dict[str, Any] | None:
    """One trajectory's summary row, or None: the one in ``run_id``, else the first match by
    id in any run (the same id can be in two runs)."""
    frame = con.execute(
        """SELECT * FROM trajectories WHERE id = ? AND (? IS NULL OR run_id = ?)
           ORDER BY origin DESC, run_id LIMIT 1""",
        [trajectory_id, run_id, run_id],
    ).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def steps(
    con: duckdb.DuckDBPyConnection, run_id: str, origin: str, trajectory_id: str
) -> pd.DataFrame:
    """The steps of one trajectory in order, with the sections each step used."""
    return con.execute(
        """SELECT s.step, coalesce(s.thought, '') AS thought, s.tool, s.args,
                  coalesce(s.observation, '') AS observation, s.observation_truncated,
                  s.tokens_in, s.tokens_out, s.latency_s, s.cache_hit,
                  coalesce(s.error, '') AS error,
                  coalesce((SELECT string_agg(u.ref, ', ' ORDER BY u.ref) FROM section_uses u
                   WHERE u.run_id = s.run_id AND u.origin = s.origin
                     AND u.trajectory_id = s.trajectory_id AND u.step = s.step), '') AS sections
           FROM steps s WHERE s.run_id = ? AND s.origin = ? AND s.trajectory_id = ?
           ORDER BY s.step""",
        [run_id, origin, trajectory_id],
    ).df()


def section_refs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every section ref used in the selection (for the section filter)."""
    return [
        r for (r,) in con.execute("SELECT DISTINCT ref FROM section_uses ORDER BY 1").fetchall()
    ]


def cost_by_stage(
    con: duckdb.DuckDBPyConnection, runs_dir: Path, run_list: list[str]
) -> pd.DataFrame:
    """Tokens, model calls, cache hits and cost per stage (rollout, eval, analyse, consolidate).

    Trajectories record each agent step's call; analyses and merges record only their
    tokens and time, so their rows count units (analyses, merges), not calls, and leave cache
    hits and cost unknown (None): the model table has every call. Token sums are over the
    calls (or units) that reported their counts; ``tokens_unreported`` counts the others.
    ``cost`` (text, :func:`cost_text`) of rollout and eval is summed over their trajectories
    whose cost is known and names the others (no price for the model, no usage reported).
    """
    rows = []
    for origin, calls, hits, t_in, t_out, silent, seconds in con.execute(
        """SELECT t.origin, count(s.step), count(s.step) FILTER (WHERE s.cache_hit),
                  sum(s.tokens_in) FILTER (WHERE s.tokens_out IS NOT NULL)::BIGINT,
                  sum(s.tokens_out) FILTER (WHERE s.tokens_in IS NOT NULL)::BIGINT,
                  count(s.step) FILTER (WHERE s.tokens_in IS NULL OR s.tokens_out IS NULL),
                  sum(s.latency_s)
           FROM trajectories t LEFT JOIN steps s
             ON s.run_id = t.run_id AND s.origin = t.origin AND s.trajectory_id = t.id
           GROUP BY t.origin ORDER BY t.origin DESC"""
    ).fetchall():
        stage_cost = con.execute(
            f"SELECT {_COST_TALLY} FROM trajectories WHERE origin = ?", [origin]
        ).fetchone()
        rows.append(
            {
                "stage": origin,
                "units": None,
                "calls": calls,
                "cache_hits": hits,
                "tokens_in": t_in or 0,
                "tokens_out": t_out or 0,
                "tokens_unreported": silent or 0,
                "cost": cost_text(*stage_cost, "trajectories"),
                "model_s": seconds or 0.0,
            }
        )
    for stage, items in (
        ("analyse", [a for r in run_list for a in contract.read_analyses(runs_dir / r)]),
        ("consolidate", [m for r in run_list for m in contract.read_merges(runs_dir / r)]),
    ):
        if items:
            tokens = TokenTally.of((i.tokens_in, i.tokens_out) for i in items)
            rows.append(
                {
                    "stage": stage,
                    "units": len(items),
                    "calls": None,
                    "cache_hits": None,
                    "tokens_in": tokens.tokens_in,
                    "tokens_out": tokens.tokens_out,
                    "tokens_unreported": tokens.unreported,
                    "cost": None,
                    "model_s": sum(max(0.0, i.ended_at - i.started_at) for i in items),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "stage",
            "units",
            "calls",
            "cache_hits",
            "tokens_in",
            "tokens_out",
            "tokens_unreported",
            "cost",
            "model_s",
        ],
    )


def tokens_text(tokens_in: Any, tokens_out: Any) -> str:
    """One trajectory's or step's prompt + completion tokens as shown: ``unknown`` when the
    provider did not report them (NULL in the index, NaN or None in a frame), never 0."""
    if tokens_in is None or tokens_out is None or pd.isna(tokens_in) or pd.isna(tokens_out):
        return "unknown"
    return f"{int(tokens_in) + int(tokens_out):,}"


def cost_text(cost_usd: Any, units: Any, unpriced: Any, noun: str) -> str:
    """A cost summed over ``units`` (calls, trajectories) as shown: ``$0.0123``, ``$0.0123 (3
    of 10 calls unpriced)`` or ``unknown (10 of 10 calls unpriced)``, never $0 for costs
    nobody knows (:mod:`toolkit.cost`). Missing figures (no rows) read as none."""

    def whole(value: Any) -> int:
        return 0 if value is None or pd.isna(value) else int(value)

    total = 0.0 if cost_usd is None or pd.isna(cost_usd) else float(cost_usd)
    return CostTally.from_sum(total, whole(units), whole(unpriced)).describe(noun)


def total_cost_text(models: pd.DataFrame) -> str:
    """All calls' cost in a :func:`cost_by_model` frame, with the calls left out."""
    if models.empty:
        return cost_text(0.0, 0, 0, "calls")
    return cost_text(
        models["cost_usd"].sum(), models["calls"].sum(), models["cost_unpriced"].sum(), "calls"
    )


def total_tokens_text(models: pd.DataFrame) -> str:
    """All calls' tokens in a :func:`cost_by_model` frame, with the calls left out."""
    if models.empty:
        return "0"
    calls, silent = int(models["calls"].sum()), int(models["tokens_unreported"].sum())
    total = int(models["tokens_in"].sum() + models["tokens_out"].sum())
    return describe_tokens(total if silent < calls else None, silent, calls, "calls")


def cost_by_model(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Calls, cache hits, errors, tokens, cost and latency percentiles per model."""
    rows = [r.model_dump() for r in queries.cost_by_model(con)]
    return pd.DataFrame(rows, columns=list(queries.ModelCost.model_fields))


def model_cost_table(models: pd.DataFrame) -> pd.DataFrame:
    """A :func:`cost_by_model` frame as the page shows it: ``cost_usd`` and ``cost_unpriced``
    as one text column ``cost`` (:func:`cost_text`), so a cost nobody knows reads unknown."""
    cost = [
        cost_text(c, n, u, "calls")
        for c, n, u in zip(
            models["cost_usd"], models["calls"], models["cost_unpriced"], strict=True
        )
    ]
    shown = models.drop(columns=["cost_usd", "cost_unpriced"])
    shown.insert(list(shown.columns).index("tokens_unreported") + 1, "cost", cost)
    return shown


def call_latencies(con: duckdb.DuckDBPyConnection, limit: int = 20_000) -> pd.DataFrame:
    """Latency and cache hit of model calls (a bounded sample, for the histogram)."""
    return con.execute(
        "SELECT model, latency_s, cache_hit FROM llm_calls "
        f"USING SAMPLE reservoir({int(limit)} ROWS) REPEATABLE (0)"
    ).df()
