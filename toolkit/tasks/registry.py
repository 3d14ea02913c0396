"""Suite registry: ``get_suite("wikitq", data_dir=...)``."""

from __future__ import annotations

import inspect
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
