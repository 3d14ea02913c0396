"""The merge operator's prompt and reply schema (pure: no I/O, no model calls).

The operator sees the skill's outline, every unique child edit with its id and support (how
many analysed trajectories back it), the children it came from and git's conflict hunks, and
answers with one patch whose edits each cite the child edit ids they were made from. Every
list and string of the reply schema is bounded, so a grammar-constrained model cannot run
past ``max_tokens`` (and llama.cpp rejects string bounds over 1000).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, Field

from toolkit.consolidate.nodes import EditPool, Node
from toolkit.patch import Op
from toolkit.repo import GroupMerge
from toolkit.skill import SKILL_MD, Budgets, Skill

MAX_EDITS = 40
"""Most edits one reply may hold (the code also caps it at the number of unique inputs)."""
MAX_CITES = 64
MAX_TEXT = 1000
"""llama.cpp rejects a grammar whose string ``maxLength`` is over 1000."""
_HUNK_CHARS = 400
_MAX_HUNKS = 12
EDITS_MARK = "UNIQUE CHILD EDITS (JSON):"

Cited = Annotated[str, Field(min_length=1, max_length=40)]
Line = Annotated[str, Field(max_length=200)]


class MergedEdit(BaseModel):
    """One edit of the operator's patch, with the child edit ids it was made from."""

    cited: list[Cited] = Field(min_length=1, max_length=MAX_CITES)
    file: str = Field(max_length=200)
    op: Op
    target_section: str | None = Field(default=None, max_length=200)
    target_text: str | None = Field(default=None, max_length=MAX_TEXT)
    old_text: str | None = Field(default=None, max_length=MAX_TEXT)
    after_section: str | None = Field(default=None, max_length=200)
    content: str | None = Field(default=None, max_length=MAX_TEXT)


class MergeReply(BaseModel):
    """The operator's answer: one consolidated patch (the paper's JSON plus citations)."""

    reasoning: str = Field(max_length=MAX_TEXT)
    edits: list[MergedEdit] = Field(max_length=MAX_EDITS)
    changelog_entries: list[Line] = Field(default_factory=list, max_length=10)


SYSTEM = """You are the merge operator of Trace2Skill. Several analysts each proposed a patch \
to the same agent skill, from different task trajectories. Consolidate the patches you are \
given into ONE patch for the original skill:
- deduplicate edits that say the same thing, keeping the best wording;
- resolve contradictions (prefer the lesson with more support);
- keep unique insights that are specific and useful;
- when several edits teach the same lesson, write it once as a general principle;
- route low-support, detailed material to a file under references/ (create it and link it \
from SKILL.md) instead of growing SKILL.md;
- never return more edits than there are unique input edits;
- every edit cites, in "cited", the ids of the input edits it was made from (copy ids exactly).
Edits apply to the ORIGINAL skill: anchors (target_text, old_text) must be copied exactly \
from the original text. Edit only SKILL.md and references/*.md. Reply with JSON only."""


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def outline(skill: Skill) -> str:
    """The skill's section ids and headings, and its reference files."""
    rows = [
        f"{'  ' * max(0, s.level - 1)}[{s.id}] {s.heading or '(preamble)'}" for s in skill.sections
    ]
    refs = sorted(p for p in skill.files if p.startswith("references/"))
    if refs:
        rows.append("reference files: " + ", ".join(refs))
    return "\n".join(rows) or "(no sections)"


def edits_payload(pool: EditPool) -> list[dict[str, Any]]:
    """The unique child edits as the operator sees them: id, support, fields."""
    payload = []
    for eid, edit in pool.edits.items():
        fields = edit.model_dump(exclude={"id"}, exclude_none=True)
        payload.append({"id": eid, "support": pool.support(eid), **fields})
    return payload


def hunks_text(merge: GroupMerge, skill_prefix: str) -> str:
    """git's conflict hunks between children, bounded."""
    rows: list[str] = []
    for conflict in merge.conflicts:
        path = conflict.file.removeprefix(skill_prefix)
        for hunk in conflict.hunks:
            if len(rows) >= _MAX_HUNKS:
                rows.append("(more conflicts omitted)")
                return "\n".join(rows)
            rows.append(
                f"--- {path} line {hunk.line} ({conflict.ours[:8]} vs {conflict.theirs[:8]})\n"
                f"original: {_clip(hunk.base, _HUNK_CHARS)!r}\n"
                f"one child: {_clip(hunk.ours, _HUNK_CHARS)!r}\n"
                f"other child: {_clip(hunk.theirs, _HUNK_CHARS)!r}"
            )
    return "\n".join(rows) or "(git found no textual conflict)"


def build_messages(
    skill: Skill,
    nodes: list[Node],
    pool: EditPool,
    merge: GroupMerge,
    *,
    skill_prefix: str,
    budgets: Budgets,
    final: bool,
    min_support: int,
) -> list[dict[str, Any]]:
    """The chat messages of one merge call."""
    lines = len(skill.text(SKILL_MD).splitlines()) if skill.has_skill_md else 0
    children = "\n".join(
        f"- child {n.id}: support {len(n.leaves)}, edits "
        f"{', '.join(str(e.id) for e in n.patch.edits if str(e.id) in pool.edits) or '(none)'}; "
        f"reasoning: {_clip(n.patch.reasoning, 300)}"
        for n in nodes
    )
    final_note = ""
    if final:
        final_note = "\nThis is the FINAL merge: its result is the evolved skill." + (
            f" Edits backed by fewer than {min_support} trajectories are dropped."
            if min_support > 1
            else ""
        )
    user = (
        f"SKILL OUTLINE (SKILL.md has {lines} lines; budget {budgets.skill_md_lines} lines, "
        f"{budgets.reference_lines} per reference file):\n{outline(skill)}\n\n"
        f"CHILD PATCHES:\n{children}\n\n"
        f"GIT CONFLICTS BETWEEN CHILDREN:\n{hunks_text(merge, skill_prefix)}\n\n"
        f"{EDITS_MARK}\n{json.dumps(edits_payload(pool), ensure_ascii=False)}\n\n"
        f"Return one consolidated patch with at most {len(pool.edits)} edits; each edit cites "
        f"the ids of the input edits it comes from.{final_note}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def budget_retry_messages(
    messages: list[dict[str, Any]], reply: MergeReply, problem: str
) -> list[dict[str, Any]]:
    """The one retry after a result over the size budget: the budget is stated."""
    return [
        *messages,
        {"role": "assistant", "content": reply.model_dump_json()},
        {
            "role": "user",
            "content": f"That result is over the size budget: {problem}. Reply again with a "
            "smaller patch: merge more, cut one-off detail, or move detail into a linked "
            "references/ file.",
        },
    ]


def parse_pool_from_prompt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The unique child edits as written in a merge prompt (for scripted fake models)."""
    text = str(messages[-1]["content"]) if messages else ""
    for message in messages:
        if EDITS_MARK in str(message.get("content", "")):
            text = str(message["content"])
            break
    block = text.split(EDITS_MARK, 1)[1].strip().split("\n", 1)[0]
    return list(json.loads(block))
