"""A suite from any question/answer JSONL file a user brings.

One JSON object per line::

    {"id": "q1", "question": "...", "answer": "42", "files": ["data.csv"], "split": "test"}

- ``answer``: a string or number, or a list of accepted alternatives.
- ``files`` (optional): paths relative to the JSONL file, copied into the workspace under the
  same relative name; or a mapping ``{"workspace name": "path relative to the JSONL"}``.
- ``split`` (optional): ``train`` or ``test``; without it the task is assigned by a hash of
  its id.

Scoring (``scoring=``): ``exact`` (whitespace collapsed; case ignored unless
``ignore_case=False``), ``numeric`` (the answer's last number within ``tolerance`` of the gold)
or ``regex`` (the gold is a pattern the whole stripped answer must match).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolkit.tasks.base import JsonlFileSuite, Score, Task, TaskError, TaskFile, scalar_text
from toolkit.tasks.gsm8k import extract_number, score_value
from toolkit.tasks.splits import hash_split

ScoringRule = Literal["exact", "numeric", "regex"]


class JsonlRecord(BaseModel):
    """One line of a user's JSONL task file."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    question: str = Field(min_length=1)
    answer: str | int | float | list[str | int | float]
    files: list[str] | dict[str, str] | None = None
    split: Literal["train", "test"] | None = None


def _exact_norm(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


class JsonlSuite(JsonlFileSuite):
    """Tasks from a user JSONL file with exact, numeric or regex scoring."""

    name = "jsonl"

    def __init__(
        self,
        path: str | Path | None = None,
        scoring: ScoringRule = "exact",
        tolerance: float = 1e-6,
        ignore_case: bool = True,
    ):
        """Read tasks from ``path`` (required) and score them with ``scoring``."""
        if path is None:
            raise TaskError("the jsonl suite needs path=<file.jsonl>")
        if scoring not in ("exact", "numeric", "regex"):
            raise TaskError(f"scoring must be exact, numeric or regex, got {scoring!r}")
        self.path = Path(path)
        self.scoring: ScoringRule = scoring
        self.tolerance = float(tolerance)
        self.ignore_case = ignore_case

    def parse_row(self, raw: Any) -> Task:
        """Validate one line: fields, answer usable by the scoring rule, files present."""
        record = JsonlRecord.model_validate(raw)
        raw_answers = record.answer if isinstance(record.answer, list) else [record.answer]
        answers = [scalar_text(a) or "" for a in raw_answers]
        if not answers:
            raise ValueError("answer list is empty")
        for gold in answers:
            if self.scoring == "numeric" and extract_number(gold) is None:
                raise ValueError(f"answer {gold!r} is not a number (scoring=numeric)")
            if self.scoring == "regex":
                try:
                    re.compile(gold)
                except re.error as exc:
                    raise ValueError(f"answer {gold!r} is not a valid regex: {exc}") from None
        task_id = str(record.id)
        return Task(
            id=task_id,
            suite=self.name,
            split=record.split or hash_split(task_id),
            question=record.question,
            answers=answers,
            files=self._files(record.files),
        )

    def _files(self, files: list[str] | dict[str, str] | None) -> list[TaskFile]:
        if not files:
            return []
        pairs = files.items() if isinstance(files, dict) else ((f, f) for f in files)
        result = []
        for workspace_name, relative in pairs:
            if PurePosixPath(relative).is_absolute():
                raise ValueError(f"file {relative!r} must be relative to the JSONL file")
            source = (self.path.parent / relative).resolve()
            if not source.is_file():
                raise ValueError(f"file {relative!r} not found next to {self.path.name}")
            result.append(TaskFile(path=workspace_name, source=str(source)))
        return result

    def score(self, task: Task, answer: object) -> Score:
        """Score with the suite's rule; a match with any accepted answer passes."""
        if answer is None:
            return Score.fail("no answer given", gold=task.answers)
        text = scalar_text(answer)
        if text is None:
            return Score.fail(
                f"answer is a {type(answer).__name__}; expected a string or a number",
                gold=task.answers,
            )
        if self.scoring == "numeric":
            return self._score_numeric(task, isinstance(answer, str), text)
        if self.scoring == "regex":
            flags = re.IGNORECASE if self.ignore_case else 0
            stripped = text.strip()
            hit = next((g for g in task.answers if re.fullmatch(g, stripped, flags)), None)
            return Score(
                passed=hit is not None,
                value=1.0 if hit is not None else 0.0,
                predicted=[stripped],
                gold=task.answers,
                details=f"matches {hit!r}" if hit is not None else "matches no answer pattern",
            )
        predicted = _exact_norm(text, self.ignore_case)
        gold = [_exact_norm(g, self.ignore_case) for g in task.answers]
        passed = predicted in gold
        return Score(
            passed=passed,
            value=1.0 if passed else 0.0,
            predicted=[predicted],
            gold=gold,
            details="equals an accepted answer" if passed else "equals no accepted answer",
        )

    def reference_answers(self, task: Task) -> list[object]:
        """Each accepted answer; none for regex scoring, whose golds are patterns."""
        return [] if self.scoring == "regex" else list(task.answers)

    def _score_numeric(self, task: Task, free_text: bool, text: str) -> Score:
        value = extract_number(text) if free_text else float(text)
        golds = [extract_number(g) for g in task.answers]
        return score_value(value, golds, self.tolerance)

    def summarise(self, task: Task) -> str:
        """The question and the names of the workspace files."""
        lines = [f"Question: {task.question}"]
        if task.files:
            lines.append("Files in the workspace: " + ", ".join(f.path for f in task.files))
        return "\n".join(lines)
