"""From an analyst's reply to a leaf patch: leak filter, patch engine, file, branch.

:func:`check_patch` is pure: it drops edits that leak the gold answer, that only restate
what the skill already says (:func:`restates_skill`), that quote or name the task's own data
or question (:mod:`toolkit.analysts.specific`), whose python blocks do not parse or redefine
the harness's helpers (:mod:`toolkit.analysts.snippets`), or that the patch engine rejects
against S0 (anchors must match the real file text; paths stay inside the skill; protected
files stay untouched), re-checks the rest as one patch and returns it with the files it
changes, or the reason nothing is left. :func:`save_patch` writes
``patches/<id>.json``; :func:`commit_patches` commits leaves on
``t2s/<run>/patch/<id>`` (parent = base) with provenance trailers, in one batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from toolkit.analysts.leaks import leaked_values
from toolkit.analysts.prompts import copies_trajectory
from toolkit.analysts.records import AnalysisRecord, DroppedEdit
from toolkit.analysts.replies import PatchReply, edit_dicts
from toolkit.analysts.snippets import code_problem
from toolkit.analysts.specific import (
    question_names,
    question_phrases,
    task_literals,
    task_names,
)
from toolkit.atomic import write_atomic
from toolkit.errors import PatchError
from toolkit.patch import Patch, apply_patch, parse_patch
from toolkit.repo import PatchCommit, SkillRepo, write_patches
from toolkit.runs import PATCHES_DIR
from toolkit.skill import Skill
from toolkit.skill_echo import normalise


class CheckedPatch(BaseModel):
    """The outcome of :func:`check_patch`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    patch: Patch | None = Field(None, description="The leaf patch; None when nothing is left.")
    reason: str | None = Field(None, description="Why there is no patch.")
    dropped: list[DroppedEdit] = Field(default_factory=list)
    repaired: list[DroppedEdit] = Field(
        default_factory=list, description="Inserts whose anchor was missing, appended instead."
    )
    changes: dict[str, bytes | None] = Field(
        default_factory=dict, description="Skill-relative files the patch writes or deletes."
    )


def leaf_id(analysis_id: str, patch: Patch) -> str:
    """The leaf patch's id: a hash of its analysis and content, so two analyses that wrote
    the same edits still get one patch (and one branch) each."""
    payload = f"{analysis_id}:{patch.content_hash()}".encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def _as_patch(reply: PatchReply, edits: Sequence[dict[str, object]]) -> Patch:
    return parse_patch(
        {
            "reasoning": reply.reasoning,
            "edits": list(edits),
            "changelog_entries": [e for e in reply.changelog_entries if e.strip()],
        },
        source="analyst reply",
    )


#: Edits that only add text (a restatement adds nothing).
ADDITIVE_OPS = ("insert_after", "insert_before", "append_to_section", "add_section")
#: Drop reasons about what an edit says (a patch that loses every edit to one says so).
CONTENT_REASONS = (
    "answer-leak",
    "already-in-skill",
    "task-specific",
    "copies-trajectory",
    "broken-code",
    "shadows-harness",
    "unfenced-code",
)
#: Shortest line of an edit that is compared with the skill's text (shorter ones say little).
RESTATED_MIN_CHARS = 16


def restates_skill(content: str, skill: Skill) -> bool:
    """True when every line of ``content`` already appears in the skill's markdown text.

    Small analysts often "teach" a rule the skill already states (the embedded 1.5B appended
    steps 3-5 of the workflow to the workflow as steps 5-7): such an edit adds nothing but
    length. Lines are compared with spaces collapsed, list marks and the closing punctuation
    dropped, as substrings of the skill's text (so a rule the skill wraps over two lines
    still matches); lines shorter than :data:`RESTATED_MIN_CHARS` are ignored, and content
    with no longer line is never a restatement.
    """
    texts = [skill.text(name) for name, _ in skill.markdown_docs()]
    flat = " ".join(" ".join(text.split()) for text in texts).lower()
    lines = [normalise(line).rstrip(".:;,!").lower() for line in content.splitlines()]
    lines = [line for line in lines if len(line) >= RESTATED_MIN_CHARS]
    return bool(lines) and all(line in flat for line in lines)


