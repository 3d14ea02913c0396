"""The task-suite protocol: tasks, scores, load results and the :class:`Suite` base class.

A suite turns a benchmark file into :class:`Task` records, writes a task's input files into an
agent workspace and scores an agent's answer. Loading never stops at a malformed row: the row
is reported as a :class:`RowError` and skipped. Scoring never raises for an odd answer (None, a
dict, a bool...): the score fails with a detail saying why.
"""

from __future__ import annotations

import json
import numbers
import random
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import ToolkitError

SCHEMA_VERSION = 1


class TaskError(ToolkitError):
    """A task suite, split or data file cannot be used as asked."""


class TaskFile(BaseModel):
    """One input file placed in the agent's workspace.

    Exactly one of ``text``, ``data`` or ``source`` gives the content.
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    path: str = Field(description="Relative POSIX path inside the workspace, e.g. 'table.csv'.")
    text: str | None = Field(default=None, description="UTF-8 text content.")
    data: bytes | None = Field(default=None, description="Binary content (base64 in JSON).")
    source: str | None = Field(default=None, description="Absolute path of a file to copy.")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        pure = PurePosixPath(value)
        if not value or pure.is_absolute() or ".." in pure.parts or "\\" in value:
            raise ValueError(f"workspace path must be relative without '..': {value!r}")
        return str(pure)

    @model_validator(mode="after")
    def _one_content(self) -> TaskFile:
        given = [x is not None for x in (self.text, self.data, self.source)]
        if sum(given) != 1:
            raise ValueError(f"{self.path}: give exactly one of text, data or source")
        return self

    def content(self) -> str | bytes:
        """The file's content: its text, its data, or the bytes of its source file.

        Raises:
            TaskError: the source file is missing.
        """
        if self.text is not None:
            return self.text
        if self.data is not None:
            return self.data
        assert self.source is not None
        try:
            return Path(self.source).read_bytes()
        except OSError as exc:
            raise TaskError(f"task input file is missing: {self.source} ({exc})") from None

    def write(self, root: Path) -> Path:
        """Write this file under ``root`` and return its path."""
        target = root / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.text is not None:
            target.write_text(self.text, encoding="utf-8")
        elif self.data is not None:
            target.write_bytes(self.data)
        else:
            assert self.source is not None
            source = Path(self.source)
            if not source.is_file():
                raise TaskError(f"task input file is missing: {source}")
            shutil.copyfile(source, target)
        return target


class Task(BaseModel):
    """One benchmark task: a question, its gold answer(s) and its input files."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    id: str = Field(min_length=1, description="Task id, unique within its suite.")
    suite: str = Field(description="Name of the suite that loaded it, e.g. 'wikitq'.")
    split: str = Field(description="Split the task belongs to, e.g. 'train' or 'test'.")
    question: str = Field(description="The question or instruction shown to the agent.")
    answers: list[str] = Field(
        default_factory=list,
        description="Gold answer items (empty when the gold lives in files, as for spreadsheets).",
    )
    files: list[TaskFile] = Field(default_factory=list, description="Workspace input files.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Suite-specific fields (JSON values only)."
    )


class Score(BaseModel):
    """The verdict on one answer to one task."""

    schema_version: int = SCHEMA_VERSION
    passed: bool = Field(description="True when the answer is correct under the suite's rule.")
    value: float = Field(
        ge=0.0,
        le=1.0,
        description="Score in [0, 1]: 1/0 for most suites, the fraction of passed test "
        "cases (SpreadsheetBench 'soft') for spreadsheets.",
    )
    predicted: list[str] = Field(default_factory=list, description="Normalised prediction.")
    gold: list[str] = Field(default_factory=list, description="Normalised gold answer.")
    details: str = Field(default="", description="One line explaining the verdict.")
    info: dict[str, Any] = Field(default_factory=dict, description="Structured details.")

    @classmethod
    def fail(cls, details: str, *, gold: Sequence[str] = (), **info: Any) -> Score:
        """A failing score for an answer that could not be compared."""
        return cls(passed=False, value=0.0, gold=list(gold), details=details, info=info)


class RowError(BaseModel):
    """A malformed source row that was skipped while loading."""

    source: str = Field(description="File the row came from.")
    line: int = Field(description="1-based line (or record) number in that file.")
    id: str | None = Field(default=None, description="The row's id, when it could be read.")
    message: str = Field(description="What is wrong with the row.")

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return f"{where}{f' ({self.id})' if self.id else ''}: {self.message}"


