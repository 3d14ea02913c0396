"""Section usage: which sections and reference files the agent read, cited or echoed, per version.

From trajectories (:attr:`toolkit.trajectory.Trajectory.section_uses`), for each skill version
(S0, S*, ablate/only versions...) and each section or reference file: how many trajectories
used it (reads, citations and echoes counted apart), in which tasks, and the pass rate of the
trajectories that used it against those that did not. A section of the version that nobody
used is listed too (``used == 0``): that is what pruning looks for. Pure functions only.

With ``system`` delivery the whole skill is in the prompt, so use shows as citations and as
echoes (a section's distinctive lines reproduced in a reply: :mod:`toolkit.skill_echo`); with
``progressive`` delivery every section body is read on demand and reads are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from toolkit.skill import SKILL_MD, Skill
from toolkit.stats import pass_rate
from toolkit.trajectory import NO_SKILL_COMMIT, Trajectory


class SectionInfo(BaseModel):
    """A usable part of a skill: a section of a markdown file, or a whole reference file."""

    ref: str = Field(description="``file#section-id``, or the file for a whole file.")
    file: str
    section_id: str | None = None
    heading: str = ""
    level: int = Field(description="Heading level; 0 for a whole file.")
    parent: str | None = Field(default=None, description="Ref of the enclosing section.")
    start_line: int = 1
    end_line: int = 1
    subtree_end_line: int = 1


class SectionUsage(BaseModel):
    """Use of one section (or file) by the trajectories of one skill version."""

    version: str = Field(description="Label: S0, S*, ablate/<edit>, only/<edit>, or a tree id.")
    skill_commit: str = Field(description="Version id (git tree id of the skill folder).")
    ref: str
    file: str
    section_id: str | None = None
    heading: str = ""
    in_skill: bool = Field(description="The section exists in this version.")
    trajectories: int = Field(description="Trajectories of this version.")
    used: int = Field(description="Trajectories that read, cited or echoed it.")
    reads: int = Field(description="Trajectories that read it.")
    citations: int = Field(description="Trajectories that cited it.")
    echoes: int = Field(0, description="Trajectories that reproduced its distinctive lines.")
    tasks: list[str] = Field(description="Tasks whose trajectory used it (sorted, unique).")
    passed_with: int
    passed_without: int
    rate_with: float | None = Field(description="Pass rate of the trajectories that used it.")
    rate_without: float | None = Field(description="Pass rate of those that did not.")
    difference: float | None = Field(description="rate_with - rate_without (not causal).")
    ci_with: tuple[float, float] | None = Field(
        default=None, description="Wilson 95% interval of rate_with."
    )


def skill_sections(skill: Skill) -> list[SectionInfo]:
    """Every section of SKILL.md and the reference files, and each reference file as a whole."""
    out: list[SectionInfo] = []
    for name, doc in skill.markdown_docs():
        if name != SKILL_MD:
            out.append(
                SectionInfo(ref=name, file=name, level=0, end_line=doc.line_count or 1,
                            subtree_end_line=doc.line_count or 1)
            )  # fmt: skip
        for s in doc.headed_sections:
            out.append(
                SectionInfo(
                    ref=f"{name}#{s.id}",
                    file=name,
                    section_id=s.id,
                    heading=s.heading,
                    level=s.level,
                    parent=f"{name}#{s.parent}"
                    if s.parent
                    else (None if name == SKILL_MD else name),
                    start_line=s.start_line,
                    end_line=s.end_line,
                    subtree_end_line=s.subtree_end_line,
                )
            )
    return out


def section_usage(
    trajectories: Iterable[Trajectory],
    versions: Mapping[str, tuple[str, Skill | None]],
) -> list[SectionUsage]:
    """Usage rows per version and section.

    Args:
        trajectories: trajectories of any skill versions (no-skill ones are ignored).
        versions: skill commit -> (label, skill). Known versions list their unused sections
            too; trajectories of other versions are labelled by their commit's first 10 chars.

    Rows come per version (in ``versions`` order, then others), sections in file order, then
    refs used but absent from the version.
    """
    by_version: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        if t.skill_commit != NO_SKILL_COMMIT:
            by_version.setdefault(t.skill_commit, []).append(t)
    order = [c for c in versions if c in by_version] + [c for c in by_version if c not in versions]
    rows: list[SectionUsage] = []
    for commit in order:
        label, skill = versions.get(commit, (commit[:10], None))
        group = by_version[commit]
        sections = skill_sections(skill) if skill is not None else []
        known = {s.ref for s in sections}
        used_refs = sorted({u.ref for t in group for u in t.section_uses} - known)
        infos = sections + [
            SectionInfo(ref=r, file=r.split("#", 1)[0],
                        section_id=r.split("#", 1)[1] if "#" in r else None, level=-1)
            for r in used_refs
        ]  # fmt: skip
        for info in infos:
            reads = {t.id for t in group if info.ref in t.sections_used("read")}
            cites = {t.id for t in group if info.ref in t.sections_used("cited")}
            echoes = {t.id for t in group if info.ref in t.sections_used("echoed")}
            using = reads | cites | echoes
            users = [t for t in group if t.id in using]
            others = [t for t in group if t.id not in using]
            with_rate = pass_rate([t.passed for t in users], resamples=1) if users else None
            rate_with = sum(t.passed for t in users) / len(users) if users else None
            rate_without = sum(t.passed for t in others) / len(others) if others else None
            rows.append(
                SectionUsage(
                    version=label,
                    skill_commit=commit,
                    ref=info.ref,
                    file=info.file,
                    section_id=info.section_id,
                    heading=info.heading,
                    in_skill=info.level >= 0,
                    trajectories=len(group),
                    used=len(users),
                    reads=len(reads),
                    citations=len(cites),
                    echoes=len(echoes),
                    tasks=sorted({t.task_id for t in users}),
                    passed_with=sum(t.passed for t in users),
                    passed_without=sum(t.passed for t in others),
                    rate_with=rate_with,
                    rate_without=rate_without,
                    difference=None
                    if rate_with is None or rate_without is None
                    else rate_with - rate_without,
                    ci_with=(with_rate.wilson.low, with_rate.wilson.high) if with_rate else None,
                )
            )
    return rows


def subtree_used(rows: Iterable[SectionUsage], sections: Iterable[SectionInfo]) -> dict[str, int]:
    """Per section ref of one version: tasks whose trajectory used it or a subsection of it.

    A whole-file use (a reference file read at once) counts for every section of that file.
    """
    sections = list(sections)
    users: dict[str, set[str]] = {}
    for row in rows:
        users.setdefault(row.ref, set()).update(row.tasks)
    out: dict[str, int] = {}
    for s in sections:
        inside = {
            o.ref
            for o in sections
            if o.file == s.file and s.start_line <= o.start_line <= s.subtree_end_line
        }
        inside.add(s.ref)
        if s.file != SKILL_MD:
            inside.add(s.file)
        out[s.ref] = len(set().union(*(users.get(r, set()) for r in inside)))
    return out
