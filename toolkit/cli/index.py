"""CLI commands: ``trace2skill index`` (compact runs into Parquet), ``trace2skill query`` (SQL
over the index) and ``trace2skill synth`` (synthetic runs for benchmarks and tests)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.errors import ToolkitError

_RUNS_DIR = click.Path(file_okay=False, path_type=Path)


@click.command("index")
@click.argument("runs_dir", required=False, default=Path("runs"), type=_RUNS_DIR)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option(
    "--strict", is_flag=True,
    help="Exit 1 when a run was skipped or a corrupt line was (for CI: a run that does not "
    "index is a failure there).",
)  # fmt: skip
def index_command(runs_dir: Path, no_progress: bool, strict: bool) -> None:
    """Index RUNS_DIR (default runs/) for SQL: one set of Parquet files per run.

    \b
    Each run folder (one holding manifest.json) is compacted into
    RUNS_DIR/.index/<run-id>/<table>.parquet, tables: runs, trajectories, steps,
    section_uses, evals, llm_calls, analyses, patches, edits, merges, ablations and
    skill_lines (every line of the run's final skill with the commit, merge and
    support behind it, from git blame in the run's skill repository or its
    refs.bundle). A file a run does not have yet is an empty table. Only new or
    changed runs are read again, so re-running it is cheap. A run with a broken
    manifest is reported and skipped; corrupt JSONL lines are skipped and counted.

    \b
    Examples:
      trace2skill index
      trace2skill index runs/ && trace2skill query "SELECT count(*) FROM steps"
      trace2skill index runs/ --strict      # in CI: fail on a run that does not index
    """
    from toolkit.index import TABLES, build_index, connect

    report = build_index(runs_dir, progress=not no_progress)
    for problem in report.problems:
        click.echo(f"Warning: {problem}", err=True)
    with connect(runs_dir) as con:
        counts = ", ".join(
            f"{t} {con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}" for t in TABLES
        )
        # Every indexed run's count, not only this call's: an unchanged run is not re-read.
        corrupt = con.execute("SELECT coalesce(sum(skipped_lines), 0) FROM runs").fetchone()[0]
    # The corrupt lines of every indexed run, as --strict counts them: an unchanged run's
    # were skipped when it was read, and they are still missing from the index.
    now = (
        f" ({report.skipped_lines} in the runs read now)" if report.skipped_lines != corrupt else ""
    )
    click.echo(
        f"Indexed {report.runs} runs in {runs_dir / '.index'}: {len(report.read)} read, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed, "
        f"{len(report.skipped)} skipped, {corrupt} corrupt lines skipped{now}"
    )
    click.echo(f"Rows: {counts}")
    if strict and (report.skipped or corrupt):
        raise ToolkitError(
            f"--strict: {len(report.skipped)} runs and {corrupt} corrupt lines were skipped "
            '(trace2skill query "SELECT run_id, skipped_lines FROM runs" says where)'
        )


@click.command("query")
@click.argument("sql")
@click.option(
    "--runs-dir",
    default=Path("runs"),
    show_default=True,
    type=_RUNS_DIR,
    help="The indexed runs folder (build its index with `trace2skill index`).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format: an aligned table, CSV with a header, or a JSON list of rows.",
)
def query_command(sql: str, runs_dir: Path, fmt: str) -> None:
    """Run SQL over the run index (views: runs, trajectories, steps, section_uses,
    evals, llm_calls, analyses, patches, edits, merges, ablations, skill_lines; a
    view's columns: trace2skill query "DESCRIBE ablations").

    \b
    Examples:
      trace2skill query "SELECT run_id, split, skill_commit, protocol, avg(passed::INT)
        FROM trajectories WHERE origin = 'eval' GROUP BY ALL"
      trace2skill query "SELECT model, sum(cost_usd) FROM llm_calls GROUP BY 1" --format csv
      trace2skill query "SELECT ref, count(*) FROM section_uses GROUP BY 1" --format json
      trace2skill query "SELECT line, support, text FROM skill_lines WHERE kind = 'merge'"
      trace2skill query "SELECT edit_id, kind, effect, p_value FROM ablations ORDER BY effect"
      trace2skill query "DESCRIBE trajectories"
    """
    from toolkit.index import connect, run_query

    with connect(runs_dir) as con:
        frame = run_query(con, sql)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        # pandas writes "/" as "\\/" (valid JSON, but no one reads paths that way).
        rows = json.loads(frame.to_json(orient="records", force_ascii=False))
        click.echo(json.dumps(rows, ensure_ascii=False))
    elif frame.empty:
        click.echo(f"(no rows; columns: {', '.join(map(str, frame.columns))})")
    else:
        # NULL prints as None (pandas shows NaN in numeric columns), as in json and csv.
        click.echo(frame.astype(object).where(frame.notna(), None).to_string(index=False))


@click.command("synth")
@click.argument("runs_dir", type=_RUNS_DIR)
@click.option(
    "--trajectories", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Total, over all runs.",
)  # fmt: skip
@click.option(
    "--runs", "n_runs", type=click.IntRange(min=1), default=1, show_default=True,
    help="Run folders to write.",
)  # fmt: skip
@click.option(
    "--steps", type=click.IntRange(min=1), default=10, show_default=True,
    help="Steps per trajectory.",
)  # fmt: skip
@click.option(
    "--patches", type=click.IntRange(min=1), default=8, show_default=True,
    help="Leaf patches per run.",
)  # fmt: skip
@click.option(
    "--group-size", type=click.IntRange(min=2), default=4, show_default=True,
    help="Children per merge.",
)  # fmt: skip
@click.option(
    "--observation-bytes", type=click.IntRange(min=0), default=200, show_default=True,
    help="Size of each observation.",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Skill repository for the runs' refs [default: RUNS_DIR/.synth-repo].",
)
def synth_command(
    runs_dir: Path,
    trajectories: int,
    n_runs: int,
    steps: int,
    patches: int,
    group_size: int,
    observation_bytes: int,
    seed: int,
    repo: Path | None,
) -> None:
    """Write synthetic runs into RUNS_DIR: realistic run folders of any size.

    \b
    Every run file is written (manifest, splits, trajectories with steps and
    section uses, analyses, patches, merges, evals, ablations, llm_calls,
    refs.bundle) and the git side is real: a skill repository holds each run's
    base, patch, merge, result, ablate and only commits, so skill_lines and
    provenance work. Run ids are synth-<seed>-<k> with k in three digits
    (synth-0-000, synth-0-001...); the same arguments write the same bytes. Each
    run needs at least --patches + 3 trajectories. For benchmarks, demos of the
    app and tests; not real results.

    \b
    Examples:
      trace2skill synth /tmp/synth --trajectories 2000 --runs 4
      trace2skill synth /tmp/synth --seed 1 && trace2skill index /tmp/synth
    """
    from toolkit.synth import synth_runs

    report = synth_runs(
        runs_dir,
        trajectories=trajectories,
        runs=n_runs,
        steps=steps,
        patches=patches,
        group_size=group_size,
        observation_bytes=observation_bytes,
        seed=seed,
        repo_dir=repo,
        progress=True,
    )
    noun = "run" if len(report.runs) == 1 else "runs"
    click.echo(
        f"Wrote {len(report.runs)} {noun} to {runs_dir} ({report.bytes / 1e6:.1f} MB): "
        f"{report.trajectories} trajectories, {report.analyses} analyses, "
        f"{report.patches} patches, {report.merges} merges, {report.ablations} ablations; "
        f"skill repository {report.repo}"
    )


COMMANDS = [index_command, query_command, synth_command]
