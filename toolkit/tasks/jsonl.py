"""A suite from any question/answer JSONL file a user brings.

One JSON object per line::

    {"id": "q1", "question": "...", "answer": "42", "files": ["data.csv"], "split": "test"}

- ``answer``: a string or number, or a list of accepted alternatives (JSON ``true`` and
  ``false`` are the answers ``"true"`` and ``"false"``). With ``numeric`` scoring,
  alternatives that hold no number are ignored (``tasks check`` notes them).
- ``files`` (optional): paths relative to the JSONL file, copied into the workspace under the
  same relative name; or a mapping ``{"workspace name": "path relative to the JSONL"}``.
- ``split`` (optional): ``train`` or ``test``; without it the task is assigned by a hash of
  its id.

Scoring (``scoring=``): ``exact`` (whitespace collapsed; case ignored unless
``ignore_case=False``), ``numeric`` (the answer's number within ``tolerance`` of the gold's:
the whole text when it is one number, ``1e-07`` included, else its last number)
or ``regex`` (the gold is a pattern the whole stripped answer must match).
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from toolkit.tasks.base import (
    JsonlFileSuite,
    Score,
    Task,
    TaskError,
    TaskFile,
    error_message,
    json_object,
    json_type,
    scalar_text,
)
from toolkit.tasks.gsm8k import extract_number, format_number, number_count, score_value
from toolkit.tasks.splits import hash_split

ScoringRule = Literal["exact", "numeric", "regex"]


def number_of(text: str) -> float | None:
    """The number a ``numeric``-scored answer or gold holds: the whole text when it is one
    number (``1e-07``, ``-2.5e3``), else the last number in it (GSM8K's rule).

    A JSON number gold reaches the scorer as its repr, and GSM8K's rule reads no exponent:
    ``1e-07`` was the gold -7 and ``1e+21`` the gold 21 (an agent answering 0.0000001
    failed, and ``tasks check`` passed the gold against itself).
    """
    value = _plain(text)
    return value if value is not None else extract_number(text)


def _plain(text: str) -> float | None:
    """``text`` as one finite number (``-2.5e3``), else None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _escapes(name: str) -> bool:
    """Whether ``name`` cannot be a path inside the agent's folder (absolute, '..', a
    backslash, empty)."""
    pure = PurePosixPath(name)
    return not name or pure.is_absolute() or ".." in pure.parts or "\\" in name


def _a(kind: str) -> str:
    """``kind`` with its article: "an array", "a string", "null"."""
    if kind == "null":
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


class JsonlRecord(BaseModel):
    """One line of a user's JSONL task file."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    question: str = Field(min_length=1)
    answer: str | int | float | list[str | int | float]
    files: list[str] | dict[str, str] | None = None
    split: Literal["train", "test"] | None = None

    # Before-validators: one plain message instead of one line per member of the union.
    @field_validator("id", mode="before")
    @classmethod
    def _id_type(cls, value: Any) -> Any:
        whole = isinstance(value, float) and value.is_integer()  # 7.0: lax mode's 7, as before
        if isinstance(value, bool) or not (isinstance(value, (str, int)) or whole):
            raise PydanticCustomError(
                "id_type",
                "must be a string or an integer, not {kind}",
                {"kind": _a(json_type(value))},
            )
        return value

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_type(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        odd = [v for v in items if not isinstance(v, (str, int, float))]
        if odd:
            kind = _a(json_type(odd[0]))
            raise PydanticCustomError(
                "answer_type",
                "must be a string, number, or list of them, not {kind}",
                {"kind": f"a list holding {kind}" if isinstance(value, list) else kind},
            )
        # JSON true/false is the text a model answers, not the 1/0 lax mode makes of a bool.
        texts = [("true" if v else "false") if isinstance(v, bool) else v for v in items]
        return texts if isinstance(value, list) else texts[0]

    @field_validator("files", mode="before")
    @classmethod
    def _files_type(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return value
        raise PydanticCustomError(
            "files_type",
            "must be a list of paths, or an object mapping workspace names to paths, not {kind}",
            {"kind": _a(json_type(value))},
        )


_FIELDS = ", ".join(JsonlRecord.model_fields)


def _unknown_fields(raw: dict[str, Any]) -> list[str]:
    return sorted(set(raw) - set(JsonlRecord.model_fields))


def _exact_norm(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


class JsonlSuite(JsonlFileSuite):
    """Tasks from a user JSONL file with exact, numeric or regex scoring."""

    name = "jsonl"
    #: Default of ``tolerance``.
    DEFAULT_TOLERANCE = 1e-6

    def __init__(
        self,
        path: str | Path | None = None,
        scoring: ScoringRule = "exact",
        tolerance: float = DEFAULT_TOLERANCE,
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

    def _record(self, raw: Any) -> JsonlRecord:
        raw = json_object(raw)
        try:
            return JsonlRecord.model_validate(raw)
        except ValidationError as exc:
            unknown = _unknown_fields(raw)
            if not unknown:
                raise
            # A missing field next to an unknown one is most often a misspelling.
            listed = ", ".join(repr(f) for f in unknown)
            raise ValueError(f"{error_message(exc)} (unknown field(s) {listed})") from None

    @staticmethod
    def _answer_texts(record: JsonlRecord) -> list[str]:
        raw_answers = record.answer if isinstance(record.answer, list) else [record.answer]
        return [scalar_text(a) or "" for a in raw_answers]

    def parse_row(self, raw: Any) -> Task:
        """Validate one line: fields, answer usable by the scoring rule, files present."""
        record = self._record(raw)
        answers = self._answer_texts(record)
        if not answers:
            raise ValueError("answer list is empty")
        if self.scoring == "numeric":
            # An alternative without a number can never match a numeric answer; the task is
            # kept with the others (row_notes names the ignored ones).
            numbers = [g for g in answers if number_of(g) is not None]
            if len(answers) == 1 and not numbers:
                raise ValueError(f"answer {answers[0]!r} is not a number (scoring=numeric)")
            if not numbers:
                shown = ", ".join(repr(g) for g in answers)
                raise ValueError(f"no answer is a number (scoring=numeric): {shown}")
            answers = numbers
        for gold in answers:
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
            if _escapes(workspace_name):
                # TaskFile would refuse it with pydantic's "path: Value error, ...", which
                # names neither the row's field nor the way to give such a file.
                if isinstance(files, dict):
                    raise ValueError(
                        f"workspace name {workspace_name!r} must be a relative path without "
                        "'..' (the name the agent sees in its folder)"
                    )
                name = PurePosixPath(relative).name
                raise ValueError(
                    f"file {relative!r} is outside the JSONL file's folder, so it has no name "
                    f'in the agent\'s folder: give one with "files": {{"{name}": "{relative}"}}'
                )
            source = (self.path.parent / relative).resolve()
            if source.is_dir():
                raise ValueError(
                    f"file {relative!r} is a folder next to {self.path.name}: list the files "
                    "in it one by one"
                )
            if not source.is_file():
                raise ValueError(f"file {relative!r} not found next to {self.path.name}")
            result.append(TaskFile(path=workspace_name, source=str(source)))
        return result

    def row_notes(self, raw: Any, task: Task) -> list[str]:
        """Unknown fields (ignored) and answers the numeric rule ignores (they hold no number)."""
        notes = []
        unknown = _unknown_fields(raw)
        if unknown:
            listed = ", ".join(repr(f) for f in unknown)
            notes.append(f"unknown field(s) {listed} ignored; the fields are {_FIELDS}")
        ignored = [a for a in self._answer_texts(self._record(raw)) if a not in task.answers]
        if ignored and self.scoring == "numeric":
            listed = ", ".join(repr(a) for a in ignored)
            notes.append(f"answer {listed} holds no number: ignored by scoring=numeric")
        for gold in task.answers if self.scoring == "numeric" else ():
            value = number_of(gold)
            if value is not None and _plain(gold) is None and number_count(gold) > 1:
                # '3/4' is scored as 4, '12 km, or 7.46 miles' as 7.46: say which.
                notes.append(
                    f"answer {gold!r} holds several numbers: scoring=numeric compares the "
                    f"last, {format_number(value)}"
                )
        return notes

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
        value = number_of(text) if free_text else float(text)
        golds = [number_of(g) for g in task.answers]
        return score_value(value, golds, self.tolerance)

    def describe(self) -> str:
        """Questions of a task file and the rule that scores their answers."""
        rule = {
            "exact": "equal to the gold text (case and spacing ignored)",
            "numeric": f"the number, within {self.tolerance:g} of the gold number",
            "regex": "matching the gold regular expression",
        }[self.scoring]
        return (
            f"Questions from the task file {self.path.name}, each answered with a short "
            f"answer; an answer passes when it is {rule}."
        )

    def summarise(self, task: Task) -> str:
        """The question (the agent's first message lists the workspace files itself; said
        here too, the model read them twice under two names)."""
        return f"Question: {task.question}"
