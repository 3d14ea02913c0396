"""The process's warning filters stay as they were when toolkit code runs in threads."""

from __future__ import annotations

import threading
import warnings

from toolkit.analysts.snippets import code_problem


def test_lesson_code_checks_in_threads_leave_the_warning_filters_alone() -> None:
    """Each check of a lesson's code parsed it inside catch_warnings; analyses run in
    threads, and two overlapping blocks restored each other's filters, leaving "ignore"
    for everything: the rest of an evolve's notices went unsaid."""
    before = list(warnings.filters)
    lesson = "Match digits:\n\n```python\nimport re\nre.findall(r'\\d+', text)\n```\n"

    def check() -> None:
        for _ in range(3000):
            assert code_problem(lesson, "append_to_section") is None

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before
