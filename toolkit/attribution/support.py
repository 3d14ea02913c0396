"""Support: the leaf patches and trajectories behind each line of S*, joined to outcomes.

``git blame`` on S* (:func:`toolkit.repo.blame_file`) names the commit that wrote each line;
its trailers give the leaf patches (prevalence measured from provenance, not asked of an
LLM) and the patch commits give the trajectories. Those are joined here to the verifier's
outcomes (``analyses.jsonl``, ``trajectories.jsonl``) so a line is read as "backed by 3
patches from 3 trajectories, 2 of them failures".
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from toolkit.attribution.run import ANALYSES_FILE, EditSupport, RunContext, read_jsonl_dicts
from toolkit.patch import Patch
from toolkit.repo import SkillRepo, blame_file
from toolkit.skill import split_lines
from toolkit.trajectory import read_trajectories


class LineSupport(BaseModel):
    """One line of a file of S* with what stands behind it."""

    file: str = Field(description="File within the skill folder, e.g. SKILL.md.")
    line: int = Field(description="1-based line number in S*.")
    text: str
    commit: str = Field(description="Commit that wrote the line (base: the user's own text).")
    kind: str | None = Field(description="Commit kind: base/patch/merge...; None: user commit.")
    patches: list[str] = Field(description="Leaf patch ids behind the line.")
    support: int = Field(
        description="Number of leaf patches behind it (0 for S0's own text): the final "
        "patch edit's support where the line is that edit's text, else from blame."
    )
    trajectories: list[str] = Field(description="Trajectories those patches came from.")
    failed: int = Field(description="Of them, trajectories that failed.")
    passed: int = Field(description="Of them, trajectories that passed.")
    edit_id: str | None = Field(
        default=None, description="Edit of the final patch whose text the line is, if any."
    )


def edit_lines(text: str, patch: Patch, file: str) -> dict[int, str]:
    """1-based line number -> id of the edit of ``patch`` whose content is at that line.

    Blank lines are left out: they teach nothing, and an edit that opens with one would
    otherwise claim the blank line the skill already had before it (S0's own text)."""
    lines = [ln.rstrip("\r\n") for ln in split_lines(text)]
    out: dict[int, str] = {}
    for edit in patch.edits:
        if edit.file != file or not edit.content:
            continue
        block = [ln.rstrip("\r\n") for ln in split_lines(edit.content)]
        for start in range(len(lines) - len(block) + 1):
            if lines[start : start + len(block)] == block:
                for k in range(len(block)):
                    if block[k].strip():
                        out.setdefault(start + k + 1, edit.id or "")
                break
    return out


def edit_line_support(
    text: str, file: str, patch: Patch, support: Mapping[str, EditSupport]
) -> dict[int, EditSupport]:
    """1-based line number -> the support of the final patch's edit whose text is there.

    Blame credits the first child that wrote a line; the edit's consolidation record counts
    every leaf behind it, so it is the line's support wherever the line is an edit's text
    (``support``, ``report``, the index and the app all read lines this way).
    """
    return {
        line: support[edit_id]
        for line, edit_id in edit_lines(text, patch, file).items()
        if edit_id in support
    }


def outcomes(run_dir) -> dict[str, str]:
    """Trajectory id -> ``pass`` / ``fail`` from the run's analyses and trajectories."""
    out = {
        row["trajectory_id"]: row["outcome"]
        for row in read_jsonl_dicts(run_dir / ANALYSES_FILE)
        if row.get("trajectory_id") and row.get("outcome") in ("pass", "fail")
    }
    path = run_dir / "trajectories.jsonl"
    if path.is_file():
        for t in read_trajectories(path).records:
            out[t.id] = "pass" if t.passed else "fail"
    return out


def line_support(store: SkillRepo, context: RunContext) -> list[LineSupport]:
    """Support of every line of S*'s SKILL.md and reference files, in file order."""
    skill = store.load_skill(context.result, context.skill_path)
    names = sorted(p for p in skill.files if p == "SKILL.md" or p.startswith("references/"))
    names = [n for n in names if n.endswith(".md")]
    verdicts = outcomes(context.run_dir)
    rows = []
    for name in names:
        by_line = edit_line_support(
            str(skill.files[name]), name, context.final_patch, context.support
        )
        for record in blame_file(store, f"{context.skill_path}/{name}", context.result):
            edit = by_line.get(record.line)
            own = record.run == context.run and record.kind not in (None, "base")
            if edit is not None:
                patches, support, trajectories = edit.sources, edit.support, edit.trajectories
            elif own:
                patches, support, trajectories = (
                    record.patches,
                    record.support or 0,
                    record.trajectories,
                )
            else:
                patches, support, trajectories = [], 0, []
            rows.append(
                LineSupport(
                    file=name,
                    line=record.line,
                    text=record.text,
                    commit=record.commit,
                    kind=record.kind,
                    patches=patches,
                    support=support,
                    trajectories=trajectories,
                    failed=sum(verdicts.get(t) == "fail" for t in trajectories),
                    passed=sum(verdicts.get(t) == "pass" for t in trajectories),
                    edit_id=edit.edit_id if edit else None,
                )
            )
    return rows
