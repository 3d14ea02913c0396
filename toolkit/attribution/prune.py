"""Evidence-based pruning: propose removing the sections of S* that nothing shows to be useful.

A section of S* is a candidate when, over the evaluated trajectories of S*, no trajectory read,
cited or echoed it or any of its subsections, and no edit landing in it has a positive ablation
effect (the lower end of a leave-one-out or add-one-in 95% CI above zero). Only whole
subtrees are proposed (a section whose subsection is used stays), never the skill's title
section, and never on too little evidence (``min_trajectories``). The proposal is a
:class:`~toolkit.patch.Patch` of ``delete_section`` edits, applied to S* with the patch
guardrails and committed on ``t2s/<run>/prune`` (parent S*) with the evidence in the message;
``runs/<run>/prune.json`` keeps it for the report and the app.

Usage is observational: with ``system`` delivery only citations and echoes (copied lines) are
seen, so a section the model followed silently in its prompt looks unused. The message says
which delivery the evidence came from; review before merging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from toolkit.atomic import write_atomic
from toolkit.attribution.ablation import AblationRecord, read_ablations
from toolkit.attribution.run import (
    AttributionError,
    RunContext,
    load_version,
    open_run,
    read_run_trajectories,
    refresh_bundle,
)
from toolkit.attribution.usage import SectionInfo, section_usage, skill_sections, subtree_used
from toolkit.patch import Edit, Patch, apply_patch
from toolkit.repo import CommitSpec
from toolkit.repo.trailers import Trailers, format_message
from toolkit.runs import now_iso, update_stage
from toolkit.skill import SKILL_MD, Skill, linked_references, parse_heading, split_lines
from toolkit.stats import clear_direction

PRUNE_FILE = "prune.json"


class PruneCandidate(BaseModel):
    """A section proposed for removal, with the evidence."""

    ref: str
    file: str
    section_id: str
    heading: str
    start_line: int
    end_line: int = Field(description="Last line of the section and its subsections.")
    used_tasks: int = Field(description="Tasks whose S* trajectory used it (0).")
    edits: list[str] = Field(description="Edits of the final patch landing in it.")
    evidence: str = Field(description="One line: why it is proposed.")


class PruneProposal(BaseModel):
    """What ``trace2skill prune`` proposes for a run."""

    schema_version: int = 1
    run: str
    skill_commit: str = Field(description="Version id of S*.")
    trajectories: int = Field(description="Trajectories of S* the evidence comes from.")
    tasks: int = Field(description="Distinct tasks among them.")
    deliveries: list[str] = Field(description="How the skill reached the agent in them.")
    candidates: list[PruneCandidate]
    patch: Patch | None = Field(description="delete_section edits; None without candidates.")
    rejected: list[str] = Field(default_factory=list, description="Edits the guardrails refused.")
    commit: str | None = Field(default=None, description="Commit on t2s/<run>/prune.")
    ref: str | None = None
    removed_lines: int = 0


def edit_sections(skill: Skill, patch: Patch) -> dict[str, str]:
    """Edit id -> ref of the innermost section of ``skill`` holding the edit's text.

    The edit's content (its first non-heading line for ``add_section``) is located in the
    edited file; edits that add nothing (deletions) map to nothing.
    """
    out: dict[str, str] = {}
    sections = skill_sections(skill)
    for edit in patch.edits:
        text = skill.files.get(edit.file)
        if not isinstance(text, str) or not edit.content:
            continue
        wanted = [ln for ln in split_lines(edit.content) if ln.strip()]
        if not wanted:
            continue
        first = wanted[0].rstrip("\r\n")
        lines = [ln.rstrip("\r\n") for ln in split_lines(text)]
        if first not in lines:
            continue
        number = lines.index(first) + 1
        holders = [
            s
            for s in sections
            if s.file == edit.file and s.level > 0 and s.start_line <= number <= s.end_line
        ]
        if parse_heading(first) is not None:
            holders = [s for s in holders if s.start_line == number] or holders
        if holders:
            out[edit.id or ""] = holders[-1].ref
    return out


def deletable_files(files: Mapping[str, str | bytes], changed: Sequence[str]) -> list[str]:
    """The changed reference files left empty that no kept text links to (pure).

    A broken link is only a validation warning, so the patch guardrails would let a
    ``delete_file`` through while SKILL.md (or another reference) still points at the file;
    such a file stays, emptied, for the reviewer to relink or drop.
    """
    emptied = {
        name for name in changed if name != SKILL_MD and not str(files.get(name) or "").strip()
    }
    linked: set[str] = set()
    for name, text in files.items():
        if name not in emptied and isinstance(text, str):
            linked |= linked_references(text)
    return sorted(emptied - linked)


def prune_candidates(
    sections: Sequence[SectionInfo],
    used: dict[str, int],
    edit_refs: dict[str, str],
    ablations: Sequence[AblationRecord],
    *,
    trajectories: int,
) -> list[PruneCandidate]:
    """The maximal unused, never-helpful subtrees of ``sections`` (pure).

    Args:
        sections: the sections of S* (:func:`skill_sections`).
        used: ref -> tasks that used the section or a subsection (:func:`subtree_used`).
        edit_refs: edit id -> ref of the section it landed in (:func:`edit_sections`).
        ablations: the run's ablation records.
        trajectories: how many S* trajectories the usage counts come from.
    """
    helpful = {
        r.edit_id
        for r in ablations
        if r.effect is not None
        and clear_direction(r.effect_ci_low, r.effect_ci_high, r.p_value) > 0
    }
    candidates: list[PruneCandidate] = []
    taken: list[SectionInfo] = []
    for s in sections:
        if s.level <= 0 or (s.file == SKILL_MD and s.level == 1) or not s.section_id:
            continue
        if any(t.file == s.file and t.start_line <= s.start_line <= t.subtree_end_line
               for t in taken):  # fmt: skip
            continue  # inside a subtree already proposed
        if used.get(s.ref, 0):
            continue
        inside = [
            e
            for e, ref in edit_refs.items()
            if any(
                o.ref == ref and o.file == s.file
                and s.start_line <= o.start_line <= s.subtree_end_line
                for o in sections
            )
        ]  # fmt: skip
        if set(inside) & helpful:
            continue
        effect = (
            "no ablation showed it helps (95% CI above 0)" if inside else "no edit of the run in it"
        )
        candidates.append(
            PruneCandidate(
                ref=s.ref,
                file=s.file,
                section_id=s.section_id,
                heading=s.heading,
                start_line=s.start_line,
                end_line=s.subtree_end_line,
                used_tasks=0,
                edits=inside,
                evidence=f"read, cited or echoed in 0 of {trajectories} trajectories of S*; "
                f"{effect}",
            )
        )
        taken.append(s)
    return candidates


def _message(context: RunContext, proposal: PruneProposal) -> str:
    lines = [
        f"Evidence: {proposal.trajectories} trajectories of S* on {proposal.tasks} tasks "
        f"(delivery: {', '.join(proposal.deliveries) or 'n/a'}).",
        "",
    ]
    for c in proposal.candidates:
        lines.append(f"- {c.ref} (lines {c.start_line}-{c.end_line}): {c.evidence}")
    if proposal.rejected:
        lines += ["", "Refused by the guardrails: " + "; ".join(proposal.rejected)]
    trailers = Trailers(
        run=context.run, kind="prune", patch=proposal.patch.id if proposal.patch else None
    )
    subject = f"trace2skill: prune {len(proposal.candidates)} unused section(s) of S*"
    return format_message(subject, trailers, "\n".join(lines))


def propose_prune(
    run_dir: str | Path,
    *,
    repo: str | Path | None = None,
    skill_path: str | None = None,
    min_trajectories: int = 10,
    write: bool = True,
) -> PruneProposal:
    """Propose (and with ``write`` commit and save) the pruning patch of a run's S*.

    Raises:
        AttributionError: see :func:`open_run`; fewer than ``min_trajectories`` trajectories
            of S* (evaluate S* first: ``trace2skill ablate`` or ``trace2skill eval``).
    """
    context, store = open_run(run_dir, repo=repo, skill_path=skill_path)
    try:
        star, star_commit = load_version(store, context, context.result)
        mine = [t for t in read_run_trajectories(context.run_dir) if t.skill_commit == star_commit]
        if len(mine) < min_trajectories:
            raise AttributionError(
                f"too little evidence to prune: {len(mine)} trajectories of S* "
                f"(need {min_trajectories}); evaluate S* first (trace2skill ablate RUN)"
            )
        rows = section_usage(mine, {star_commit: ("S*", star)})
        sections = skill_sections(star)
        candidates = prune_candidates(
            sections,
            subtree_used(rows, sections),
            edit_sections(star, context.final_patch),
            read_ablations(context.run_dir),
            trajectories=len(mine),
        )
        proposal = PruneProposal(
            run=context.run,
            skill_commit=star_commit,
            trajectories=len(mine),
            tasks=len({t.task_id for t in mine}),
            deliveries=sorted({t.delivery for t in mine}),
            candidates=candidates,
            patch=None,
        )
        if candidates:
            patch = Patch(
                reasoning="Remove sections of S* that no trajectory used and no ablation found "
                "useful.",
                edits=[
                    Edit(file=c.file, op="delete_section", target_section=c.section_id)
                    for c in candidates
                ],
                changelog_entries=[f"Remove unused section {c.ref}" for c in candidates],
            )
            result = apply_patch(star, patch)
            gone = deletable_files(result.files, result.changed_files)
            if gone:  # a reference with nothing left goes, not an empty file
                kept = [e for e in patch.edits if e.file not in gone]
                deleting = patch.model_copy(
                    update={"edits": kept + [Edit(file=n, op="delete_file") for n in gone]}
                )
                without = apply_patch(star, deleting)
                if without.valid or not result.valid:  # never trade a valid result for errors
                    patch, result = deleting, without
            proposal.patch = patch
            proposal.rejected = [f"{r.id}: {r.message}" for r in result.rejected]
            before = sum(len(split_lines(v)) for v in star.files.values() if isinstance(v, str))
            after = sum(len(split_lines(v)) for v in result.files.values() if isinstance(v, str))
            proposal.removed_lines = before - after
            if write and result.valid and proposal.removed_lines:
                changes = {
                    f"{context.skill_path}/{name}": (
                        None if result.files.get(name) is None
                        else str(result.files[name]).encode("utf-8")
                    )
                    for name in result.changed_files
                }  # fmt: skip
                spec = CommitSpec(
                    [context.result], _message(context, proposal),
                    store.commit_time(context.result), changes,
                )  # fmt: skip
                proposal.commit = store.write(context.run, [("prune", spec)], replace=True)[0]
                proposal.ref = context.ref("prune")
                refresh_bundle(store, context)  # other clones get the prune ref too
        if write:
            text = json.dumps(proposal.model_dump(mode="json"), indent=2) + "\n"
            write_atomic(context.run_dir / PRUNE_FILE, text, prefix=".prune-", suffix="")
            update_stage(
                context.run_dir,
                "prune",
                status="done",
                ended_at=now_iso(),
                config={"min_trajectories": min_trajectories},
                counts={
                    "candidates": len(candidates),
                    "removed_lines": proposal.removed_lines,
                    "commit": proposal.commit,
                },
            )
        return proposal
    finally:
        store.close()


def read_prune(run_dir: str | Path) -> PruneProposal | None:
    """The saved proposal of a run (``prune.json``), or None."""
    path = Path(run_dir) / PRUNE_FILE
    if not path.is_file():
        return None
    return PruneProposal.model_validate_json(path.read_bytes())
