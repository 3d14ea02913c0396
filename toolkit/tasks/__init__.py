"""Task suites: load benchmark tasks, build agent workspaces and score answers.

Suites: ``wikitq`` (WikiTableQuestions, official evaluator), ``gsm8k`` (final number),
``spreadsheet`` (SpreadsheetBench, LibreOffice recalculation) and ``jsonl`` (a user's own
question/answer file)::

    suite = get_suite("wikitq")
    tasks = suite.load("train", limit=20, seed=0).tasks
    suite.build_workspace(tasks[0], Path("work"))
    score = suite.score(tasks[0], "Matti Yrjölä")
"""

from toolkit.tasks.base import (
    LoadResult,
    RowError,
    RowNote,
    Score,
    Suite,
    Task,
    TaskError,
    TaskFile,
)
from toolkit.tasks.datadir import DATA_DIR_ENV, VENDORED_DATA_DIR, resolve_data_dir
from toolkit.tasks.recalc import RecalcError
from toolkit.tasks.registry import (
    SUITES,
    describe_scoring,
    get_suite,
    reopen_suite,
    scoring_options,
    suite_options,
    suite_source,
)
from toolkit.tasks.splits import (
    SplitsFile,
    hash_split,
    load_splits,
    make_splits,
    save_splits,
    tasks_for_split,
)

__all__ = [
    "DATA_DIR_ENV",
    "SUITES",
    "VENDORED_DATA_DIR",
    "LoadResult",
    "RecalcError",
    "RowError",
    "RowNote",
    "Score",
    "SplitsFile",
    "Suite",
    "Task",
    "TaskError",
    "TaskFile",
    "describe_scoring",
    "get_suite",
    "reopen_suite",
    "suite_source",
    "hash_split",
    "load_splits",
    "make_splits",
    "resolve_data_dir",
    "save_splits",
    "scoring_options",
    "suite_options",
    "tasks_for_split",
]
