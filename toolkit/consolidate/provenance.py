"""Line provenance of S* with the run's records: the edit, its merge, leaves and support.

``git blame`` alone names the commit that wrote a line: a merge commit when the operator
wrote it, a patch commit when the textual union kept a child's line. A pooled edit backed by
many leaf patches is then blamed on just one of them. With the run folder, each line of S*
is matched to the edit of the final consolidated patch that wrote it, whose ``merges.jsonl``
entry lists every leaf patch behind it (the support); the leaves' commit trailers give the
trajectories.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.consolidate.records import EditSources, MergeRecord, read_merges, read_patch
from toolkit.errors import ToolkitError
from toolkit.patch import Patch
from toolkit.repo import LineProvenance, SkillRepo, blame_file
from toolkit.repo.store import REF_ROOT
from toolkit.repo.trailers import parse_trailers
from toolkit.runs import read_manifest


class SkillLine(LineProvenance):
    """A line of S* with the consolidation behind it."""

    edit_id: str | None = None
    """The edit of the final patch that wrote the line (None: base text or not matched)."""
    merge: str | None = None
    """The merge commit that wrote the line, or else the final merge that kept it."""
    merge_level: int | None = None
    merge_group: str | None = None


def final_merge(run_dir: Path) -> tuple[MergeRecord, Patch]:
    """The record and patch of the run's final merge: the one whose patch the manifest names
    as final (consolidate counts ``final_patch_id``, what ``support`` and the index read),
    else the last forced merge."""
    from toolkit.attribution.run import stage_value

    final_id = stage_value(read_manifest(run_dir), "final_patch_id")
    finals = [
        r
        for r in read_merges(run_dir)
        if r.commit and r.patch_id and (r.patch_id == final_id if final_id else r.forced)
    ]
    if not finals:
        raise ToolkitError(f"{run_dir} has no finished consolidation (see merges.jsonl)")
    record = finals[-1]
    return record, read_patch(run_dir, str(record.patch_id))


def _edit_for_line(text: str, patch: Patch) -> str | None:
    """The id of the (first) edit whose new text holds the line."""
    wanted = text.strip()
    if not wanted:
        return None
    for edit in patch.edits:
        if edit.content and wanted in (line.strip() for line in edit.content.split("\n")):
            return str(edit.id)
    return None


def trajectories_of(repo: SkillRepo, run: str, patches: list[str]) -> dict[str, str]:
    """Leaf patch id -> trajectory id, from the patch commits' trailers (one process)."""
    raws = repo.git.read_objects([f"{REF_ROOT}/{run}/patch/{p}" for p in patches])
    out: dict[str, str] = {}
    for pid, raw in zip(patches, raws, strict=True):
        if raw is None or b"\n\n" not in raw:
            continue
        trailers = parse_trailers(raw.split(b"\n\n", 1)[1].decode("utf-8", "replace"))
        if trailers is not None and trailers.trajectory:
            out[pid] = trailers.trajectory
    return out


def skill_lines(repo: SkillRepo, path: str, ref: str, run_dir: Path) -> list[SkillLine]:
    """Provenance of every line of ``path`` (repository-relative) at ``ref`` (e.g. S*)."""
    blamed = blame_file(repo, path, ref)
    record, patch = final_merge(run_dir)
    by_edit: dict[str, EditSources] = {e.id: e for e in record.edits}
    run = next((r.run for r in blamed if r.run and r.kind in ("patch", "merge")), None)
    matched = {i: _edit_for_line(r.text, patch) for i, r in enumerate(blamed) if r.run == run}
    leaves = sorted({s for eid in matched.values() if eid for s in by_edit[eid].sources})
    trajectory = trajectories_of(repo, run, leaves) if run and leaves else {}
    out = []
    for i, line in enumerate(blamed):
        data = line.model_dump()
        eid = matched.get(i)
        if eid is not None and eid in by_edit:
            prov = by_edit[eid]
            data.update(
                patches=list(prov.sources),
                support=prov.support,
                trajectories=sorted({trajectory[p] for p in prov.sources if p in trajectory}),
            )
            wrote = line.kind == "merge"
            data.update(
                edit_id=eid,
                merge=line.commit if wrote else record.commit,
                merge_level=line.level if wrote else record.level,
                merge_group=line.group if wrote else record.group,
            )
        out.append(SkillLine.model_validate(data))
    return out
