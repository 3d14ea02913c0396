"""Suite registry: ``get_suite("wikitq", data_dir=...)``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit.tasks.base import Suite, TaskError
from toolkit.tasks.gsm8k import GSM8KSuite
from toolkit.tasks.jsonl import JsonlSuite
from toolkit.tasks.spreadsheet import SpreadsheetSuite
from toolkit.tasks.wikitq import WikiTQSuite

SUITES: dict[str, type[Suite]] = {
    cls.name: cls for cls in (WikiTQSuite, GSM8KSuite, SpreadsheetSuite, JsonlSuite)
}


def suite_options(name: str) -> list[str]:
    """The keyword options a suite's constructor takes."""
    return [p for p in inspect.signature(SUITES[name]).parameters if p != "self"]


def get_suite(name: str, **options: Any) -> Suite:
    """Create the suite ``name`` with its options (e.g. ``data_dir``, ``scoring``).

    Raises:
        TaskError: unknown suite name (the message lists the valid ones) or unknown option.
    """
    if name not in SUITES:
        raise TaskError(f"unknown task suite {name!r}; valid suites: " + ", ".join(SUITES))
    valid = suite_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TaskError(
            f"suite {name!r} has no option(s) {', '.join(unknown)}; valid options: "
            + ", ".join(valid)
        )
    return SUITES[name](**options)


def suite_source(suite: Suite) -> dict[str, Any]:
    """The options that reopen ``suite`` on its data (recorded in a run's manifest): a jsonl
    suite's task file and scoring rule, another suite's data folder. A user's own task file
    has no default, so an analysis or evaluation that only knew the name could not find it."""
    if isinstance(suite, JsonlSuite):
        return {
            "path": str(suite.path.resolve()),
            "scoring": suite.scoring,
            "tolerance": suite.tolerance,
        }
    data_dir = getattr(suite, "data_dir", None)
    return {"data_dir": str(Path(data_dir).resolve())} if data_dir is not None else {}


#: The options of a :func:`suite_source` that say where the data lies (it may move); the
#: others decide how an answer is scored.
_LOCATION_OPTIONS = frozenset({"path", "data_dir"})


def scoring_options(source: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options of a recorded :func:`suite_source` that decide whether an answer passes
    (a jsonl suite's scoring rule and tolerance), without where the data lies.

    A finished task keeps the verdict it got when it ran, so work is only reused under the
    same options: an evaluation scored ``numeric`` read back under ``exact`` kept its passes.
    """
    return {k: v for k, v in (source or {}).items() if k not in _LOCATION_OPTIONS}


def describe_scoring(options: Mapping[str, Any]) -> str:
    """``scoring=numeric, tolerance=1e-06``, or ``the suite's own scoring`` when empty."""
    if not options:
        return "the suite's own scoring"
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def reopen_suite(name: str, source: dict[str, Any] | None) -> Suite:
    """The suite ``name`` on the data :func:`suite_source` recorded; a data folder that is
    not on this machine (a run folder copied from another) falls back to the default one.

    Raises:
        TaskError: unknown suite, or a jsonl suite whose task file is missing.
    """
    options = dict(source or {})
    folder = options.get("data_dir")
    if folder is not None and not Path(folder).is_dir():
        options.pop("data_dir")
    path = options.get("path")
    if name == "jsonl" and (path is None or not Path(path).is_file()):
        raise TaskError(
            f"the run's task file {path or '(not recorded)'} is not here: give it with "
            "--suite jsonl --data FILE.jsonl"
        )
    valid = suite_options(name) if name in SUITES else []
    return get_suite(name, **{k: v for k, v in options.items() if k in valid})
