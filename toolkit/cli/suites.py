"""Click options that choose a task suite, shared by every command that reads tasks.

``--suite`` names the suite, ``--data`` its data (a folder, or the task file of ``jsonl``),
and ``--scoring`` / ``--tolerance`` say how a ``jsonl`` suite scores. The command receives
one ``suite`` argument: the :class:`toolkit.tasks.Suite`, or None when no ``--suite`` was given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from toolkit.tasks import SUITES, Suite, TaskError, get_suite

JSONL = "jsonl"


def open_suite(
    name: str,
    data: Path | None = None,
    *,
    scoring: str | None = None,
    tolerance: float | None = None,
) -> Suite:
    """The suite ``name`` reading ``data``, with a clear error for options that do not fit.

    Raises:
        TaskError: a jsonl suite without its file, a folder/file mix-up, or jsonl-only
            options for another suite.
    """
    if name != JSONL:
        if scoring is not None or tolerance is not None:
            raise TaskError("--scoring and --tolerance apply to --suite jsonl only")
        if data is None:
            return get_suite(name)
        if not data.is_dir():
            raise TaskError(f"--data must be a data folder for --suite {name}: {data}")
        return get_suite(name, data_dir=data)
    if data is None:
        raise TaskError(
            "--suite jsonl needs --data FILE.jsonl, one task per line: "
            '{"id": "q1", "question": "...", "answer": "42"} (see trace2skill tasks --help)'
        )
    if data.is_dir():
        raise TaskError(f"--data must be the JSONL task file for --suite jsonl: {data} is a folder")
    options: dict[str, Any] = {"path": data}
    if scoring is not None:
        options["scoring"] = scoring
    if tolerance is not None:
        options["tolerance"] = tolerance
    return get_suite(JSONL, **options)


def suite_options(*, required: bool, help_suite: str) -> Callable[[Callable[..., Any]], Any]:
    """Add ``--suite --data --scoring --tolerance``; the command gets ``suite: Suite | None``.

    Args:
        required: whether ``--suite`` must be given.
        help_suite: the help text of ``--suite``.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        @click.option(
            "--suite", "suite_name", required=required, type=click.Choice(sorted(SUITES)),
            help=help_suite,
        )  # fmt: skip
        @click.option(
            "--data", "--data-dir", "data", type=click.Path(exists=True, path_type=Path),
            help="The suite's data folder (default: $TRACE2SKILL_DATA_DIR, ../shared/data or "
            "the bundled slice); for --suite jsonl, the JSONL task file.",
        )  # fmt: skip
        @click.option(
            "--scoring", type=click.Choice(["exact", "numeric", "regex"]),
            help="How --suite jsonl scores an answer: exact text (case and spacing ignored), "
            "the number (the whole answer when it is one, e.g. 2.5e3, else its last number) "
            "within --tolerance, or the gold as a regex.  [default: exact]",
        )  # fmt: skip
        @click.option(
            "--tolerance", type=click.FloatRange(min=0),
            help="Largest difference that still passes with --scoring numeric.  "
            "[default: 1e-06]",
        )  # fmt: skip
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            suite_name: str | None,
            data: Path | None,
            scoring: str | None,
            tolerance: float | None,
            **kwargs: Any,
        ) -> Any:
            if suite_name is None:
                if data is not None or scoring is not None or tolerance is not None:
                    raise TaskError("--data, --scoring and --tolerance need --suite")
                kwargs["suite"] = None
            else:
                kwargs["suite"] = open_suite(suite_name, data, scoring=scoring, tolerance=tolerance)
            return func(*args, **kwargs)

        return wrapper

    return decorate
