"""CLI commands over the git skill store: provenance, refs, bundle, repo snapshot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolkit.cli.skill import skill_folder
from toolkit.errors import RepoError
from toolkit.repo import (
    LineProvenance,
    SkillRepo,
    blame_file,
    check_id,
    export_bundle,
    import_bundle,
    sanitize_run_id,
)
from toolkit.repo.trailers import subject_of

_REPO_OPTION = click.option(
    "--repo",
    "repo_path",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Any path inside the skills repository.",
)


def _nearest_dir(path: Path) -> Path:
    """The closest existing directory at or above ``path`` (to discover its repository)."""
    current = path.resolve()
    while not current.is_dir() and current != current.parent:
        current = current.parent
    return current


def _describe(record: LineProvenance) -> str:
    where = f"{record.file}:{record.line}"
    lines = [f"{where}  {record.text}"]
    origin = record.kind or "user commit"
    if record.kind == "merge":
        origin = f"merge L{record.level} {record.group}"
    run = f", run {record.run}" if record.run else ""
    lines.append(f"  commit   {record.commit[:12]} ({origin}{run}): {record.subject}")
    if record.patches:
        lines.append(
            f"  patches  ({record.support or len(record.patches)}) {', '.join(record.patches)}"
        )
    if record.trajectories:
        lines.append(f"  trajectories  {', '.join(record.trajectories)}")
    edit_id = getattr(record, "edit_id", None)
    if edit_id:
        merge = getattr(record, "merge", None) or ""
        lines.append(
            f"  edit     {edit_id} (support {record.support}), merge {merge[:12]} "
            f"L{getattr(record, 'merge_level', '?')} {getattr(record, 'merge_group', '')}"
        )
    return "\n".join(lines)


@click.command("provenance")
@click.argument("location", metavar="FILE[:LINE]")
@click.option(
    "--ref", default="HEAD", show_default=True, help="Revision to blame, e.g. t2s/R/result."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of text.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The run folder of a consolidated run: each line of S* is matched to the edit of "
    "the final patch that wrote it, with every leaf patch behind that edit (its support).",
)
@click.option(
    "--repo", "repo_path", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The skill repository; FILE is then a path inside it (default: the repository "
    "holding FILE).",
)  # fmt: skip
def provenance(
    location: str, ref: str, as_json: bool, run_dir: Path | None, repo_path: Path | None
) -> None:
    """Show which commit, patches and trajectories a skill line came from.

    Runs git blame on FILE at REF; the commit's trailers lead to the leaf patches (a merge
    lists the patches it consolidates) and the patch commits to their trajectories. With
    --run-dir (a consolidated run) each line is also led to the edit of the final patch
    that wrote it, the merge that wrote or kept it, all the leaf patches pooled into that
    edit and the trajectories behind them (the edit's support). Without :LINE every line
    is shown.

    \b
    Examples:
      trace2skill provenance skills/gsm8k-math/SKILL.md:42 --ref t2s/r1/result
      trace2skill provenance skills/gsm8k-math/SKILL.md --ref t2s/r1/result --json
      trace2skill provenance skills/gsm8k-math/SKILL.md:42 --ref t2s/r1/result \\
          --run-dir runs/r1
      trace2skill provenance skills/synth/SKILL.md:14 --repo runs/.synth-repo \\
          --ref t2s/synth-0-000/result --run-dir runs/synth-0-000
    """
    file_part, sep, line_part = location.rpartition(":")
    if not sep or not line_part.isdigit():
        file_part, line_part = location, ""
    path = Path(file_part)
    if repo_path is not None:
        repo = SkillRepo.open(repo_path)
        rel = repo.relpath(path) if path.is_absolute() else path.as_posix()
    else:
        repo = SkillRepo.open(_nearest_dir(path))
        rel = repo.relpath(path)
    if run_dir is not None:
        from toolkit.consolidate.provenance import skill_lines
        from toolkit.runs import REFS_BUNDLE

        bundle = run_dir / REFS_BUNDLE
        if (
            ref.startswith("t2s/")
            and ref.endswith("/result")
            and repo.git.resolve([ref])[0] is None
        ):
            from toolkit.repo import read_bundle

            if f"refs/heads/{ref}" not in (
                read_bundle(repo, bundle).refs if bundle.is_file() else {}
            ):
                # Importing the run's refs cannot help: say what the run is, as report does.
                from toolkit.evolve import no_result_reason

                raise RepoError(f"{ref} does not exist: {no_result_reason(run_dir)}")
        records: list[LineProvenance] = list(skill_lines(repo, rel, ref, run_dir))
    else:
        records = blame_file(repo, rel, ref)
    if line_part:
        number = int(line_part)
        if not 1 <= number <= len(records):
            raise RepoError(
                f"{rel} has {len(records)} lines at {ref}; line {number} is out of range"
            )
        records = [records[number - 1]]
    if as_json:
        payload = [r.model_dump() for r in records]
        click.echo(json.dumps(payload[0] if line_part else payload, indent=2))
    else:
        click.echo("\n".join(_describe(r) for r in records))


@click.group("refs")
def refs() -> None:
    """List or delete the refs of trace2skill runs (refs/heads/t2s/<run>/...).

    \b
    Examples:
      trace2skill refs list
      trace2skill refs list r1
      trace2skill refs delete r1 --yes
    """


@refs.command("list")
@click.argument("run", required=False)
@_REPO_OPTION
def refs_list(run: str | None, repo_path: Path) -> None:
    """List runs, or the refs of RUN with their commit subjects.

    \b
    Examples:
      trace2skill refs list
      trace2skill refs list r1 --repo ../skills-repo
    """
    repo = SkillRepo.open(repo_path)
    if run is None:
        runs = repo.runs()
        if not runs:
            click.echo("no trace2skill runs")
        for name in runs:
            click.echo(f"{name}\t{len(repo.run_refs(name))} refs")
        return
    found = repo.run_refs(check_id(run))
    if not found:
        raise RepoError(f"no run {run!r} in {repo.root}")
    names = sorted(found)
    for name, message in zip(names, repo.messages([found[n] for n in names]), strict=True):
        click.echo(f"{found[name][:12]}  {name}  {subject_of(message)}")


@refs.command("delete")
@click.argument("run")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_REPO_OPTION
def refs_delete(run: str, yes: bool, repo_path: Path) -> None:
    """Delete every ref of RUN (the commits stay until git gc).

    Asks for confirmation on a terminal; elsewhere (CI) --yes is required.

    \b
    Example:
      trace2skill refs delete r1 --yes
    """
    repo = SkillRepo.open(repo_path)
    found = repo.run_refs(check_id(run))
    if not found:
        raise RepoError(f"no run {run!r} in {repo.root}")
    if not yes:
        if not sys.stdin.isatty():
            raise RepoError(f"refusing to delete {len(found)} refs of run {run!r} without --yes")
        click.confirm(f"Delete {len(found)} refs of run {run!r}?", abort=True)
    deleted = repo.delete_run(run)
    click.echo(f"deleted {len(deleted)} refs of run {run}")


@click.group("bundle")
def bundle() -> None:
    """Export a run's refs to a bundle file, or import one into this repository.

    \b
    Examples:
      trace2skill bundle export r1
      trace2skill bundle import runs/r1/refs.bundle --force
    """


@bundle.command("export")
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bundle path (default runs/<run>/refs.bundle in the repository). An existing bundle "
    "is replaced; any other file only with --force.",
)
@click.option("--force", is_flag=True, help="Replace an existing file that is not a bundle.")
@click.option(
    "--thin-from",
    metavar="REV",
    help="Leave out the history reachable from REV (e.g. origin/main): the bundle holds only "
    "the run's own commits and imports only into a repository that has REV (a clone of this "
    "project). Default: self-contained.",
)
@_REPO_OPTION
def bundle_export(
    run: str, output: Path | None, force: bool, thin_from: str | None, repo_path: Path
) -> None:
    """Write every ref of RUN to a git bundle, self-contained unless --thin-from.

    \b
    Examples:
      trace2skill bundle export r1
      trace2skill bundle export r1 -o /tmp/r1.bundle
      trace2skill bundle export r1 --thin-from origin/main   # a run kept in the project repo
    """
    info = export_bundle(
        SkillRepo.open(repo_path), check_id(run), output, overwrite=force, thin_from=thin_from
    )
    click.echo(f"wrote {len(info.refs)} refs of run {info.run} to {info.path}")


@bundle.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the run if it already exists here.")
@_REPO_OPTION
def bundle_import(path: Path, force: bool, repo_path: Path) -> None:
    """Verify a run bundle and import its refs under refs/heads/t2s/<run>/.

    \b
    Examples:
      trace2skill bundle import runs/r1/refs.bundle
      trace2skill bundle import r1.bundle --force --repo ../other-repo
    """
    info = import_bundle(SkillRepo.open(repo_path), path, force=force)
    click.echo(f"imported {len(info.refs)} refs of run {info.run}")


@click.group("repo")
def repo_group() -> None:
    """Set up runs in the skills repository.

    \b
    Example:
      trace2skill repo snapshot skills/gsm8k-math --run first-try
    """


@repo_group.command("snapshot")
@click.argument("skill_dir", type=click.Path(path_type=Path), callback=skill_folder)
@click.option("--run", "run", required=True, help="Run id (sanitised to a valid ref name).")
@click.option(
    "--allow-dirty", is_flag=True, help="Snapshot uncommitted changes in the skill folder."
)
@click.option(
    "--timestamp",
    type=int,
    help="Commit date as Unix seconds (default: the date of HEAD, so re-runs give the same id).",
)
def repo_snapshot(skill_dir: Path, run: str, allow_dirty: bool, timestamp: int | None) -> None:
    """Commit SKILL_DIR as it is on disk as the base of a run (t2s/<run>/base).

    The base's parent is your HEAD commit; your working tree, index and branch are untouched.

    \b
    Examples:
      trace2skill repo snapshot skills/gsm8k-math --run first-try
      trace2skill repo snapshot skills/gsm8k-math --run "exp 2" --allow-dirty
    """
    from toolkit.skill import require_valid

    # A base that is not a skill would only fail later, at the first rollout.
    require_valid(skill_dir)
    repo = SkillRepo.open(_nearest_dir(skill_dir))
    run_id = sanitize_run_id(run)
    if timestamp is None:
        timestamp = repo.commit_time(repo.head_commit())
    base = repo.snapshot_base(run_id, skill_dir, timestamp=timestamp, allow_dirty=allow_dirty)
    click.echo(f"run {run_id}: base {base[:12]} on t2s/{run_id}/base")


COMMANDS: list[click.Command] = [provenance, refs, bundle, repo_group]