class RowNote(RowError):
    """A remark on a row that loaded (an unknown field, an answer the scoring ignores)."""


class LoadResult(BaseModel):
    """Tasks loaded from a split plus the rows that were skipped."""

    tasks: list[Task]
    bad_rows: list[RowError] = Field(default_factory=list)
    notes: list[RowNote] = Field(
        default_factory=list, description="Remarks on rows that loaded (the task is kept)."
    )

    @property
    def ids(self) -> list[str]:
        """The task ids, in load order."""
        return [t.id for t in self.tasks]


def error_message(exc: Exception) -> str:
    """A one-line message for a row-parsing exception (pydantic errors condensed)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        return "; ".join(parts)
    return str(exc) or type(exc).__name__


def scalar_text(value: object) -> str | None:
    """Text of a string or real number answer (numpy numbers too); None for anything else.

    Booleans are refused: ``True`` is an int in Python but never a meant answer.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # numpy bools are no numbers.Real either
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return None


def seeded_subset(tasks: Sequence[Task], limit: int | None, seed: int) -> list[Task]:
    """Pick ``limit`` tasks with ``random.Random(seed)``, kept in their original order.

    The same tasks, limit and seed always give the same subset.
    """
    if limit is None or limit >= len(tasks):
        return list(tasks)
    if limit < 0:
        raise TaskError(f"limit must be >= 0, got {limit}")
    picked = sorted(random.Random(seed).sample(range(len(tasks)), limit))
    return [tasks[i] for i in picked]


def split_subset(tasks: Sequence[Task], split: str, limit: int | None, seed: int) -> list[Task]:
    """The tasks of ``split`` (``all``: every task), then :func:`seeded_subset` of them."""
    return seeded_subset([t for t in tasks if split == "all" or t.split == split], limit, seed)