def _task_specific(
    content: str, data_text: str, question: str, skill_texts: list[str]
) -> str | None:
    """Why an edit is about this task only (it quotes or names the task's data, or names
    what its question asks about), or None."""
    quoted = task_literals(content, data_text, skill_texts)
    if quoted:
        return f"it quotes {', '.join(map(repr, quoted))} from this task's data"
    named = task_names(content, data_text, skill_texts)
    if named:
        return f"it names {', '.join(map(repr, named))} from this task's data"
    asked = question_names(content, question, skill_texts)
    if asked:
        return f"it names {', '.join(map(repr, asked))} from this task's question"
    copied = question_phrases(content, question, skill_texts)
    if copied:
        return f"it copies {', '.join(map(repr, copied))} from this task's question"
    return None


def check_patch(
    reply: PatchReply,
    skill: Skill,
    gold: Sequence[str],
    analysis_id: str,
    data_text: str = "",
    question: str = "",
) -> CheckedPatch:
    """Turn an analyst's patch reply into a leaf patch that applies cleanly to ``skill``.

    ``data_text`` is the text of the analysed task's input files
    (:func:`toolkit.analysts.specific.task_text`) and ``question`` its question; empty skips
    the task-specific checks that read them.
    """
    skill_texts = [skill.text(name) for name, _ in skill.markdown_docs()]
    dropped: list[DroppedEdit] = []
    repaired: list[DroppedEdit] = []
    candidates: list[tuple[int, dict[str, object]]] = []
    for index, edit in enumerate(edit_dicts(reply)):
        content = str(edit.get("content", ""))
        leaks = leaked_values(content, gold)
        if leaks:
            message = f"its content holds {len(leaks)} value(s) of the gold answer"
            dropped.append(DroppedEdit(index=index, reason="answer-leak", message=message))
            continue
        if edit.get("op") in ADDITIVE_OPS and restates_skill(content, skill):
            message = "every line of its content is already in the skill"
            dropped.append(DroppedEdit(index=index, reason="already-in-skill", message=message))
            continue
        if copies_trajectory(content):
            message = "it copies the analysed trajectory's steps, not a lesson from them"
            dropped.append(DroppedEdit(index=index, reason="copies-trajectory", message=message))
            continue
        message = _task_specific(content, data_text, question, skill_texts)
        if message:
            dropped.append(DroppedEdit(index=index, reason="task-specific", message=message))
            continue
        problem = code_problem(content, str(edit.get("op", "")))
        if problem is not None:
            dropped.append(DroppedEdit(index=index, reason=problem[0], message=problem[1]))
            continue
        try:
            parse_patch({"edits": [edit]}, source=f"edit {index}")
        except PatchError as exc:
            dropped.append(DroppedEdit(index=index, reason="invalid-edit", message=str(exc)))
            continue
        named = _section_by_heading(edit, skill)
        if named is not None:
            repaired.append(
                DroppedEdit(
                    index=index,
                    reason="section-missing",
                    message=f"section {edit['target_section']!r} is the heading of "
                    f"{named!r}; that id was used",
                )
            )
            edit = {**edit, "target_section": named}
        candidates.append((index, edit))
    if not candidates:
        reasons = {d.reason for d in dropped}
        one = next(iter(reasons)) if len(reasons) == 1 else None
        why = one if one in CONTENT_REASONS else "no-valid-edit"
        first = dropped[0].message if dropped else "the reply has no edits"
        return CheckedPatch(reason=f"{why}: {first}", dropped=dropped)
    patch = _as_patch(reply, [edit for _, edit in candidates])
    result = apply_patch(skill, patch)
    fixes = {
        r.index: fix
        for r in result.rejected
        if (fix := _anchor_fix(candidates[r.index][1], r.reason, skill)) is not None
    }
    # An insert moved to the end of its section is appended content now: the code checks
    # that hold for appended edits hold for it (the real run's bare code came this way).
    blocked = {
        k: problem
        for k, (fixed, _) in fixes.items()
        if (problem := code_problem(str(fixed.get("content", "")), str(fixed.get("op", ""))))
    }
    for k, (reason, message) in blocked.items():
        del fixes[k]
        dropped.append(DroppedEdit(index=candidates[k][0], reason=reason, message=message))
    if fixes or blocked:
        # A small model often quotes an anchor that is not in the section it names: copied
        # exactly from another section (the real WikiTQ run's replace of the worked example's
        # line, aimed at the loading section), or paraphrased or made up while its lesson and
        # section are sound. The edit goes to the one section holding the anchor, else an
        # insert goes to the end of its section. Other rejections are not second-guessed.
        for report in result.rejected:
            if report.index not in fixes:
                continue
            index, _ = candidates[report.index]
            fixed, how = fixes[report.index]
            candidates[report.index] = (index, fixed)
            message = f"{report.message}; {how}"
            repaired.append(DroppedEdit(index=index, reason="anchor-missing", message=message))
        candidates = [c for k, c in enumerate(candidates) if k not in blocked]
        if not candidates:
            first = dropped[-1]
            return CheckedPatch(reason=f"{first.reason}: {first.message}", dropped=dropped)
        patch = _as_patch(reply, [edit for _, edit in candidates])
        result = apply_patch(skill, patch)
    failed = {candidates[r.index][0] for r in result.rejected}
    repaired = [r for r in repaired if r.index not in failed]  # dropped after all
    if result.rejected:
        for report in result.rejected:
            index = candidates[report.index][0]
            dropped.append(
                DroppedEdit(index=index, reason=report.reason or "rejected", message=report.message)
            )
        bad = {report.index for report in result.rejected}
        kept = [edit for k, (_, edit) in enumerate(candidates) if k not in bad]
        if not kept:
            first = result.rejected[0]
            return CheckedPatch(
                reason=f"patch-rejected: {first.reason}: {first.message}", dropped=dropped
            )
        patch = _as_patch(reply, kept)
        result = apply_patch(skill, patch)
    if not result.clean:
        return CheckedPatch(reason=f"patch-rejected: {result.summary()}", dropped=dropped)
    pid = leaf_id(analysis_id, patch)
    patch = patch.model_copy(update={"id": pid, "sources": [pid], "support": 1})
    changes: dict[str, bytes | None] = {}
    for path in result.changed_files:
        content = result.proposed.get(path)
        changes[path] = content.encode("utf-8") if isinstance(content, str) else content
    return CheckedPatch(patch=patch, dropped=dropped, repaired=repaired, changes=changes)


