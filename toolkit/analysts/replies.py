"""The analysts' response schemas: every string and list bounded, every key required.

Small local models are cut off at ``max_tokens``; llama.cpp's grammar keeps a reply inside
these bounds, so a reply always closes its JSON (DESIGN.md section 5). Keys are required
(``""`` when unused) because small models otherwise left out the ones that mattered. The
edit format is the paper's (:class:`toolkit.patch.Edit`), narrowed to the ops an analyst
needs; :func:`edit_dicts` turns a reply's edits into patch-engine input.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

MAX_EDITS = 3
MAX_LESSONS = 3
MAX_CONTENT_CHARS = 800
MAX_ANCHOR_CHARS = 300
MAX_TEXT_CHARS = 600

AnalystOp = Literal[
    "append_to_section", "insert_after", "insert_before", "replace_in_section", "add_section"
]


class EditReply(BaseModel):
    """One edit of SKILL.md (or a references/*.md file) as the analyst writes it."""

    file: str = Field(max_length=120, description="SKILL.md or references/<name>.md.")
    op: AnalystOp
    target_section: str = Field(
        max_length=120, description='Section id or heading the edit is in ("" if none).'
    )
    target_text: str = Field(
        max_length=MAX_ANCHOR_CHARS,
        description='insert_after/insert_before: exact text copied from the file (else "").',
    )
    old_text: str = Field(
        max_length=MAX_ANCHOR_CHARS,
        description='replace_in_section: exact text to replace, copied from the file (else "").',
    )
    content: str = Field(
        min_length=1, max_length=MAX_CONTENT_CHARS, description="The new text (markdown)."
    )


class PatchReply(BaseModel):
    """A patch in the paper's format: why, the edits, one changelog line per change."""

    reasoning: str = Field(max_length=MAX_TEXT_CHARS)
    edits: list[EditReply] = Field(min_length=1, max_length=MAX_EDITS)
    changelog_entries: list[Annotated[str, Field(max_length=160)]] = Field(
        min_length=1, max_length=MAX_EDITS
    )


class ErrorReply(BaseModel):
    """An error analysis: what went wrong, the step where it went wrong, the skill patch."""

    diagnosis: str = Field(
        max_length=MAX_TEXT_CHARS, description="What went wrong and the agent decision behind it."
    )
    failed_step: int = Field(ge=-1, le=99, description="Index of the faulty step (-1: none).")
    patch: PatchReply


class SuccessReply(BaseModel):
    """A success analysis: the lean solution path, then at most 3 lessons, as a patch."""

    solution_path: str = Field(
        max_length=MAX_TEXT_CHARS, description="The essential steps that solved it."
    )
    lessons: list[Annotated[str, Field(max_length=240)]] = Field(
        min_length=1, max_length=MAX_LESSONS
    )
    patch: PatchReply


class AnalystArgs(BaseModel):
    """Arguments of the agentic analyst's tools (``""`` when unused)."""

    code: str = Field(max_length=1000, description="python: the code to run.")
    answer: str = Field(max_length=500, description="evaluate_output: the answer to check.")


class AnalystStep(BaseModel):
    """One step of the agentic error analyst: a thought and one tool call."""

    thought: str = Field(max_length=MAX_TEXT_CHARS)
    tool: Literal["python", "evaluate_output", "finish"]
    args: AnalystArgs


def edit_dicts(reply: PatchReply) -> list[dict[str, Any]]:
    """The reply's edits as patch-engine dicts (unused ``""`` fields dropped by the engine's
    official-format normalisation)."""
    return [edit.model_dump() for edit in reply.edits]
