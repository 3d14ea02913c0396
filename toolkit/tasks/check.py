"""Check a suite's data before spending model time on it.

Loads every row (malformed rows are reported, as the loader always does) and scores each
task's reference answers (:meth:`Suite.reference_answers`) with the suite's own rule. A
reference that fails names a task whose gold its own scorer rejects: a WikiTQ gold that the
official evaluator does not match with itself, or a SpreadsheetBench answer workbook whose
stored values LibreOffice recalculates differently (an agent writing the gold's formulas
fails that task too).
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from toolkit.progress import Progress
from toolkit.tasks.base import LoadResult, RowError, RowNote, Suite, TaskError, split_subset
from toolkit.tasks.datadir import resolve_data_dir
from toolkit.tasks.jsonl import JsonlSuite


class ReferenceFailure(BaseModel):
    """A task whose reference answer does not pass its own scorer."""

    id: str
    split: str
    details: str = Field(description="The scorer's verdict on the reference answer.")


class SuiteCheck(BaseModel):
    """The result of :func:`check_suite`."""

    suite: str
    split: str = Field(description="The split checked ('all' for every task).")
    splits: dict[str, int] = Field(description="Tasks per split over the whole data.")
    bad_rows: list[RowError] = Field(default_factory=list)
    notes: list[RowNote] = Field(
        default_factory=list,
        description="Remarks on rows that loaded: unknown fields, ignored answers.",
    )
    checked: int = Field(description="Tasks whose reference answers were scored.")
    unchecked: list[str] = Field(
        default_factory=list, description="Tasks with no reference answer to score."
    )
    failures: list[ReferenceFailure] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row was skipped and every reference passed (notes do not count)."""
        return not self.bad_rows and not self.failures


def check_suite(
    suite: Suite,
    split: str = "all",
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SuiteCheck:
    """Load ``suite`` and score the reference answers of the tasks of ``split``.

    Args:
        suite: the suite to check.
        split: the split whose tasks are scored (``all`` for every task).
        limit: score a seeded subset of at most this many tasks.
        seed: the subset's seed.
        progress: a bar to advance per task (its total is set to the tasks checked).

    Raises:
        TaskError: unknown split or unreadable data file; RecalcError when LibreOffice is
            needed and fails (an environment problem, not a data one).
    """
    suite.check_split(split)
    loaded = suite.load_all()
    tasks = split_subset(loaded.tasks, split, limit, seed)
    if progress is not None:
        progress.total = len(tasks)
        progress.draw()
    failures: list[ReferenceFailure] = []
    unchecked: list[str] = []
    for task in tasks:
        references = suite.reference_answers(task)
        if not references:
            unchecked.append(task.id)
        failed = next((s for s in (suite.score(task, r) for r in references) if not s.passed), None)
        if failed is not None:
            failures.append(ReferenceFailure(id=task.id, split=task.split, details=failed.details))
        if progress is not None:
            progress.update(bool(references) and failed is None)
    return SuiteCheck(
        suite=suite.name,
        split=split,
        splits=dict(sorted(Counter(t.split for t in loaded.tasks).items())),
        bad_rows=loaded.bad_rows,
        notes=loaded.notes,
        checked=len(tasks) - len(unchecked),
        unchecked=unchecked,
        failures=failures,
    )


def check_command(suite: Suite) -> str:
    """The ``trace2skill tasks check`` command line for ``suite`` on its data and scoring."""
    args = ["trace2skill", "tasks", "check", "--suite", suite.name]
    if isinstance(suite, JsonlSuite):
        # The path as given, the spelling the user knows; the scoring decides which rows load.
        args += ["--data", str(suite.path)]
        if suite.scoring != "exact":
            args += ["--scoring", suite.scoring]
        if suite.tolerance != JsonlSuite.DEFAULT_TOLERANCE:
            args += ["--tolerance", repr(suite.tolerance)]
        return shlex.join(args)
    data_dir = getattr(suite, "data_dir", None)
    if isinstance(data_dir, Path):
        try:
            default: Path | None = resolve_data_dir().resolve()
        except TaskError:  # a broken $TRACE2SKILL_DATA_DIR: name the folder outright
            default = None
        if data_dir.resolve() != default:
            args += ["--data", str(data_dir)]
    return shlex.join(args)


def skipped_rows_notice(suite: Suite, bad_rows: Sequence[RowError]) -> str:
    """One line for a run that skipped ``bad_rows``: how many, of which file, and the
    command that lists them."""
    paths = {p.name: str(p) for p in suite.source_files()}
    files = ", ".join(sorted({paths.get(r.source, r.source) for r in bad_rows}))
    n = len(bad_rows)
    return (
        f"{n} malformed row{'s' if n != 1 else ''} of {files} skipped "
        f"(see `{check_command(suite)}`)"
    )


def empty_split_message(suite: Suite, split: str, loaded: LoadResult) -> str:
    """Why ``split`` has no tasks, in one line: the splits the data has instead (a user's
    file whose rows all say ``"split": "train"`` has no test split), or the rows skipped."""
    counts = Counter(task.split for task in loaded.tasks)
    where = ", ".join(str(p) for p in suite.source_files()) or suite.name
    have = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    message = f"split {split!r} of suite {suite.name!r} has no tasks in {where}"
    message += f" (it has: {have})" if have else " (no task loaded)"
    if isinstance(suite, JsonlSuite) and have:
        message += f'; mark rows with "split": "{split}" or choose another split'
    if loaded.bad_rows:
        n, first = len(loaded.bad_rows), loaded.bad_rows[0]
        message += (
            f"; {n} malformed row{'s' if n != 1 else ''} skipped, first: {first} "
            f"(see `{check_command(suite)}`)"
        )
    return message