_INSERTS = ("insert_after", "insert_before")
# Ops whose target_section names an existing section (add_section's names the new heading).
_IN_SECTION = ("insert_after", "insert_before", "append_to_section", "replace_in_section",
               "delete_section")  # fmt: skip


def _section_by_heading(edit: dict[str, object], skill: Skill) -> str | None:
    """The id of the one section whose heading ``target_section`` spells out (a small model
    often writes ``## Table QA`` or ``Table QA`` for the id ``table-qa``); None otherwise."""
    target = str(edit.get("target_section") or "").strip()
    if not target or edit.get("op") not in _IN_SECTION:
        return None
    try:
        sections = skill.parsed(str(edit.get("file") or "SKILL.md")).headed_sections
    except Exception:  # a file the skill does not have: the patch engine says so
        return None
    if any(s.id == target for s in sections):
        return None
    wanted = target.lstrip("#").strip().casefold()
    matches = [s.id for s in sections if s.heading.strip().casefold() == wanted]
    return matches[0] if len(matches) == 1 else None


_ANCHOR_FIELD = {"insert_after": "target_text", "insert_before": "target_text",
                 "replace_in_section": "old_text"}  # fmt: skip


def _anchor_fix(
    edit: dict[str, object], reason: str | None, skill: Skill
) -> tuple[dict[str, object], str] | None:
    """An edit whose anchor is missing from its section, aimed where it can apply, and how;
    None when it cannot be (see the caller)."""
    if reason != "anchor-missing" or edit.get("op") not in _ANCHOR_FIELD:
        return None
    anchor = str(edit.get(_ANCHOR_FIELD[str(edit["op"])]) or "")
    try:
        sections = skill.parsed(str(edit.get("file") or "SKILL.md")).headed_sections
    except Exception:  # a file the skill does not have: the patch engine said so
        sections = []
    holding = [s.id for s in sections if anchor.strip() and anchor in s.text]
    if len(holding) == 1 and holding[0] != edit.get("target_section"):
        return {**edit, "target_section": holding[0]}, f"section {holding[0]!r} holds it"
    if edit.get("op") in _INSERTS and str(edit.get("target_section") or "").strip():
        appended = {**edit, "op": "append_to_section", "target_text": "", "old_text": ""}
        return appended, "appended to the section instead"
    return None


