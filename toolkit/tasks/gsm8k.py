"""GSM8K: grade-school math word problems answered with one number.

Data: ``gsm8k/gsm8k_test300.jsonl`` (300 problems of the upstream test set). The gold number
is extracted from the solution's ``#### N`` line with the upstream ``ANS_RE`` (and checked
against ``answer_number`` when the record has it). The data has no train/test division, so
tasks are assigned by a hash of their id (:func:`toolkit.tasks.splits.hash_split`).

Scoring rule (reported as SOURCE.md asks): take the number in the last ``\\boxed{}``, else
the first number after the last ``####``, else the last number in the answer; drop ``$`` and
thousands commas; pass when ``|pred - gold| <= tolerance`` (default 1e-6).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.tasks.base import JsonlFileSuite, Score, Task, json_object, scalar_text
from toolkit.tasks.datadir import resolve_data_dir
from toolkit.tasks.splits import hash_split

DATA_FILE = "gsm8k/gsm8k_test300.jsonl"
#: Upstream ``grade_school_math/dataset.py`` answer pattern.
ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
DEFAULT_TOLERANCE = 1e-6

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A minus sign counts only when it does not follow a digit ("16-3-4=9" ends in 9, not -4).
_NUMBER = re.compile(r"(?<![\d.])[-−]?(?:\d+(?:\.\d+)?|\.\d+)")


def gold_number(solution: str) -> str:
    """The gold number of a solution: the ``#### N`` match with commas removed.

    Raises:
        ValueError: no ``#### N`` line or an unparsable number.
    """
    match = ANS_RE.search(solution)
    if not match:
        raise ValueError("solution has no '#### <number>' line")
    text = match.group(1).replace(",", "").rstrip(".")
    float(text)  # raises ValueError on e.g. '1.2.3'
    return text


def extract_number(text: str) -> float | None:
    """The final number of a free-text answer (see the module docstring), or None."""
    boxed = _BOXED.findall(text)
    pick = -1
    if boxed:
        text = boxed[-1]
    elif "####" in text:
        text, pick = text.rsplit("####", 1)[1], 0  # the number right after "####"
    text = _THOUSANDS_COMMA.sub("", text.replace("$", ""))
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return float(numbers[pick].replace("−", "-"))


def number_count(text: str) -> int:
    """How many numbers :func:`extract_number` sees in ``text`` (it takes one of them)."""
    return len(_NUMBER.findall(_THOUSANDS_COMMA.sub("", text.replace("$", ""))))


def format_number(x: float) -> str:
    """``18`` for 18.0, else the shortest repr."""
    return str(int(x)) if x.is_integer() else repr(x)


def score_number(gold: str, answer: object, tolerance: float = DEFAULT_TOLERANCE) -> Score:
    """Compare ``answer`` (a number or a string holding one) with the gold number."""
    target = float(gold)
    gold_norm = [format_number(target)]
    if answer is None:
        return Score.fail("no answer given", gold=gold_norm)
    text = scalar_text(answer)
    if text is None:
        return Score.fail(
            f"answer is a {type(answer).__name__}; expected a number or a string",
            gold=gold_norm,
        )
    value = extract_number(text) if isinstance(answer, str) else float(text)
    return score_value(value, [target], tolerance)


def score_value(value: float | None, golds: Sequence[float | None], tolerance: float) -> Score:
    """Pass when ``value`` is within ``tolerance`` of a gold number (None golds never match).

    ``value`` is the answer's number, None when the answer held none.
    """
    gold_norm = [format_number(g) for g in golds if g is not None]
    if value is None:
        return Score.fail("no number found in the answer", gold=gold_norm)
    if math.isnan(value) or math.isinf(value):
        return Score.fail(f"answer is not a finite number: {value}", gold=gold_norm)
    passed = any(g is not None and abs(value - g) <= tolerance for g in golds)
    return Score(
        passed=passed,
        value=1.0 if passed else 0.0,
        predicted=[format_number(value)],
        gold=gold_norm,
        details="equal within tolerance" if passed else "differs from the gold number",
        info={"tolerance": tolerance},
    )


class GSM8KSuite(JsonlFileSuite):
    """GSM8K final-number questions."""

    name = "gsm8k"
    description = (
        "Grade-school math word problems (GSM8K): each task is a short problem that takes a "
        "few steps of arithmetic (money, time, rates, percentages, counts). The answer is the "
        "final number only, scored by numeric equality with the gold number."
    )

    def __init__(
        self,
        data_dir: str | Path | None = None,
        file: str | Path | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ):
        """Read ``file`` (default ``<data root>/gsm8k/gsm8k_test300.jsonl``)."""
        self.data_dir = resolve_data_dir(data_dir)
        self.path = Path(file) if file is not None else self.data_dir / DATA_FILE
        self.tolerance = float(tolerance)

    def parse_row(self, raw: Any) -> Task:
        """Build a task; the solution is kept in metadata and never shown to the agent."""
        raw = json_object(raw)
        solution = raw["solution"]
        if not isinstance(solution, str) or not isinstance(raw["question"], str):
            raise ValueError("question and solution must be strings")
        gold = gold_number(solution)
        stated = raw.get("answer_number")
        if stated is not None and float(str(stated).replace(",", "")) != float(gold):
            raise ValueError(f"answer_number {stated!r} disagrees with the solution's {gold!r}")
        task_id = str(raw["id"])
        return Task(
            id=task_id,
            suite=self.name,
            split=hash_split(task_id),
            question=raw["question"],
            answers=[gold],
            metadata={"solution": solution, "line_index": raw.get("line_index")},
        )

    def score(self, task: Task, answer: object) -> Score:
        """Numeric comparison of the answer's final number with the gold number."""
        return score_number(task.answers[0], answer, self.tolerance)

    def summarise(self, task: Task) -> str:
        """The problem and the expected answer format."""
        return f"Problem: {task.question}\nAnswer with the final number only (no units)."
