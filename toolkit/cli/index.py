"""CLI commands: ``trace2skill index`` (compact runs into Parquet) and ``trace2skill query``."""

from __future__ import annotations

from pathlib import Path

import click

_RUNS_DIR = click.Path(file_okay=False, path_type=Path)


@click.command("index")
@click.argument("runs_dir", required=False, default=Path("runs"), type=_RUNS_DIR)
def index_command(runs_dir: Path) -> None:
    """Index RUNS_DIR (default runs/) for SQL: one set of Parquet files per run.

    \b
    Each run folder (one holding manifest.json) is compacted into
    RUNS_DIR/.index/<run-id>/<table>.parquet, tables: runs, trajectories, steps,
    section_uses, evals, llm_calls. Only new or changed runs are read again, so
    re-running it is cheap. A run with a broken manifest is reported and skipped;
    corrupt JSONL lines are skipped and counted.

    \b
    Examples:
      trace2skill index
      trace2skill index runs/ && trace2skill query "SELECT count(*) FROM steps"
    """
    from toolkit.index import TABLES, build_index, connect

    report = build_index(runs_dir, progress=True)
    for problem in report.problems:
        click.echo(f"Warning: {problem}", err=True)
    with connect(runs_dir) as con:
        counts = ", ".join(
            f"{t} {con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}" for t in TABLES
        )
    click.echo(
        f"Indexed {report.runs} runs in {runs_dir / '.index'}: {len(report.read)} read, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed, "
        f"{len(report.skipped)} skipped, {report.skipped_lines} corrupt lines skipped"
    )
    click.echo(f"Rows: {counts}")


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
    evals, llm_calls).

    \b
    Examples:
      trace2skill query "SELECT skill_commit, avg(passed::INT) FROM trajectories GROUP BY 1"
      trace2skill query "SELECT model, sum(cost_usd) FROM llm_calls GROUP BY 1" --format csv
      trace2skill query "SELECT ref, count(*) FROM section_uses GROUP BY 1" --format json
    """
    from toolkit.index import connect, run_query

    with connect(runs_dir) as con:
        frame = run_query(con, sql)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", force_ascii=False))
    elif frame.empty:
        click.echo(f"(no rows; columns: {', '.join(map(str, frame.columns))})")
    else:
        click.echo(frame.to_string(index=False))


COMMANDS = [index_command, query_command]