def patch_path(run_dir: Path, patch_id: str) -> Path:
    """``run_dir/patches/<patch_id>.json``."""
    return Path(run_dir) / PATCHES_DIR / f"{patch_id}.json"


def save_patch(run_dir: Path, patch: Patch) -> Path:
    """Write ``patches/<id>.json`` atomically (the patch as the run-file contract has it)."""
    assert patch.id is not None
    path = patch_path(run_dir, patch.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, patch.model_dump_json(indent=2) + "\n", prefix=".patch-", suffix=".json")
    return path


def commit_patches(
    store: SkillRepo,
    run_id: str,
    skill_path: str,
    s0: Skill,
    records: Sequence[AnalysisRecord],
    run_dir: Path,
    *,
    timestamp: int,
    parent: str | None = None,
) -> dict[str, str]:
    """Commit every kept analysis' patch whose branch is missing; return id -> commit of all.

    The files are recomputed from ``patches/<id>.json`` and S0 (pure and deterministic), so a
    run killed between the analyses and this batch commits them on ``--resume``. ``parent``:
    the patches' parent commit, when ``s0`` is not the run's base (a step of a sequential
    consolidation: the skill the steps before made).
    """
    refs = store.run_refs(run_id)
    prefix = f"t2s/{run_id}/patch/"
    existing = {name[len(prefix) :]: oid for name, oid in refs.items() if name.startswith(prefix)}
    todo: list[PatchCommit] = []
    for record in records:
        if record.status != "kept" or record.patch_id is None or record.patch_id in existing:
            continue
        patch = Patch.model_validate_json(patch_path(run_dir, record.patch_id).read_bytes())
        result = apply_patch(s0, patch)
        if not result.clean:  # the file was edited by hand since: do not commit a broken leaf
            raise PatchError(f"patches/{record.patch_id}.json no longer applies to S0")
        base = f"{skill_path}/" if skill_path else ""
        changes: dict[str, bytes | None] = {}
        for path in result.changed_files:
            content = result.proposed.get(path)
            changes[base + path] = content.encode("utf-8") if isinstance(content, str) else content
        entries = patch.changelog_entries or [f"lesson from trajectory {record.trajectory_id}"]
        body = "\n".join(f"- {entry}" for entry in entries[1:])
        todo.append(
            PatchCommit(
                patch_id=record.patch_id,
                changes=changes,
                subject=entries[0],
                body=body,
                trajectory=record.trajectory_id,
                outcome=record.outcome,
                analyst=record.analyst,
                model=record.model,
                sources=[record.patch_id],
                support=1,
            )
        )
    if todo:
        existing.update(write_patches(store, run_id, todo, timestamp=timestamp, base=parent))
    return existing
