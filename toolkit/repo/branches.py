"""Branch families of a run: patches, result, and the derived ablate / only / seq commits.

Every function takes file changes (``{path: bytes | None}``, repository-relative paths) and
provenance, never Patch objects: the evolve stage applies patches and hands the files here.
All commits of one call are written by one ``git fast-import`` and their refs are then moved
in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import RepoError
from toolkit.repo.plumbing import CommitSpec
from toolkit.repo.store import SkillRepo, check_id
from toolkit.repo.trailers import Trailers, format_message


class PatchCommit(BaseModel):
    """One patch as files to commit on ``t2s/<run>/patch/<patch_id>`` (parent = base)."""

    model_config = ConfigDict(frozen=True)

    patch_id: str
    """Content-hash id of the patch."""
    changes: dict[str, bytes | None]
    """Files the patch writes (bytes) or deletes (None), repository-relative."""
    subject: str
    """First line of the commit message (the patch's first changelog entry)."""
    body: str = ""
    """Rest of the changelog."""
    trajectory: str | None = None
    outcome: Literal["pass", "fail"] | None = None
    analyst: str | None = None
    model: str | None = None
    sources: list[str] = Field(default_factory=list)
    support: int | None = None


class DerivedCommit(BaseModel):
    """A derived skill version (ablation, single edit, sequential step) as files to commit."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Edit id (ablate/only) or step label (seq); used in the ref name."""
    changes: dict[str, bytes | None]
    """Files written/deleted relative to the parent commit."""
    subject: str
    body: str = ""
    patch: str | None = None
    """Patch id this commit is about, if any."""
    sources: list[str] = Field(default_factory=list)
    """Leaf patch ids behind the edit(s)."""
    model: str | None = None


def base_of(repo: SkillRepo, run: str) -> str:
    """The run's base commit (RepoError if the run has none)."""
    oid = repo.run_refs(run).get(f"t2s/{run}/base")
    if oid is None:
        raise RepoError(f"run {run!r} has no base: snapshot the skill first")
    return oid


def write_patches(
    repo: SkillRepo,
    run: str,
    patches: Sequence[PatchCommit],
    *,
    timestamp: int,
    base: str | None = None,
) -> dict[str, str]:
    """Commit every patch on ``t2s/<run>/patch/<id>`` (parent = base); return id -> commit.

    Same inputs, same commit ids: dates come from ``timestamp`` and the identity is fixed.
    """
    parent = base or base_of(repo, run)
    ids = [check_id(p.patch_id, "patch id") for p in patches]
    if len(set(ids)) != len(ids):
        raise RepoError("duplicate patch ids in one batch")
    specs = []
    for p in patches:
        trailers = Trailers(
            run=run,
            kind="patch",
            patch=p.patch_id,
            trajectory=p.trajectory,
            outcome=p.outcome,
            analyst=p.analyst,
            model=p.model,
            sources=p.sources,
            support=p.support,
        )
        message = format_message(p.subject, trailers, p.body)
        spec = CommitSpec([parent], message, timestamp, changes=p.changes)
        specs.append((f"patch/{p.patch_id}", spec))
    oids = repo.write(run, specs)
    return dict(zip(ids, oids, strict=True))


def _derived(
    repo: SkillRepo,
    run: str,
    kind: Literal["ablate", "only"],
    parent: str,
    items: Sequence[DerivedCommit],
    timestamp: int,
) -> dict[str, str]:
    specs = []
    for item in items:
        trailers = Trailers(
            run=run,
            kind=kind,
            patch=item.patch,
            sources=item.sources,
            support=len(item.sources) or None,
            model=item.model,
        )
        message = format_message(item.subject, trailers, item.body)
        specs.append(
            (
                f"{kind}/{check_id(item.id, 'edit id')}",
                CommitSpec([parent], message, timestamp, item.changes),
            )
        )
    oids = repo.write(run, specs, replace=True)
    return {item.id: oid for item, oid in zip(items, oids, strict=True)}


def write_ablations(
    repo: SkillRepo,
    run: str,
    items: Sequence[DerivedCommit],
    *,
    timestamp: int,
    result: str | None = None,
) -> dict[str, str]:
    """S* minus one edit each, on ``t2s/<run>/ablate/<id>`` (parent = the result commit)."""
    parent = result or repo.run_refs(run).get(f"t2s/{run}/result")
    if parent is None:
        raise RepoError(f"run {run!r} has no result yet")
    return _derived(repo, run, "ablate", parent, items, timestamp)


def write_only(
    repo: SkillRepo,
    run: str,
    items: Sequence[DerivedCommit],
    *,
    timestamp: int,
    base: str | None = None,
) -> dict[str, str]:
    """S0 plus one edit each, on ``t2s/<run>/only/<id>`` (parent = base)."""
    return _derived(repo, run, "only", base or base_of(repo, run), items, timestamp)


def write_sequence(
    repo: SkillRepo,
    run: str,
    steps: Sequence[DerivedCommit],
    *,
    timestamp: int,
    start: str | None = None,
) -> list[str]:
    """A sequential chain ``t2s/<run>/seq/1..n``: each step's parent is the previous step."""
    specs = []
    for k, step in enumerate(steps, start=1):
        trailers = Trailers(
            run=run,
            kind="seq",
            step=k,
            patch=step.patch,
            sources=step.sources,
            support=len(step.sources) or None,
            model=step.model,
        )
        parent: str | int = (start or base_of(repo, run)) if k == 1 else k - 2
        message = format_message(step.subject, trailers, step.body)
        specs.append((f"seq/{k}", CommitSpec([parent], message, timestamp, step.changes)))
    return repo.write(run, specs, replace=True)


def set_result(
    repo: SkillRepo,
    run: str,
    commit: str,
    *,
    timestamp: int,
    changes: dict[str, bytes | None] | None = None,
    subject: str | None = None,
    sources: Sequence[str] = (),
) -> str:
    """Point ``t2s/<run>/result`` at S*: ``commit`` itself, or a commit of ``changes`` on it."""
    if not changes:
        repo.set_refs(run, {"result": commit}, replace=True)
        return commit
    trailers = Trailers(run=run, kind="result", sources=list(sources), support=len(sources) or None)
    message = format_message(subject or f"trace2skill: result of run {run}", trailers)
    spec = CommitSpec([commit], message, timestamp, changes)
    return repo.write(run, [("result", spec)], replace=True)[0]
