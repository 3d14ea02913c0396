"""Run bundles: a run's refs as one file (``runs/<run>/refs.bundle``), importable anywhere.

Export writes ``git bundle create`` to a temporary name and renames it, so a reader never
sees half a bundle. Import verifies the bundle, unpacks its objects without touching any ref
(``git bundle unbundle``), then moves all the run's refs in one transaction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel

from toolkit.errors import RepoError
from toolkit.repo.plumbing import ZERO_OID, error_detail
from toolkit.repo.store import REF_ROOT, SkillRepo, check_id, run_prefix


class BundleInfo(BaseModel):
    """What a bundle holds."""

    schema_version: int = 1
    run: str
    path: str
    refs: dict[str, str]
    """Full ref name -> commit id."""


def is_bundle(path: Path) -> bool:
    """True when ``path`` starts as a git bundle does (``# v2 git bundle``, ``# v3 ...``)."""
    try:
        with path.open("rb") as handle:
            return re.match(rb"# v\d git bundle\n", handle.read(16)) is not None
    except OSError:
        return False


def export_bundle(
    repo: SkillRepo,
    run: str,
    path: str | Path | None = None,
    *,
    overwrite: bool = False,
    thin_from: str | None = None,
) -> BundleInfo:
    """Write every ref of ``run`` to ``path`` (default ``runs/<run>/refs.bundle``).

    The bundle is self-contained (it includes the history the refs need), so it imports into
    any repository; with ``thin_from`` (a revision such as ``origin/main``) it leaves out the
    history reachable from there, and imports only where that history is (a clone of the
    project: a run kept in the project's own repository is then kilobytes, not the project's
    history). An existing bundle is replaced; any other existing file only with
    ``overwrite`` (a mistyped ``-o README.md`` replaced the README).
    """
    refs = repo.git.refs(run_prefix(run))
    if not refs:
        raise RepoError(f"no run {run!r} in {repo.root}")
    exclude: list[str] = []
    if thin_from is not None:
        (oid,) = repo.git.resolve([f"{thin_from}^{{commit}}"])
        if oid is None:
            raise RepoError(f"--thin-from {thin_from!r} is no commit in {repo.root}")
        new = repo.git.out("rev-list", "--count", *sorted(set(refs.values())), f"^{oid}")
        if new == "0":
            raise RepoError(
                f"every commit of run {run!r} is in {thin_from}: a thin bundle would be empty"
            )
        exclude.append(f"^{oid}")
    target = Path(path) if path is not None else repo.root / "runs" / run / "refs.bundle"
    if target.exists() and not overwrite and not (target.is_file() and is_bundle(target)):
        raise RepoError(
            f"{target} exists and is not a git bundle: choose another path, or pass --force "
            "to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # refs on stdin: a run can have thousands, more than a command line holds
        names = "".join(line + "\n" for line in [*sorted(refs), *exclude]).encode()
        repo.git.run(["bundle", "create", "--quiet", str(tmp.resolve()), "--stdin"], names)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return BundleInfo(run=run, path=str(target), refs=refs)


def read_bundle(repo: SkillRepo, path: str | Path) -> BundleInfo:
    """Verify a bundle against ``repo`` and return the run it holds."""
    bundle = Path(path)
    if not bundle.is_file():
        raise RepoError(f"{path} does not exist")
    # verify checks the header, the pack and that the prerequisites are present
    proc = repo.git.run(
        ["bundle", "verify", "--quiet", str(bundle.resolve())], ok_codes=(0, 1, 128)
    )
    if proc.returncode != 0:
        raise RepoError(f"{path} is not a valid bundle for this repository: {error_detail(proc)}")
    heads = repo.git.out("bundle", "list-heads", str(bundle.resolve()))
    refs: dict[str, str] = {}
    for line in heads.splitlines():
        oid, _, name = line.partition(" ")
        refs[name] = oid
    runs = {
        name[len(REF_ROOT) + 1 :].split("/", 1)[0]
        for name in refs
        if name.startswith(REF_ROOT + "/")
    }
    if len(runs) != 1 or any(not name.startswith(REF_ROOT + "/") for name in refs):
        raise RepoError(
            f"{path} is not a trace2skill run bundle (refs: {', '.join(sorted(refs))[:200]})"
        )
    run = check_id(runs.pop())
    return BundleInfo(run=run, path=str(bundle), refs=refs)


def import_bundle(repo: SkillRepo, path: str | Path, *, force: bool = False) -> BundleInfo:
    """Import a run bundle: refs land under ``refs/heads/t2s/<run>/``.

    Refuses when the run already exists, unless ``force`` (then the run's refs are replaced
    as a whole: refs not in the bundle are deleted, in the same transaction).
    """
    info = read_bundle(repo, path)
    with repo.run_lock(info.run):
        existing = repo.git.refs(run_prefix(info.run))
        if existing and not force:
            raise RepoError(f"run {info.run!r} already exists here: use --force to replace it")
        try:
            repo.git.run(["bundle", "unbundle", str(Path(path).resolve())])
        except RepoError as exc:
            # verify only checks the header and prerequisites; the pack is checked here
            raise RepoError(f"{path} is corrupt or truncated ({exc}); no ref was changed") from None
        commands = [
            f"update {name} {oid} {existing.get(name, ZERO_OID)}"
            for name, oid in sorted(info.refs.items())
        ]
        commands += [
            f"delete {name} {oid}"
            for name, oid in sorted(existing.items())
            if name not in info.refs
        ]
        repo.git.update_refs(commands)
    return info
