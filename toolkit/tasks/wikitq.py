"""WikiTableQuestions: answer a question about one Wikipedia table (``table.csv``).

Data: ``wikitablequestions/wtq_subset.jsonl`` (400 ``train`` + 200 pristine-unseen ``test``
questions). Scoring is the official evaluator (:mod:`toolkit.tasks.wikitq_eval`): the gold is
typed from its canonical form, the prediction from its own text, and the two sets must match.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from toolkit.tasks import wikitq_eval
from toolkit.tasks.base import JsonlFileSuite, Score, Task, TaskFile, json_object, scalar_text
from toolkit.tasks.datadir import resolve_data_dir

DATA_FILE = "wikitablequestions/wtq_subset.jsonl"
TABLE_FILE = "table.csv"
# Separators tried, in order, when a multi-item gold meets a single-line prediction.
_ITEM_SEPARATORS = ("|", ";", ",")


def parse_wtq_csv(text: str) -> list[list[str]]:
    """Parse WikiTableQuestions' CSV dialect (``\\"`` escapes quotes, no doubled quotes).

    Raises:
        ValueError: when the table is empty or its rows differ in width.
    """
    rows = list(csv.reader(io.StringIO(text), escapechar="\\", doublequote=False))
    if not rows:
        raise ValueError("table_csv is empty")
    width = len(rows[0])
    ragged = [i + 1 for i, r in enumerate(rows) if len(r) != width]
    if ragged:
        raise ValueError(f"table_csv rows {ragged[:3]} do not have {width} columns")
    return rows


def to_standard_csv(rows: list[list[str]]) -> str:
    """RFC-4180 CSV text (what pandas.read_csv expects)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def prediction_items(answer: object) -> list[str] | str:
    """The prediction as a list of item strings, or an error message for unusable answers.

    A string is one item, or one item per non-empty line when it has several lines; a list
    or tuple holds one item per element (strings or numbers).
    """

    def scalar(x: object) -> str | None:
        text = scalar_text(x)
        return text.strip() if text is not None else None

    if answer is None:
        return "no answer given"
    if isinstance(answer, list | tuple):
        items = [scalar(x) for x in answer]
        if any(i is None for i in items):
            bad = next(x for x in answer if scalar(x) is None)
            return f"answer list holds a {type(bad).__name__}; expected strings or numbers"
        return [i for i in items if i is not None]
    item = scalar(answer)
    if item is None:
        return f"answer is a {type(answer).__name__}; expected a string, number or list"
    if "\n" in item:
        return [line.strip() for line in item.splitlines() if line.strip()]
    return [item]


def score_wtq(gold: list[str], gold_canon: list[str] | None, answer: object) -> Score:
    """Score an answer against gold items with the official evaluator.

    When the gold has several items and the prediction is one line, the line is also tried
    split on ``|``, ``;`` then ``,`` (as the data's SOURCE.md advises); ``info['split_on']``
    records a separator that made it pass.
    """
    targets = wikitq_eval.to_value_list(gold, gold_canon)
    gold_norm = [t.normalized for t in targets]
    items = prediction_items(answer)
    if isinstance(items, str):
        return Score.fail(items, gold=gold_norm)
    if not items or all(not i for i in items):
        return Score.fail("empty answer", gold=gold_norm)
    candidates: list[tuple[str | None, list[str]]] = [(None, items)]
    if len(targets) > 1 and len(items) == 1:
        for sep in _ITEM_SEPARATORS:
            parts = [p.strip() for p in items[0].split(sep) if p.strip()]
            if len(parts) > 1:
                candidates.append((sep, parts))
    first_norm: list[str] = []
    for sep, candidate in candidates:
        predicted = wikitq_eval.to_value_list(candidate)
        pred_norm = [p.normalized for p in predicted]
        first_norm = first_norm or pred_norm
        if wikitq_eval.check_denotation(targets, predicted):
            info = {"split_on": sep} if sep else {}
            return Score(
                passed=True,
                value=1.0,
                predicted=pred_norm,
                gold=gold_norm,
                details="matches the gold answer",
                info=info,
            )
    if len(items) != len(targets):
        why = f"{len(items)} predicted item(s) for {len(targets)} gold item(s)"
    else:
        why = "a gold item matches no predicted item"
    return Score(passed=False, value=0.0, predicted=first_norm, gold=gold_norm, details=why)


class WikiTQSuite(JsonlFileSuite):
    """WikiTableQuestions table QA, scored with the official evaluator."""

    name = "wikitq"
    description = (
        "Table question answering (WikiTableQuestions): each task is a question about one "
        "Wikipedia table, given as the CSV file table.csv in the working directory. The answer "
        "is a short value read or computed from the table (cell text, a number, a date, yes or "
        "no) or a list of such items, one per line; it is scored with the official evaluator "
        "(normalised text, number and date matching; a list must hold the same items)."
    )

    def __init__(self, data_dir: str | Path | None = None, file: str | Path | None = None):
        """Read ``file`` (default ``<data root>/wikitablequestions/wtq_subset.jsonl``)."""
        self.data_dir = resolve_data_dir(data_dir)
        self.path = Path(file) if file is not None else self.data_dir / DATA_FILE

    def parse_row(self, raw: Any) -> Task:
        """Build a task; the table is re-written as standard CSV in ``table.csv``."""
        raw = json_object(raw)
        answers = raw["answers"]
        canon = raw.get("answers_canon")
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise ValueError("answers must be a non-empty list of strings")
        if canon is not None and (
            not isinstance(canon, list)
            or len(canon) != len(answers)
            or not all(isinstance(c, str) for c in canon)
        ):
            raise ValueError("answers_canon must be a list of strings as long as answers")
        if raw.get("split") not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {raw.get('split')!r}")
        if not isinstance(raw.get("table_csv"), str):
            raise ValueError("table_csv must be a string")
        rows = parse_wtq_csv(raw["table_csv"])
        return Task(
            id=str(raw["id"]),
            suite=self.name,
            split=raw["split"],
            question=raw["question"],
            answers=answers,
            files=[TaskFile(path=TABLE_FILE, text=to_standard_csv(rows))],
            metadata={
                "answers_canon": canon,
                "table_path": raw.get("table_path"),
                "answers_canon_source": raw.get("answers_canon_source"),
            },
        )

    def score(self, task: Task, answer: object) -> Score:
        """Official WikiTQ evaluation of ``answer`` (a string, a number or a list of items)."""
        return score_wtq(task.answers, task.metadata.get("answers_canon"), answer)

    def reference_answers(self, task: Task) -> list[object]:
        """The gold item list, as given and in its canonical form: both must pass."""
        canon = task.metadata.get("answers_canon")
        return [task.answers] + ([canon] if canon else [])

    def summarise(self, task: Task, max_rows: int = 5) -> str:
        """The question, the table's shape and columns, and its first rows."""
        table = next(f for f in task.files if f.path == TABLE_FILE)
        rows = list(csv.reader(io.StringIO(table.text or "")))
        header, body = rows[0], rows[1:]
        lines = [
            f"Question: {task.question}",
            f"The table is in {TABLE_FILE} (standard CSV, first row is the header): "
            f"{len(body)} rows x {len(header)} columns.",
            "Columns: " + ", ".join(repr(h) for h in header),
            f"First {min(max_rows, len(body))} rows:",
        ]
        lines += [" | ".join(r) for r in body[:max_rows]]
        lines.append("Answer with the value(s) only; give several items one per line.")
        return "\n".join(lines)
