"""``fake/rehearsal``: a scripted model that carries a whole ``evolve`` through every stage in
seconds, to rehearse a pipeline (a CI job, the PR flow) before spending real model time.

It plays each role by what the messages ask for, never by knowing any answer:

- the agent runs one python line, then answers ``rehearsal`` (so every task fails, and the
  +Error analysts have every trajectory to analyse);
- the single-call analysts (``--error-analyst single``; success analyses too) write one
  lesson, the same for every trajectory, as a new section at the end of SKILL.md;
- the agentic error analyst gives up at once (its fix could only pass by knowing the answer:
  with it the run learns nothing, exit 5);
- the merge operator keeps every edit it is shown;
- the author of a Creation draft (``evolve --create``, ``skill draft``) writes a two-section
  skill that says it is a rehearsal.

S* is then S0 plus one "Rehearsal" section with the support of every analysis, both score 0,
and the PR gate refuses it (``pr`` exit 4; ``--force`` opens it anyway). Nothing it writes is
a result: the section says so.
"""

from __future__ import annotations

from typing import Any

#: The lesson every analysis writes (no digits and no task text: the analysts' leak and
#: task-specific filters keep it).
LESSON = (
    "## Rehearsal\n\n"
    "- Written by the fake/rehearsal model to rehearse the pipeline: not a lesson, do not merge."
)
ANSWER = "rehearsal"


def _text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _patch() -> dict[str, Any]:
    edit = {
        "file": "SKILL.md",
        "op": "add_section",
        "target_section": "",
        "target_text": "",
        "old_text": "",
        "content": LESSON,
    }
    return {
        "reasoning": "a rehearsal of the pipeline, not an analysis",
        "edits": [edit],
        "changelog_entries": ["Rehearsal section (fake/rehearsal)"],
    }


def _merge(messages: list[dict[str, Any]]) -> dict[str, Any]:
    from toolkit.consolidate import parse_pool_from_prompt

    edits = [
        {**{k: v for k, v in e.items() if k not in ("id", "support")}, "cited": [e["id"]]}
        for e in parse_pool_from_prompt(messages)
    ]
    return {"reasoning": "kept every edit", "edits": edits, "changelog_entries": ["Merge"]}


#: The Creation draft the rehearsal's author writes (no task text: the same for any suite).
DRAFT = {
    "description": "A rehearsal skill written by the fake/rehearsal model to rehearse the "
    "pipeline: not a skill, do not merge.",
    "title": "Rehearsal",
    "overview": "Written by the fake/rehearsal model: it holds no method.",
    "sections": [
        {"heading": "Workflow", "body": "1. Read the task.\n2. Submit an answer."},
        {"heading": "Pitfalls", "body": "- None recorded yet."},
    ],
}


def script(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The reply to ``messages`` (see the module docstring for each role)."""
    from toolkit.consolidate.prompt import EDITS_MARK
    from toolkit.draft import SYSTEM_MARK

    system = str(messages[0].get("content", "")) if messages[0].get("role") == "system" else ""
    if EDITS_MARK in _text(messages):
        return _merge(messages)
    if system.startswith(SYSTEM_MARK):
        return DRAFT
    if "error analyst with tools" in system:
        return {
            "thought": "a rehearsal: no fix",
            "tool": "finish",
            "args": {"code": "", "answer": ""},
        }
    if "You improve an agent's skill" in system or "error analyst" in system:
        if "from its successes" in system:
            return {"solution_path": "a rehearsal", "lessons": ["a rehearsal"], "patch": _patch()}
        return {"diagnosis": "a rehearsal, not an analysis", "failed_step": -1, "patch": _patch()}
    replied = sum(m.get("role") == "assistant" for m in messages)
    action = ("python", {"code": f"print({ANSWER!r})"}) if not replied else ("submit", {})
    tool, args = action
    return {
        "thought": "rehearsal",
        "cited_sections": [],
        "tool": tool,
        "args": {"code": "", "path": "", "section": "", "answer": ANSWER, **args},
    }
