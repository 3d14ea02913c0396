"""The official Trace2Skill agent logs, read as import records.

The official pipeline's ``ChatHistoryLogger`` (``spreadsheet_agent/agents/base.py`` in
Qwen-Applications/Trace2Skill, Apache-2.0) writes one JSONL file per task, named
``<agent_name>_<instance_id>.jsonl``:

* ``{"type": "session_start", "agent_name", "timestamp"}``, first;
* ``{"type": "message", "index", "role", "content", "timestamp"}``: the system prompt, the
  task as a ``user`` message (``"Task: ..."``), each assistant reply (ReAct text: thought,
  action), and each observation as a ``user`` message (``"Observation: ..."``);
* ``{"type": "result", "success", "total_turns", "timestamp", "error"?}``, last.

This module maps one such file onto an :class:`~toolkit.trajectory.ImportRecord` (pure), so
the import keeps every message: observations become the observation of the step before them.
``success`` in the result record is the official agent's own completion flag; a results file
(task id -> passed) overrides it with the verifier's verdict. The last reply is the answer only
when the log shows a submission (:func:`shows_submission`); a run killed mid-way has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from toolkit.code_protocol import parse_reply
from toolkit.trajectory import ImportLineError, ImportMessage, ImportOutcome, ImportRecord

OFFICIAL_TYPES = frozenset({"session_start", "message", "result"})

# The official spreadsheet agent's "I am done" line (its prompts ask for it; its output-file
# check asks for it again).
_TASK_COMPLETE = re.compile(r"(?im)^\W*action\W*:\W*task_complete\b")


class OfficialLog(BaseModel):
    """One official log file converted: the record, or the reasons it could not be."""

    source: Path
    record: ImportRecord | None = None
    errors: list[ImportLineError] = Field(default_factory=list)


def looks_official(first_line: str) -> bool:
    """Whether a JSONL file whose first line is ``first_line`` is an official agent log."""
    try:
        value = json.loads(first_line)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") in OFFICIAL_TYPES


def task_id_from_name(path: Path, agent_name: str | None) -> str:
    """The task id in an official log's file name (``<agent_name>_<instance_id>.jsonl``)."""
    stem = path.stem
    if agent_name and stem.startswith(f"{agent_name}_"):
        return stem[len(agent_name) + 1 :]
    return stem


def parse_official_log(
    path: Path, text: str, results: Mapping[str, bool] | None = None
) -> OfficialLog:
    """Convert the text of one official log file (pure; ``path`` names it and its task).

    Every bad line is reported with its number; a file with any bad line, no message or no
    outcome (no ``result`` record and no entry in ``results``) yields no record.
    """
    log = OfficialLog(source=path)
    agent_name: str | None = None
    messages: list[ImportMessage] = []
    result: dict[str, Any] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            log.errors.append(ImportLineError(line=number, message=f"not JSON ({exc})"))
            continue
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "session_start":
            agent_name = str(value.get("agent_name") or "") or None
        elif kind == "message":
            role, content = value.get("role"), value.get("content")
            if role not in ("system", "user", "assistant", "tool") or not isinstance(content, str):
                log.errors.append(
                    ImportLineError(
                        line=number,
                        message="a message needs role system|user|assistant|tool and a string"
                        f" content (got role {role!r})",
                    )
                )
                continue
            messages.append(ImportMessage(role=role, content=content))
        elif kind == "result":
            result = value
        else:
            log.errors.append(
                ImportLineError(
                    line=number,
                    message=f"unknown record type {kind!r} (expected session_start, message"
                    " or result)",
                )
            )
    task_id = task_id_from_name(path, agent_name)
    passed: bool | None = None
    details = ""
    if results is not None and task_id in results:
        passed, details = results[task_id], "verdict from the results file"
    elif result is not None and isinstance(result.get("success"), bool):
        passed = result["success"]
        details = "official agent's own success flag"
        if result.get("error"):
            details += f"; error: {result['error']}"
    if not messages:
        log.errors.append(ImportLineError(line=0, message="the log has no message records"))
    if passed is None:
        log.errors.append(
            ImportLineError(
                line=0,
                message=f"no outcome for task {task_id!r}: no result record with a boolean"
                " 'success', and the results file (if any) does not name it",
            )
        )
    if log.errors:
        return log
    question = next((m.text() for m in messages if m.role == "user"), "")
    if question.startswith("Task: "):
        question = question[len("Task: ") :]
    metadata: dict[str, Any] = {"official_log": path.name}
    if agent_name:
        metadata["agent_name"] = agent_name
    if result is not None and "total_turns" in result:
        metadata["total_turns"] = result["total_turns"]
    last_reply = next((m.text() for m in reversed(messages) if m.role == "assistant"), "")
    log.record = ImportRecord(
        task_id=task_id,
        messages=messages,
        outcome=ImportOutcome(passed=passed, details=details),
        model=f"official/{agent_name}" if agent_name else "official",
        question=question,
        metadata=metadata,
        # None: the import takes the last reply as the answer (submitted).
        stop_reason=None if shows_submission(last_reply, result) else "unknown",
    )
    return log


def shows_submission(last_reply: str, result: Mapping[str, Any] | None) -> bool:
    """Whether an official log shows the agent submitting (pure).

    It does when its last assistant reply gives a ``FINAL ANSWER:`` or signals
    ``ACTION: TASK_COMPLETE``, or its ``result`` record says ``success``. A log cut off
    mid-run (no result record) or ending on a thought/action does not: its last reply is
    not an answer.
    """
    if parse_reply(last_reply).answer is not None or _TASK_COMPLETE.search(last_reply):
        return True
    return result is not None and result.get("success") is True


def read_results(path: Path) -> dict[str, bool]:
    """Verdicts by task id from a results file (JSON object or list, or JSONL).

    Accepted shapes: ``{"<task id>": true, ...}``, or records with a task id
    (``task_id``, ``instance_id`` or ``id``) and a verdict (``passed``, ``success``,
    ``correct``, or a ``score`` where 1 passes).

    Raises:
        ValueError: the file is not one of those shapes (the message says why).
    """
    text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not JSON
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ValueError(f"{path} is neither JSON nor JSONL ({exc})") from None
    if isinstance(data, dict) and all(isinstance(v, bool) for v in data.values()):
        return dict(data)
    if isinstance(data, dict):
        data = [data]
    verdicts: dict[str, bool] = {}
    for index, item in enumerate(data if isinstance(data, list) else [], start=1):
        task = (
            item.get("task_id", item.get("instance_id", item.get("id")))
            if isinstance(item, dict)
            else None
        )
        verdict = _verdict(item) if isinstance(item, dict) else None
        if task is None or verdict is None:
            raise ValueError(
                f"{path}: record {index} needs a task id (task_id, instance_id or id) and a"
                " verdict (passed, success, correct or score)"
            )
        verdicts[str(task)] = verdict
    if not verdicts:
        raise ValueError(f"{path} holds no verdicts")
    return verdicts


def _verdict(item: Mapping[str, Any]) -> bool | None:
    for key in ("passed", "success", "correct"):
        if isinstance(item.get(key), bool):
            return bool(item[key])
    score = item.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        return score >= 1
    return None