class Suite(ABC):
    """A benchmark: loads tasks per split, prepares workspaces and scores answers.

    Subclasses implement :meth:`iter_rows`, :meth:`parse_row`, :meth:`score` and
    :meth:`summarise`; the base class does split filtering, bad-row reporting and sampling.
    """

    #: Registry name, e.g. ``"wikitq"``.
    name: str = ""
    #: Splits this suite offers; ``"all"`` means every task.
    splits: tuple[str, ...] = ("train", "test", "all")
    #: The scorer reads files the agent writes into its workspace, not only its answer: an
    #: agent that runs no code (the ``plain`` protocol) can never pass a task.
    scores_written_files: bool = False
    #: What the tasks are and how an answer is scored, in a sentence or two: what the author
    #: model reads when it drafts a first skill for the suite (Creation, :mod:`toolkit.draft`).
    description: str = ""

    def describe(self) -> str:
        """:attr:`description`, or a generic line for a suite without one."""
        return self.description or f"Tasks of the {self.name} suite."

    @abstractmethod
    def iter_rows(self) -> Iterator[tuple[str, int, Any]]:
        """Yield ``(source, line_number, raw_row)`` for every row of the data files.

        Raises:
            TaskError: when a data file is missing or unreadable as a whole.
        """

    @abstractmethod
    def parse_row(self, raw: Any) -> Task:
        """Turn one raw row into a :class:`Task`; raise ValueError/ValidationError if bad."""

    @abstractmethod
    def source_files(self) -> list[Path]:
        """The data files tasks are read from (hashed into ``splits.json``)."""

    @abstractmethod
    def score(self, task: Task, answer: object) -> Score:
        """Score ``answer`` for ``task``; odd answer types fail with a detail, never raise."""

    @abstractmethod
    def summarise(self, task: Task) -> str:
        """Short prompt text: the question, the workspace files and a preview of them."""

    def row_notes(self, raw: Any, task: Task) -> list[str]:
        """Remarks on a row that loaded as ``task`` (``tasks check`` shows them); none here."""
        return []

    def reference_answers(self, task: Task) -> list[object]:
        """Answers that must score as correct: each gold item (``tasks check`` scores them).

        Empty when the suite cannot state a correct answer (a regex gold is a pattern).
        """
        return list(task.answers)

    def build_workspace(self, task: Task, directory: Path) -> list[Path]:
        """Write the task's input files into ``directory`` (created if needed).

        Returns:
            The written paths.
        """
        directory.mkdir(parents=True, exist_ok=True)
        return [f.write(directory) for f in task.files]

    def check_split(self, split: str) -> None:
        """Raise :class:`TaskError` naming the valid splits when ``split`` is unknown."""
        if split not in self.splits:
            raise TaskError(
                f"suite {self.name!r} has no split {split!r}; valid splits: "
                + ", ".join(self.splits)
            )

    @classmethod
    def check_protocol(cls, protocol: str) -> None:
        """Raise :class:`TaskError` when no task of this suite can pass under ``protocol``
        (a whole evaluation of zeros, reported as the model's level)."""
        if protocol == "plain" and cls.scores_written_files:
            raise TaskError(
                f"--protocol plain cannot pass a {cls.name} task: its scorer reads the files "
                "the agent writes, and plain runs no code; use code, json or tools"
            )

    def load_all(self) -> LoadResult:
        """Load every task of every split, skipping malformed rows (reported)."""
        tasks: list[Task] = []
        bad: list[RowError] = []
        notes: list[RowNote] = []
        seen: set[str] = set()
        for source, line, raw in self.iter_rows():
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            row_id = str(raw_id) if raw_id is not None else None
            try:
                if isinstance(raw, Exception):
                    raise raw
                task = self.parse_row(raw)
            except (ValueError, TypeError, KeyError, ValidationError, TaskError) as exc:
                message = error_message(exc)
                bad.append(RowError(source=source, line=line, id=row_id, message=message))
                continue
            if task.id in seen:
                bad.append(RowError(source=source, line=line, id=task.id, message="duplicate id"))
                continue
            seen.add(task.id)
            tasks.append(task)
            for note in self.row_notes(raw, task):
                notes.append(RowNote(source=source, line=line, id=task.id, message=note))
        return LoadResult(tasks=tasks, bad_rows=bad, notes=notes)

    def load(self, split: str, *, limit: int | None = None, seed: int = 0) -> LoadResult:
        """Load the tasks of ``split``; with ``limit``, a seeded subset of them.

        Args:
            split: one of :attr:`splits`.
            limit: keep at most this many tasks, drawn with ``random.Random(seed)``.
            seed: sampling seed; the same seed gives the same subset.

        Raises:
            TaskError: unknown split or unreadable data file.
        """
        self.check_split(split)
        result = self.load_all()
        return LoadResult(
            tasks=split_subset(result.tasks, split, limit, seed),
            bad_rows=result.bad_rows,
            notes=result.notes,
        )

    def load_ids(self, ids: Sequence[str]) -> list[Task]:
        """Load the tasks with these ids, in the given order.

        Raises:
            TaskError: when an id is not in the data.
        """
        by_id = {t.id: t for t in self.load_all().tasks}
        missing = [i for i in ids if i not in by_id]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise TaskError(f"suite {self.name!r}: {len(missing)} task id(s) not found: {shown}")
        return [by_id[i] for i in ids]


def iter_jsonl(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(file name, line number, decoded JSON)`` per non-blank line.

    A line that is not valid JSON is yielded as a :class:`ValueError` instance so the loader
    reports it as a bad row and goes on.

    Raises:
        TaskError: the file is missing or not UTF-8.
    """
    try:
        # utf-8-sig: editors on Windows start a UTF-8 file with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TaskError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read data file {path}: {exc}") from None
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and similar breaks.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield path.name, number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield path.name, number, ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})")


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type: object, array, string, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


def json_object(raw: Any) -> dict[str, Any]:
    """``raw`` when it is a JSON object (a dict).

    Raises:
        ValueError: it is not, so the loader reports the row as bad.
    """
    if not isinstance(raw, dict):
        raise ValueError(
            f'each line must be a JSON object ({{"id": ..., ...}}), not a JSON {json_type(raw)}'
        )
    return raw


class JsonlFileSuite(Suite):
    """A suite whose tasks are the lines of one JSONL file, :attr:`path` (set by ``__init__``).

    Subclasses implement :meth:`parse_row`, :meth:`score` and :meth:`summarise`.
    """

    #: The JSONL data file.
    path: Path

    def source_files(self) -> list[Path]:
        """The JSONL data file."""
        return [self.path]

    def iter_rows(self) -> Iterator[tuple[str, int, Any]]:
        """Yield each JSONL line, decoded (a decoding error is yielded as a ValueError)."""
        yield from iter_jsonl(self.path)
