"""A scripted fake model that plays every role of an evolution: agent, analysts, merge operator
(and the author of a Creation draft).

Used by the evolve tests and by ``benchmarks/evolve.py``. The role is read from the messages
(the merge prompt's edit list, the analysts' system prompts, else the agent), so one fake
model serves a whole ``evolve`` the way one real model does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from toolkit.consolidate import parse_pool_from_prompt
from toolkit.consolidate.prompt import EDITS_MARK
from toolkit.draft import SYSTEM_MARK as DRAFT_MARK
from toolkit.tasks import Task

#: Words of the fake analysts' lessons: distinct lessons without digits (which the answer-leak
#: filter could mistake for a gold value).
_VERBS = ("Check", "Re-read", "Normalise", "Count")
_OBJECTS = ("the header row", "empty cells", "merged cells", "the units", "date columns",
            "duplicate rows", "the question's wording", "the last row")  # fmt: skip
_TASK = re.compile(r"TASK \((\S+) ([^)]+)\)")


def lesson(task_id: str) -> str:
    """A lesson line that is the same for a task and differs between most tasks."""
    h = sum(map(ord, task_id))
    return f"- {_VERBS[h % len(_VERBS)]} {_OBJECTS[(h // 4) % len(_OBJECTS)]} before answering."


def _patch(task_id: str) -> dict[str, Any]:
    return {
        "reasoning": "the agent answered without checking the table",
        "edits": [
            {
                "file": "SKILL.md",
                "op": "append_to_section",
                "target_section": "table-qa/pitfalls",
                "target_text": "",
                "old_text": "",
                "content": lesson(task_id),
            }
        ],  # fmt: skip
        "changelog_entries": ["Pitfalls: one more check before answering"],
    }


def _error_reply(task_id: str) -> dict[str, Any]:
    return {"diagnosis": "answered before checking", "failed_step": 0, "patch": _patch(task_id)}


#: What the fake author writes for ``evolve --create``: a skill whose sections the fake
#: analysts' patches fit (they append to ``table-qa/pitfalls``).
DRAFT_REPLY: dict[str, Any] = {
    "description": "Answer a question about a table stored as a CSV file: load it with "
    "pandas, select the rows the question asks about, and submit a short answer.",
    "title": "Table QA",
    "overview": "Read the table, find the rows, answer with the value only.",
    "sections": [
        {"heading": "Workflow", "body": "1. Load table.csv with pandas.\n2. Filter the rows."},
        {"heading": "Pitfalls", "body": "- Check the column names first."},
    ],
}


def _all_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def method_script(
    gold: Mapping[str, Task], wrong: Collection[str], *, python_step: bool = False
) -> Callable[[list[dict[str, Any]]], Any]:
    """The fake model's script.

    Args:
        gold: task id -> task (its answers).
        wrong: task ids the agent answers wrongly (the failures the error analysts see),
            unless its skill holds one of the analysts' lessons (an evolved skill: the
            tasks S* gains over S0).
        python_step: the agent first runs a snippet on the table in the sandbox.
    """
    by_question = {t.question: t for t in gold.values()}

    def merge(messages: list[dict[str, Any]]) -> dict[str, Any]:
        pool = parse_pool_from_prompt(messages)
        edits = [
            {**{k: v for k, v in e.items() if k not in ("id", "support")}, "cited": [e["id"]]}
            for e in pool
        ]
        return {"reasoning": "kept every lesson", "edits": edits, "changelog_entries": ["Merge"]}

    def analyst(messages: list[dict[str, Any]], system: str) -> dict[str, Any]:
        match = _TASK.search(_all_text(messages))
        task_id = match.group(2) if match else "unknown"
        if "error analyst with tools" not in system:  # single-call error or success analyst
            if "from its successes" in system:
                return {"solution_path": "read, filter, answer", "lessons": ["check first"],
                        "patch": _patch(task_id)}  # fmt: skip
            return _error_reply(task_id)
        last = str(messages[-1].get("content", ""))
        if "write the report" in last:
            return _error_reply(task_id)
        turns = sum(m["role"] == "assistant" for m in messages)
        if turns == 0:
            answer = "\n".join(gold[task_id].answers) if task_id in gold else "?"
            return {"thought": "check the right answer", "tool": "evaluate_output",
                    "args": {"code": "", "answer": answer}}  # fmt: skip
        return {"thought": "it passes", "tool": "finish", "args": {"code": "", "answer": ""}}

    def agent(messages: list[dict[str, Any]]) -> dict[str, Any]:
        text = str(messages[1]["content"])
        task = next(t for q, t in by_question.items() if q in text)
        if python_step and sum(m["role"] == "assistant" for m in messages) == 0:
            code = "rows = open('table.csv').read().splitlines()\nprint(len(rows))"
            return {"thought": "look at the table", "cited_sections": [], "tool": "python",
                    "args": {"code": code, "path": "", "section": "", "answer": ""}}  # fmt: skip
        learned = " before answering." in str(messages[0].get("content", ""))
        answer = "no idea" if task.id in wrong and not learned else "\n".join(task.answers)
        return {"thought": "answer", "cited_sections": [], "tool": "submit",
                "args": {"code": "", "path": "", "section": "", "answer": answer}}  # fmt: skip

    def script(messages: list[dict[str, Any]]) -> Any:
        system = str(messages[0].get("content", "")) if messages[0]["role"] == "system" else ""
        if system.startswith(DRAFT_MARK):  # the author of a Creation draft
            return DRAFT_REPLY
        if EDITS_MARK in _all_text(messages):
            return merge(messages)
        if "You improve an agent's skill" in system or "error analyst" in system:
            return analyst(messages, system)
        return agent(messages)

    return script
