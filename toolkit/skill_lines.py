"""Every line of a run's final skill S* with the commit that wrote it, for the run index.

A run records its skill repository and skill folder in a manifest stage's config (``repo``,
``skill_path``) and S* in the ``consolidate`` stage's counts (``result_commit``; failing that,
the ref ``t2s/<run>/result``). ``git blame`` of each file of the skill folder at S* (see
:mod:`toolkit.repo.provenance`) names the commit of each line, and its trailers the leaf
patches (support) and trajectories behind it. When the recorded repository is gone or lacks the
commit (a run folder copied elsewhere, an Action artifact), the run's ``refs.bundle`` is
imported into a scratch repository instead, so a self-contained run folder still indexes.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from toolkit.attribution.support import edit_line_support
from toolkit.errors import ToolkitError
from toolkit.repo.bundle import import_bundle
from toolkit.repo.provenance import blame_file
from toolkit.repo.store import SkillRepo
from toolkit.runfiles import MergeLine
from toolkit.runs import REFS_BUNDLE as BUNDLE_FILE
from toolkit.runs import Manifest

if TYPE_CHECKING:
    from toolkit.attribution.run import EditSupport
    from toolkit.patch import Patch

# Stages whose config may name the skill repository, most specific first.
_STAGES = ("consolidate", "analyse", "evolve", "attribute")


class SkillSource(BaseModel):
    """Where a run's S* lives, as its manifest records it."""

    repo: str | None = None
    skill_path: str | None = None
    result_commit: str | None = None


def skill_source(manifest: Manifest) -> SkillSource:
    """The skill repository, skill folder and S* commit named by the manifest's stages."""
    found: dict[str, str] = {}
    ordered = sorted(
        manifest.stages.items(),
        key=lambda kv: _STAGES.index(kv[0]) if kv[0] in _STAGES else len(_STAGES),
    )
    for _, stage in ordered:
        for key, where in (
            ("repo", stage.config),
            ("skill_path", stage.config),
            ("result_commit", stage.counts),
        ):
            value = where.get(key)
            if isinstance(value, str) and value and key not in found:
                found[key] = value
    return SkillSource.model_validate(found)


def _has_commit(repo: SkillRepo, commit: str) -> bool:
    return repo.git.resolve([f"{commit}^{{commit}}"])[0] is not None


def _result_of(repo: SkillRepo, run_id: str, commit: str | None) -> str | None:
    if commit is not None:
        return commit if _has_commit(repo, commit) else None
    return repo.run_refs(run_id).get(f"t2s/{run_id}/result")


@contextmanager
def open_result_repo(run_dir: Path, source: SkillSource) -> Iterator[tuple[SkillRepo, str] | None]:
    """The repository holding the run's S*, and S*'s commit; None when the run has no S*.

    Raises:
        ToolkitError: the repository or the bundle cannot be read.
    """
    run_id = run_dir.name
    if source.repo and Path(source.repo).is_dir():
        repo = SkillRepo.open(source.repo)
        try:
            result = _result_of(repo, run_id, source.result_commit)
            if result is not None:
                yield repo, result
                return
        finally:
            repo.close()
    bundle = run_dir / BUNDLE_FILE
    if not bundle.is_file():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="t2s-index-") as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True, capture_output=True)
        scratch = SkillRepo.open(tmp)
        try:
            import_bundle(scratch, bundle)
            result = _result_of(scratch, run_id, source.result_commit)
            yield (scratch, result) if result is not None else None
        finally:
            scratch.close()


def _merge_of_child(merges: Sequence[MergeLine]) -> dict[str, str]:
    """Child commit -> the lowest-level merge commit that took it in."""
    out: dict[str, str] = {}
    for merge in sorted(merges, key=lambda m: m.level):
        for child in merge.child_commits:
            if merge.commit:
                out.setdefault(child, merge.commit)
    return out


def _is_text(data: bytes | None) -> bool:
    if data is None or b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def final_edits(
    run_dir: Path, manifest: Manifest, repo: SkillRepo, run_id: str, result: str
) -> tuple[Patch, dict[str, EditSupport]] | None:
    """The final patch S* applies and the support of each of its edits; None when the run
    does not name or keep it."""
    from toolkit.attribution.run import (
        AttributionError,
        edit_support,
        final_patch_id,
        load_run_patch,
    )

    patch_id = final_patch_id(manifest, repo, result)
    if patch_id is None:
        return None
    try:
        patch = load_run_patch(run_dir, patch_id)
    except AttributionError:
        return None
    return patch, edit_support(run_dir, repo, run_id, patch)


def read_skill_lines(
    run_dir: Path, manifest: Manifest, merges: Sequence[MergeLine]
) -> tuple[list[dict[str, Any]], dict[str, str], str | None]:
    """Rows of ``skill_lines`` for one run, its leaf patch commits and the S* commit.

    Returns ``([], {}, None)`` when the manifest names no skill or the run has no S* yet.

    Raises:
        ToolkitError: the repository or bundle exists but cannot be read.
    """
    source = skill_source(manifest)
    if not source.skill_path:
        return [], {}, None
    run_id = run_dir.name
    try:
        with open_result_repo(run_dir, source) as opened:
            if opened is None:
                return [], {}, None
            repo, result = opened
            refs = repo.run_refs(run_id)
            prefix = f"t2s/{run_id}/patch/"
            patch_commits = {k[len(prefix) :]: v for k, v in refs.items() if k.startswith(prefix)}
            listing = repo.git.out(
                "ls-tree", "-r", "--name-only", result, "--", source.skill_path.strip("/")
            )
            paths = [p for p in listing.splitlines() if p]
            contents = repo.read_files([(result, p) for p in paths])
            blamed = [
                (p, data.decode("utf-8", "replace"), blame_file(repo, p, result))
                for p, data in zip(paths, contents, strict=True)
                if data is not None and _is_text(data)
            ]
            final = final_edits(run_dir, manifest, repo, run_id, result)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolkitError(f"skill repository of run {run_id} unreadable ({exc})") from None
    by_commit = {m.commit: m for m in merges if m.commit}
    merge_of_child = _merge_of_child(merges)
    folder = source.skill_path.strip("/") + "/"
    rows = []
    for path, text, lines in blamed:
        file = path[len(folder) :] if path.startswith(folder) else path
        edits = edit_line_support(text, file, *final) if final else {}
        for p in lines:
            merge = by_commit.get(p.commit)
            if p.kind == "merge":
                merge_commit = p.commit
                patch_id = merge.patch_id if merge else None
            elif p.kind == "patch":
                merge_commit = merge_of_child.get(p.commit)
                patch_id = p.patches[0] if p.patches else None
            else:
                merge_commit = patch_id = None
            rows.append(
                {
                    "run_id": run_id,
                    "result_commit": result,
                    "file": file,
                    "line": p.line,
                    "text": p.text,
                    "commit": p.commit,
                    "kind": p.kind,
                    "merge_commit": merge_commit,
                    "patch_id": patch_id,
                    "level": p.level,
                    "group": p.group,
                    "sources": p.patches,
                    "trajectories": p.trajectories,
                    "support": p.support,
                    "edit_id": None,
                }
            )
            edit = edits.get(p.line)
            if edit is not None:  # the consolidated edit's leaves, as `support` counts them
                rows[-1].update(
                    sources=edit.sources,
                    trajectories=edit.trajectories,
                    support=edit.support,
                    edit_id=edit.edit_id,
                )
    return rows, patch_commits, result
